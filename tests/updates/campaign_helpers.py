"""Helpers for the pure campaign tests: device views, a spec builder, a recount."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from fotakit.updates.campaign import (
    TERMINAL_STATES,
    Campaign,
    CampaignSpec,
    Decision,
)
from fotakit.updates.targets import DeviceClass, DeviceView, TargetSpec

T0 = 1_780_000_000.0  # a fixed epoch (2026-05-28): the injected clock starts here
CLASS = DeviceClass(vendor_id="acme", class_id="sensor")


def view(
    endpoint: str,
    *,
    version: str | None = "1.0.0",
    tags: Iterable[str] = (),
    tz: str | None = None,
    vendor_id: str = "acme",
    class_id: str = "sensor",
    class_name: str | None = "sensor-v1",
) -> DeviceView:
    return DeviceView(
        endpoint=endpoint,
        vendor_id=vendor_id,
        class_id=class_id,
        class_name=class_name,
        firmware_version=version,
        tags=frozenset(tags),
        tz=tz,
    )


def fleet(n: int, prefix: str = "dev", **kwargs: Any) -> list[DeviceView]:
    return [view(f"{prefix}{i:04d}", **kwargs) for i in range(n)]


def spec(**overrides: Any) -> CampaignSpec:
    base = CampaignSpec(
        name="rollout",
        package_id="pkg-2",
        target=TargetSpec(device_class=CLASS, current_version="1.0.0"),
    )
    return replace(base, **overrides)


def recount(campaign: Campaign) -> dict[str, int]:
    """The counters recomputed by scanning every member (what the campaign must never do)."""
    out: Counter[str] = Counter()
    out["total"] = 0
    for endpoint in campaign.members:
        state = campaign.member_state(endpoint)
        assert state is not None
        out["total"] += 1
        out[f"state:{state[0]}"] += 1
        if state[1] is not None:
            out[f"reason:{state[1]}"] += 1
    return dict(out)


def roundtrip(campaign: Campaign) -> Campaign:
    """Snapshot -> JSON text -> restore, as a store would do."""
    return Campaign.restore(json.loads(json.dumps(campaign.snapshot())))


def started(decision: Decision) -> list[str]:
    return [s.endpoint for s in decision.starts]


def finish_all(
    campaign: Campaign,
    endpoints: Iterable[str],
    now: float,
    state: str = "succeeded",
    reason: str | None = None,
) -> list[Decision]:
    return [campaign.on_job_state(ep, state, reason, now) for ep in endpoints]


def running(campaign: Campaign) -> list[str]:
    """Members started and not finished."""
    out = []
    for ep in campaign.members:
        st = campaign.member_state(ep)
        assert st is not None
        if campaign.is_started(ep) and st[0] not in TERMINAL_STATES:
            out.append(ep)
    return out
