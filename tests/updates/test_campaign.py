"""The pure campaign engine: waves, gates, soak, error threshold, pause/resume/cancel, retry.

Every test drives a :class:`Campaign` with an injected clock (``now`` arguments); no time
passes and nothing does I/O.
"""

from __future__ import annotations

import pytest
from campaign_helpers import T0, fleet, recount, roundtrip, spec, started, view

from fotakit.updates.campaign import (
    TRANSITIONS,
    Campaign,
    CampaignState,
    ErrorThreshold,
    ErrorThresholdCrossed,
    GateAction,
    InvalidCampaignTransition,
    NoMatchingDevices,
    Trigger,
    WaveSpec,
)
from fotakit.updates.reasons import FailureReason
from fotakit.updates.targets import SelectionMode, TargetSpec


def _three_waves(**kw: object) -> Campaign:
    s = spec(
        canary=2,
        waves=(WaveSpec(percent=30, success_gate=0.5, soak_s=600), WaveSpec()),
        canary_soak_s=300,
        **kw,
    )
    return Campaign("c1", s)


def test_canary_then_two_waves_complete() -> None:
    c = _three_waves()
    d = c.start(T0, fleet(20))
    assert d.change is not None and d.change.state is CampaignState.RUNNING
    canary = started(d)
    assert len(canary) == 2 and c.wave == 0
    assert [w.size for w in c.waves] == [2, 6, 12]  # 30 % of 20 = 6, the rest 12
    # nothing more starts while the canary runs
    assert c.tick(T0 + 10).starts == ()
    for ep in canary:
        c.on_job_state(ep, "delivering", None, T0 + 20)
        c.on_job_state(ep, "succeeded", None, T0 + 100)
    # canary gate met at T0+100; soak 300 s
    d = c.tick(T0 + 399)
    assert d.advance is None and d.wake_at == T0 + 400
    d = c.tick(T0 + 400)
    assert d.advance is not None and (d.advance.from_wave, d.advance.to_wave) == (0, 1)
    wave1 = started(d)
    assert len(wave1) == 6 and all(c.member_wave(ep) == 1 for ep in wave1)
    for ep in wave1:
        c.on_job_state(ep, "succeeded", None, T0 + 500)
    d = c.tick(T0 + 1100)
    assert d.advance is not None and d.advance.to_wave == 2
    wave2 = started(d)
    assert len(wave2) == 12
    for ep in wave2[:-1]:
        c.on_job_state(ep, "succeeded", None, T0 + 1200)
    assert c.tick(T0 + 1300).change is None  # one still running
    c.on_job_state(wave2[-1], "failed", FailureReason.ROLLED_BACK, T0 + 1400)
    d = c.tick(T0 + 1400)
    assert d.change is not None and d.change.state is CampaignState.COMPLETED
    assert c.counters.as_store_keys() == {
        "total": 20,
        "state:succeeded": 19,
        "state:failed": 1,
        "reason:rolled_back": 1,
    }


def test_success_gate_blocks_next_wave_until_met_and_soaked() -> None:
    c = Campaign(
        "c1",
        spec(waves=(WaveSpec(count=4, success_gate=0.75, soak_s=60), WaveSpec())),
    )
    first = started(c.start(T0, fleet(10)))
    assert len(first) == 4
    c.on_job_state(first[0], "succeeded", None, T0 + 1)
    c.on_job_state(first[1], "succeeded", None, T0 + 2)
    c.on_job_state(first[2], "failed", FailureReason.UPDATE_FAILED, T0 + 3)
    # 2 of 4 succeeded, gate needs 3: nothing advances however long we wait
    for t in (T0 + 100, T0 + 10_000):
        d = c.tick(t)
        assert d.advance is None and d.starts == () and c.wave == 0
    c.on_job_state(first[3], "succeeded", None, T0 + 20_000)  # 3 of 4: gate met now
    d = c.tick(T0 + 20_059)
    assert d.advance is None and d.wake_at == T0 + 20_060
    d = c.tick(T0 + 20_060)
    assert d.advance is not None and len(d.starts) == 6


