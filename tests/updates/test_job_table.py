"""Every row of the UpdateJob transition table, driven once (pure, injected clock), plus
the rule for pairs that are not in the table: TableViolation naming phase and input, and
the job is left unchanged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from job_helpers import (
    NEW,
    OLD,
    PHASES,
    POSITIONS,
    Driver,
    at_busy,
    at_cancelling,
    at_delivering,
    at_downloaded,
    at_downloaded_idle,
    at_installing,
    at_pending,
    at_rebooting,
    at_resetting,
    at_starting,
    at_waiting,
    facts,
    logs,
)

from fotakit.updates.job import (
    PHASE_STATE,
    TERMINAL_PHASES,
    TERMINAL_STATES,
    TRANSITIONS,
    Cancel,
    Execute,
    Input,
    JobState,
    Observe,
    Phase,
    Push,
    ReadFacts,
    ResetUri,
    TableViolation,
    WriteUri,
)

P = Phase
I = Input  # noqa: E741


@dataclass(frozen=True)
class Case:
    phase: Phase
    input: Input
    setup: Callable[[], Driver]
    act: Callable[[Driver], object]
    expect: Phase
    name: str = ""


def unasked(**changes: object) -> Callable[[Driver], object]:
    """Facts that answer no read of the job (the shell read on its own)."""
    return lambda d: d._take(d.job.on_facts(facts(**changes), d.now))  # type: ignore[arg-type]


def _starting_facts_already(d: Driver) -> object:
    return d.facts(firmware_version=NEW)


CASES: list[Case] = [
    # PENDING
    Case(P.PENDING, I.START, at_pending, lambda d: d.start(), P.STARTING),
    Case(P.PENDING, I.HOLD, at_pending, lambda d: d.hold(30), P.WAITING),
    Case(P.PENDING, I.CANCEL, at_pending, lambda d: d.cancel(), P.CANCELLED),
    Case(P.PENDING, I.RESUME, at_pending, lambda d: d.restore(), P.PENDING),
    # WAITING (throttled before the start)
    Case(P.WAITING, I.START, at_waiting, lambda d: d.start(), P.STARTING),
    Case(P.WAITING, I.TIMER, at_waiting, lambda d: d.timer(), P.STARTING),
    Case(P.WAITING, I.HOLD, at_waiting, lambda d: d.hold(600), P.WAITING),
    Case(P.WAITING, I.CANCEL, at_waiting, lambda d: d.cancel(), P.CANCELLED),
    Case(P.WAITING, I.RESUME, at_waiting, lambda d: d.restore(), P.WAITING),
    Case(P.WAITING, I.FIRMWARE_STATE, at_waiting, lambda d: d.fw(0, 0), P.WAITING),
    Case(P.WAITING, I.FACTS, at_waiting, unasked(), P.WAITING),
    Case(
        P.WAITING,
        I.FACTS,
        lambda: _retrying_after_delivery(at_delivering()),
        unasked(firmware_version=NEW, fw_state=None),
        P.REBOOTING,
        "on_target_after_delivery",
    ),
    Case(P.WAITING, I.REGISTERED, at_waiting, lambda d: d.register(), P.WAITING),
    Case(P.WAITING, I.UPDATED, at_waiting, lambda d: d.register("update"), P.WAITING),
    Case(
        P.WAITING,
        I.COMMAND_OK,
        lambda: _timed_out_delivery(at_delivering()),
        lambda d: d.ok(WriteUri),
        P.WAITING,
    ),
    Case(
        P.WAITING,
        I.COMMAND_FAILED,
        lambda: _timed_out_delivery(at_delivering()),
        lambda d: d.fail(WriteUri, "timeout"),
        P.WAITING,
    ),
    # STARTING
    Case(P.STARTING, I.FACTS, at_starting, lambda d: d.facts(), P.DELIVERING, "idle"),
    Case(P.STARTING, I.FACTS, at_starting, _starting_facts_already, P.SUCCEEDED, "on_target"),
    Case(
        P.STARTING,
        I.FACTS,
        lambda: _after_failed_push(at_starting()),
        lambda d: d.facts(delivery_method=1, fw_state=1),
        P.RESETTING,
        "failed_push_leftover",
    ),
    Case(P.STARTING, I.FIRMWARE_STATE, at_starting, lambda d: d.fw(3, 0), P.STARTING),
    Case(P.STARTING, I.COMMAND_OK, at_starting, lambda d: d.ok(ReadFacts), P.STARTING),
    Case(
        P.STARTING, I.COMMAND_FAILED, at_starting, lambda d: d.fail(ReadFacts, "timeout"), P.WAITING
    ),
    Case(P.STARTING, I.TIMER, at_starting, lambda d: d.timer(), P.WAITING),
    Case(P.STARTING, I.CANCEL, at_starting, lambda d: d.cancel(), P.CANCELLED),
    Case(P.STARTING, I.HOLD, at_starting, lambda d: d.hold(30), P.WAITING),
    Case(P.STARTING, I.REGISTERED, at_starting, lambda d: d.register(), P.STARTING),
    Case(P.STARTING, I.UPDATED, at_starting, lambda d: d.register("update"), P.STARTING),
    Case(P.STARTING, I.RESUME, at_starting, lambda d: d.restore(), P.STARTING),
    # RESETTING (STARTING)
    Case(P.RESETTING, I.FACTS, at_resetting, unasked(fw_state=0), P.DELIVERING),
    Case(P.RESETTING, I.FIRMWARE_STATE, at_resetting, lambda d: d.fw(0, 0), P.DELIVERING),
    Case(P.RESETTING, I.COMMAND_OK, at_resetting, lambda d: d.ok(ResetUri), P.RESETTING),
    Case(
        P.RESETTING,
        I.COMMAND_FAILED,
        at_resetting,
        lambda d: d.fail(ResetUri, "timeout"),
        P.WAITING,
    ),
    Case(P.RESETTING, I.TIMER, at_resetting, lambda d: d.timer(), P.WAITING),
    Case(P.RESETTING, I.CANCEL, at_resetting, lambda d: d.cancel(), P.CANCELLING),
    Case(P.RESETTING, I.HOLD, at_resetting, lambda d: d.hold(30), P.WAITING),
    Case(P.RESETTING, I.REGISTERED, at_resetting, lambda d: d.register(), P.RESETTING),
    Case(P.RESETTING, I.UPDATED, at_resetting, lambda d: d.register("update"), P.RESETTING),
    Case(P.RESETTING, I.RESUME, at_resetting, lambda d: d.restore(), P.STARTING),
    # BUSY (STARTING)
    Case(P.BUSY, I.FACTS, at_busy, lambda d: d._take(d.job.on_facts(facts(), d.now)), P.DELIVERING),
    Case(P.BUSY, I.FIRMWARE_STATE, at_busy, lambda d: d.fw(3, 0), P.BUSY),
    Case(
        P.BUSY,
        I.COMMAND_OK,
        lambda: _with_pending_read(at_busy()),
        lambda d: d.ok(ReadFacts),
        P.BUSY,
    ),
    Case(
        P.BUSY,
        I.COMMAND_FAILED,
        lambda: _with_pending_read(at_busy()),
        lambda d: d.fail(ReadFacts, "timeout"),
        P.WAITING,
    ),
    Case(P.BUSY, I.TIMER, at_busy, lambda d: d.timer(), P.FAILED),
    Case(P.BUSY, I.CANCEL, at_busy, lambda d: d.cancel(), P.CANCELLED),
    Case(P.BUSY, I.HOLD, at_busy, lambda d: d.hold(30), P.WAITING),
    Case(P.BUSY, I.REGISTERED, at_busy, lambda d: d.register(), P.BUSY),
    Case(P.BUSY, I.UPDATED, at_busy, lambda d: d.register("update"), P.BUSY),
    Case(P.BUSY, I.RESUME, at_busy, lambda d: d.restore(), P.BUSY),
    # DELIVERING
    Case(P.DELIVERING, I.FIRMWARE_STATE, at_delivering, lambda d: d.fw(2, 0), P.EXECUTING),
    Case(P.DELIVERING, I.FACTS, at_delivering, unasked(fw_state=1), P.DELIVERING),
    Case(P.DELIVERING, I.COMMAND_OK, at_delivering, lambda d: d.ok(WriteUri), P.DELIVERING),
    Case(
        P.DELIVERING, I.COMMAND_FAILED, at_delivering, lambda d: d.fail(WriteUri, "4.00"), P.FAILED
    ),
    Case(P.DELIVERING, I.TIMER, at_delivering, lambda d: d.timer(), P.WAITING),
    Case(P.DELIVERING, I.CANCEL, at_delivering, lambda d: d.cancel(), P.CANCELLING),
    Case(P.DELIVERING, I.REGISTERED, at_delivering, lambda d: d.register(), P.DELIVERING),
    Case(P.DELIVERING, I.UPDATED, at_delivering, lambda d: d.register("update"), P.DELIVERING),
    Case(P.DELIVERING, I.RESUME, at_delivering, lambda d: d.restore(), P.DELIVERING),
    # DOWNLOADED (no Execute in flight)
    Case(P.DOWNLOADED, I.FIRMWARE_STATE, at_downloaded_idle, lambda d: d.fw(2, 0), P.EXECUTING),
    Case(P.DOWNLOADED, I.FACTS, at_downloaded_idle, lambda d: d.facts(fw_state=3), P.INSTALLING),
    Case(
        P.DOWNLOADED,
        I.COMMAND_OK,
        lambda: _with_pending_observe(at_downloaded_idle()),
        lambda d: d.ok(Observe),
        P.DOWNLOADED,
    ),
    Case(
        P.DOWNLOADED,
        I.COMMAND_FAILED,
        at_downloaded_idle,
        lambda d: d.fail(ReadFacts, "timeout"),
        P.DOWNLOADED,
    ),
    Case(P.DOWNLOADED, I.TIMER, at_downloaded_idle, lambda d: d.timer(), P.WAITING),
    Case(P.DOWNLOADED, I.CANCEL, at_downloaded_idle, lambda d: d.cancel(), P.CANCELLING),
    Case(
        P.DOWNLOADED,
        I.REGISTERED,
        at_downloaded_idle,
        lambda d: d.register(),
        P.DOWNLOADED,
        "execute_refused",
    ),
    Case(
        P.DOWNLOADED,
        I.UPDATED,
        at_downloaded_idle,
        lambda d: d.register("update"),
        P.DOWNLOADED,
    ),
    Case(P.DOWNLOADED, I.RESUME, at_downloaded_idle, lambda d: d.restore(), P.DOWNLOADED),
    # EXECUTING (DOWNLOADED, Execute sent)
    Case(P.EXECUTING, I.FIRMWARE_STATE, at_downloaded, lambda d: d.fw(3, 0), P.INSTALLING),
    Case(P.EXECUTING, I.FACTS, at_downloaded, unasked(fw_state=2, fw_result=11), P.WAITING),
    Case(P.EXECUTING, I.COMMAND_OK, at_downloaded, lambda d: d.ok(Execute), P.INSTALLING),
    Case(P.EXECUTING, I.COMMAND_FAILED, at_downloaded, lambda d: d.fail(Execute, "4.00"), P.FAILED),
    Case(P.EXECUTING, I.TIMER, at_downloaded, lambda d: d.timer(), P.WAITING),
    Case(P.EXECUTING, I.CANCEL, at_downloaded, lambda d: d.cancel(), P.CANCELLING),
    Case(
        P.EXECUTING,
        I.REGISTERED,
        at_downloaded,
        lambda d: d.register(),
        P.REBOOTING,
        "execute_unanswered",
    ),
    Case(P.EXECUTING, I.UPDATED, at_downloaded, lambda d: d.register("update"), P.EXECUTING),
    Case(P.EXECUTING, I.RESUME, at_downloaded, lambda d: d.restore(), P.DOWNLOADED),
    # INSTALLING
    Case(P.INSTALLING, I.FIRMWARE_STATE, at_installing, lambda d: d.fw(0, 1), P.REBOOTING),
    Case(P.INSTALLING, I.FACTS, at_installing, unasked(fw_state=2, fw_result=8), P.FAILED),
    Case(P.INSTALLING, I.COMMAND_OK, at_installing, lambda d: d.ok(Observe), P.INSTALLING),
    Case(
        P.INSTALLING,
        I.COMMAND_FAILED,
        lambda: _with_pending_read(at_installing()),
        lambda d: d.fail(ReadFacts, "timeout"),
        P.INSTALLING,
    ),
    Case(P.INSTALLING, I.TIMER, at_installing, lambda d: d.timer(), P.TIMED_OUT),
    Case(P.INSTALLING, I.CANCEL, at_installing, lambda d: d.cancel(), P.INSTALLING),
    Case(P.INSTALLING, I.REGISTERED, at_installing, lambda d: d.register(), P.REBOOTING),
    Case(P.INSTALLING, I.UPDATED, at_installing, lambda d: d.register("update"), P.INSTALLING),
    Case(P.INSTALLING, I.RESUME, at_installing, lambda d: d.restore(), P.INSTALLING),
    # REBOOTING
    Case(P.REBOOTING, I.FIRMWARE_STATE, at_rebooting, lambda d: d.fw(0, 1), P.REBOOTING),
    Case(
        P.REBOOTING,
        I.FACTS,
        at_rebooting,
        lambda d: d.facts(firmware_version=NEW, fw_result=1),
        P.SUCCEEDED,
    ),
    Case(
        P.REBOOTING,
        I.FACTS,
        at_rebooting,
        lambda d: d.facts(firmware_version=None, pkg_version=NEW),
        P.REBOOTING,
        "3_0_3_missed",
    ),
    Case(P.REBOOTING, I.COMMAND_OK, at_rebooting, lambda d: d.ok(ReadFacts), P.REBOOTING),
    Case(
        P.REBOOTING,
        I.COMMAND_FAILED,
        at_rebooting,
        lambda d: d.fail(ReadFacts, "timeout"),
        P.REBOOTING,
    ),
    Case(P.REBOOTING, I.TIMER, at_rebooting, lambda d: d.timer(), P.TIMED_OUT),
    Case(P.REBOOTING, I.CANCEL, at_rebooting, lambda d: d.cancel(), P.REBOOTING),
    Case(P.REBOOTING, I.REGISTERED, at_rebooting, lambda d: d.register(), P.REBOOTING),
    Case(P.REBOOTING, I.UPDATED, at_rebooting, lambda d: d.register("update"), P.REBOOTING),
    Case(P.REBOOTING, I.RESUME, at_rebooting, lambda d: d.restore(), P.REBOOTING),
    # CANCELLING
    Case(P.CANCELLING, I.FIRMWARE_STATE, at_cancelling, lambda d: d.fw(0, 10), P.CANCELLED),
    Case(P.CANCELLING, I.FACTS, at_cancelling, unasked(fw_state=3), P.INSTALLING),
    Case(P.CANCELLING, I.COMMAND_OK, at_cancelling, lambda d: d.ok(Cancel), P.CANCELLING),
    Case(
        P.CANCELLING, I.COMMAND_FAILED, at_cancelling, lambda d: d.fail(Cancel, "5.00"), P.CANCELLED
    ),
    Case(P.CANCELLING, I.TIMER, at_cancelling, lambda d: d.timer(), P.CANCELLED),
    Case(P.CANCELLING, I.CANCEL, at_cancelling, lambda d: d.cancel(), P.CANCELLING),
    Case(P.CANCELLING, I.REGISTERED, at_cancelling, lambda d: d.register(), P.CANCELLING),
    Case(P.CANCELLING, I.UPDATED, at_cancelling, lambda d: d.register("update"), P.CANCELLING),
    Case(P.CANCELLING, I.RESUME, at_cancelling, lambda d: d.restore(), P.CANCELLING),
]


def _retrying_after_delivery(d: Driver) -> Driver:
    d.ok(WriteUri)
    d.timer()  # the DELIVERING deadline: WAITING for the retry
    return d


def _timed_out_delivery(d: Driver) -> Driver:
    d.timer()  # the DELIVERING deadline with the Write still unanswered: retry later
    return d


def _with_pending_observe(d: Driver) -> Driver:
    d.register()  # a new registration: re-observe, read
    return d


def _after_failed_push(d: Driver) -> Driver:
    d.facts(delivery_method=1)
    d.fail(Push, "timeout")  # a partial image is left Downloading
    d.timer()  # the retry re-reads
    return d


def _with_pending_read(d: Driver) -> Driver:
    d.register("update")  # the shell reads /5/0/3 /5/0/5 on every Update
    return d


def _id(case: Case) -> str:
    return f"{case.phase}-{case.input}" + (f"-{case.name}" if case.name else "")


def _no_violation(d: Driver) -> None:
    assert not logs(d.commands, "table_violation")
    assert not logs(d.commands, "error")
    assert not logs(d.commands, "input_ignored")


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_transition_table_row(case: Case) -> None:
    d = case.setup()
    assert d.job.phase is case.phase
    case.act(d)
    assert d.job.phase is case.expect
    assert d.state is PHASE_STATE[case.expect]
    assert case.expect in TRANSITIONS[(case.phase, case.input)].to
    _no_violation(d)


#: Rows whose handler only records why the input means nothing in the phase.
IGNORING = {
    (P.PENDING, I.FIRMWARE_STATE): lambda d: d.fw(2, 0),
    (P.PENDING, I.FACTS): unasked(),
    (P.PENDING, I.REGISTERED): lambda d: d.register(),
    (P.PENDING, I.UPDATED): lambda d: d.register("update"),
    (P.PENDING, I.TIMER): lambda d: d._take(d.job.on_timer(d.now)),
    (P.CANCELLING, I.CANCEL): lambda d: d.cancel(),
}


@pytest.mark.parametrize("key", list(IGNORING), ids=lambda k: f"{k[0]}-{k[1]}")
def test_ignoring_row_records_why_and_changes_nothing(key: tuple[Phase, Input]) -> None:
    d = PHASES[key[0]]()
    before = d.job.snapshot()
    IGNORING[key](d)
    ignored = logs(d.last, "ignored")
    assert len(ignored) == 1 and ignored[0].details["why"]
    after = d.job.snapshot()
    assert {k: v for k, v in after.items() if k != "counter"} == {
        k: v for k, v in before.items() if k != "counter"
    }


@pytest.mark.parametrize("phase", list(PHASES), ids=str)
def test_stale_result_is_an_explicit_row_in_every_live_phase(phase: Phase) -> None:
    d = PHASES[phase]()
    before = d.job.snapshot()
    d._take(d.job.on_command_result("job-1:9999", False, "timeout", d.now))
    assert logs(d.last, "ignored")
    assert d.job.snapshot()["phase"] == before["phase"]
    assert d.job.snapshot()["deadline"] == before["deadline"]


def test_every_table_row_has_a_case() -> None:
    covered = {(c.phase, c.input) for c in CASES} | set(IGNORING)
    covered |= {(p, I.STALE_RESULT) for p in PHASES}
    covered |= {(p, i) for p in TERMINAL_PHASES for i in Input}
    assert covered == set(TRANSITIONS)


def test_terminal_phases_have_only_ignoring_rows() -> None:
    assert {p.state for p in TERMINAL_PHASES} == TERMINAL_STATES
    assert set(POSITIONS) == set(JobState) - TERMINAL_STATES
    for phase in TERMINAL_PHASES:
        for input_ in Input:
            assert TRANSITIONS[(phase, input_)].to == {phase}


def test_every_phase_maps_to_a_public_state() -> None:
    assert set(PHASE_STATE) == set(Phase)
    assert set(PHASE_STATE.values()) == set(JobState)


@pytest.mark.parametrize(
    ("setup", "act", "phase", "input_"),
    [
        (at_delivering, lambda d: d.hold(10), P.DELIVERING, I.HOLD),
        (at_installing, lambda d: d.start(), P.INSTALLING, I.START),
        (at_downloaded, lambda d: d.start(), P.EXECUTING, I.START),
        (at_rebooting, lambda d: d.hold(10), P.REBOOTING, I.HOLD),
    ],
    ids=["delivering-hold", "installing-start", "executing-start", "rebooting-hold"],
)
def test_input_not_in_table_raises_naming_phase_and_input_and_changes_nothing(
    setup: Callable[[], Driver], act: Callable[[Driver], object], phase: Phase, input_: Input
) -> None:
    d = setup()
    before = d.job.snapshot()
    with pytest.raises(TableViolation) as err:
        act(d)
    assert (err.value.phase, err.value.input) == (phase, input_)
    assert str(phase) in str(err.value) and str(input_) in str(err.value)
    assert d.job.snapshot() == before
    assert d.job.on_timer(d.now) is not None  # still usable: nothing half-done is left


def test_handler_leading_outside_its_row_raises_and_restores_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fotakit.updates import job as job_module

    d = at_delivering()
    before = d.job.snapshot()
    row = TRANSITIONS[(P.DELIVERING, I.CANCEL)]
    narrowed = job_module.Row(row.handler, frozenset({P.DELIVERING}))
    monkeypatch.setitem(job_module.TRANSITIONS, (P.DELIVERING, I.CANCEL), narrowed)
    with pytest.raises(TableViolation) as err:
        d.cancel()
    assert err.value.to is P.CANCELLING
    assert d.job.snapshot() == before


@pytest.mark.parametrize("final", ["succeeded", "failed", "cancelled", "timed_out"])
def test_terminal_state_ignores_every_input(final: str) -> None:
    if final == "succeeded":
        d = at_starting()
        d.facts(firmware_version=NEW)
    elif final == "failed":
        d = at_rebooting()
        d.facts(firmware_version=OLD, fw_result=8)
    elif final == "cancelled":
        d = at_pending()
        d.cancel()
    else:
        d = at_installing()
        d.timer()
    assert str(d.state) == final
    snap = d.job.snapshot()
    for act in (
        lambda: d.start(),
        lambda: d.fw(2, 0),
        lambda: d.register(),
        lambda: d.register("update"),
        lambda: d.cancel(),
        lambda: d.hold(10),
        lambda: d._take(d.job.on_timer(d.now + 10**6)),
        lambda: d._take(d.job.on_facts(facts(firmware_version=NEW), d.now)),
        lambda: d._take(d.job.on_command_result("job-1:1", True, None, d.now)),
    ):
        out = act()
        assert all(c.kind == "log" for c in out)  # type: ignore[union-attr]
    assert d.job.snapshot()["state"] == snap["state"]
    assert d.job.snapshot()["reason"] == snap["reason"]
