"""Plain records of the update store: campaigns, jobs, events (never ORM objects).

Times here are epoch seconds (``float``), the clock the pure job and campaign cores are
driven with (``now`` arguments), so a value read back compares directly with ``now``.
States and reasons are stored as the stable strings of ``JobState`` / ``FailureReason``
(``StrEnum`` values pass as they are).

Counter keys of a campaign (:meth:`UpdateStore.get_counters`):

* ``"total"`` — jobs in the campaign;
* ``"state:<state>"`` — jobs currently in that state;
* ``"reason:<reason>"`` — jobs whose current failure reason is that reason;
* any key a caller adds through ``counter_deltas`` (e.g. ``"retries"``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from fotakit.store.records import JsonObject, JsonValue
from fotakit.updates import job as _job

__all__ = [
    "TERMINAL_STATES",
    "TOTAL_KEY",
    "CampaignRecord",
    "EventRecord",
    "JobRecord",
    "JsonObject",
    "JsonValue",
    "NewEvent",
    "WaveRecord",
    "new_campaign_id",
    "new_job_id",
    "reason_key",
    "state_key",
]

TERMINAL_STATES: Final = frozenset(str(s) for s in _job.TERMINAL_STATES)
"""Job states after which a job is never driven again (its owner is released), as the
plain strings stored in the database (defined once: :data:`fotakit.updates.job.TERMINAL_STATES`)."""

TOTAL_KEY: Final = "total"


def state_key(state: str) -> str:
    """The counter key of the jobs currently in ``state``."""
    return f"state:{state}"


def reason_key(reason: str) -> str:
    """The counter key of the jobs whose current failure reason is ``reason``."""
    return f"reason:{reason}"


def new_campaign_id() -> str:
    return "c" + secrets.token_hex(8)


def new_job_id() -> str:
    return "j" + secrets.token_hex(8)


@dataclass(frozen=True, kw_only=True, slots=True)
class CampaignRecord:
    """One campaign: its spec (JSON of ``CampaignSpec``), state, current wave, revision.

    ``snapshot`` is free JSON for the campaign engine (e.g. when the current wave's soak
    started); ``rev`` increases on every change (optimistic concurrency).
    """

    id: str
    name: str
    spec: JsonObject
    state: str
    wave: int
    parent_id: str | None
    snapshot: JsonObject
    rev: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class JobRecord:
    """One device's update job (a campaign member, or a single-device job).

    ``reason`` is the stable failure key (``FailureReason``), ``reason_detail`` the human
    sentence the update engine wrote about it (or None). ``owner``/``lease_until``: the
    server process (node ID) that drives the job and until when its claim holds.
    ``rev`` increases on every :meth:`UpdateStore.save_job`.
    """

    id: str
    campaign_id: str | None
    endpoint: str
    package_id: str
    state: str
    reason: str | None
    attempts: int
    snapshot: JsonObject
    wave: int | None
    owner: str | None
    lease_until: float | None
    next_timer_at: float | None
    rev: int
    created_at: float
    updated_at: float
    reason_detail: str | None = None
    """A sentence explaining the failure (or the cancellation), for people."""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True, kw_only=True, slots=True)
class NewEvent:
    """An event to append to the per-device log (see :meth:`UpdateStore.append_events`)."""

    endpoint: str
    kind: str
    at: float
    job_id: str | None = None
    campaign_id: str | None = None
    details: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class EventRecord:
    """One stored event; ``id`` increases in insertion order (the paging cursor)."""

    id: int
    endpoint: str
    kind: str
    at: float
    job_id: str | None
    campaign_id: str | None
    details: JsonObject


@dataclass(frozen=True, kw_only=True, slots=True)
class WaveRecord:
    """A wave a campaign entered, written by the one :meth:`advance_wave` that won."""

    campaign_id: str
    wave: int
    started_at: float
    node_id: str | None
    details: JsonObject