def test_gate_lost_pauses_and_resume_overrides_it() -> None:
    c = Campaign("c1", spec(canary=3, gate_action=GateAction.PAUSE))
    canary = started(c.start(T0, fleet(10)))
    c.on_job_state(canary[0], "succeeded", None, T0 + 1)
    c.on_job_state(canary[1], "succeeded", None, T0 + 1)
    assert c.tick(T0 + 2).change is None  # the third may still succeed
    c.on_job_state(canary[2], "timed_out", FailureReason.TIMED_OUT, T0 + 3)
    d = c.tick(T0 + 4)
    assert d.change is not None and d.change.trigger is Trigger.GATE_FAILED_PAUSE
    assert c.state is CampaignState.PAUSED and d.cancels == ()
    assert c.tick(T0 + 5).starts == ()
    d = c.resume(T0 + 6)
    assert d.advance is not None and len(d.starts) == 7


def test_canary_failure_stops_the_campaign_at_the_canary() -> None:
    c = Campaign(
        "c1",
        spec(
            canary=5,
            waves=(WaveSpec(percent=50), WaveSpec()),
            error_threshold=ErrorThreshold(count=2, min_sample=2, action=GateAction.ABORT),
        ),
    )
    canary = started(c.start(T0, fleet(50)))
    assert len(canary) == 5
    for ep in canary:
        c.on_job_state(ep, "delivering", None, T0 + 1)
    d1 = c.on_job_state(canary[0], "failed", FailureReason.ROLLED_BACK, T0 + 10)
    assert d1.change is None  # one failure, threshold is 2
    d2 = c.on_job_state(canary[1], "failed", FailureReason.ROLLED_BACK, T0 + 11)
    assert d2.change is not None and d2.change.state is CampaignState.ABORTED
    assert d2.change.trigger is Trigger.ERROR_THRESHOLD_ABORT
    assert sorted(d2.cancels) == sorted(canary[2:])  # running canary jobs get cancel
    # nobody outside the canary was ever started, whatever happens next
    for ep in canary[2:]:
        c.on_job_state(ep, "cancelled", FailureReason.CANCELLED, T0 + 12)
    assert c.tick(T0 + 1000).starts == ()
    assert sum(c.is_started(ep) for ep in c.members) == 5
    assert c.counters.by_reason == {"rolled_back": 2, "cancelled": 3}
    assert c.counters.by_state["pending"] == 45


@pytest.mark.parametrize("action", [GateAction.PAUSE, GateAction.ABORT])
def test_error_threshold_percent_waits_for_min_sample(action: GateAction) -> None:
    c = Campaign(
        "c1",
        spec(error_threshold=ErrorThreshold(percent=20, min_sample=10, action=action)),
    )
    eps = started(c.start(T0, fleet(30)))
    assert len(eps) == 30
    # 5 failures out of the first 5 finished: 100 % but below the minimum sample
    for i, ep in enumerate(eps[:5]):
        d = c.on_job_state(ep, "failed", FailureReason.INTEGRITY_FAILURE, T0 + i)
        assert d.change is None
    for i, ep in enumerate(eps[5:9]):
        assert c.on_job_state(ep, "succeeded", None, T0 + 10 + i).change is None
    assert c.state is CampaignState.RUNNING
    d = c.on_job_state(eps[9], "succeeded", None, T0 + 20)  # 10th finished: 5/10 = 50 %
    assert d.change is not None
    expected = CampaignState.PAUSED if action is GateAction.PAUSE else CampaignState.ABORTED
    assert c.state is expected
    assert (len(d.cancels) == 20) is (action is GateAction.ABORT)


def test_error_threshold_keeps_counting_across_an_operator_pause_and_resume() -> None:
    c = Campaign(
        "c1", spec(error_threshold=ErrorThreshold(count=2, min_sample=2), max_concurrent=4)
    )
    eps = started(c.start(T0, fleet(12)))
    c.on_job_state(eps[0], "failed", FailureReason.UPDATE_FAILED, T0 + 1)
    c.pause(T0 + 2)
    c.resume(T0 + 3)
    assert c.error_count == (1, 1)  # the resume did not forget the first failure
    d = c.on_job_state(eps[1], "failed", FailureReason.UPDATE_FAILED, T0 + 4)
    assert d.change is not None and d.change.trigger is Trigger.ERROR_THRESHOLD_PAUSE
    assert d.change.detail == "2 failed of 2 finished"


