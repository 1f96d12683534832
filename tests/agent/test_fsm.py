"""The pure Object 5 state machine: every row of OMA LwM2M TS Core 1.2 E.6 (the
state diagram and the invalid-operation rules of /5/0), and properties.

The reference's transition table and its invalid-operations table ("Suggested" column)
are written out below as data; each row is one parametrized test. No sockets, no clock:
time is a counter the tests advance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from aiocoap.numbers.codes import Code
from hypothesis import given, settings
from hypothesis import strategies as st

from fotakit.agent.fsm import (
    REFUSALS,
    TRANSITIONS,
    Action,
    FirmwareSnapshot,
    FirmwareUpdateMachine,
    InvalidTransition,
    InvalidWrite,
    Trigger,
    classify_uri,
)
from fotakit.lwm2m.errors import LwM2MError
from fotakit.lwm2m.objects import Severity, State, UpdateProtocol, UpdateResult

ALL = tuple(UpdateProtocol)
URI = "coap://127.0.0.1:5683/fw/1"


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def machine_in(state: State, clock: Clock | None = None) -> FirmwareUpdateMachine:
    """A machine brought to ``state`` through the table itself."""
    m = FirmwareUpdateMachine(clock=clock or Clock())
    if state is State.IDLE:
        return m
    m.write_package_uri(URI, ALL)
    if state is State.DOWNLOADING:
        return m
    m.download_complete()
    if state is State.DOWNLOADED:
        return m
    m.execute_update()
    assert m.state is State.UPDATING
    return m


Op = Callable[[FirmwareUpdateMachine], object]

# -- the reference's transition table ----------------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str
    start: State
    op: Op
    state: State
    result: UpdateResult


ROWS = [
    Row(
        "Idle, write supported URI",
        State.IDLE,
        lambda m: m.write_package_uri(URI, ALL),
        State.DOWNLOADING,
        UpdateResult.INITIAL,
    ),
    Row(
        "Idle, write URI with unsupported scheme",
        State.IDLE,
        lambda m: m.write_package_uri("ftp://example.com/fw", ALL),
        State.IDLE,
        UpdateResult.UNSUPPORTED_PROTOCOL,
    ),
    Row(
        "Idle, write URI with a scheme the device lacks",
        State.IDLE,
        lambda m: m.write_package_uri("https://example.com/fw", [UpdateProtocol.COAP]),
        State.IDLE,
        UpdateResult.UNSUPPORTED_PROTOCOL,
    ),
    Row(
        "Idle, write invalid URI",
        State.IDLE,
        lambda m: m.write_package_uri("not a uri", ALL),
        State.IDLE,
        UpdateResult.INVALID_URI,
    ),
    Row(
        "Idle, first Block1 of Package",
        State.IDLE,
        lambda m: m.write_package(),
        State.DOWNLOADING,
        UpdateResult.INITIAL,
    ),
    Row(
        "Downloading, last block or pull complete",
        State.DOWNLOADING,
        lambda m: m.download_complete(),
        State.DOWNLOADED,
        UpdateResult.INITIAL,
    ),
    *[
        Row(
            f"Downloading, download error {int(code)}",
            State.DOWNLOADING,
            lambda m, code=code: m.download_failed(code),
            State.IDLE,
            code,
        )
        for code in (
            UpdateResult.NOT_ENOUGH_FLASH,
            UpdateResult.OUT_OF_RAM,
            UpdateResult.CONNECTION_LOST,
            UpdateResult.INTEGRITY_CHECK_FAILURE,
            UpdateResult.UNSUPPORTED_PACKAGE_TYPE,
            UpdateResult.INVALID_URI,
            UpdateResult.UNSUPPORTED_PROTOCOL,
        )
    ],
    *[
        Row(
            f"{start.name}, reset by {how}",
            start,
            op,
            State.IDLE,
            UpdateResult.INITIAL,
        )
        for start in (State.DOWNLOADING, State.DOWNLOADED)
        for how, op in (
            ("empty URI", lambda m: m.write_package_uri("", ALL)),
            ("'\\0' Package", lambda m: m.reset()),
        )
    ],
    *[
        Row(
            f"{start.name}, Cancel", start, lambda m: m.cancel(), State.IDLE, UpdateResult.CANCELLED
        )
        for start in (State.DOWNLOADING, State.DOWNLOADED)
    ],
    Row(
        "Downloaded, Execute Update",
        State.DOWNLOADED,
        lambda m: m.execute_update(),
        State.UPDATING,
        UpdateResult.INITIAL,
    ),
    Row(
        "Downloaded, Execute Update, user defers",
        State.DOWNLOADED,
        lambda m: (m.set_max_defer_period(60), m.execute_update(defer=True)),
        State.DOWNLOADED,
        UpdateResult.DEFERRED,
    ),
    Row(
        "Updating, success",
        State.UPDATING,
        lambda m: m.update_succeeded(),
        State.IDLE,
        UpdateResult.SUCCESS,
    ),
    Row(
        "Updating, failure that can be retried",
        State.UPDATING,
        lambda m: m.update_failed(),
        State.DOWNLOADED,
        UpdateResult.UPDATE_FAILED,
    ),
    *[
        Row(
            f"Updating, image unusable ({int(code)})",
            State.UPDATING,
            lambda m, code=code: m.image_unusable(code),
            State.IDLE,
            code,
        )
        for code in (UpdateResult.INTEGRITY_CHECK_FAILURE, UpdateResult.UPDATE_FAILED)
    ],
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_reference_transition(row: Row) -> None:
    clock = Clock()
    m = machine_in(row.start, clock)
    before = m.last_state_change
    clock.now += 5
    row.op(m)
    assert (m.state, m.result) == (row.state, row.result)
    # /5/0/12 moves exactly when the State does
    assert (m.last_state_change != before) == (row.state is not row.start)


# -- the reference's invalid-operations table ("Suggested" column) -----------------------------


@dataclass(frozen=True)
class Refusal:
    name: str
    start: State
    op: Op
    code: Code


REFUSED = [
    *[
        Refusal(
            f"Execute Update in {s.name}", s, lambda m: m.execute_update(), Code.METHOD_NOT_ALLOWED
        )
        for s in (State.IDLE, State.DOWNLOADING, State.UPDATING)
    ],
    *[
        Refusal(f"Cancel in {s.name}", s, lambda m: m.cancel(), Code.METHOD_NOT_ALLOWED)
        for s in (State.IDLE, State.UPDATING)
    ],
    *[
        Refusal(f"{what} in {s.name}", s, op, Code.BAD_REQUEST)
        for s in (State.DOWNLOADING, State.DOWNLOADED)
        for what, op in (
            ("non-empty URI", lambda m: m.write_package_uri(URI, ALL)),
            ("unsupported URI", lambda m: m.write_package_uri("ftp://h/x", ALL)),
            ("invalid URI", lambda m: m.write_package_uri("::", ALL)),
            ("non-empty Package", lambda m: m.write_package()),
        )
    ],
    *[
        Refusal(f"{what} in UPDATING", State.UPDATING, op, Code.METHOD_NOT_ALLOWED)
        for what, op in (
            ("non-empty URI", lambda m: m.write_package_uri(URI, ALL)),
            ("empty URI", lambda m: m.write_package_uri("", ALL)),
            ("non-empty Package", lambda m: m.write_package()),
            ("'\\0' Package", lambda m: m.reset()),
        )
    ],
]


@pytest.mark.parametrize("refusal", REFUSED, ids=lambda r: r.name)
def test_reference_invalid_operation(refusal: Refusal) -> None:
    m = machine_in(refusal.start)
    before = m.snapshot()
    with pytest.raises(InvalidTransition) as info:
        refusal.op(m)
    assert info.value.code == refusal.code
    assert isinstance(info.value, LwM2MError)
    assert info.value.state is refusal.start
    assert refusal.start.name in info.value.message
    assert m.snapshot() == before  # state, result and settings unchanged


def test_push_larger_than_storage_sets_result_2_in_idle() -> None:
    m = machine_in(State.IDLE)
    m.push_refused()
    assert (m.state, m.result) == (State.IDLE, UpdateResult.NOT_ENOUGH_FLASH)


def test_invalid_write_is_an_invalid_transition_with_4_00() -> None:
    m = machine_in(State.DOWNLOADING)
    with pytest.raises(InvalidWrite) as info:
        m.write_package()
    assert info.value.code == Code.BAD_REQUEST
    assert "DOWNLOADING" in str(info.value) and "Package" in str(info.value)


def test_every_refusal_code_is_for_a_pair_the_table_lacks() -> None:
    assert not set(REFUSALS) & set(TRANSITIONS)


def test_download_failure_cannot_report_a_success_code() -> None:
    m = machine_in(State.DOWNLOADING)
    with pytest.raises(ValueError, match="cannot report"):
        m.download_failed(UpdateResult.SUCCESS)
    assert m.state is State.DOWNLOADING


# -- result resets, time, automatic upgrade, deferral ------------------------------------------


def test_result_resets_to_0_when_a_download_starts() -> None:
    m = machine_in(State.IDLE)
    m.write_package_uri("gopher://h/x", ALL)
    assert m.result is UpdateResult.UNSUPPORTED_PROTOCOL
    m.write_package_uri(URI, ALL)
    assert (m.state, m.result) == (State.DOWNLOADING, UpdateResult.INITIAL)


def test_result_resets_to_0_when_an_update_starts_again_after_a_failure() -> None:
    m = machine_in(State.UPDATING)
    m.update_failed()
    assert (m.state, m.result) == (State.DOWNLOADED, UpdateResult.UPDATE_FAILED)
    m.execute_update()
    assert (m.state, m.result) == (State.UPDATING, UpdateResult.INITIAL)


def test_last_state_change_time_is_carried_with_each_transition() -> None:
    clock = Clock(100.0)
    m = FirmwareUpdateMachine(clock=clock)
    clock.now = 200.0
    (step,) = m.write_package_uri(URI, ALL)
    assert step.last_state_change == 200.0 == m.last_state_change
    assert step.actions == (Action.START_PULL,)
    assert m.package_uri == URI


def test_automatic_upgrade_goes_on_to_updating_with_start_update() -> None:
    m = machine_in(State.DOWNLOADING)
    m.set_auto_update(True)
    steps = m.download_complete(pkg_name="fw", pkg_version="2.0")
    assert [(s.state, s.result) for s in steps] == [
        (State.DOWNLOADED, UpdateResult.INITIAL),
        (State.UPDATING, UpdateResult.INITIAL),
    ]
    assert steps[1].actions == (Action.START_UPDATE,)
    assert (m.pkg_name, m.pkg_version) == ("fw", "2.0")


def test_deferral_not_allowed_when_maximum_defer_period_is_0() -> None:
    m = machine_in(State.DOWNLOADED)
    assert m.max_defer_period == 0
    (step,) = m.execute_update(defer=True)
    assert step.state is State.UPDATING


def test_deferral_sets_a_deadline_after_which_no_more_deferral() -> None:
    clock = Clock(1_000.0)
    m = machine_in(State.DOWNLOADED, clock)
    m.set_max_defer_period(60)
    (step,) = m.execute_update(defer=True)
    assert (step.state, step.result) == (State.DOWNLOADED, UpdateResult.DEFERRED)
    assert step.actions == (Action.ARM_DEFER_TIMER,)
    assert m.defer_deadline == 1_060.0
    clock.now = 1_030.0
    m.execute_update(defer=True)  # a second deferral keeps the first deadline
    assert m.defer_deadline == 1_060.0
    with pytest.raises(InvalidTransition):
        m.defer_expired()  # not yet
    clock.now = 1_060.0
    assert not m.may_defer()
    (step,) = m.defer_expired()
    assert (step.state, step.result, step.actions) == (
        State.UPDATING,
        UpdateResult.INITIAL,
        (Action.START_UPDATE,),
    )
    assert m.defer_deadline is None


def test_execute_after_deadline_updates_even_if_the_user_defers() -> None:
    clock = Clock(0.0)
    m = machine_in(State.DOWNLOADED, clock)
    m.set_max_defer_period(10)
    m.execute_update(defer=True)
    clock.now = 11.0
    (step,) = m.execute_update(defer=True)
    assert step.state is State.UPDATING


def test_cancel_after_deferral_clears_the_deadline() -> None:
    m = machine_in(State.DOWNLOADED)
    m.set_max_defer_period(10)
    m.execute_update(defer=True)
    m.cancel()
    assert (m.state, m.result, m.defer_deadline) == (State.IDLE, UpdateResult.CANCELLED, None)


# -- snapshots -----------------------------------------------------------------------------------


def test_snapshot_round_trips_through_json() -> None:
    clock = Clock(1234.5)
    m = machine_in(State.DOWNLOADED, clock)
    m.set_severity(Severity.CRITICAL)
    m.set_max_defer_period(30)
    m.execute_update(defer=True)
    snap = m.snapshot()
    again = FirmwareSnapshot.from_json(snap.to_json())
    assert again == snap
    restored = FirmwareUpdateMachine(again, clock=clock)
    assert restored.snapshot() == snap


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        "{}",
        '{"state": 7, "result": 0}',
        '{"state": 0, "result": "x"}',
        '{"state": 0, "result": 0, "max_defer_period": -1}',
        '{"state": true, "result": 0}',
    ],
)
def test_bad_snapshot_json_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        FirmwareSnapshot.from_json(text)


@given(st.text(max_size=200))
def test_snapshot_parser_raises_only_value_error(text: str) -> None:
    try:
        FirmwareSnapshot.from_json(text)
    except ValueError:
        pass


@given(st.text(max_size=300))
def test_classify_uri_never_raises(uri: str) -> None:
    trigger = classify_uri(uri, ALL)
    assert trigger in {
        Trigger.RESET,
        Trigger.WRITE_URI,
        Trigger.WRITE_URI_INVALID,
        Trigger.WRITE_URI_UNSUPPORTED,
    }
    if trigger is Trigger.WRITE_URI:
        assert len(uri.encode()) <= 255


@pytest.mark.parametrize(
    ("uri", "trigger"),
    [
        ("", Trigger.RESET),
        ("coap://[::1]:5683/fw", Trigger.WRITE_URI),
        ("HTTPS://host/fw", Trigger.WRITE_URI),
        ("coaps+tcp://host/fw", Trigger.WRITE_URI),
        ("coap:///fw", Trigger.WRITE_URI_INVALID),
        ("coap://host:99999/fw", Trigger.WRITE_URI_INVALID),
        ("coap://host/a b", Trigger.WRITE_URI_INVALID),
        ("coap://host/" + "a" * 250, Trigger.WRITE_URI_INVALID),
        ("/fw/1", Trigger.WRITE_URI_INVALID),
        ("ftp://host/fw", Trigger.WRITE_URI_UNSUPPORTED),
    ],
)
def test_classify_uri_examples(uri: str, trigger: Trigger) -> None:
    assert classify_uri(uri, ALL) is trigger


# -- random trigger sequences -------------------------------------------------------------------

OPS: dict[str, Op] = {
    "uri": lambda m: m.write_package_uri(URI, ALL),
    "bad_scheme": lambda m: m.write_package_uri("ftp://h/x", ALL),
    "bad_uri": lambda m: m.write_package_uri("x", ALL),
    "empty_uri": lambda m: m.write_package_uri("", ALL),
    "package": lambda m: m.write_package(),
    "reset": lambda m: m.reset(),
    "push_refused": lambda m: m.push_refused(),
    "complete": lambda m: m.download_complete(),
    "fail4": lambda m: m.download_failed(UpdateResult.CONNECTION_LOST),
    "fail5": lambda m: m.download_failed(UpdateResult.INTEGRITY_CHECK_FAILURE),
    "execute": lambda m: m.execute_update(),
    "defer": lambda m: m.execute_update(defer=True),
    "defer_expired": lambda m: m.defer_expired(),
    "cancel": lambda m: m.cancel(),
    "success": lambda m: m.update_succeeded(),
    "retry": lambda m: m.update_failed(),
    "unusable": lambda m: m.image_unusable(UpdateResult.UPDATE_FAILED),
    "auto_on": lambda m: m.set_auto_update(True),
    "auto_off": lambda m: m.set_auto_update(False),
    "defer_60": lambda m: m.set_max_defer_period(60),
    "tick": lambda m: None,
}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(sorted(OPS)), max_size=60))
def test_random_trigger_sequences_keep_the_invariants(names: list[str]) -> None:
    clock = Clock(0.0)
    m = FirmwareUpdateMachine(clock=clock)
    for name in names:
        clock.now += 7.0
        before = m.snapshot()
        try:
            steps = OPS[name](m)
        except InvalidTransition:
            assert m.snapshot() == before, f"{name} was refused but changed something"
            continue
        assert 0 <= m.state <= 3 and 0 <= m.result <= 11
        for step in steps or []:
            if step.state is State.UPDATING and step.previous is not State.UPDATING:
                assert step.previous is State.DOWNLOADED, "Updating only from Downloaded"
                assert step.result is UpdateResult.INITIAL
            if step.state is State.DOWNLOADING and step.previous is State.IDLE:
                assert step.result is UpdateResult.INITIAL
            if step.state_changed:
                assert step.last_state_change == clock.now
        if m.state is State.IDLE:
            assert m.defer_deadline is None
        if m.result is UpdateResult.DEFERRED:
            assert m.state is State.DOWNLOADED and m.defer_deadline is not None
        if m.state is not before.state:
            assert m.last_state_change == clock.now
        else:
            assert m.last_state_change == before.last_state_change
