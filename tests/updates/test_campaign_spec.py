"""CampaignSpec: validation errors name the field; JSON round trip; wave planning."""

from __future__ import annotations

import json
from typing import Any

import pytest
from campaign_helpers import T0, fleet, spec

from fotakit.updates.campaign import (
    TERMINAL_STATES,
    TRANSFER_STATES,
    Campaign,
    CampaignSpec,
    CampaignSpecError,
    ErrorThreshold,
    GateAction,
    WaveSpec,
)
from fotakit.updates.job import TERMINAL_STATES as JOB_TERMINAL
from fotakit.updates.job import JobState
from fotakit.updates.targets import DeviceClass, SelectionMode, TargetSpec
from fotakit.updates.windows import MaintenanceWindow


def test_job_state_names_agree_with_the_job_module() -> None:
    assert {str(s) for s in JOB_TERMINAL} == TERMINAL_STATES
    assert TRANSFER_STATES <= {str(s) for s in JobState}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"package_id": 3}, "package_id"),
        ({"mode": "sometimes"}, "mode"),
        ({"cap": 0}, "cap"),
        ({"canary": -1}, "canary"),
        ({"canary_success_gate": 1.5}, "canary_success_gate"),
        ({"waves": ()}, "waves"),
        ({"waves": (WaveSpec(percent=10, count=3), WaveSpec())}, "waves[0]"),
        ({"waves": (WaveSpec(), WaveSpec())}, "waves[0]"),
        ({"waves": (WaveSpec(percent=0), WaveSpec())}, "waves[0].percent"),
        ({"waves": (WaveSpec(percent=60), WaveSpec(percent=50), WaveSpec())}, "waves"),
        ({"waves": (WaveSpec(success_gate=-0.1),)}, "waves[0].success_gate"),
        ({"waves": (WaveSpec(soak_s=float("nan")),)}, "waves[0].soak_s"),
        ({"error_threshold": ErrorThreshold()}, "error_threshold"),
        ({"error_threshold": ErrorThreshold(count=1, min_sample=0)}, "error_threshold.min_sample"),
        ({"rate_per_minute": 0}, "rate_per_minute"),
        ({"burst": 3}, "burst"),
        ({"jitter_s": -1}, "jitter_s"),
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"default_tz": "Mars/Base"}, "default_tz"),
        ({"retry_budget": -1}, "retry_budget"),
        ({"gate_action": "explode"}, "gate_action"),
    ],
)
def test_invalid_specs_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(CampaignSpecError) as info:
        spec(**overrides)
    assert info.value.field == field and isinstance(info.value, ValueError)


def test_threshold_action_must_be_known() -> None:
    with pytest.raises(CampaignSpecError) as info:
        ErrorThreshold(count=1, action="explode")  # type: ignore[arg-type]
    assert info.value.field == "error_threshold.action"


def test_json_round_trip_of_a_full_spec() -> None:
    s = CampaignSpec(
        name="eu rollout",
        package_id="pkg-7",
        target=TargetSpec(
            device_class=DeviceClass(vendor_id="acme", class_id="gw"),
            current_version="2.0.0",
            tags=frozenset({"eu"}),
        ),
        mode=SelectionMode.CONTINUOUS,
        cap=500,
        canary=5,
        canary_success_gate=0.8,
        canary_soak_s=3600,
        waves=(
            WaveSpec(percent=10, success_gate=0.95, soak_s=600),
            WaveSpec(count=100),
            WaveSpec(),
        ),
        error_threshold=ErrorThreshold(count=10, percent=5, min_sample=20, action=GateAction.ABORT),
        gate_action=GateAction.ABORT,
        rate_per_minute=100,
        burst=10,
        jitter_s=30,
        max_concurrent=50,
        window=MaintenanceWindow.parse("Mon-Fri 01:00-05:00"),
        default_tz="Europe/Berlin",
        retry_budget=5,
        parent_id="c-parent",
        seed=42,
    )
    back = CampaignSpec.from_json(json.loads(json.dumps(s.to_json())))
    assert back == s


_TAGGED = {"tags": ["x"]}
_BASE = {"name": "n", "package_id": "p", "target": _TAGGED}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"package_id": "p", "target": {"tags": ["x"]}}, "name"),
        (
            {"name": "n", "package_id": "p", "target": {"tags": ["x"]}, "wavez": []},
            "campaign.wavez",
        ),
        (
            {"name": "n", "package_id": "p", "target": {"tags": ["x"]}, "window": "Mon 1-2"},
            "window[0]",
        ),
        ({"name": "n", "package_id": "p", "target": {}}, "target"),
        (
            {"name": "n", "package_id": "p", "target": {"tags": ["x"]}, "waves": [{"pct": 1}]},
            "waves[0].pct",
        ),
    ],
)
def test_from_json_errors_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError) as info:
        CampaignSpec.from_json(data)
    assert getattr(info.value, "field", None) == field


@pytest.mark.parametrize(
    ("n", "canary", "waves", "sizes"),
    [
        (100, 5, (WaveSpec(percent=10), WaveSpec(percent=25), WaveSpec()), [5, 10, 25, 60]),
        (7, 5, (WaveSpec(percent=10), WaveSpec()), [5, 1, 1]),
        (3, 5, (WaveSpec(percent=50), WaveSpec()), [3, 0, 0]),
        (10, 0, (WaveSpec(count=4), WaveSpec(percent=99)), [4, 6]),  # last takes the rest
        (1, 0, (WaveSpec(),), [1]),
    ],
)
def test_wave_sizes(n: int, canary: int, waves: tuple[WaveSpec, ...], sizes: list[int]) -> None:
    c = Campaign("c", spec(canary=canary, waves=waves))
    c.start(T0, fleet(n))
    assert [w.size for w in c.waves] == sizes


def test_members_are_ordered_by_the_seed() -> None:
    a = Campaign("c", spec(canary=3, seed=1))
    b = Campaign("c", spec(canary=3, seed=2))
    a2 = Campaign("c", spec(canary=3, seed=1))
    pop = fleet(30)
    canary_a = {s.endpoint for s in a.start(T0, pop).starts}
    canary_b = {s.endpoint for s in b.start(T0, pop).starts}
    assert canary_a == {s.endpoint for s in a2.start(T0, list(reversed(pop))).starts}
    assert canary_a != canary_b