def test_resume_while_the_threshold_is_crossed_needs_an_explicit_reset() -> None:
    c = Campaign(
        "c1", spec(error_threshold=ErrorThreshold(count=2, min_sample=2), max_concurrent=4)
    )
    eps = started(c.start(T0, fleet(12)))
    c.on_job_state(eps[0], "failed", FailureReason.UPDATE_FAILED, T0 + 1)
    c.on_job_state(eps[1], "failed", FailureReason.UPDATE_FAILED, T0 + 2)
    assert c.state is CampaignState.PAUSED
    with pytest.raises(ErrorThresholdCrossed, match="2 failed of 2 finished"):
        c.resume(T0 + 3)
    assert c.state is CampaignState.PAUSED and c.error_count == (2, 2)  # nothing changed
    d = c.resume(T0 + 3, reset_errors=True)
    assert c.state is CampaignState.RUNNING and len(d.starts) == 2  # 2 slots free
    assert d.change is not None
    assert d.change.detail == "operator; error count reset (was 2 failed of 2 finished)"
    c.on_job_state(eps[2], "failed", FailureReason.UPDATE_FAILED, T0 + 4)
    assert c.state is CampaignState.RUNNING  # 1 failure since the reset
    c.on_job_state(eps[3], "failed", FailureReason.UPDATE_FAILED, T0 + 5)
    assert c.state is CampaignState.PAUSED


def test_cancelled_jobs_are_no_verdict_on_the_package() -> None:
    c = Campaign("c1", spec(error_threshold=ErrorThreshold(count=1, min_sample=1)))
    eps = started(c.start(T0, fleet(3)))
    c.on_job_state(eps[0], "cancelled", FailureReason.CANCELLED, T0 + 1)
    assert c.state is CampaignState.RUNNING


def test_pause_stops_starts_and_running_jobs_continue() -> None:
    c = Campaign("c1", spec(max_concurrent=2))
    first = started(c.start(T0, fleet(6)))
    d = c.pause(T0 + 1)
    assert d.cancels == () and c.state is CampaignState.PAUSED
    c.on_job_state(first[0], "succeeded", None, T0 + 2)
    assert c.tick(T0 + 3).starts == ()
    assert c.counters.by_state["succeeded"] == 1
    d = c.resume(T0 + 4)
    assert len(d.starts) == 1


def test_cancel_cancels_running_jobs_and_starts_nothing_more() -> None:
    c = Campaign("c1", spec(max_concurrent=3))
    first = started(c.start(T0, fleet(10)))
    c.on_job_state(first[0], "succeeded", None, T0 + 1)
    d = c.cancel(T0 + 2)
    assert d.change is not None and d.change.state is CampaignState.CANCELLED
    assert sorted(d.cancels) == sorted(first[1:])
    assert c.tick(T0 + 3).starts == ()
    c.on_job_state(first[1], "cancelled", FailureReason.CANCELLED, T0 + 4)
    assert c.counters.by_state["cancelled"] == 1  # reports after cancel still count
    with pytest.raises(InvalidCampaignTransition, match="cancelled: resume"):
        c.resume(T0 + 5)


def test_transition_table_refuses_what_it_does_not_list() -> None:
    c = Campaign("c1", spec())
    with pytest.raises(InvalidCampaignTransition) as info:
        c.pause(T0)
    assert info.value.state is CampaignState.DRAFT and info.value.trigger is Trigger.PAUSE
    c.start(T0, fleet(1))
    with pytest.raises(InvalidCampaignTransition):
        c.start(T0, fleet(1))
    with pytest.raises(InvalidCampaignTransition):
        c.resume(T0)
    for (state, _), target in TRANSITIONS.items():
        assert not state.terminal  # nothing leaves a terminal state
        assert target is not CampaignState.DRAFT


