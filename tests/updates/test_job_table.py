"""Every row of the UpdateJob transition table, driven once (pure, injected clock), plus
the rule for pairs that are not in the table: recorded as ignored, nothing changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from job_helpers import (
    NEW,
    OLD,
    POSITIONS,
    Driver,
    at_cancelling,
    at_delivering,
    at_downloaded,
    at_installing,
    at_pending,
    at_rebooting,
    at_starting,
    at_waiting,
    facts,
    logs,
)

from fotakit.updates.job import (
    TERMINAL_STATES,
    TRANSITIONS,
    Cancel,
    Execute,
    Input,
    JobState,
    Observe,
    Push,
    ReadFacts,
    WriteUri,
)

S = JobState
I = Input  # noqa: E741


@dataclass(frozen=True)
class Case:
    state: JobState
    input: Input
    setup: Callable[[], Driver]
    act: Callable[[Driver], object]
    expect: JobState
    name: str = ""


def unasked(**changes: object) -> Callable[[Driver], object]:
    """Facts that answer no read of the job (the shell read on its own)."""
    return lambda d: d._take(d.job.on_facts(facts(**changes), d.now))  # type: ignore[arg-type]


def _starting_facts_already(d: Driver) -> object:
    return d.facts(firmware_version=NEW)


CASES: list[Case] = [
    # PENDING
    Case(S.PENDING, I.START, at_pending, lambda d: d.start(), S.STARTING),
    Case(S.PENDING, I.HOLD, at_pending, lambda d: d.hold(30), S.WAITING),
    Case(S.PENDING, I.CANCEL, at_pending, lambda d: d.cancel(), S.CANCELLED),
    Case(S.PENDING, I.RESUME, at_pending, lambda d: d.restore(), S.PENDING),
    # WAITING (throttled before the start)
    Case(S.WAITING, I.START, at_waiting, lambda d: d.start(), S.STARTING),
    Case(S.WAITING, I.TIMER, at_waiting, lambda d: d.timer(), S.STARTING),
    Case(S.WAITING, I.HOLD, at_waiting, lambda d: d.hold(600), S.WAITING),
    Case(S.WAITING, I.CANCEL, at_waiting, lambda d: d.cancel(), S.CANCELLED),
    Case(S.WAITING, I.RESUME, at_waiting, lambda d: d.restore(), S.WAITING),
    Case(S.WAITING, I.FIRMWARE_STATE, at_waiting, lambda d: d.fw(0, 0), S.WAITING),
    Case(S.WAITING, I.FACTS, at_waiting, unasked(), S.WAITING),
    Case(
        S.WAITING,
        I.FACTS,
        lambda: _retrying_after_delivery(at_delivering()),
        unasked(firmware_version=NEW, fw_state=None),
        S.REBOOTING,
        "on_target_after_delivery",
    ),
    Case(S.WAITING, I.REGISTERED, at_waiting, lambda d: d.register(), S.WAITING),
    Case(S.WAITING, I.UPDATED, at_waiting, lambda d: d.register("update"), S.WAITING),
    # STARTING
    Case(S.STARTING, I.FACTS, at_starting, lambda d: d.facts(), S.DELIVERING, "idle"),
    Case(S.STARTING, I.FACTS, at_starting, _starting_facts_already, S.SUCCEEDED, "on_target"),
    Case(
        S.STARTING,
        I.FACTS,
        lambda: _after_failed_push(at_starting()),
        lambda d: d.facts(delivery_method=1, fw_state=1),
        S.STARTING,
        "failed_push_leftover",
    ),
    Case(S.STARTING, I.FIRMWARE_STATE, at_starting, lambda d: d.fw(3, 0), S.STARTING),
    Case(S.STARTING, I.COMMAND_OK, at_starting, lambda d: d.ok(ReadFacts), S.STARTING),
    Case(
        S.STARTING, I.COMMAND_FAILED, at_starting, lambda d: d.fail(ReadFacts, "timeout"), S.WAITING
    ),
    Case(S.STARTING, I.TIMER, at_starting, lambda d: d.timer(), S.WAITING),
    Case(S.STARTING, I.CANCEL, at_starting, lambda d: d.cancel(), S.CANCELLED),
    Case(S.STARTING, I.HOLD, at_starting, lambda d: d.hold(30), S.WAITING),
    Case(S.STARTING, I.REGISTERED, at_starting, lambda d: d.register(), S.STARTING),
    Case(S.STARTING, I.UPDATED, at_starting, lambda d: d.register("update"), S.STARTING),
    Case(S.STARTING, I.RESUME, at_starting, lambda d: d.restore(), S.STARTING),
    # DELIVERING
    Case(S.DELIVERING, I.FIRMWARE_STATE, at_delivering, lambda d: d.fw(2, 0), S.DOWNLOADED),
    Case(S.DELIVERING, I.FACTS, at_delivering, unasked(fw_state=1), S.DELIVERING),
    Case(S.DELIVERING, I.COMMAND_OK, at_delivering, lambda d: d.ok(WriteUri), S.DELIVERING),
    Case(
        S.DELIVERING, I.COMMAND_FAILED, at_delivering, lambda d: d.fail(WriteUri, "4.00"), S.FAILED
    ),
    Case(S.DELIVERING, I.TIMER, at_delivering, lambda d: d.timer(), S.WAITING),
    Case(S.DELIVERING, I.CANCEL, at_delivering, lambda d: d.cancel(), S.CANCELLING),
    Case(S.DELIVERING, I.REGISTERED, at_delivering, lambda d: d.register(), S.DELIVERING),
    Case(S.DELIVERING, I.UPDATED, at_delivering, lambda d: d.register("update"), S.DELIVERING),
    Case(S.DELIVERING, I.RESUME, at_delivering, lambda d: d.restore(), S.DELIVERING),
    # DOWNLOADED
    Case(S.DOWNLOADED, I.FIRMWARE_STATE, at_downloaded, lambda d: d.fw(3, 0), S.INSTALLING),
    Case(S.DOWNLOADED, I.FACTS, at_downloaded, unasked(fw_state=2, fw_result=11), S.WAITING),
    Case(S.DOWNLOADED, I.COMMAND_OK, at_downloaded, lambda d: d.ok(Execute), S.INSTALLING),
    Case(
        S.DOWNLOADED, I.COMMAND_FAILED, at_downloaded, lambda d: d.fail(Execute, "4.00"), S.FAILED
    ),
    Case(S.DOWNLOADED, I.TIMER, at_downloaded, lambda d: d.timer(), S.WAITING),
    Case(S.DOWNLOADED, I.CANCEL, at_downloaded, lambda d: d.cancel(), S.CANCELLING),
    Case(
        S.DOWNLOADED,
        I.REGISTERED,
        lambda: _execute_refused(at_downloaded()),
        lambda d: d.register(),
        S.DOWNLOADED,
        "execute_refused",
    ),
    Case(
        S.DOWNLOADED,
        I.REGISTERED,
        at_downloaded,
        lambda d: d.register(),
        S.REBOOTING,
        "execute_unanswered",
    ),
    Case(S.DOWNLOADED, I.UPDATED, at_downloaded, lambda d: d.register("update"), S.DOWNLOADED),
    Case(S.DOWNLOADED, I.RESUME, at_downloaded, lambda d: d.restore(), S.DOWNLOADED),
    # INSTALLING
    Case(S.INSTALLING, I.FIRMWARE_STATE, at_installing, lambda d: d.fw(0, 1), S.REBOOTING),
    Case(S.INSTALLING, I.FACTS, at_installing, unasked(fw_state=2, fw_result=8), S.FAILED),
    Case(S.INSTALLING, I.COMMAND_OK, at_installing, lambda d: d.ok(Observe), S.INSTALLING),
    Case(
        S.INSTALLING,
        I.COMMAND_FAILED,
        lambda: _with_pending_read(at_installing()),
        lambda d: d.fail(ReadFacts, "timeout"),
        S.INSTALLING,
    ),
    Case(S.INSTALLING, I.TIMER, at_installing, lambda d: d.timer(), S.TIMED_OUT),
    Case(S.INSTALLING, I.CANCEL, at_installing, lambda d: d.cancel(), S.INSTALLING),
    Case(S.INSTALLING, I.REGISTERED, at_installing, lambda d: d.register(), S.REBOOTING),
    Case(S.INSTALLING, I.UPDATED, at_installing, lambda d: d.register("update"), S.INSTALLING),
    Case(S.INSTALLING, I.RESUME, at_installing, lambda d: d.restore(), S.INSTALLING),
    # REBOOTING
    Case(S.REBOOTING, I.FIRMWARE_STATE, at_rebooting, lambda d: d.fw(0, 1), S.REBOOTING),
    Case(
        S.REBOOTING,
        I.FACTS,
        at_rebooting,
        lambda d: d.facts(firmware_version=NEW, fw_result=1),
        S.SUCCEEDED,
    ),
    Case(
        S.REBOOTING,
        I.FACTS,
        at_rebooting,
        lambda d: d.facts(firmware_version=None, pkg_version=NEW),
        S.REBOOTING,
        "3_0_3_missed",
    ),
    Case(S.REBOOTING, I.COMMAND_OK, at_rebooting, lambda d: d.ok(ReadFacts), S.REBOOTING),
    Case(
        S.REBOOTING,
        I.COMMAND_FAILED,
        at_rebooting,
        lambda d: d.fail(ReadFacts, "timeout"),
        S.REBOOTING,
    ),
    Case(S.REBOOTING, I.TIMER, at_rebooting, lambda d: d.timer(), S.TIMED_OUT),
    Case(S.REBOOTING, I.CANCEL, at_rebooting, lambda d: d.cancel(), S.REBOOTING),
    Case(S.REBOOTING, I.REGISTERED, at_rebooting, lambda d: d.register(), S.REBOOTING),
    Case(S.REBOOTING, I.UPDATED, at_rebooting, lambda d: d.register("update"), S.REBOOTING),
    Case(S.REBOOTING, I.RESUME, at_rebooting, lambda d: d.restore(), S.REBOOTING),
    # CANCELLING
    Case(S.CANCELLING, I.FIRMWARE_STATE, at_cancelling, lambda d: d.fw(0, 10), S.CANCELLED),
    Case(S.CANCELLING, I.FACTS, at_cancelling, unasked(fw_state=3), S.INSTALLING),
    Case(S.CANCELLING, I.COMMAND_OK, at_cancelling, lambda d: d.ok(Cancel), S.CANCELLING),
    Case(
        S.CANCELLING, I.COMMAND_FAILED, at_cancelling, lambda d: d.fail(Cancel, "5.00"), S.CANCELLED
    ),
    Case(S.CANCELLING, I.TIMER, at_cancelling, lambda d: d.timer(), S.CANCELLED),
    Case(S.CANCELLING, I.CANCEL, at_cancelling, lambda d: d.cancel(), S.CANCELLING),
    Case(S.CANCELLING, I.REGISTERED, at_cancelling, lambda d: d.register(), S.CANCELLING),
    Case(S.CANCELLING, I.UPDATED, at_cancelling, lambda d: d.register("update"), S.CANCELLING),
    Case(S.CANCELLING, I.RESUME, at_cancelling, lambda d: d.restore(), S.CANCELLING),
]


def _retrying_after_delivery(d: Driver) -> Driver:
    d.ok(WriteUri)
    d.timer()  # the DELIVERING deadline: WAITING for the retry
    return d


def _execute_refused(d: Driver) -> Driver:
    d.fail(Execute, "4.05")  # the device answered: no install started
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
    return f"{case.state}-{case.input}" + (f"-{case.name}" if case.name else "")


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_transition_table_row(case: Case) -> None:
    d = case.setup()
    assert d.state is case.state
    case.act(d)
    assert d.state is case.expect
    assert case.expect in TRANSITIONS[(case.state, case.input)]
    assert not logs(d.commands, "table_violation")
    ignored = logs(d.last, "input_ignored")
    assert not ignored, ignored


def test_every_table_row_has_a_case() -> None:
    covered = {(c.state, c.input) for c in CASES}
    assert covered == set(TRANSITIONS)


def test_terminal_states_have_no_rows() -> None:
    assert not {s for s, _ in TRANSITIONS} & TERMINAL_STATES
    assert set(POSITIONS) == set(JobState) - TERMINAL_STATES


@pytest.mark.parametrize(
    ("setup", "act", "input_"),
    [
        (at_pending, lambda d: d.fw(2, 0), Input.FIRMWARE_STATE),
        (at_pending, lambda d: d._take(d.job.on_timer(d.now)), Input.TIMER),
        (at_delivering, lambda d: d.hold(10), Input.HOLD),
        (at_installing, lambda d: d.start(), Input.START),
    ],
    ids=["pending-fw", "pending-timer", "delivering-hold", "installing-start"],
)
def test_input_not_in_table_is_logged_as_ignored_and_changes_nothing(
    setup: Callable[[], Driver], act: Callable[[Driver], object], input_: Input
) -> None:
    d = setup()
    before = d.job.snapshot()
    act(d)
    ignored = logs(d.last, "input_ignored")
    assert len(ignored) == 1
    assert ignored[0].details["state"] == str(before["state"])
    assert ignored[0].details["input"] == str(input_)
    after = d.job.snapshot()
    assert after["state"] == before["state"]
    assert after["attempts"] == before["attempts"]
    assert after["deadline"] == before["deadline"]


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
