"""Helpers for the pure UpdateJob tests: a target, device facts, and a driver that plays
the I/O shell with an injected clock (no time passes, nothing sleeps)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from fotakit.updates.job import (
    TERMINAL_STATES,
    TRANSITIONS,
    Command,
    DeviceFacts,
    Finish,
    JobPolicy,
    JobState,
    JobTarget,
    Log,
    Phase,
    RadioFigures,
    SetTimer,
    UpdateJob,
)

OLD = "1.1.1"
NEW = "1.1.10"
T0 = 1_000_000.0

TARGET = JobTarget(
    package_id="0123456789abcdef",
    version=NEW,
    size=200_000,
    uri_coap="coap://127.0.0.1:5683/fw/0123456789abcdef",
    uri_http="http://127.0.0.1:8080/fw/0123456789abcdef",
    uri_coap_payload="coap://127.0.0.1:5683/fw/0123456789abcdef/payload",
    uri_http_payload="http://127.0.0.1:8080/fw/0123456789abcdef/payload",
    payload_size=190_000,
)

GOOD_RADIO = RadioFigures(bearer=6, rssi_dbm=-85, link_quality=-10)
POOR_RADIO = RadioFigures(bearer=6, rssi_dbm=-118, link_quality=-19)

C = TypeVar("C", bound=Command)


def facts(**changes: Any) -> DeviceFacts:
    """Facts of a healthy LwM2M 1.1 device on OLD, Object 5 Idle, pull and push."""
    base = DeviceFacts(
        endpoint="dev-1",
        lwm2m_version="1.1",
        queue_mode=False,
        protocols=(0, 2),
        delivery_method=2,
        firmware_version=OLD,
        pkg_version=None,
        fw_state=0,
        fw_result=0,
        has_cancel=True,
        radio=GOOD_RADIO,
        rtt_s=0.05,
    )
    return replace(base, **changes)


def of(commands: list[Command], kind: type[C]) -> list[C]:
    return [c for c in commands if isinstance(c, kind)]


def logs(commands: list[Command], event: str | None = None) -> list[Log]:
    return [c for c in of(commands, Log) if event is None or c.event == event]


class Driver:
    """Plays the shell: feeds inputs at ``now``, remembers every command."""

    def __init__(
        self,
        policy: JobPolicy | None = None,
        target: JobTarget = TARGET,
        job: UpdateJob | None = None,
        now: float = T0,
    ) -> None:
        self.job = job or UpdateJob("job-1", "dev-1", target, policy or JobPolicy())
        self.now = now
        self.commands: list[Command] = []
        self.last: list[Command] = []

    @property
    def state(self) -> JobState:
        return self.job.state

    def _take(self, out: list[Command]) -> list[Command]:
        self.last = out
        self.commands.extend(out)
        return out

    def pending(self, kind: type[C]) -> C:
        """The latest command of ``kind`` that still awaits its result."""
        open_ids = self.job.snapshot()["pending"]
        for c in reversed(self.commands):
            if isinstance(c, kind) and c.command_id in open_ids:
                return c
        raise AssertionError(f"no pending {kind.__name__} in state {self.state}")

    def has_pending(self, kind: type[Command]) -> bool:
        try:
            self.pending(kind)
        except AssertionError:
            return False
        return True

    # inputs
    def start(self, f: DeviceFacts | None = None) -> list[Command]:
        return self._take(self.job.start(self.now, f))

    def facts(self, f: DeviceFacts | None = None, **changes: Any) -> list[Command]:
        from fotakit.updates.job import ReadFacts

        read = self.pending(ReadFacts)
        f = f or facts(**changes)
        return self._take(self.job.on_facts(f, self.now, command_id=read.command_id))

    def fw(self, state: int, result: int = 0, source: str = "observe") -> list[Command]:
        return self._take(self.job.on_firmware_state(state, result, self.now, source=source))

    def ok(self, kind: type[Command]) -> list[Command]:
        c = self.pending(kind)
        return self._take(self.job.on_command_result(c.command_id, True, None, self.now))

    def fail(self, kind: type[Command], code: str) -> list[Command]:
        c = self.pending(kind)
        return self._take(self.job.on_command_result(c.command_id, False, code, self.now))

    def register(self, kind: str = "register", f: DeviceFacts | None = None) -> list[Command]:
        return self._take(self.job.on_registered(f, self.now, kind=kind))  # type: ignore[arg-type]

    def cancel(self) -> list[Command]:
        return self._take(self.job.cancel(self.now))

    def hold(self, seconds: float = 60.0) -> list[Command]:
        return self._take(self.job.hold(self.now + seconds, self.now))

    def timer(self) -> list[Command]:
        """Jump to the job's deadline and fire the timer."""
        assert self.job.deadline is not None, f"no timer in {self.state}"
        self.now = max(self.now, self.job.deadline)
        return self._take(self.job.on_timer(self.now))

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def restore(self, policy: JobPolicy | None = None) -> list[Command]:
        """Snapshot through JSON, rebuild, resume: a server restart."""
        import json

        snap = json.loads(json.dumps(self.job.snapshot()))
        self.job = UpdateJob.from_snapshot(snap, policy or self.job.policy)
        return self._take(self.job.resume(self.now))

    def finishes(self) -> list[Finish]:
        return of(self.commands, Finish)

    def timers(self) -> list[SetTimer]:
        return of(self.commands, SetTimer)