def test_reports_for_non_members_and_after_terminal_are_ignored() -> None:
    c = Campaign("c1", spec())
    eps = started(c.start(T0, fleet(2)))
    assert c.on_job_state("stranger", "succeeded", None, T0).ignored
    c.on_job_state(eps[0], "succeeded", None, T0 + 1)
    d = c.on_job_state(eps[0], "failed", FailureReason.UPDATE_FAILED, T0 + 2)
    assert d.ignored and c.member_state(eps[0]) == ("succeeded", None)
    assert c.counters.as_store_keys() == recount(c)


def test_continuous_mode_admits_late_devices_until_the_cap() -> None:
    c = Campaign("c1", spec(mode=SelectionMode.CONTINUOUS, cap=5))
    first = started(c.start(T0, fleet(3)))
    assert len(first) == 3
    assert not c.offer(view("late-old", version="0.9"), T0 + 1)  # does not match
    assert c.offer(view("late-1"), T0 + 1)
    assert not c.offer(view("late-1"), T0 + 1)  # already a member
    assert c.offer(view("late-2"), T0 + 2)
    assert not c.offer(view("late-3"), T0 + 3)  # cap 5 reached
    assert sorted(started(c.tick(T0 + 4))) == ["late-1", "late-2"]
    for ep in [*first, "late-1", "late-2"]:
        c.on_job_state(ep, "succeeded", None, T0 + 5)
    d = c.tick(T0 + 6)
    assert d.change is not None and d.change.state is CampaignState.COMPLETED


def test_continuous_without_cap_keeps_running_and_snapshot_admits_nobody() -> None:
    c = Campaign("c1", spec(mode=SelectionMode.CONTINUOUS))
    eps = started(c.start(T0, fleet(2)))
    for ep in eps:
        c.on_job_state(ep, "succeeded", None, T0 + 1)
    assert c.tick(T0 + 2).change is None and c.state is CampaignState.RUNNING
    assert c.offer(view("late"), T0 + 3)
    assert started(c.tick(T0 + 3)) == ["late"]
    s = Campaign("c2", spec())
    s.start(T0, fleet(2))
    assert not s.offer(view("late"), T0 + 1)


def test_snapshot_mode_cap_limits_members() -> None:
    c = Campaign("c1", spec(cap=7))
    c.start(T0, fleet(20))
    assert len(c.members) == 7 and c.counters.total == 7


def test_a_snapshot_campaign_matching_no_device_is_refused_at_start() -> None:
    c = Campaign("c1", spec(canary=2, waves=(WaveSpec(percent=10), WaveSpec())))
    for population in ([], fleet(3, version="0.9.0")):  # none known; none on 1.0.0
        with pytest.raises(NoMatchingDevices, match="no device matches"):
            c.start(T0, population)
        assert c.state is CampaignState.DRAFT and c.members == []
    c.start(T0, fleet(3))  # nothing was changed: a later start with devices works
    assert c.state is CampaignState.RUNNING and len(c.members) == 3


def test_a_continuous_campaign_may_start_empty() -> None:
    c = Campaign("c1", spec(mode=SelectionMode.CONTINUOUS))
    c.start(T0, [])
    assert c.state is CampaignState.RUNNING
    assert c.offer(view("late"), T0 + 1)
    assert started(c.tick(T0 + 1)) == ["late"]


def test_target_selects_by_exact_version_and_tags() -> None:
    s = spec(target=TargetSpec(current_version="1.1.1", tags=frozenset({"eu"})))
    c = Campaign("c1", s)
    population = [
        view("a", version="1.1.1", tags={"eu", "x"}),
        view("b", version="1.1.10", tags={"eu"}),
        view("c", version="1.1.1"),
        view("d", version="1.1.1", tags={"eu"}),
    ]
    c.start(T0, population)
    assert sorted(c.members) == ["a", "d"]


