"""Server-side update orchestration: per-device update jobs and fleet campaigns.

Pure cores (no I/O, clock passed in): :mod:`~fotakit.updates.job` (one device, one
package), :mod:`~fotakit.updates.delivery` (pull or push, URI, timeouts),
:mod:`~fotakit.updates.campaign` (waves, gates, thresholds, limits),
:mod:`~fotakit.updates.ratelimit`, :mod:`~fotakit.updates.windows`,
:mod:`~fotakit.updates.targets`. Persistence: :mod:`~fotakit.updates.store`. I/O shells:
:mod:`~fotakit.updates.engine` (+ ``engine_*``). The API the REST and CLI layers call is
:class:`UpdateService`::

    from fotakit.updates import UpdateService, CampaignSpec

The names below are imported lazily, so importing a pure core does not pull in the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fotakit.updates.campaign import (
        Campaign,
        CampaignSpec,
        CampaignState,
        ErrorThreshold,
        GateAction,
        WaveSpec,
    )
    from fotakit.updates.engine import EngineConfig, UpdateEngine
    from fotakit.updates.engine_campaigns import CampaignError
    from fotakit.updates.engine_packages import BaseUris
    from fotakit.updates.inventory import DeviceInventory
    from fotakit.updates.job import JobPolicy, JobState, UpdateJob
    from fotakit.updates.reasons import FailureReason
    from fotakit.updates.service import Progress, UpdateService
    from fotakit.updates.store import AsyncUpdateStore, UpdateStore
    from fotakit.updates.targets import DeviceView, TargetSpec

_EXPORTS = {
    "Campaign": "campaign",
    "CampaignSpec": "campaign",
    "CampaignState": "campaign",
    "ErrorThreshold": "campaign",
    "GateAction": "campaign",
    "WaveSpec": "campaign",
    "EngineConfig": "engine",
    "UpdateEngine": "engine",
    "CampaignError": "engine_campaigns",
    "BaseUris": "engine_packages",
    "DeviceInventory": "inventory",
    "JobPolicy": "job",
    "JobState": "job",
    "UpdateJob": "job",
    "FailureReason": "reasons",
    "Progress": "service",
    "UpdateService": "service",
    "AsyncUpdateStore": "store",
    "UpdateStore": "store",
    "DeviceView": "targets",
    "TargetSpec": "targets",
}

__all__ = [
    "AsyncUpdateStore",
    "BaseUris",
    "Campaign",
    "CampaignError",
    "CampaignSpec",
    "CampaignState",
    "DeviceInventory",
    "DeviceView",
    "EngineConfig",
    "ErrorThreshold",
    "FailureReason",
    "GateAction",
    "JobPolicy",
    "JobState",
    "Progress",
    "TargetSpec",
    "UpdateEngine",
    "UpdateJob",
    "UpdateService",
    "UpdateStore",
    "WaveSpec",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fotakit.updates' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fotakit.updates.{module}"), name)