# -- positions: a driver placed in each non-terminal state -------------------------------------
def at_pending(policy: JobPolicy | None = None) -> Driver:
    return Driver(policy)


def at_waiting(policy: JobPolicy | None = None) -> Driver:
    d = Driver(policy)
    d.hold(60.0)
    assert d.state is JobState.WAITING
    return d


def at_starting(policy: JobPolicy | None = None) -> Driver:
    d = Driver(policy)
    d.start()
    assert d.state is JobState.STARTING
    return d


def at_delivering(policy: JobPolicy | None = None, **fact_changes: Any) -> Driver:
    d = at_starting(policy)
    d.facts(**fact_changes)
    assert d.state is JobState.DELIVERING, d.state
    return d


def at_downloaded(policy: JobPolicy | None = None) -> Driver:
    from fotakit.updates.job import WriteUri

    d = at_delivering(policy)
    d.ok(WriteUri)
    d.fw(1)
    d.fw(2)
    assert d.state is JobState.DOWNLOADED
    return d


def at_downloaded_idle(policy: JobPolicy | None = None) -> Driver:
    """DOWNLOADED with no Execute in flight (it was refused 4.05: a re-read decides)."""
    from fotakit.updates.job import Execute

    d = at_downloaded(policy)
    d.fail(Execute, "4.05")
    assert d.job.phase is Phase.DOWNLOADED
    return d


def at_resetting(policy: JobPolicy | None = None) -> Driver:
    """STARTING, resetting a leftover download (empty Package URI written)."""
    d = at_starting(policy)
    d.facts(fw_state=1, fw_result=0)
    assert d.job.phase is Phase.RESETTING
    return d


def at_busy(policy: JobPolicy | None = None) -> Driver:
    """STARTING, Object 5 Updating with someone else's update."""
    d = at_starting(policy)
    d.facts(fw_state=3, fw_result=0)
    assert d.job.phase is Phase.BUSY
    return d


def at_installing(policy: JobPolicy | None = None) -> Driver:
    from fotakit.updates.job import Execute

    d = at_downloaded(policy)
    d.ok(Execute)
    assert d.state is JobState.INSTALLING
    return d


def at_rebooting(policy: JobPolicy | None = None) -> Driver:
    d = at_installing(policy)
    d.fw(3)
    d.register()
    assert d.state is JobState.REBOOTING
    return d


def at_cancelling(policy: JobPolicy | None = None) -> Driver:
    d = at_delivering(policy)
    d.cancel()
    assert d.state is JobState.CANCELLING
    return d


POSITIONS: dict[JobState, Callable[[], Driver]] = {
    JobState.PENDING: at_pending,
    JobState.WAITING: at_waiting,
    JobState.STARTING: at_starting,
    JobState.DELIVERING: at_delivering,
    JobState.DOWNLOADED: at_downloaded,
    JobState.INSTALLING: at_installing,
    JobState.REBOOTING: at_rebooting,
    JobState.CANCELLING: at_cancelling,
}

#: A driver placed in each non-terminal phase (the rows of the transition table).
PHASES: dict[Phase, Callable[[], Driver]] = {
    Phase.PENDING: at_pending,
    Phase.WAITING: at_waiting,
    Phase.STARTING: at_starting,
    Phase.RESETTING: at_resetting,
    Phase.BUSY: at_busy,
    Phase.DELIVERING: at_delivering,
    Phase.DOWNLOADED: at_downloaded_idle,
    Phase.EXECUTING: at_downloaded,
    Phase.INSTALLING: at_installing,
    Phase.REBOOTING: at_rebooting,
    Phase.CANCELLING: at_cancelling,
}

assert {p.state for p, _ in TRANSITIONS} - TERMINAL_STATES == set(POSITIONS)
assert {p for p, _ in TRANSITIONS if not p.state.terminal} == set(PHASES)
