"""Random input sequences against UpdateJob (hypothesis): the invariants hold at every step.

- terminal states are absorbing; exactly one Finish, and only on entering one;
- attempts never exceed the budget;
- SUCCEEDED only when already on the target at the start (nothing sent to the device), or
  after a re-registration, from facts whose version equals the target exactly;
- every command id is unique, also across restores; every Log's details are JSON;
- the snapshot round-trips through JSON at every step;
- nothing outside the table happens: only the inputs a caller chooses (start, hold) may
  meet a phase without a row, and then :class:`TableViolation` leaves the job unchanged;
  every device-driven input (facts, notifications, results, registrations, timers) has a
  row in every phase, so nothing else raises;
- a live state other than PENDING always has a deadline (never "in progress" forever);
- once the install started, no URI write, push or second Execute is sent.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from job_helpers import NEW, T0, TARGET, facts

from fotakit.updates.job import (
    TRANSITIONS,
    Command,
    Execute,
    Finish,
    JobPolicy,
    JobState,
    Log,
    Push,
    ReadFacts,
    TableViolation,
    UpdateJob,
    WriteUri,
    version_of,
)

VERSIONS = ["1.1.1", NEW, "1.1.100", "1.1.10 ", "2.0", None]
CODES = ["timeout", "unreachable", "not_registered", "4.00", "4.04", "4.05", "4.13", "5.00"]

actions = st.one_of(
    st.tuples(st.just("start")),
    st.tuples(st.just("hold"), st.floats(0, 5000)),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("timer")),
    st.tuples(st.just("advance"), st.floats(0, 5000)),
    st.tuples(
        st.just("fw"), st.integers(0, 4), st.integers(0, 12), st.sampled_from(["observe", "read"])
    ),
    st.tuples(
        st.just("facts"),
        st.sampled_from(VERSIONS),
        st.one_of(st.none(), st.integers(0, 3)),
        st.integers(0, 11),
        st.sampled_from([None, 0, 1, 2, 7]),
        st.booleans(),
        st.booleans(),
    ),
    st.tuples(st.just("register"), st.sampled_from(["register", "update"])),
    st.tuples(st.just("result"), st.integers(0, 50), st.booleans(), st.sampled_from(CODES)),
    st.tuples(st.just("restore")),
)  # fmt: skip


#: "The device does the next plausible thing": drives jobs deep into the flow.
progress = st.tuples(st.just("progress"), st.sampled_from(VERSIONS[:2]), st.integers(0, 3))
guided = st.one_of(progress, progress, progress, actions)


class Harness:
    def __init__(self, policy: JobPolicy) -> None:
        self.policy = policy
        self.job = UpdateJob("j", "dev-1", TARGET, policy)
        self.now = T0
        self.ids: set[str] = set()
        self.reregistered = False
        self.install_started = False
        self.device_touched = False
        self.finishes = 0
        self.terminal_state: JobState | None = None
        self._fed: Any = None

    def apply(self, action: tuple[Any, ...]) -> None:
        kind = action[0]
        job = self.job
        before = job.state
        fed_facts = None
        if kind in ("start", "hold"):
            # the caller's own inputs: the shell starts pending jobs only, and holds none
            # it drives; elsewhere the table refuses them and nothing changes
            snap = job.snapshot()
            try:
                if kind == "start":
                    out = job.start(self.now)
                else:
                    out = job.hold(self.now + action[1], self.now)
            except TableViolation as exc:
                assert (exc.phase, exc.input) not in TRANSITIONS
                assert exc.phase is job.phase and job.snapshot() == snap
                out = []
        elif kind == "cancel":
            out = job.cancel(self.now)
        elif kind == "timer":
            if job.deadline is not None:
                self.now = max(self.now, job.deadline)
            out = job.on_timer(self.now)
        elif kind == "advance":
            self.now += action[1]
            out = []
        elif kind == "fw":
            if action[1] == 3 and self.device_touched:
                self.install_started = True
            out = job.on_firmware_state(action[1], action[2], self.now, source=action[3])
        elif kind == "facts":
            _, version, state, result, method, queue, with_id = action
            fed_facts = facts(
                firmware_version=version, fw_state=state, fw_result=result,
                delivery_method=method, queue_mode=queue,
            )  # fmt: skip
            if self.device_touched and (state == 3 or version == NEW):
                self.install_started = True  # writing again would update it twice
            pending = [k for k, v in job.snapshot()["pending"].items() if v == "read_facts"]
            cid = pending[0] if pending and with_id else None
            out = job.on_facts(fed_facts, self.now, command_id=cid)
        elif kind == "register":
            if action[1] == "register":
                self.reregistered = self.reregistered or self.install_started
            out = job.on_registered(None, self.now, kind=action[1])
        elif kind == "result":
            pending = list(job.snapshot()["pending"].items())
            if pending:
                cid, ckind = pending[action[1] % len(pending)]
                if ckind == "execute" and action[2]:
                    self.install_started = True
                out = job.on_command_result(
                    cid, action[2], None if action[2] else action[3], self.now
                )
            else:
                out = job.on_command_result("nope", action[2], action[3], self.now)
        elif kind == "progress":
            out = self._progress(action[1], action[2])
            fed_facts = self._fed
        else:  # restore
            snap = json.loads(json.dumps(job.snapshot()))
            self.job = UpdateJob.from_snapshot(snap, self.policy)
            out = self.job.resume(self.now)
        self.check(before, out, fed_facts)

    def _progress(self, version: str, fw_state: int) -> list[Command]:
        """Answer the oldest pending operation as a well-behaved device would."""
        job, now = self.job, self.now
        self._fed = None
        pending = list(job.snapshot()["pending"].items())
        state = job.state
        if not pending:
            if state is JobState.INSTALLING:
                self.reregistered = True
                return job.on_registered(None, now, kind="register")
            if state is JobState.DELIVERING:
                return job.on_firmware_state(2, 0, now, source="observe")
            if job.deadline is not None:
                self.now = max(now, job.deadline)
            return job.on_timer(self.now)
        cid, kind = pending[0]
        if kind == "read_facts":
            if state is JobState.REBOOTING:
                self._fed = facts(firmware_version=version, fw_state=fw_state % 2 * 3)
            else:
                self._fed = facts(fw_state=0 if state is JobState.STARTING else fw_state)
            if self.device_touched and self._fed.fw_state == 3:
                self.install_started = True
            return job.on_facts(self._fed, now, command_id=cid)
        if kind == "execute":
            self.install_started = True
        return job.on_command_result(cid, True, None, now)

    def check(self, before: JobState, out: list[Command], fed: Any) -> None:
        job = self.job
        for c in out:
            assert c.command_id not in self.ids, c
            self.ids.add(c.command_id)
            assert not (isinstance(c, Log) and c.event in ("table_violation", "error")), c
            if isinstance(c, Log):
                json.dumps(c.details)  # the event log stores it as JSON
            if isinstance(c, WriteUri | Push | Execute):
                self.device_touched = True
            if self.install_started and not isinstance(c, Log):
                assert not isinstance(c, WriteUri | Push), (c, before)
        finishes = [c for c in out if isinstance(c, Finish)]
        self.finishes += len(finishes)
        assert self.finishes <= 1
        if self.terminal_state is not None:
            assert job.state is self.terminal_state  # absorbing
            assert not [c for c in out if not isinstance(c, Log)]
        elif job.state.terminal:
            self.terminal_state = job.state
            assert len(finishes) == 1 and finishes[0].state is job.state
            if job.state is JobState.SUCCEEDED:
                if self.device_touched:  # after a re-registration, from the fresh read
                    assert self.reregistered
                    assert fed is not None and version_of(fed) == NEW
                else:  # already on the target: nothing was sent to the device
                    assert version_of(job.facts) == NEW
        assert 0 <= job.attempts <= self.policy.max_attempts
        if not job.state.terminal and job.state is not JobState.PENDING:
            assert job.deadline is not None, job.state
        snap = job.snapshot()
        encoded = json.loads(json.dumps(snap))
        assert UpdateJob.from_snapshot(encoded, self.policy).snapshot() == snap


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(actions, min_size=1, max_size=40),
    st.integers(1, 3),
    st.booleans(),
)
def test_random_inputs_keep_the_invariants(
    seq: list[tuple[Any, ...]], max_attempts: int, prefer_pull: bool
) -> None:
    h = Harness(JobPolicy(max_attempts=max_attempts, prefer_pull=prefer_pull))
    for action in seq:
        h.apply(action)


@settings(max_examples=150, deadline=None)
@given(st.lists(actions, min_size=1, max_size=40))
def test_random_inputs_after_a_start_keep_the_invariants(seq: list[tuple[Any, ...]]) -> None:
    h = Harness(JobPolicy(max_attempts=2))
    h.apply(("start",))
    assert isinstance(h.job.snapshot()["pending"], dict)
    assert any(v == "read_facts" for v in h.job.snapshot()["pending"].values())
    for action in seq:
        h.apply(action)


@settings(max_examples=300, deadline=None)
@given(st.lists(guided, min_size=1, max_size=40), st.integers(1, 3), st.booleans())
def test_random_plausible_device_behaviour_keeps_the_invariants(
    seq: list[tuple[Any, ...]], max_attempts: int, queue_mode: bool
) -> None:
    h = Harness(JobPolicy(max_attempts=max_attempts))
    h.apply(("start",))
    if queue_mode:
        queued = facts(queue_mode=True, lifetime_s=600)
        h.check(h.job.state, h.job.on_facts(queued, h.now), queued)
    for action in seq:
        h.apply(action)


def test_read_facts_is_the_first_device_command() -> None:
    job = UpdateJob("j", "dev-1", TARGET)
    out = job.start(T0)
    device = [c for c in out if c.expects_result]
    assert len(device) == 1 and isinstance(device[0], ReadFacts)
