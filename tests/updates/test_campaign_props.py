"""Property tests of the campaign engine over random event sequences (hypothesis).

- the counters kept incrementally equal a brute-force recount after every step;
- a campaign restored from its snapshot at any step decides exactly as the original;
- never more started in any time span than the token bucket allows, never more
  transfers in flight than the cap, and only inside the maintenance window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from campaign_helpers import T0, fleet, recount, roundtrip, spec, view
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fotakit.updates.campaign import (
    Campaign,
    CampaignState,
    Decision,
    ErrorThreshold,
    ErrorThresholdCrossed,
    GateAction,
    InvalidCampaignTransition,
    WaveSpec,
)
from fotakit.updates.ratelimit import BucketConfig, TokenBucket
from fotakit.updates.reasons import FailureReason
from fotakit.updates.targets import SelectionMode
from fotakit.updates.windows import MaintenanceWindow

STATES = ["waiting", "starting", "delivering", "downloaded", "installing", "rebooting"]
ENDINGS = [
    *[("succeeded", None)] * 12,
    ("failed", FailureReason.ROLLED_BACK),
    ("failed", FailureReason.INTEGRITY_FAILURE),
    ("timed_out", FailureReason.TIMED_OUT),
    ("cancelled", FailureReason.CANCELLED),
]

_finish = st.tuples(st.just("finish"), st.integers(0, 10_000), st.sampled_from(ENDINGS))
_tick = st.tuples(st.just("tick"), st.floats(0, 900))
# weighted by repetition: mostly job endings and ticks, rarely an operator call
action = st.one_of(
    _tick,
    _tick,
    st.tuples(st.just("progress"), st.integers(0, 10_000), st.sampled_from(STATES)),
    _finish,
    _finish,
    _finish,
    _finish,
    st.tuples(st.just("offer"), st.integers(0, 10_000)),
    st.tuples(
        st.just("op"),
        st.sampled_from(["pause"] * 3 + ["resume"] * 8 + ["resume_reset"] * 4 + ["cancel"]),
    ),
)


@st.composite
def campaigns(draw: st.DrawFn) -> tuple[Campaign, int]:
    mode = draw(st.sampled_from([SelectionMode.SNAPSHOT, SelectionMode.CONTINUOUS]))
    # a snapshot campaign matching no device is refused at start (NoMatchingDevices)
    n = draw(st.integers(0 if mode is SelectionMode.CONTINUOUS else 1, 40))
    rate = draw(st.none() | st.sampled_from([1.0, 6.0, 30.0, 120.0]))
    s = spec(
        mode=mode,
        cap=draw(st.none() | st.integers(1, 50)),
        canary=draw(st.integers(0, 4)),
        canary_soak_s=draw(st.sampled_from([0.0, 30.0])),
        waves=draw(
            st.sampled_from(
                [
                    (WaveSpec(),),
                    (WaveSpec(percent=25, success_gate=0.5, soak_s=60), WaveSpec()),
                    (WaveSpec(count=3, success_gate=1.0), WaveSpec(percent=40), WaveSpec()),
                ]
            )
        ),
        error_threshold=draw(
            st.none()
            | st.builds(
                ErrorThreshold,
                count=st.none() | st.integers(1, 5),
                percent=st.just(30.0),
                min_sample=st.integers(1, 6),
                action=st.sampled_from(list(GateAction)),
            )
        ),
        rate_per_minute=rate,
        burst=None if rate is None else draw(st.integers(1, 5)),
        jitter_s=draw(st.sampled_from([0.0, 7.5])),
        max_concurrent=draw(st.none() | st.integers(1, 6)),
        window=draw(st.none() | st.just(MaintenanceWindow.parse("Mon-Fri 01:00-05:00"))),
        seed=draw(st.integers(0, 3)),
    )
    return Campaign("c", s), n


@dataclass
class Run:
    campaign: Campaign
    now: float
    late: int = 0


def apply(run: Run, act: tuple[object, ...]) -> Decision | None:
    """Apply one random action; returns the decision (None for a refused operator call)."""
    c = run.campaign
    kind = act[0]
    if kind == "tick":
        run.now += float(act[1])  # type: ignore[arg-type]
        return c.tick(run.now)
    members = c.members
    if kind in ("progress", "finish"):
        if not members:
            return c.tick(run.now)
        idx = int(act[1])  # type: ignore[call-overload]
        live = [m for m in members if c.is_started(m)] if idx % 7 else members
        ep = (live or members)[idx % len(live or members)]
        # mostly started members; sometimes one the campaign never started (a job found
        # after a restart from an older snapshot)
        if kind == "progress":
            return c.on_job_state(ep, str(act[2]), None, run.now)
        state, reason = act[2]  # type: ignore[misc]
        return c.on_job_state(ep, state, reason, run.now)
    if kind == "offer":
        run.late += 1
        c.offer(view(f"late{run.late}"), run.now)
        return c.tick(run.now)
    try:
        if act[1] == "pause":
            return c.pause(run.now)
        if act[1] in ("resume", "resume_reset"):
            return c.resume(run.now, reset_errors=act[1] == "resume_reset")
        return c.cancel(run.now)
    except (InvalidCampaignTransition, ErrorThresholdCrossed):
        return None


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(campaigns(), st.lists(action, min_size=20, max_size=150))
def test_counters_equal_a_recount_after_any_event_sequence(
    built: tuple[Campaign, int], actions: list[tuple[object, ...]]
) -> None:
    c, n = built
    run = Run(c, T0)
    c.start(T0, fleet(n))
    assert c.counters.as_store_keys() == recount(c)
    for act in actions:
        apply(run, act)
        assert c.counters.as_store_keys() == recount(c)
        transfers = sum(
            1
            for ep in c.members
            if c.is_started(ep)
            and c.member_state(ep)[0] in ("pending", "waiting", "starting", "delivering")  # type: ignore[index]
        )
        assert c.in_transfer == transfers
    event(f"final state {c.state.value}, wave {c.wave}")


@SETTINGS
@given(campaigns(), st.lists(action, max_size=40))
def test_restored_snapshot_decides_identically_at_every_step(
    built: tuple[Campaign, int], actions: list[tuple[object, ...]]
) -> None:
    c, n = built
    first = c.start(T0, fleet(n))
    twin = roundtrip(c)
    assert twin.snapshot() == c.snapshot()
    run, twin_run = Run(c, T0), Run(twin, T0)
    assert first is not None
    for act in actions:
        twin = roundtrip(c)  # restore from the latest snapshot, as after a restart
        twin_run = Run(twin, run.now, run.late)
        d1 = apply(run, act)
        d2 = apply(twin_run, act)
        assert d1 == d2
        assert twin.snapshot() == c.snapshot()


@SETTINGS
@given(
    n=st.integers(1, 60),
    rate=st.sampled_from([1.0, 5.0, 12.0, 60.0]),
    burst=st.integers(1, 6),
    cap=st.integers(1, 8),
    steps=st.lists(
        st.tuples(st.floats(0, 40), st.integers(0, 3), st.booleans()), min_size=1, max_size=80
    ),
)
def test_starts_respect_bucket_cap_and_window(
    n: int, rate: float, burst: int, cap: int, steps: list[tuple[float, int, bool]]
) -> None:
    window = MaintenanceWindow.parse("Mon-Fri 01:00-05:00")
    # a Monday 04:50 local in Berlin: the window closes 10 minutes in, opens Tuesday
    now = datetime(2026, 6, 1, 2, 50, tzinfo=UTC).timestamp()
    c = Campaign(
        "c",
        spec(
            rate_per_minute=rate,
            burst=burst,
            max_concurrent=cap,
            default_tz="Europe/Berlin",
            window=window,
            jitter_s=5.0,
        ),
    )
    start_times: list[float] = []
    d = c.start(now, fleet(n))
    assert len(d.starts) == min(n, burst, cap)  # the window is open, the bucket full
    start_times += [now] * len(d.starts)
    for dt, finish, fail in steps:
        now += dt * 60
        running = [ep for ep in c.members if c.is_started(ep) and ep not in _done(c)]
        for ep in running[:finish]:
            c.on_job_state(ep, "failed" if fail else "succeeded", None, now)
        d = c.tick(now)
        assert c.in_transfer <= cap
        for s in d.starts:
            assert window.is_open(now, "Europe/Berlin")
            assert now <= s.not_before < now + 5.0  # jitter bounded
        start_times += [now] * len(d.starts)
    # token bucket bound: in any span [a, b], starts <= burst + rate * (b - a) / 60
    for i, a in enumerate(start_times):
        for j in range(i, len(start_times)):
            b = start_times[j]
            assert j - i + 1 <= burst + rate * (b - a) / 60 + 1e-6


def _done(c: Campaign) -> set[str]:
    out = set()
    for ep in c.members:
        st_ = c.member_state(ep)
        if st_ is not None and st_[0] in ("succeeded", "failed", "timed_out", "cancelled"):
            out.add(ep)
    return out


def test_token_bucket_alone_matches_the_bound() -> None:
    b = TokenBucket(BucketConfig(rate_per_minute=30, burst=3))
    assert b.take(10, T0) == 3
    assert b.take(1, T0 + 1) == 0
    assert b.take(1, T0 + 2) == 1  # 0.5 tokens/s
    assert math.isclose(b.next_available_at(T0 + 2), T0 + 4)


def test_campaign_is_terminal_only_through_the_table() -> None:
    c = Campaign("c", spec())
    c.start(T0, fleet(3))
    c.cancel(T0 + 1)
    assert c.state is CampaignState.CANCELLED