def test_retry_failed_child_has_exactly_failed_and_timed_out() -> None:
    c = Campaign("parent-1", spec(canary=0))
    eps = sorted(started(c.start(T0, fleet(8))))
    outcomes = {
        eps[0]: ("succeeded", None),
        eps[1]: ("failed", FailureReason.ROLLED_BACK),
        eps[2]: ("timed_out", FailureReason.TIMED_OUT),
        eps[3]: ("cancelled", FailureReason.CANCELLED),
        eps[4]: ("failed", FailureReason.INTEGRITY_FAILURE),
        eps[5]: ("delivering", None),
    }
    for ep, (state, reason) in outcomes.items():
        c.on_job_state(ep, state, reason, T0 + 1)
    child = c.retry_failed()
    assert child.parent_id == "parent-1"
    assert child.target.endpoints is not None
    assert sorted(child.target.endpoints) == sorted([eps[1], eps[2], eps[4]])
    assert child.package_id == c.spec.package_id and child.mode is SelectionMode.SNAPSHOT
    # the child selects exactly those devices, whatever version they run now
    kid = Campaign("child-1", child)
    kid.start(T0 + 10, [*fleet(8, version="0.9"), view("other", version="0.9")])
    assert sorted(kid.members) == sorted(child.target.endpoints)


def test_retry_failed_with_nothing_failed_is_an_error() -> None:
    c = Campaign("p", spec())
    for ep in started(c.start(T0, fleet(2))):
        c.on_job_state(ep, "succeeded", None, T0 + 1)
    with pytest.raises(ValueError, match="no failed"):
        c.retry_failed()


def test_roundtrip_mid_campaign_keeps_everything() -> None:
    c = _three_waves(rate_per_minute=6.0, burst=2, max_concurrent=3, jitter_s=5.0)
    d = c.start(T0, fleet(20))
    assert len(d.starts) == 2
    c.on_job_state(d.starts[0].endpoint, "succeeded", None, T0 + 30)
    r = roundtrip(c)
    assert r.snapshot() == c.snapshot()
    for t in (T0 + 31, T0 + 400, T0 + 2000):
        assert r.tick(t) == c.tick(t)


def test_devices_outside_their_window_are_deferred_not_failed() -> None:
    from datetime import UTC, datetime

    from fotakit.updates.windows import MaintenanceWindow

    # 2026-06-01 (Monday) 00:30 UTC: 02:30 in Berlin (inside 01:00-05:00), 20:30 Sunday in
    # New York (outside)
    now = datetime(2026, 6, 1, 0, 30, tzinfo=UTC).timestamp()
    s = spec(
        window=MaintenanceWindow.parse("01:00-05:00"),
        error_threshold=ErrorThreshold(count=1, min_sample=1),
    )
    c = Campaign("c1", s)
    population = [view("berlin", tz="Europe/Berlin"), view("ny", tz="America/New_York")]
    d = c.start(now, population)
    assert started(d) == ["berlin"] and d.deferred == 1
    ny_opens = datetime(2026, 6, 1, 5, 0, tzinfo=UTC).timestamp()  # 01:00 EDT
    assert d.wake_at == ny_opens
    assert c.member_state("ny") == ("pending", None)
    assert c.counters.by_state == {"pending": 2}  # the started one: no job report yet
    d = c.tick(ny_opens - 1)
    assert d.starts == () and d.deferred == 1
    d = c.tick(ny_opens)
    assert started(d) == ["ny"]
    assert c.state is CampaignState.RUNNING  # deferral never counted as a failure


def test_unknown_device_time_zone_is_a_precise_error() -> None:
    from fotakit.updates.windows import UnknownTimeZone

    c = Campaign("c1", spec())
    with pytest.raises(UnknownTimeZone, match="'Mars/Olympus'"):
        c.start(T0, [view("a", tz="Mars/Olympus")])
    assert c.state is CampaignState.DRAFT


def test_global_bucket_is_shared_by_two_campaigns() -> None:
    from fotakit.updates.ratelimit import BucketConfig, BucketState, TokenBucket

    shared = TokenBucket(BucketConfig(rate_per_minute=6, burst=3), BucketState(3, T0))
    a = Campaign("a", spec(rate_per_minute=60, burst=10))
    b = Campaign("b", spec(rate_per_minute=60, burst=10))
    got_a = started(a.start(T0, fleet(10, prefix="a"), limiters=[shared]))
    got_b = started(b.start(T0, fleet(10, prefix="b"), limiters=[shared]))
    assert len(got_a) + len(got_b) == 3  # the global burst, not 10 + 10
    d = b.tick(T0 + 5, limiters=[shared])
    assert d.starts == () and d.wake_at == pytest.approx(T0 + 10)  # 6/min: one per 10 s
    assert len(b.tick(T0 + 10, limiters=[shared]).starts) == 1
    assert b.state is CampaignState.RUNNING and b.counters.by_state == {"pending": 10}


def test_a_throttled_device_waits_pending_and_its_job_is_not_created() -> None:
    c = Campaign("c1", spec(rate_per_minute=2, burst=1))
    d = c.start(T0, fleet(3))
    assert len(d.starts) == 1 and d.wake_at == pytest.approx(T0 + 30)
    waiting = [ep for ep in c.members if not c.is_started(ep)]
    assert len(waiting) == 2 and all(c.member_state(ep) == ("pending", None) for ep in waiting)
    assert len(c.tick(T0 + 30).starts) == 1


def test_wave_advance_is_one_decision_that_a_second_process_sees_once() -> None:
    c = Campaign("c1", spec(canary=1, waves=(WaveSpec(),)))
    (first,) = started(c.start(T0, fleet(4)))
    c.on_job_state(first, "succeeded", None, T0 + 1)
    stored = c.snapshot()  # what both server processes load
    p1, p2 = roundtrip(c), roundtrip(c)
    d1, d2 = p1.tick(T0 + 2), p2.tick(T0 + 2)
    assert d1.advance is not None and d2.advance is not None
    assert d1.advance.from_wave == d2.advance.from_wave == stored["wave"] == 0
    # the store applies the first (UPDATE ... WHERE wave = 0), refuses the second; the
    # loser reloads the winner's snapshot and finds nothing left to advance or start
    loser = Campaign.restore(p1.snapshot())
    d = loser.tick(T0 + 3)
    assert d.advance is None and d.starts == ()
    assert loser.wave == 1


def test_a_report_for_a_member_not_seen_starting_counts_it_started() -> None:
    c = Campaign("c1", spec(max_concurrent=2))
    first = started(c.start(T0, fleet(5)))
    other = next(ep for ep in c.members if ep not in first)
    c.on_job_state(other, "delivering", None, T0 + 1)  # e.g. an older snapshot was restored
    assert c.is_started(other) and c.in_transfer == 3
    assert c.tick(T0 + 2).starts == ()
    c.on_job_state(other, "downloaded", None, T0 + 3)
    assert c.in_transfer == 2
    assert c.counters.as_store_keys() == recount(c)


def test_replaying_the_jobs_table_onto_an_older_snapshot_restores_the_present() -> None:
    c = Campaign("c1", spec(max_concurrent=4))
    first = started(c.start(T0, fleet(10)))
    checkpoint = c.snapshot()  # saved with the starts (jobs created, still pending)
    c.on_job_state(first[0], "delivering", None, T0 + 1)
    c.on_job_state(first[1], "succeeded", None, T0 + 2)
    c.on_job_state(first[2], "failed", FailureReason.ROLLED_BACK, T0 + 3)
    more = started(c.tick(T0 + 4))
    assert len(more) == 2
    # crash: the last snapshot is `checkpoint`; the jobs table holds every job's state
    jobs = {ep: c.member_state(ep) for ep in c.members if c.is_started(ep)}
    r = Campaign.restore(checkpoint)
    for ep, st in jobs.items():
        assert st is not None
        r.on_job_created(ep, T0 + 5)
        r.on_job_state(ep, st[0], st[1], T0 + 5)
        assert r.on_job_created(ep, T0 + 5).ignored  # idempotent
    assert r.counters.as_store_keys() == c.counters.as_store_keys() == recount(r)
    assert r.in_transfer == c.in_transfer
    assert r.tick(T0 + 6) == c.tick(T0 + 6)
