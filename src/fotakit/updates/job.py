"""The per-device update job, pure: one device, one target package, no I/O, no clock.

Theory of operation
-------------------
An :class:`UpdateJob` takes one device from its current firmware to ``target.version``
through Object 5 (OMA LwM2M TS Core 1.2 Appendix E.6, object ``5.xml``). It never does
I/O: every input method (:meth:`~UpdateJob.start`, :meth:`~UpdateJob.on_facts`,
:meth:`~UpdateJob.on_firmware_state`, :meth:`~UpdateJob.on_registered`,
:meth:`~UpdateJob.on_command_result`, :meth:`~UpdateJob.on_timer`,
:meth:`~UpdateJob.cancel`, :meth:`~UpdateJob.hold`, :meth:`~UpdateJob.resume`) takes the
time ``now`` (epoch seconds) from the caller and returns the list of :class:`Command` s the
I/O shell (``fotakit.updates.engine_jobs``) carries out, in order. Every command has a
unique ``command_id``; operations on the device are answered with
:meth:`~UpdateJob.on_command_result` (reads may also answer with
:meth:`~UpdateJob.on_facts`).

The job is a transition table, shaped like the device side's Object 5 machine
(:mod:`fotakit.agent.fsm`). Its rows are keyed by (:class:`Phase`, :class:`Input`); a
:class:`Phase` is a :class:`JobState` (the public, persisted name) or a finer step inside
one (:data:`PHASE_STATE` maps each phase to its state)::

    phase       state        what the job waits for
    pending     pending      start
    waiting     waiting      its timer (throttle, retry backoff, window, link, deferral)
    starting    starting     the read of /5/0, /3/0/3, /4/0
    resetting   starting     the answer to an empty /5/0/1 (reset) and the re-read
    busy        starting     Object 5 Updating with someone else's update: Idle, or the
                             one deadline counted from when that was first seen
    delivering  delivering   Downloading -> Downloaded (Package URI written or push)
    downloaded  downloaded   the decision to Execute (window, /5/0/14, a re-read)
    executing   downloaded   the answer to Execute /5/0/2
    installing  installing   State Updating to end (Idle, or Downloaded + Result 8/11)
    rebooting   rebooting    the re-registration and the version that proves success
    cancelling  cancelling   Idle after Cancel /5/0/10 or an empty /5/0/1

:data:`TRANSITIONS` maps each (phase, input) pair to a :class:`Row`: the handler that
decides, and the phases it may lead to. A pair that is not in the table, or a handler that
leads elsewhere than its row allows, raises :class:`TableViolation` naming phase and input,
and the job is left exactly as it was (the shell logs it; tests fail on it). Inputs that
are legitimately meaningless in a phase — a notification before the start, a result of a
command the job no longer waits for (:attr:`Input.STALE_RESULT`), anything after the end —
have explicit rows whose handler records why they are ignored. Everything that affects the
job's state lives in this file.

The path of a job::

    PENDING -start-> STARTING (read /5/0, /3/0/3, /4/0)
        -> SUCCEEDED at once if /3/0/3 already equals the target (exact string equality)
        -> reset first (empty Package URI) when Object 5 is not Idle      [resetting]
        -> wait for someone else's update (one deadline), then FAILED device_busy [busy]
        -> DELIVERING (Write /5/0/1, or push /5/0/0)   [WAITING: window, poor link, retry]
        -> DOWNLOADED (Execute /5/0/2, or /5/0/14 installs by itself) [WAITING: deferred]
        -> INSTALLING (State Updating) -> REBOOTING (the device re-registers)
        -> SUCCEEDED only when the device re-registered and /3/0/3 (or /5/0/7 when /3/0/3
           is absent) equals the target exactly and Object 5 is no longer Updating;
           FAILED ``rolled_back`` when it came back on its old version.

Rules the handlers encode:

- /5/0/3 and /5/0/5 arrive by observation *and* by the read the shell does on every
  Register and Update (observations die with a reboot; pmin coalesces fast changes);
  facts carrying /5/0/3 and /5/0/5 go through the row of the firmware-state input, so a
  change lost to pmin is recovered by the read.
- Every non-terminal phase except WAITING has a deadline (:class:`JobPolicy`); past it
  the job retries (before the install was started) or ends TIMED_OUT. The DELIVERING
  deadline is at least the transfer time sized from package size and RTT
  (:func:`fotakit.updates.delivery.transfer_timeout`), never a fixed 2 minutes.
- Queue-mode devices: commands are issued at once (the server queues them), but the
  deadline of a state counts from the device's next contact after entering the state,
  bounded by its lifetime so it is never infinite.
- Retryable failures (:attr:`FailureReason.retryable`) go to WAITING with exponential
  backoff while ``attempts < policy.max_attempts``; a server-side wait (rate limit,
  concurrency cap, maintenance window, deferral) never counts as an attempt.
- Once the install was started (Execute accepted, or State Updating seen) nothing is
  retried: no device is updated twice by one job. Facts naming the target version after
  our delivery (a retry pending, say) count as a started install: REBOOTING, never a
  second delivery.
- A Register while DOWNLOADED after an Execute was sent and not refused (its answer may
  be lost in the reboot) is the reboot into the new image, as in INSTALLING.
- Update Result 11 (Deferred, object 1.1) with State Downloaded, seen while DOWNLOADED or
  after Execute was accepted (INSTALLING): WAITING ``deferred``, Execute again after
  ``policy.defer_retry_s``, bounded by /5/0/13 Maximum Defer Period and
  ``policy.max_deferrals``.
- Object 5 not Idle at the start: reset (empty Package URI), re-read; a device still
  Downloading/Downloaded after ``policy.max_resets`` acknowledged resets ends FAILED
  ``object5_stuck``. Object 5 Updating with someone else's update: ONE deadline
  (``updating_timeout_s``) from when it was first seen, then FAILED ``device_busy``.
- A failed (or out-of-time) push leaves a partial image nobody will complete: a device
  found Downloading/Downloaded by the retry is reset (empty Package URI), never waited for.
- Protocol fallback: Update Result 9 (unsupported protocol) while delivering, or
  ``connection_lost`` twice over the same scheme, delivers again over the next scheme of
  ``policy.protocol_order`` that /5/0/8 lists and the repository offers (event
  ``protocol_fallback``; Result 9 does not count as an attempt); without one the failure
  stands.
- A version read after the reboot that missed /3/0/3 is repeated on the job's own
  (``policy.version_rereads`` times, then ``version_unknown``), not left to the next Update.
- Cancel: before anything reached the device -> CANCELLED at once; while delivering or
  downloaded -> CANCELLING (Execute /5/0/10 on 1.1+ clients, else an empty Package URI),
  CANCELLED when Idle is seen or the cancel deadline passes; while installing or
  rebooting the cancel is rejected (the spec answers 4.05) and the job goes on.
- Every terminal failure carries :attr:`UpdateJob.detail`, a sentence, when the job knows
  more than the reason code (what it saw, which setting decides).
- :meth:`UpdateJob.snapshot` is JSON-able; a job built from it and then
  :meth:`~UpdateJob.resume` d re-reads the device instead of repeating the last
  operation (a job restored in DELIVERING reads /5/0/3 rather than rewriting the URI).
  Snapshots written before phases existed (no ``"phase"`` key) are read too.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from fotakit.lwm2m.objects import State, UpdateResult
from fotakit.updates.delivery import (
    Choice,
    DeliveryPlan,
    DeliveryPolicy,
    DeviceFacts,
    JobTarget,
    RadioFigures,
    choose_delivery,
)
from fotakit.updates.reasons import FailureReason

# -- paths the commands name ------------------------------------------------------------------
FIRMWARE_STATE_PATHS: Final = ("/5/0/3", "/5/0/5")
"""State and Update Result: read on every Register/Update, observed throughout."""
ALL_FACT_PATHS: Final = ("/5/0", "/3/0/3", "/4/0")
"""Everything a delivery decision needs."""
VERSION_PATHS: Final = ("/3/0/3", "/5/0/7", "/5/0/3", "/5/0/5")
"""What proves (or disproves) success after re-registration."""
UPDATE_PATH: Final = "/5/0/2"
SEVERITY_PATH: Final = "/5/0/11"

#: Command-result codes of the shell that mean "the device did not answer".
NO_ANSWER_CODES: Final = frozenset({"timeout", "unreachable", "not_registered", "superseded"})
"""Codes of a request that got no answer (``superseded``: abandoned because the device
registered anew before answering, see :meth:`fotakit.updates.engine_io.DeviceIO.superseded`)."""


class JobState(enum.StrEnum):
    """The public state of a job: stored, shown by the REST API, CLI and dashboard.
    The one definition of these names (with :data:`TERMINAL_STATES`)."""

    PENDING = "pending"
    """Created, not started."""
    WAITING = "waiting"
    """Holding back: rate limit, window, poor link, deferral, retry backoff (timer set)."""
    STARTING = "starting"
    """Reading the device's facts; resetting Object 5 when it is not Idle."""
    DELIVERING = "delivering"
    """Package URI written or push running; following Downloading."""
    DOWNLOADED = "downloaded"
    """The image is on the device; Execute /5/0/2 sent (or /5/0/14 installs by itself)."""
    INSTALLING = "installing"
    """The device accepted Execute / is Updating."""
    REBOOTING = "rebooting"
    """Waiting for the re-registration and the version that proves success."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: Final = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED}
)
FAILED_STATES: Final = frozenset({JobState.FAILED, JobState.TIMED_OUT})
"""Terminal states that count as a failure (a campaign's error threshold, its failures)."""
TERMINAL: Final = TERMINAL_STATES
"""Alias of :data:`TERMINAL_STATES`."""

MOVING_STATES: Final = frozenset(
    {
        JobState.DELIVERING,
        JobState.DOWNLOADED,
        JobState.INSTALLING,
        JobState.REBOOTING,
        JobState.CANCELLING,
    }
)
"""States in which the device should report changes by itself (the shell polls a job
that heard nothing for a while in these)."""


class Phase(enum.StrEnum):
    """The rows of :data:`TRANSITIONS`: a :class:`JobState` or a step inside one
    (:data:`PHASE_STATE`). Stored in the snapshot; not shown outside the job log."""

    PENDING = "pending"
    WAITING = "waiting"
    STARTING = "starting"
    RESETTING = "resetting"
    """STARTING: an empty Package URI was written to bring Object 5 back to Idle."""
    BUSY = "busy"
    """STARTING: Object 5 is Updating with an update that is not ours."""
    DELIVERING = "delivering"
    DOWNLOADED = "downloaded"
    EXECUTING = "executing"
    """DOWNLOADED: Execute /5/0/2 sent, its answer not back yet."""
    INSTALLING = "installing"
    REBOOTING = "rebooting"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def state(self) -> JobState:
        return PHASE_STATE[self]


PHASE_STATE: Final[dict[Phase, JobState]] = {
    **{p: JobState(p.value) for p in Phase if p.value in {s.value for s in JobState}},
    Phase.RESETTING: JobState.STARTING,
    Phase.BUSY: JobState.STARTING,
    Phase.EXECUTING: JobState.DOWNLOADED,
}
TERMINAL_PHASES: Final = frozenset(p for p, s in PHASE_STATE.items() if s in TERMINAL_STATES)


class Input(enum.StrEnum):
    """What can happen to a job (the columns of :data:`TRANSITIONS`)."""

    START = "start"
    RESUME = "resume"
    FACTS = "facts"
    FIRMWARE_STATE = "firmware_state"
    REGISTERED = "registered"
    UPDATED = "updated"
    COMMAND_OK = "command_ok"
    COMMAND_FAILED = "command_failed"
    STALE_RESULT = "stale_result"
    """A result of a command the job does not wait for (sent before a restart, or
    answered after the job dropped it)."""
    TIMER = "timer"
    CANCEL = "cancel"
    HOLD = "hold"


class Wait(enum.StrEnum):
    """Why a job is WAITING; only RETRY follows a failure (and an attempt)."""

    THROTTLE = "throttle"
    RETRY = "retry"
    LINK = "link"
    WINDOW = "window"
    EXECUTE_WINDOW = "execute_window"
    DEFERRED = "deferred"


class TableViolation(Exception):
    """An input the table has no row for in this phase, or a handler that led to a phase
    its row does not allow: a bug of the caller or of this file. The job is unchanged."""

    def __init__(self, phase: Phase, input_: Input, to: Phase | None = None) -> None:
        where = f"phase {phase.value} (state {phase.state.value})"
        if to is None:
            msg = f"input {input_.value} has no row in {where}"
        else:
            msg = f"input {input_.value} in {where} led to phase {to.value}, not in its row"
        super().__init__(msg)
        self.phase = phase
        self.state = phase.state
        self.input = input_
        self.to = to


# -- commands -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Base of everything a job asks the shell to do; ``command_id`` is unique per job
    (``"<job_id>:<n>"``, the counter survives snapshots)."""

    command_id: str

    @property
    def kind(self) -> str:
        return _KIND_NAMES[type(self).__name__]

    @property
    def expects_result(self) -> bool:
        """True for device operations: answer with :meth:`UpdateJob.on_command_result`."""
        return not isinstance(self, SetTimer | Log | Finish)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadFacts(Command):
    """Read these paths; answer with :meth:`UpdateJob.on_facts` (``command_id`` set),
    or ``on_command_result(ok=False, code)`` when nothing could be read."""

    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Observe(Command):
    """(Re-)observe these paths; feed notifications to :meth:`UpdateJob.on_firmware_state`
    with ``source="observe"``. A failure is logged, not fatal (reads cover it)."""

    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteUri(Command):
    """Write /5/0/1 Package URI (pull)."""

    uri: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetUri(Command):
    """Write an empty /5/0/1: resets Object 5 to Idle (all object versions)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Push(Command):
    """Write /5/0/0 Package block-wise (Block1) with this request timeout."""

    package_id: str
    form: str
    size: int
    timeout_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Execute(Command):
    """Execute a resource (``/5/0/2`` Update)."""

    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteResource(Command):
    """Write one resource (``/5/0/11`` Severity); a failure is logged, not fatal."""

    path: str
    value: int | str | bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel(Command):
    """Stop the update on the device: abort a running push of this job first, then
    ``method="execute"``: Execute /5/0/10 Cancel (object 1.1, LwM2M 1.1+);
    ``method="reset"``: write an empty /5/0/1 (1.0 clients)."""

    method: Literal["execute", "reset"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SetTimer(Command):
    """Call :meth:`UpdateJob.on_timer` at ``at`` (epoch s); replaces the previous timer.
    ``at=None`` clears it."""

    at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Log(Command):
    """One entry of the per-device event log."""

    event: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish(Command):
    """The job reached a terminal state: persist it, count it, release its resources."""

    state: JobState
    reason: FailureReason | None
    detail: str | None = None
    """A sentence saying what the job saw, when it knows more than ``reason``."""


CancelUpdate = Cancel
"""Alias of :class:`Cancel`."""

_KIND_NAMES: Final = {
    "ReadFacts": "read_facts",
    "Observe": "observe",
    "WriteUri": "write_uri",
    "ResetUri": "reset_uri",
    "Push": "push",
    "Execute": "execute",
    "WriteResource": "write_resource",
    "Cancel": "cancel",
    "SetTimer": "set_timer",
    "Log": "log",
    "Finish": "finish",
}

WindowHook = Callable[[float], float | None]
"""``window(now)`` -> None when writes/executes may happen now, else the next opening."""


@dataclass(frozen=True, slots=True)
class JobPolicy(DeliveryPolicy):
    """Deadlines, retries and server-side gates of a job (plus the delivery thresholds of
    :class:`~fotakit.updates.delivery.DeliveryPolicy`). Times in seconds."""

    start_timeout_s: float = 120.0
    """Reading the facts / resetting Object 5 (STARTING)."""
    downloading_timeout_s: float = 600.0
    """DELIVERING, at least; the transfer timeout sized from the package may be longer."""
    downloaded_timeout_s: float = 300.0
    """DOWNLOADED: Execute answered / the automatic install started."""
    updating_timeout_s: float = 900.0
    """INSTALLING: State Updating until the device re-registers."""
    reregistration_timeout_s: float = 900.0
    """REBOOTING: re-registration and a confirmed version."""
    cancel_timeout_s: float = 120.0
    queue_contact_grace_s: float = 86400.0
    """Queue mode: how long to wait for the next contact when the lifetime is unknown."""
    max_attempts: int = 3
    backoff_base_s: float = 30.0
    backoff_max_s: float = 3600.0
    backoff_jitter: float = 0.2
    """Fraction of the backoff spread deterministically per job and attempt."""
    link_recheck_s: float = 600.0
    """Push-only device on a poor link: read /4 again after this long."""
    link_wait_max_s: float = 86400.0
    """...and give up (``link_too_poor``) after this long."""
    defer_retry_s: float = 3600.0
    """Result 11 Deferred: Execute again after this long (within /5/0/13)."""
    max_deferrals: int = 24
    version_rereads: int = 3
    """REBOOTING: read the version paths again this many times when a read missed /3/0/3
    (the device has it), then end ``version_unknown``."""
    severity: int | None = None
    """Write /5/0/11 Severity before Execute (when the device has it); None: leave it."""
    window: WindowHook | None = None
    """Maintenance window: writes and executes only while ``window(now)`` is None."""
    max_resets: int = 2
    """STARTING: reset writes (empty /5/0/1) tried on an Object 5 that is not Idle before
    the job ends ``object5_stuck``."""
    profile: str = "default"
    """Name of the device profile this policy came from (set by the shell; named in
    failure details)."""


def version_of(facts: DeviceFacts) -> str | None:
    """The running version: /3/0/3 Firmware Version, or /5/0/7 PkgVersion without it."""
    if facts.firmware_version is not None:
        return facts.firmware_version
    return facts.pkg_version


def _reason_for_code(code: str | None) -> FailureReason:
    if code in NO_ANSWER_CODES:
        return FailureReason.UNREACHABLE
    if code == "4.13":
        return FailureReason.NOT_ENOUGH_STORAGE
    return FailureReason.DEVICE_ERROR


def _state(value: int | None) -> State | None:
    try:
        return None if value is None else State(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Event:
    """One input as the handlers see it (only the fields of its kind are set)."""

    input: Input
    now: float
    facts: DeviceFacts | None = None
    command_id: str | None = None
    kind: str | None = None
    """The kind of the command a result answers (``"write_uri"``, ...)."""
    code: str | None = None
    fw_state: int = 0
    fw_result: int = 0
    source: str = "observe"
    until: float = 0.0
    register: bool = True
    """REGISTERED (a new registration) rather than UPDATED."""


class UpdateJob:
    """One device, one target: see the module docstring. Not thread-safe."""

    def __init__(
        self,
        job_id: str,
        endpoint: str,
        target: JobTarget,
        policy: JobPolicy | None = None,
        *,
        snapshot: dict[str, Any] | None = None,
    ) -> None:
        self.job_id = job_id
        self.endpoint = endpoint
        self.target = target
        self.policy = policy or JobPolicy()
        self.phase = Phase.PENDING
        self.reason: FailureReason | None = None
        self.detail: str | None = None
        """A sentence on why the job ended as it did, when it knows more than ``reason``."""
        self.attempts = 0
        self.deadline: float | None = None
        self.facts = DeviceFacts(endpoint=endpoint)
        self.old_version: str | None = None
        self.wait: Wait | None = None
        self.plan: DeliveryPlan | None = None
        self._counter = 0
        self._pending: dict[str, str] = {}
        self._have_facts = False  # a facts read answered since STARTING was entered
        self._delivered = False  # a URI or package was sent by this job
        self._delivery_cid: str | None = None  # the Write/Push of the current delivery
        self._write_acked = False
        self._seen_downloading = False
        # an Execute was sent and not refused (its answer may be lost): a Register now is
        # the reboot into the new image, as in INSTALLING
        self._execute_attempted = False
        self._executed = False  # install started: never retried
        # our push failed: a Downloading/Downloaded device holds a partial image of a
        # transfer nobody sends any more; reset it before delivering again
        self._push_failed = False
        self._version_rereads = 0
        self._reregistered = False
        self._resumed = False
        self._cancel_method: str | None = None
        self._link_wait_since: float | None = None
        self._deferrals = 0
        self._defer_deadline: float | None = None
        self._contact_timeout: float | None = None
        self._resets = 0  # reset writes sent in this STARTING
        self._reset_acked = False  # the last reset write was answered
        self._busy_since: float | None = None  # someone else's update first seen
        self._excluded: list[str] = []  # schemes the device refused (protocol fallback)
        self._lost_on: dict[str, int] = {}  # connection_lost per scheme
        self._out: list[Command] = []
        if snapshot is not None:
            self._restore(snapshot)

    @property
    def state(self) -> JobState:
        """The public state (:data:`PHASE_STATE` of :attr:`phase`)."""
        return PHASE_STATE[self.phase]

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    # -- public inputs --------------------------------------------------------------------------
    def start(self, now: float, facts: DeviceFacts | None = None) -> list[Command]:
        """Start (or release a throttled job); ``facts`` may carry registration facts
        (LwM2M version, queue mode, lifetime, RTT) known before any read."""
        return self._apply(Event(Input.START, now, facts=facts), {})

    def resume(self, now: float) -> list[Command]:
        """After :meth:`from_snapshot` in a new process: re-read, re-observe, re-arm."""
        return self._apply(Event(Input.RESUME, now), {})

    def on_facts(
        self, facts: DeviceFacts, now: float, *, command_id: str | None = None
    ) -> list[Command]:
        details = {"facts": _compact(facts), "command_id": command_id}
        return self._apply(Event(Input.FACTS, now, facts=facts, command_id=command_id), details)

    def on_firmware_state(
        self, state: int, result: int, now: float, *, source: str = "observe"
    ) -> list[Command]:
        """/5/0/3 and /5/0/5 seen (``source``: "observe" or "read")."""
        details = {"fw_state": state, "fw_result": result, "source": source}
        ev = Event(Input.FIRMWARE_STATE, now, fw_state=state, fw_result=result, source=source)
        return self._apply(ev, details)

    def on_registered(
        self,
        facts: DeviceFacts | None,
        now: float,
        *,
        kind: Literal["register", "update"] = "register",
    ) -> list[Command]:
        """The device sent a Register (new registration: observations are gone) or an
        Update; both mean it is awake now (queue mode)."""
        which = Input.REGISTERED if kind == "register" else Input.UPDATED
        ev = Event(which, now, facts=facts, register=kind == "register")
        return self._apply(ev, {"kind": kind})

    def on_command_result(
        self, command_id: str, ok: bool, code: str | None, now: float
    ) -> list[Command]:
        kind = self._pending.get(command_id)
        if kind is None:
            which = Input.STALE_RESULT
        else:
            which = Input.COMMAND_OK if ok else Input.COMMAND_FAILED
        details = {"command_id": command_id, "code": code, "command": kind, "ok": ok}
        ev = Event(which, now, command_id=command_id, kind=kind, code=None if ok else code)
        return self._apply(ev, details)

    def on_timer(self, now: float) -> list[Command]:
        return self._apply(Event(Input.TIMER, now), {"deadline": self.deadline})

    def cancel(self, now: float) -> list[Command]:
        return self._apply(Event(Input.CANCEL, now), {})

    def hold(self, until: float, now: float, *, why: str = "throttle") -> list[Command]:
        """A server-side throttle (rate limit, concurrency cap): wait until ``until``.
        Never counts as an attempt."""
        return self._apply(Event(Input.HOLD, now, until=until), {"until": until, "why": why})

    # -- persistence ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue this job elsewhere (JSON-able)."""
        return {
            "job_id": self.job_id,
            "endpoint": self.endpoint,
            "target": self.target.to_json(),
            "state": str(self.state),
            "phase": str(self.phase),
            "reason": None if self.reason is None else str(self.reason),
            "detail": self.detail,
            "attempts": self.attempts,
            "deadline": self.deadline,
            "facts": self.facts.to_json(),
            "old_version": self.old_version,
            "wait": None if self.wait is None else str(self.wait),
            "plan": None if self.plan is None else self.plan.to_json(),
            "counter": self._counter,
            "pending": dict(self._pending),
            "flags": {
                "have_facts": self._have_facts,
                "delivered": self._delivered,
                "write_acked": self._write_acked,
                "seen_downloading": self._seen_downloading,
                # the phases that were flags before: kept for readers of the old format
                "resetting": self.phase is Phase.RESETTING,
                "execute_sent": self.phase is Phase.EXECUTING,
                "execute_attempted": self._execute_attempted,
                "executed": self._executed,
                "push_failed": self._push_failed,
                "reregistered": self._reregistered,
                "resumed": self._resumed,
                "reset_acked": self._reset_acked,
            },
            "cancel_method": self._cancel_method,
            "link_wait_since": self._link_wait_since,
            "deferrals": self._deferrals,
            "defer_deadline": self._defer_deadline,
            "contact_timeout": self._contact_timeout,
            "version_rereads": self._version_rereads,
            "delivery_command": self._delivery_cid,
            "resets": self._resets,
            "busy_since": self._busy_since,
            "excluded_protocols": list(self._excluded),
            "connection_lost": dict(self._lost_on),
        }

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any], policy: JobPolicy | None = None) -> UpdateJob:
        """A job from :meth:`snapshot` output, also of the format without phases."""
        return cls(
            snap["job_id"],
            snap["endpoint"],
            JobTarget.from_json(snap["target"]),
            policy,
            snapshot=snap,
        )

    def _restore(self, snap: dict[str, Any]) -> None:
        flags = snap["flags"]
        state = JobState(snap["state"])
        if "phase" in snap:
            self.phase = Phase(snap["phase"])
        elif state is JobState.STARTING and flags.get("resetting"):
            self.phase = Phase.RESETTING  # format without phases: the flags said it
        elif state is JobState.DOWNLOADED and flags.get("execute_sent"):
            self.phase = Phase.EXECUTING
        else:
            self.phase = Phase(state.value)
        self.reason = None if snap["reason"] is None else FailureReason(snap["reason"])
        self.detail = snap.get("detail")
        self.attempts = int(snap["attempts"])
        self.deadline = snap["deadline"]
        self.facts = DeviceFacts.from_json(snap["facts"])
        self.old_version = snap["old_version"]
        self.wait = None if snap["wait"] is None else Wait(snap["wait"])
        plan = snap["plan"]
        self.plan = (
            None
            if plan is None
            else DeliveryPlan(
                Choice(plan["choice"]),
                plan["reason"],
                uri=plan["uri"],
                form=plan["form"],
                size=plan["size"],
                timeout_s=plan["timeout_s"],
                failure=None if plan["failure"] is None else FailureReason(plan["failure"]),
                protocol=plan.get("protocol", _scheme_of(plan["uri"])),
            )
        )
        self._counter = int(snap["counter"])
        self._pending = dict(snap["pending"])
        self._have_facts = flags["have_facts"]
        self._delivered = flags["delivered"]
        self._write_acked = flags["write_acked"]
        self._seen_downloading = flags["seen_downloading"]
        self._execute_attempted = flags.get("execute_attempted", flags.get("execute_sent", False))
        self._executed = flags["executed"]
        self._push_failed = flags.get("push_failed", False)
        self._reregistered = flags["reregistered"]
        self._resumed = flags["resumed"]
        self._reset_acked = flags.get("reset_acked", False)
        self._cancel_method = snap["cancel_method"]
        self._link_wait_since = snap["link_wait_since"]
        self._deferrals = int(snap["deferrals"])
        self._defer_deadline = snap["defer_deadline"]
        self._contact_timeout = snap["contact_timeout"]
        self._version_rereads = int(snap.get("version_rereads", 0))
        self._delivery_cid = snap.get("delivery_command")
        self._resets = int(snap.get("resets", 1 if self.phase is Phase.RESETTING else 0))
        self._busy_since = snap.get("busy_since")
        self._excluded = list(snap.get("excluded_protocols", []))
        self._lost_on = {str(k): int(v) for k, v in snap.get("connection_lost", {}).items()}

    # -- the machine ----------------------------------------------------------------------------
    def _apply(self, ev: Event, details: dict[str, Any]) -> list[Command]:
        """Look up (phase, input) in :data:`TRANSITIONS` and run its handler; raise
        :class:`TableViolation` (job unchanged) when the table does not allow it."""
        before = self.phase
        row = TRANSITIONS.get((before, ev.input))
        if row is None:
            raise TableViolation(before, ev.input)
        saved = self.snapshot()
        try:
            self._log(
                "input",
                {"state": str(self.state), "phase": str(before), "input": str(ev.input), **details},
            )
            row.handler(self, ev)
            if self.phase not in row.to:
                raise TableViolation(before, ev.input, to=self.phase)
        except BaseException:
            self._restore(saved)  # a refused input changes nothing
            self._out = []
            raise
        return self._flush()

    def _next_id(self) -> str:
        self._counter += 1
        return f"{self.job_id}:{self._counter}"

    def _emit(self, command: Command) -> None:
        self._out.append(command)

    def _log(self, event: str, details: dict[str, Any] | None = None) -> None:
        self._emit(Log(command_id=self._next_id(), event=event, details=details or {}))

    def _device(self, make: Callable[[str], Command]) -> Command:
        """Emit a device operation, logged, and remember it until its result."""
        command = make(self._next_id())
        self._pending[command.command_id] = command.kind
        self._log("command", {"command": command.kind, **_command_details(command)})
        self._emit(command)
        return command

    def _read(self, paths: tuple[str, ...]) -> None:
        self._device(lambda cid: ReadFacts(command_id=cid, paths=paths))

    def _observe(self) -> None:
        self._device(lambda cid: Observe(command_id=cid, paths=FIRMWARE_STATE_PATHS))

    def _flush(self) -> list[Command]:
        out, self._out = self._out, []
        return out

    def _go(self, phase: Phase, now: float, timeout: float | None = None) -> None:
        """Enter ``phase``; arm its deadline (``timeout`` s) when given."""
        if phase is not self.phase:
            old = self.phase
            self.phase = phase
            if old.state is not phase.state:
                self._log("state", {"from": str(old.state), "to": str(phase.state)})
        if phase is not Phase.WAITING:
            self.wait = None
        if timeout is not None:
            self._arm(now, timeout)

    def _arm(self, now: float, timeout: float) -> None:
        if self.facts.queue_mode:
            # queue mode: the deadline counts from the device's next contact
            lifetime = self.facts.lifetime_s
            grace = float(lifetime) + 60.0 if lifetime else self.policy.queue_contact_grace_s
            self._contact_timeout = timeout
            self._set_timer(now + timeout + grace)
        else:
            self._contact_timeout = None
            self._set_timer(now + timeout)

    def _contact(self, now: float) -> None:
        """The device was heard from: a queue-mode deadline starts counting now."""
        if self._contact_timeout is not None and not self.terminal:
            timeout, self._contact_timeout = self._contact_timeout, None
            self._set_timer(now + timeout)

    def _set_timer(self, at: float | None) -> None:
        self.deadline = at
        self._emit(SetTimer(command_id=self._next_id(), at=at))

    def _finish(
        self,
        phase: Phase,
        reason: FailureReason | None,
        now: float,
        *,
        detail: str | None = None,
        **why: Any,
    ) -> None:
        self.reason = reason
        self.detail = detail if detail is not None else self._detail_for(reason)
        self._go(phase, now)
        self._contact_timeout = None
        self._pending.clear()
        if self.deadline is not None:
            self._set_timer(None)
        details = {"state": str(phase.state), "reason": None if reason is None else str(reason)}
        if self.detail is not None:
            details["detail"] = self.detail
        self._log("finished", {**details, **why})
        self._emit(
            Finish(command_id=self._next_id(), state=phase.state, reason=reason, detail=self.detail)
        )

    def _detail_for(self, reason: FailureReason | None) -> str | None:
        """The sentence for a reason the job knows more about than its code."""
        plan = self.plan
        if reason is FailureReason.UNSUPPORTED_PACKAGE and self._delivered_form() == "package":
            return (
                "the device refused the signed fotakit package (Update Result 6); profile "
                f"'{self.policy.profile}' sets payload_form=signed — devices that check their "
                "own image format need payload_form=bare"
            )
        if reason is FailureReason.UNSUPPORTED_PROTOCOL and plan is not None and plan.protocol:
            return (
                f"the device refused {plan.protocol} (Update Result 9) and /5/0/8 lists no "
                "other protocol the repository offers"
            )
        return None

    def _delivered_form(self) -> str:
        return self.plan.form if self.plan is not None else self.target.form

    def _can_retry(self, reason: FailureReason) -> bool:
        return reason.retryable and not self._executed and self.attempts < self.policy.max_attempts

    def _fail(
        self, reason: FailureReason, now: float, *, detail: str | None = None, **why: Any
    ) -> None:
        """A failure: retry after a backoff while the budget allows, else terminal."""
        if self._can_retry(reason):
            delay = self._backoff()
            self._log("retry", {"reason": str(reason), "attempt": self.attempts, "in_s": delay})
            self.reason = reason
            self._to_wait(Wait.RETRY, now + delay)
            return
        final = Phase.TIMED_OUT if reason is FailureReason.TIMED_OUT else Phase.FAILED
        self._finish(final, reason, now, detail=detail, **why)

    def _backoff(self) -> float:
        p = self.policy
        base = min(p.backoff_max_s, p.backoff_base_s * 2.0 ** max(0, self.attempts - 1))
        spread = zlib.crc32(f"{self.job_id}:{self.attempts}".encode()) / 0xFFFFFFFF
        return base * (1.0 + p.backoff_jitter * (2.0 * spread - 1.0))

    def _to_wait(self, why: Wait, until: float) -> None:
        if self.phase is not Phase.WAITING:
            self._log("state", {"from": str(self.state), "to": "waiting", "wait": str(why)})
            self.phase = Phase.WAITING
        self.wait = why
        self._contact_timeout = None
        self._set_timer(until)

    def _window_closed(self, now: float) -> float | None:
        hook = self.policy.window
        if hook is None:
            return None
        opens = hook(now)
        return None if opens is None else max(opens, now)

    def _timer_due(self, ev: Event) -> bool:
        if self.deadline is None or ev.now < self.deadline:
            self._log("timer_early", {"deadline": self.deadline})
            return False
        return True

    # -- handlers: start, hold, resume, cancel --------------------------------------------------
    def _h_ignore(self, ev: Event) -> None:
        """Rows whose input means nothing in the phase (see :func:`_ignoring`)."""
        why = _IGNORED.get((self.phase, ev.input), "nothing to do in this phase")
        self._log("ignored", {"input": str(ev.input), "why": why})

    def _h_start(self, ev: Event) -> None:
        if self.phase is Phase.WAITING and self.wait is not Wait.THROTTLE:
            self._log("start_ignored", {"wait": str(self.wait)})
            return
        if ev.facts is not None:
            self.facts = self.facts.merged(ev.facts)
        if self.attempts == 0:
            self.attempts = 1
        self._begin(ev.now)

    def _h_hold(self, ev: Event) -> None:
        until, now = ev.until, ev.now
        if self.phase is Phase.WAITING and self.wait is not Wait.THROTTLE:
            # already waiting for another reason (a retry keeps counting as one)
            self._set_timer(max(until, self.deadline or now))
            return
        self._to_wait(Wait.THROTTLE, max(until, now))

    def _begin(self, now: float) -> None:
        """(Re-)enter STARTING: read everything the decision needs."""
        self._have_facts = False
        self._resets = 0
        self._reset_acked = False
        self._busy_since = None
        self._go(Phase.STARTING, now, self.policy.start_timeout_s)
        self._read(ALL_FACT_PATHS)

    def _h_resume(self, ev: Event) -> None:
        self._pending.clear()
        self._resumed = True
        phase = self.phase
        if phase is Phase.PENDING:
            return
        if phase is Phase.WAITING:
            self._set_timer(self.deadline)
            return
        if phase is Phase.EXECUTING:
            self.phase = Phase.DOWNLOADED  # the Execute's answer went with the old process
        if phase is Phase.RESETTING:
            self.phase = Phase.STARTING  # the re-read decides; the resets sent still count
            self._reset_acked = False
        if phase in (Phase.STARTING, Phase.RESETTING, Phase.BUSY):
            self._read(ALL_FACT_PATHS)
        elif phase is Phase.CANCELLING:
            self._observe()
            self._send_cancel()
        else:
            self._observe()
            self._read(VERSION_PATHS if phase is Phase.REBOOTING else FIRMWARE_STATE_PATHS)
        self._set_timer(self.deadline)

    def _h_cancel_at_once(self, ev: Event) -> None:
        """Nothing of this job reached the device: cancelled without touching it."""
        if self._delivered:
            self._h_cancel(ev)
            return
        self._finish(Phase.CANCELLED, FailureReason.CANCELLED, ev.now, why="not started")

    def _h_cancel(self, ev: Event) -> None:
        """Something of this job reached the device (a URI, a package, a reset): undo it."""
        self._go(Phase.CANCELLING, ev.now, self.policy.cancel_timeout_s)
        self._send_cancel()

    def _h_cancel_rejected(self, ev: Event) -> None:
        self._log("cancel_rejected", {"state": str(self.state), "why": "installing"})

    def _send_cancel(self) -> None:
        facts = self.facts
        modern = facts.lwm2m_version is not None and facts.lwm2m_version != "1.0"
        method: Literal["execute", "reset"] = (
            "execute" if modern and facts.has_cancel is not False else "reset"
        )
        if self._cancel_method == "reset":
            method = "reset"
        self._cancel_method = method
        self._device(lambda cid: Cancel(command_id=cid, method=method))

    # -- handlers: registrations ----------------------------------------------------------------
    def _heard(self, ev: Event) -> None:
        if ev.facts is not None:
            self.facts = self.facts.merged(ev.facts)
        self._contact(ev.now)

    def _h_reg_contact(self, ev: Event) -> None:
        """WAITING: a Register/Update only says the device is awake."""
        self._heard(ev)

    def _h_reg_starting(self, ev: Event) -> None:
        self._heard(ev)
        self._read(ALL_FACT_PATHS if ev.register else FIRMWARE_STATE_PATHS)

    def _h_reg_follow(self, ev: Event) -> None:
        """Re-observe after a new registration (observations are gone), read the state."""
        self._heard(ev)
        if ev.register:
            self._observe()
        self._read(FIRMWARE_STATE_PATHS)

    def _h_reg_downloaded(self, ev: Event) -> None:
        if ev.register and (self.facts.auto_upgrade is True or self._execute_attempted):
            self._heard(ev)
            self._rebooted(ev.now)  # the Execute (or /5/0/14) did start the install
            return
        self._h_reg_follow(ev)

    def _h_reg_installing(self, ev: Event) -> None:
        if ev.register:
            self._heard(ev)
            self._rebooted(ev.now)
            return
        self._h_reg_follow(ev)

    def _h_reg_rebooting(self, ev: Event) -> None:
        self._heard(ev)
        if ev.register:
            self._reregistered = True
            self._observe()
        self._read(VERSION_PATHS)

    def _rebooted(self, now: float) -> None:
        self._reregistered = True
        self._executed = True
        self._go(Phase.REBOOTING, now, self.policy.reregistration_timeout_s)
        self._observe()
        self._read(VERSION_PATHS)

    # -- handlers: facts ------------------------------------------------------------------------
    def _take_facts(self, ev: Event) -> DeviceFacts:
        """Merge facts, close the read they answer (the oldest open one without an id)."""
        assert ev.facts is not None
        command_id = ev.command_id
        if command_id is None:
            command_id = next((c for c, k in self._pending.items() if k == "read_facts"), None)
        if command_id is not None:
            self._pending.pop(command_id, None)
        self.facts = self.facts.merged(ev.facts)
        self._have_facts = True
        self._contact(ev.now)
        return ev.facts

    def _h_facts_starting(self, ev: Event) -> None:
        fresh = self._take_facts(ev)
        self._decide_start(fresh, ev.now, ev.command_id)

    def _h_facts_resetting(self, ev: Event) -> None:
        fresh = self._take_facts(ev)
        fw = _state(fresh.fw_state)
        if fw in (State.DOWNLOADING, State.DOWNLOADED) and self._reset_acked:
            self._stuck_or_reset_again(fw, ev.now)
            return
        self._decide_start(fresh, ev.now, ev.command_id)

    def _h_facts_rebooting(self, ev: Event) -> None:
        self._judge(self._take_facts(ev), ev.now)

    def _h_facts_follow(self, ev: Event) -> None:
        """Facts while following Object 5: /5/0/3 and /5/0/5 as a notification would be."""
        fresh = self._take_facts(ev)
        if (
            self.phase in _BEFORE_INSTALL
            and self._delivered
            and fresh.firmware_version is not None
            and fresh.firmware_version == self.target.version
        ):
            # /3/0/3 is the target: our package got installed while we were not looking;
            # never deliver again (success still needs a re-registration and a fresh read)
            self._executed = True
            self._log("on_target_unconfirmed", {"version": fresh.firmware_version})
            self._go(Phase.REBOOTING, ev.now, self.policy.reregistration_timeout_s)
            return
        if fresh.fw_state is None or fresh.fw_result is None:
            return
        row = TRANSITIONS[(self.phase, Input.FIRMWARE_STATE)]
        fw_ev = Event(
            Input.FIRMWARE_STATE,
            ev.now,
            fw_state=fresh.fw_state,
            fw_result=fresh.fw_result,
            source="read",
        )
        row.handler(self, fw_ev)

    def _decide_start(self, fresh: DeviceFacts, now: float, command_id: str | None) -> None:
        facts = self.facts
        if not self._have_facts:
            return  # a notification before the first read: the read decides
        fw = _state(facts.fw_state)
        if fw is None:
            if command_id is not None and fresh.fw_state is None:
                self._finish(Phase.FAILED, FailureReason.NO_FIRMWARE_OBJECT, now)
            return
        # /5/0/7 stands in for /3/0/3 only after a successful update (Idle, Result 1)
        idle_ok = fw is State.IDLE and facts.fw_result == UpdateResult.SUCCESS
        version = version_of(facts) if facts.firmware_version is not None or idle_ok else None
        if not self._delivered and version is not None and version == self.target.version:
            self._finish(Phase.SUCCEEDED, None, now, why="already_on_target", version=version)
            return
        if self._delivered and version is not None and version == self.target.version:
            # our package got installed while we were not looking (an Execute whose answer
            # was lost, a restart): never deliver again; success still needs a registration
            self._executed = True
            self._log("on_target_unconfirmed", {"version": version})
            self._go(Phase.REBOOTING, now, self.policy.reregistration_timeout_s)
            return
        if self.old_version is None and not self._delivered:
            self.old_version = facts.firmware_version or facts.pkg_version
        if fw is State.IDLE:
            self._deliver(now)
        elif fw is State.DOWNLOADING and self._ours_on_device():
            self._go(Phase.DELIVERING, now, self._delivery_timeout())
        elif fw is State.DOWNLOADED and self._ours_on_device():
            self._enter_downloaded(now)
        elif fw is State.UPDATING:
            if self._delivered:
                self._executed = True
                self._go(Phase.INSTALLING, now, self.policy.updating_timeout_s)
            elif self.phase is not Phase.BUSY:
                # someone else's update: ONE deadline from now, never re-armed by reads
                self._busy_since = now
                self._log("device_busy", {"fw_state": int(fw)})
                self._go(Phase.BUSY, now, self.policy.updating_timeout_s)
        elif self.phase is not Phase.RESETTING:
            if self._push_failed:
                self._log("reset_failed_push", {"fw_state": int(fw)})
            self._reset()
        # RESETTING and not Idle: the reset's answer (then a re-read) decides

    def _reset(self) -> None:
        """Write an empty Package URI: Object 5 back to Idle (TS Core E.6, all versions)."""
        self._resets += 1
        self._reset_acked = False
        self.phase = Phase.RESETTING
        self._device(lambda cid: ResetUri(command_id=cid))

    def _stuck_or_reset_again(self, fw: State, now: float) -> None:
        """The re-read after an acknowledged reset still shows Downloading/Downloaded."""
        if self._resets < self.policy.max_resets:
            self._log("reset_again", {"fw_state": int(fw), "resets": self._resets})
            self._reset()
            return
        name = fw.name.capitalize()
        self._finish(
            Phase.FAILED,
            FailureReason.OBJECT5_STUCK,
            now,
            detail=(
                f"Object 5 stayed in {name} after {self._resets} reset writes (empty Package URI)"
            ),
            fw_state=int(fw),
            resets=self._resets,
        )

    def _ours_on_device(self) -> bool:
        """Downloading/Downloaded is our transfer, worth following: this job delivered,
        is not resetting, and its push did not fail (a partial pushed image is never
        completed by anyone: it is reset, not waited for)."""
        return self._delivered and self.phase is not Phase.RESETTING and not self._push_failed

    def _delivery_timeout(self) -> float:
        transfer = self.plan.timeout_s if self.plan is not None else 0.0
        return max(self.policy.downloading_timeout_s, transfer)

    def _deliver(self, now: float) -> None:
        opens = self._window_closed(now)
        if opens is not None:
            self._to_wait(Wait.WINDOW, opens)
            return
        plan = choose_delivery(
            self.facts, self.target, self.policy, exclude=frozenset(self._excluded)
        )
        self.plan = plan
        self._log("delivery", plan.to_json())
        if plan.choice is Choice.NONE:
            assert plan.failure is not None
            self._finish(Phase.FAILED, plan.failure, now, detail=plan.reason, why=plan.reason)
            return
        if plan.choice is Choice.WAIT:
            if self._link_wait_since is None:
                self._link_wait_since = now
            if now - self._link_wait_since >= self.policy.link_wait_max_s:
                self._finish(
                    Phase.FAILED,
                    FailureReason.LINK_TOO_POOR,
                    now,
                    detail=plan.reason,
                    why=plan.reason,
                )
                return
            self._to_wait(Wait.LINK, now + self.policy.link_recheck_s)
            return
        self._link_wait_since = None
        self._busy_since = None
        self._delivered = True
        self._push_failed = False
        self._write_acked = False
        self._seen_downloading = False
        self._go(Phase.DELIVERING, now, self._delivery_timeout())
        self._observe()
        if plan.choice is Choice.PULL:
            assert plan.uri is not None
            uri = plan.uri
            sent = self._device(lambda cid: WriteUri(command_id=cid, uri=uri))
        else:
            target = self.target
            sent = self._device(
                lambda cid: Push(
                    command_id=cid,
                    package_id=target.package_id,
                    form=plan.form,
                    size=plan.size,
                    timeout_s=plan.timeout_s,
                )
            )
        self._delivery_cid = sent.command_id

    def _fallback(self, why: str) -> bool:
        """Exclude the scheme just pulled over if /5/0/8 and the repository leave another
        one; log ``protocol_fallback``. False: no other scheme, the failure stands."""
        plan = self.plan
        if plan is None or plan.choice is not Choice.PULL or plan.protocol is None:
            return False
        excluded = frozenset(self._excluded) | {plan.protocol}
        alt = choose_delivery(self.facts, self.target, self.policy, exclude=excluded)
        if alt.choice is not Choice.PULL or alt.protocol is None:
            return False
        self._excluded = sorted(excluded)
        self._log("protocol_fallback", {"from": plan.protocol, "to": alt.protocol, "why": why})
        return True

    def _enter_downloaded(self, now: float) -> None:
        self._go(Phase.DOWNLOADED, now, self.policy.downloaded_timeout_s)
        if self.facts.auto_upgrade:
            self._log("automatic_upgrade", {"resource": "/5/0/14"})
            return
        self._try_execute(now)

    def _try_execute(self, now: float) -> None:
        if self.phase is Phase.EXECUTING:
            return
        opens = self._window_closed(now)
        if opens is not None:
            self._to_wait(Wait.EXECUTE_WINDOW, opens)
            return
        severity = self.policy.severity
        if severity is not None and self.facts.severity is not None:
            if self.facts.severity != severity:
                self._device(
                    lambda cid: WriteResource(command_id=cid, path=SEVERITY_PATH, value=severity)
                )
        self.phase = Phase.EXECUTING
        self._execute_attempted = True
        self._device(lambda cid: Execute(command_id=cid, path=UPDATE_PATH))

    # -- handlers: /5/0/3 State and /5/0/5 Update Result ----------------------------------------
    def _fw(self, ev: Event) -> State | None:
        """Merge State and Result; None (logged) for a State value the spec does not have."""
        self.facts = self.facts.merged(DeviceFacts(fw_state=ev.fw_state, fw_result=ev.fw_result))
        self._contact(ev.now)
        fw = _state(ev.fw_state)
        if fw is None:
            self._log("unknown_fw_state", {"fw_state": ev.fw_state})
        return fw

    def _h_fw_starting(self, ev: Event) -> None:
        """Only Idle and Updating decide here (the read decides the rest)."""
        fw = self._fw(ev)
        if fw is State.UPDATING and self._delivered:
            # Updating after our delivery is our image installing, even before the read
            # answers (as in WAITING): never deliver it a second time
            self._executed = True
            self._go(Phase.INSTALLING, ev.now, self.policy.updating_timeout_s)
        elif fw is State.IDLE or fw is State.UPDATING:
            self._decide_start(DeviceFacts(fw_state=ev.fw_state), ev.now, None)

    def _h_fw_resetting(self, ev: Event) -> None:
        fw = self._fw(ev)
        if fw is not None:
            self._decide_start(DeviceFacts(fw_state=ev.fw_state), ev.now, None)

    def _h_fw_waiting(self, ev: Event) -> None:
        fw = self._fw(ev)
        if fw is State.UPDATING and self._delivered:
            # e.g. the Maximum Defer Period ran out and the device installs by itself
            self._executed = True
            self._go(Phase.INSTALLING, ev.now, self.policy.updating_timeout_s)

    def _h_fw_delivering(self, ev: Event) -> None:
        fw = self._fw(ev)
        if fw is None:
            return
        now, result = ev.now, ev.fw_result
        failure = FailureReason.from_update_result(result)
        if fw is State.DOWNLOADING:
            self._seen_downloading = True
        elif fw is State.DOWNLOADED:
            self._enter_downloaded(now)
        elif fw is State.UPDATING:
            self._executed = True  # /5/0/14: installing by itself; pmin hid Downloaded
            self._go(Phase.INSTALLING, now, self.policy.updating_timeout_s)
        elif failure is FailureReason.UNSUPPORTED_PROTOCOL:
            if self._fallback("Update Result 9 (unsupported protocol)"):
                self._deliver(now)  # not a new attempt: the device named the reason
            else:
                self._fail(failure, now, fw_result=result)
        elif failure is not None:
            self._delivery_failed(failure, now, fw_result=result)
        elif result == UpdateResult.SUCCESS:
            self._executed = True
            self._go(Phase.REBOOTING, now, self.policy.reregistration_timeout_s)
        elif self._seen_downloading or (self._write_acked and ev.source == "read"):
            # Idle/0 after the download had started: the device lost it (reboot, reset)
            self._delivery_failed(
                FailureReason.CONNECTION_LOST, now, fw_result=result, why="download lost"
            )
        elif self._resumed and ev.source == "read" and not self._write_acked:
            self._log("restart", {"why": "restored before the write was acknowledged"})
            self._resumed = False
            self._begin(now)  # read everything again, then decide (never a blind rewrite)

    def _delivery_failed(self, failure: FailureReason, now: float, **why: Any) -> None:
        """A download failure; the second ``connection_lost`` over one scheme moves the
        retry to the next scheme (protocol fallback)."""
        plan = self.plan
        if failure is FailureReason.CONNECTION_LOST and plan is not None and plan.protocol:
            scheme = plan.protocol
            self._lost_on[scheme] = self._lost_on.get(scheme, 0) + 1
            if self._lost_on[scheme] >= 2 and self._can_retry(failure):
                self._fallback(f"connection lost twice over {scheme}")
        self._fail(failure, now, **why)

    def _h_fw_downloaded(self, ev: Event) -> None:
        fw = self._fw(ev)
        if fw is None:
            return
        now, result = ev.now, ev.fw_result
        failure = FailureReason.from_update_result(result)
        if fw is State.UPDATING:
            self._executed = True
            self._go(Phase.INSTALLING, now, self.policy.updating_timeout_s)
        elif fw is State.DOWNLOADED:
            if result == UpdateResult.DEFERRED:
                self._deferred(now)
            elif result == UpdateResult.UPDATE_FAILED and self.phase is Phase.EXECUTING:
                self._finish(Phase.FAILED, FailureReason.UPDATE_FAILED, now, fw_result=result)
            elif not self.facts.auto_upgrade:
                self._try_execute(now)
        elif failure is not None:
            self._finish(Phase.FAILED, failure, now, fw_result=result)
        elif result == UpdateResult.SUCCESS:
            self._executed = True
            self._go(Phase.REBOOTING, now, self.policy.reregistration_timeout_s)
        elif fw is State.IDLE:
            self._fail(FailureReason.CONNECTION_LOST, now, fw_result=result, why="image lost")

    def _h_fw_installing(self, ev: Event) -> None:
        fw = self._fw(ev)
        now, result = ev.now, ev.fw_result
        if fw is State.IDLE:
            self._go(Phase.REBOOTING, now, self.policy.reregistration_timeout_s)
            if self._reregistered:
                self._read(VERSION_PATHS)
        elif fw is State.DOWNLOADED and result == UpdateResult.UPDATE_FAILED:
            self._finish(Phase.FAILED, FailureReason.UPDATE_FAILED, now, fw_result=8)
        elif fw is State.DOWNLOADED and result == UpdateResult.DEFERRED:
            # Execute was accepted, then the device (its user) deferred: as in DOWNLOADED
            self._deferred(now)

    def _h_fw_rebooting(self, ev: Event) -> None:
        fw = self._fw(ev)
        if self._reregistered and fw is not None and fw is not State.UPDATING:
            self._read(VERSION_PATHS)

    def _h_fw_cancelling(self, ev: Event) -> None:
        fw = self._fw(ev)
        if fw is State.IDLE:
            self._finish(Phase.CANCELLED, FailureReason.CANCELLED, ev.now, fw_result=ev.fw_result)
        elif fw is State.UPDATING:
            self._log("cancel_rejected", {"fw_state": int(fw)})
            self._executed = True
            self._go(Phase.INSTALLING, ev.now, self.policy.updating_timeout_s)

    def _deferred(self, now: float) -> None:
        """Update Result 11: the device (its user) deferred the update (object 1.1)."""
        self._deferrals += 1
        self._execute_attempted = False  # the device answered: it did not install
        max_defer = self.facts.max_defer_s
        if self._defer_deadline is None and max_defer:
            self._defer_deadline = now + max_defer
        if self._deferrals > self.policy.max_deferrals:
            self._finish(
                Phase.FAILED,
                FailureReason.DEFERRED,
                now,
                detail=(
                    f"the device deferred the update {self._deferrals} times (Update Result "
                    f"11); the policy allows {self.policy.max_deferrals}"
                ),
                deferrals=self._deferrals,
            )
            return
        again = now + self.policy.defer_retry_s
        if self._defer_deadline is not None:
            # past the Maximum Defer Period the device updates by itself; look then
            again = min(again, self._defer_deadline + 1.0)
        self._log("deferred", {"deferrals": self._deferrals, "until": again})
        self._to_wait(Wait.DEFERRED, again)

    def _judge(self, fresh: DeviceFacts, now: float) -> None:
        """REBOOTING: success only after re-registration, on the exact target version."""
        if not self._reregistered:
            self._log("not_judged", {"why": "no re-registration yet"})
            return
        fw = _state(fresh.fw_state)
        if fw is State.UPDATING:
            self._log("not_judged", {"why": "still updating (trial boot)"})
            return
        if fresh.firmware_version is None and self.facts.firmware_version is not None:
            # the device has /3/0/3 but this read missed it: PkgVersion proves nothing then
            self._log("not_judged", {"why": "/3/0/3 not read"})
            self._reread_version(now)
            return
        version = version_of(fresh)
        result = fresh.fw_result
        failure = None if result is None else FailureReason.from_update_result(result)
        details: dict[str, Any] = {"version": version, "fw_result": result}
        if version is None:
            if fw is None:
                return  # nothing read; the next Update reads again
            self._finish(Phase.FAILED, FailureReason.VERSION_UNKNOWN, now, **details)
        elif version == self.target.version and failure is None:
            self._finish(Phase.SUCCEEDED, None, now, **details)
        elif version == self.old_version or result == UpdateResult.UPDATE_FAILED:
            detail = f"the device re-registered on {version}, not {self.target.version}"
            if result is not None:
                detail += f" (Update Result {result})"
            self._finish(Phase.FAILED, FailureReason.ROLLED_BACK, now, detail=detail, **details)
        elif failure is not None:
            self._finish(Phase.FAILED, failure, now, **details)
        else:
            detail = (
                f"the device re-registered on {version}: neither the target "
                f"{self.target.version} nor its old version {self.old_version}"
            )
            self._finish(Phase.FAILED, FailureReason.WRONG_VERSION, now, detail=detail, **details)

    def _reread_version(self, now: float) -> None:
        """A version read missed /3/0/3: read again on our own (never wait for the next
        Update), at most ``policy.version_rereads`` times, then end ``version_unknown``."""
        if any(kind == "read_facts" for kind in self._pending.values()):
            return  # a read is on its way: its answer is judged
        if self._version_rereads >= self.policy.version_rereads:
            self._finish(
                Phase.FAILED,
                FailureReason.VERSION_UNKNOWN,
                now,
                detail=(
                    f"/3/0/3 Firmware Version was not read after the reboot "
                    f"({self._version_rereads} re-reads)"
                ),
                why="/3/0/3 not read",
                rereads=self._version_rereads,
            )
            return
        self._version_rereads += 1
        self._log("reread_version", {"reread": self._version_rereads})
        self._read(VERSION_PATHS)

    # -- handlers: command results --------------------------------------------------------------
    def _result_kind(self, ev: Event) -> str:
        kind = self._pending.pop(ev.command_id or "", None)
        assert kind is not None, ev
        return kind

    def _current_delivery(self, ev: Event) -> bool:
        """The result answers the Write/Push of the delivery in progress (not an earlier
        one the protocol fallback replaced)."""
        return self._delivery_cid is None or ev.command_id == self._delivery_cid

    def _h_ok(self, ev: Event) -> None:
        """A device operation succeeded; what it means depends on the operation."""
        kind = self._result_kind(ev)
        self._contact(ev.now)
        if kind in ("write_uri", "push") and self._current_delivery(ev):
            self._write_acked = True
            if kind == "push" and self.phase is Phase.DELIVERING:
                self._read(FIRMWARE_STATE_PATHS)
        elif kind == "reset_uri" and self.phase is Phase.RESETTING:
            self._reset_acked = True
            self._read(FIRMWARE_STATE_PATHS)
        elif kind == "execute" and self.phase is Phase.EXECUTING:
            self._executed = True
            self._go(Phase.INSTALLING, ev.now, self.policy.updating_timeout_s)
        elif kind == "cancel" and self.phase is Phase.CANCELLING:
            self._read(FIRMWARE_STATE_PATHS)

    def _h_failed(self, ev: Event) -> None:
        """A device operation failed or got no answer."""
        kind = self._result_kind(ev)
        code = ev.code
        now = ev.now
        reason = _reason_for_code(code)
        phase = self.phase
        detail = f"{_OPERATION.get(kind, kind)} was answered {code}"
        if kind in ("observe", "write_resource"):
            return  # reads on Register/Update cover a lost observation
        if kind == "read_facts":
            if phase in (Phase.STARTING, Phase.RESETTING, Phase.BUSY):
                self._fail(reason, now, detail=detail, code=code)
            return
        if kind in ("write_uri", "push") and not self._current_delivery(ev):
            self._log("stale_result", {"command": kind, "code": code})
            return
        if kind == "push" and phase.state in _BEFORE_DOWNLOADED:
            self._push_failed = True  # whatever it left on the device is reset first
        if kind in ("write_uri", "push") and phase is Phase.DELIVERING:
            if kind == "push" and code == "timeout":
                reason = FailureReason.TIMED_OUT
            self._fail(reason, now, detail=detail, code=code, command=kind)
        elif kind == "reset_uri" and phase is Phase.RESETTING:
            if code == "4.05":
                self._reset_acked = True  # answered: the re-read says where it stands
                self._read(FIRMWARE_STATE_PATHS)
            else:
                self._fail(reason, now, detail=detail, code=code, command=kind)
        elif kind == "execute" and phase is Phase.EXECUTING:
            self.phase = Phase.DOWNLOADED
            if code not in ("timeout", "unreachable", "superseded"):
                self._execute_attempted = False  # not sent, or refused by the device
            if code == "4.05" or reason is FailureReason.UNREACHABLE:
                # not Downloaded any more, or the answer was lost: find out by reading
                self._read(FIRMWARE_STATE_PATHS)
            else:
                self._finish(Phase.FAILED, reason, now, detail=detail, code=code, command=kind)
        elif kind == "cancel" and phase is Phase.CANCELLING:
            if self._cancel_method == "execute" and code in ("4.00", "4.04", "4.05"):
                self._log("cancel_fallback", {"code": code, "method": "reset"})
                self._cancel_method = "reset"
                self._device(lambda cid: Cancel(command_id=cid, method="reset"))
            elif code == "4.05":
                self._read(FIRMWARE_STATE_PATHS)
            elif reason is not FailureReason.UNREACHABLE:
                self._finish(Phase.CANCELLED, FailureReason.CANCELLED, now, code=code)

    # -- handlers: timers -----------------------------------------------------------------------
    def _h_wake(self, ev: Event) -> None:
        if not self._timer_due(ev):
            return
        now = ev.now
        why = self.wait
        if why is Wait.RETRY:
            self.attempts += 1
        if why in (Wait.EXECUTE_WINDOW, Wait.DEFERRED):
            self._go(Phase.DOWNLOADED, now, self.policy.downloaded_timeout_s)
            self._try_execute(now)
            return
        if self.attempts == 0:
            self.attempts = 1
        self._begin(now)

    def _h_timeout_retry(self, ev: Event) -> None:
        """A deadline before the install started: retry within the budget."""
        if not self._timer_due(ev):
            return
        if self.phase is Phase.DELIVERING and self._pushing():
            self._push_failed = True  # out of time: a partial image, reset before retry
        state = str(self.state)
        self._fail(
            FailureReason.TIMED_OUT,
            ev.now,
            detail=f"the job stayed in {state} past its deadline",
            timed_out=state,
        )

    def _h_timeout_final(self, ev: Event) -> None:
        """A deadline after the install started: never retried."""
        if not self._timer_due(ev):
            return
        state = str(self.state)
        detail = (
            "the device did not re-register with a confirmed version in time"
            if self.phase is Phase.REBOOTING
            else "the install (State Updating) did not end in time"
        )
        self._finish(
            Phase.TIMED_OUT, FailureReason.TIMED_OUT, ev.now, detail=detail, timed_out=state
        )

    def _h_timeout_busy(self, ev: Event) -> None:
        if not self._timer_due(ev):
            return
        since = self._busy_since if self._busy_since is not None else ev.now
        waited = ev.now - since
        self._finish(
            Phase.FAILED,
            FailureReason.DEVICE_BUSY,
            ev.now,
            detail=(
                "Object 5 was in State Updating with an update this job did not start, "
                f"first seen {waited:.0f} s ago, and never went back to Idle "
                f"(updating_timeout_s={self.policy.updating_timeout_s:g})"
            ),
            busy_s=waited,
        )

    def _h_timeout_cancel(self, ev: Event) -> None:
        if not self._timer_due(ev):
            return
        self._finish(Phase.CANCELLED, FailureReason.CANCELLED, ev.now, why="unconfirmed")

    def _pushing(self) -> bool:
        """A push of this job was sent and not (yet) acknowledged."""
        plan = self.plan
        return plan is not None and plan.choice is Choice.PUSH and not self._write_acked


Handler = Callable[[UpdateJob, Event], None]


@dataclass(frozen=True, slots=True)
class Row:
    """One row of :data:`TRANSITIONS`: who decides, and where it may lead."""

    handler: Handler
    to: frozenset[Phase]

    @property
    def states(self) -> frozenset[JobState]:
        """The public states the row may lead to."""
        return frozenset(p.state for p in self.to)


_P = Phase
_I = Input
_U = UpdateJob

_IGNORED: dict[tuple[Phase, Input], str] = {}
"""Why each ignoring row ignores its input (logged as event ``ignored``)."""


def _row(handler: Handler, *to: Phase) -> Row:
    return Row(handler, frozenset(to))


def _ignoring(phases: Iterable[Phase], inputs: Iterable[Input], why: str) -> dict[Any, Row]:
    rows: dict[Any, Row] = {}
    for phase in phases:
        for input_ in inputs:
            _IGNORED[(phase, input_)] = why
            rows[(phase, input_)] = _row(_U._h_ignore, phase)
    return rows


_DECIDED: Final = (
    _P.STARTING,
    _P.RESETTING,
    _P.BUSY,
    _P.WAITING,
    _P.DELIVERING,
    _P.DOWNLOADED,
    _P.EXECUTING,
    _P.INSTALLING,
    _P.REBOOTING,
    _P.SUCCEEDED,
    _P.FAILED,
)
"""Where a start decision (facts read in STARTING) may lead."""
_FOLLOWED: Final = (
    _P.DELIVERING,
    _P.STARTING,
    _P.DOWNLOADED,
    _P.EXECUTING,
    _P.INSTALLING,
    _P.REBOOTING,
    _P.WAITING,
    _P.FAILED,
    _P.TIMED_OUT,
)
"""Where Object 5 State/Result seen while delivering or downloaded may lead."""

#: The transition table: (phase, input) -> handler and the phases it may lead to.
TRANSITIONS: Final[dict[tuple[Phase, Input], Row]] = {
    # PENDING: created, not started; the shell may hold it idle while the device talks
    (_P.PENDING, _I.START): _row(_U._h_start, _P.STARTING),
    (_P.PENDING, _I.HOLD): _row(_U._h_hold, _P.WAITING),
    (_P.PENDING, _I.CANCEL): _row(_U._h_cancel_at_once, _P.CANCELLED),
    (_P.PENDING, _I.RESUME): _row(_U._h_resume, _P.PENDING),
    **_ignoring(
        [_P.PENDING],
        [_I.FACTS, _I.FIRMWARE_STATE, _I.REGISTERED, _I.UPDATED, _I.TIMER],
        "not started: nothing to follow yet",
    ),
    # WAITING: throttle, retry backoff, window, poor link, deferral
    (_P.WAITING, _I.START): _row(_U._h_start, _P.STARTING, _P.WAITING),
    (_P.WAITING, _I.TIMER): _row(_U._h_wake, _P.WAITING, _P.STARTING, _P.DOWNLOADED, _P.EXECUTING),
    (_P.WAITING, _I.HOLD): _row(_U._h_hold, _P.WAITING),
    (_P.WAITING, _I.CANCEL): _row(_U._h_cancel_at_once, _P.CANCELLED, _P.CANCELLING),
    (_P.WAITING, _I.RESUME): _row(_U._h_resume, _P.WAITING),
    (_P.WAITING, _I.FIRMWARE_STATE): _row(_U._h_fw_waiting, _P.WAITING, _P.INSTALLING),
    (_P.WAITING, _I.FACTS): _row(_U._h_facts_follow, _P.WAITING, _P.INSTALLING, _P.REBOOTING),
    (_P.WAITING, _I.REGISTERED): _row(_U._h_reg_contact, _P.WAITING),
    (_P.WAITING, _I.UPDATED): _row(_U._h_reg_contact, _P.WAITING),
    (_P.WAITING, _I.COMMAND_OK): _row(_U._h_ok, _P.WAITING),
    (_P.WAITING, _I.COMMAND_FAILED): _row(_U._h_failed, _P.WAITING),
    # STARTING: reading /5/0, /3/0/3, /4/0
    (_P.STARTING, _I.FACTS): _row(_U._h_facts_starting, *_DECIDED),
    (_P.STARTING, _I.FIRMWARE_STATE): _row(_U._h_fw_starting, *_DECIDED),
    (_P.STARTING, _I.COMMAND_OK): _row(_U._h_ok, _P.STARTING),
    (_P.STARTING, _I.COMMAND_FAILED): _row(_U._h_failed, _P.STARTING, _P.WAITING, _P.FAILED),
    (_P.STARTING, _I.TIMER): _row(_U._h_timeout_retry, _P.STARTING, _P.WAITING, _P.TIMED_OUT),
    (_P.STARTING, _I.CANCEL): _row(_U._h_cancel_at_once, _P.CANCELLED, _P.CANCELLING),
    (_P.STARTING, _I.HOLD): _row(_U._h_hold, _P.WAITING),
    (_P.STARTING, _I.REGISTERED): _row(_U._h_reg_starting, _P.STARTING),
    (_P.STARTING, _I.UPDATED): _row(_U._h_reg_starting, _P.STARTING),
    (_P.STARTING, _I.RESUME): _row(_U._h_resume, _P.STARTING),
    # RESETTING (STARTING): empty /5/0/1 written; its answer, then a re-read, decide
    (_P.RESETTING, _I.FACTS): _row(_U._h_facts_resetting, *_DECIDED),
    (_P.RESETTING, _I.FIRMWARE_STATE): _row(_U._h_fw_resetting, *_DECIDED),
    (_P.RESETTING, _I.COMMAND_OK): _row(_U._h_ok, _P.RESETTING),
    (_P.RESETTING, _I.COMMAND_FAILED): _row(_U._h_failed, _P.RESETTING, _P.WAITING, _P.FAILED),
    (_P.RESETTING, _I.TIMER): _row(_U._h_timeout_retry, _P.RESETTING, _P.WAITING, _P.TIMED_OUT),
    (_P.RESETTING, _I.CANCEL): _row(_U._h_cancel, _P.CANCELLING),
    (_P.RESETTING, _I.HOLD): _row(_U._h_hold, _P.WAITING),
    (_P.RESETTING, _I.REGISTERED): _row(_U._h_reg_starting, _P.RESETTING),
    (_P.RESETTING, _I.UPDATED): _row(_U._h_reg_starting, _P.RESETTING),
    (_P.RESETTING, _I.RESUME): _row(_U._h_resume, _P.STARTING),
    # BUSY (STARTING): someone else's update; one deadline from when it was first seen
    (_P.BUSY, _I.FACTS): _row(_U._h_facts_starting, *_DECIDED),
    (_P.BUSY, _I.FIRMWARE_STATE): _row(_U._h_fw_starting, *_DECIDED),
    (_P.BUSY, _I.COMMAND_OK): _row(_U._h_ok, _P.BUSY),
    (_P.BUSY, _I.COMMAND_FAILED): _row(_U._h_failed, _P.BUSY, _P.WAITING, _P.FAILED),
    (_P.BUSY, _I.TIMER): _row(_U._h_timeout_busy, _P.BUSY, _P.FAILED),
    (_P.BUSY, _I.CANCEL): _row(_U._h_cancel_at_once, _P.CANCELLED, _P.CANCELLING),
    (_P.BUSY, _I.HOLD): _row(_U._h_hold, _P.WAITING),
    (_P.BUSY, _I.REGISTERED): _row(_U._h_reg_starting, _P.BUSY),
    (_P.BUSY, _I.UPDATED): _row(_U._h_reg_starting, _P.BUSY),
    (_P.BUSY, _I.RESUME): _row(_U._h_resume, _P.BUSY),
    # DELIVERING: following Downloading -> Downloaded
    (_P.DELIVERING, _I.FIRMWARE_STATE): _row(_U._h_fw_delivering, *_FOLLOWED),
    (_P.DELIVERING, _I.FACTS): _row(_U._h_facts_follow, *_FOLLOWED),
    (_P.DELIVERING, _I.COMMAND_OK): _row(_U._h_ok, _P.DELIVERING),
    (_P.DELIVERING, _I.COMMAND_FAILED): _row(
        _U._h_failed, _P.DELIVERING, _P.WAITING, _P.FAILED, _P.TIMED_OUT
    ),
    (_P.DELIVERING, _I.TIMER): _row(_U._h_timeout_retry, _P.DELIVERING, _P.WAITING, _P.TIMED_OUT),
    (_P.DELIVERING, _I.CANCEL): _row(_U._h_cancel, _P.CANCELLING),
    (_P.DELIVERING, _I.REGISTERED): _row(_U._h_reg_follow, _P.DELIVERING),
    (_P.DELIVERING, _I.UPDATED): _row(_U._h_reg_follow, _P.DELIVERING),
    (_P.DELIVERING, _I.RESUME): _row(_U._h_resume, _P.DELIVERING),
    # DOWNLOADED: deciding to Execute (window, /5/0/14, a re-read)
    (_P.DOWNLOADED, _I.FIRMWARE_STATE): _row(_U._h_fw_downloaded, *_FOLLOWED),
    (_P.DOWNLOADED, _I.FACTS): _row(_U._h_facts_follow, *_FOLLOWED),
    (_P.DOWNLOADED, _I.COMMAND_OK): _row(_U._h_ok, _P.DOWNLOADED),
    (_P.DOWNLOADED, _I.COMMAND_FAILED): _row(_U._h_failed, _P.DOWNLOADED),
    (_P.DOWNLOADED, _I.TIMER): _row(_U._h_timeout_retry, _P.DOWNLOADED, _P.WAITING, _P.TIMED_OUT),
    (_P.DOWNLOADED, _I.CANCEL): _row(_U._h_cancel, _P.CANCELLING),
    (_P.DOWNLOADED, _I.REGISTERED): _row(_U._h_reg_downloaded, _P.DOWNLOADED, _P.REBOOTING),
    (_P.DOWNLOADED, _I.UPDATED): _row(_U._h_reg_downloaded, _P.DOWNLOADED),
    (_P.DOWNLOADED, _I.RESUME): _row(_U._h_resume, _P.DOWNLOADED),
    # EXECUTING (DOWNLOADED): Execute /5/0/2 sent, its answer awaited
    (_P.EXECUTING, _I.FIRMWARE_STATE): _row(_U._h_fw_downloaded, *_FOLLOWED),
    (_P.EXECUTING, _I.FACTS): _row(_U._h_facts_follow, *_FOLLOWED),
    (_P.EXECUTING, _I.COMMAND_OK): _row(_U._h_ok, _P.EXECUTING, _P.INSTALLING),
    (_P.EXECUTING, _I.COMMAND_FAILED): _row(_U._h_failed, _P.EXECUTING, _P.DOWNLOADED, _P.FAILED),
    (_P.EXECUTING, _I.TIMER): _row(_U._h_timeout_retry, _P.EXECUTING, _P.WAITING, _P.TIMED_OUT),
    (_P.EXECUTING, _I.CANCEL): _row(_U._h_cancel, _P.CANCELLING),
    (_P.EXECUTING, _I.REGISTERED): _row(_U._h_reg_downloaded, _P.EXECUTING, _P.REBOOTING),
    (_P.EXECUTING, _I.UPDATED): _row(_U._h_reg_downloaded, _P.EXECUTING),
    (_P.EXECUTING, _I.RESUME): _row(_U._h_resume, _P.DOWNLOADED),
    # INSTALLING: State Updating (or Execute accepted); never retried from here on
    (_P.INSTALLING, _I.FIRMWARE_STATE): _row(
        _U._h_fw_installing, _P.INSTALLING, _P.REBOOTING, _P.FAILED, _P.WAITING
    ),
    (_P.INSTALLING, _I.FACTS): _row(
        _U._h_facts_follow, _P.INSTALLING, _P.REBOOTING, _P.FAILED, _P.WAITING
    ),
    (_P.INSTALLING, _I.COMMAND_OK): _row(_U._h_ok, _P.INSTALLING),
    (_P.INSTALLING, _I.COMMAND_FAILED): _row(_U._h_failed, _P.INSTALLING),
    (_P.INSTALLING, _I.TIMER): _row(_U._h_timeout_final, _P.INSTALLING, _P.TIMED_OUT),
    (_P.INSTALLING, _I.CANCEL): _row(_U._h_cancel_rejected, _P.INSTALLING),
    (_P.INSTALLING, _I.REGISTERED): _row(_U._h_reg_installing, _P.REBOOTING),
    (_P.INSTALLING, _I.UPDATED): _row(_U._h_reg_installing, _P.INSTALLING),
    (_P.INSTALLING, _I.RESUME): _row(_U._h_resume, _P.INSTALLING),
    # REBOOTING: the re-registration and a confirmed version
    (_P.REBOOTING, _I.FIRMWARE_STATE): _row(_U._h_fw_rebooting, _P.REBOOTING),
    (_P.REBOOTING, _I.FACTS): _row(_U._h_facts_rebooting, _P.REBOOTING, _P.SUCCEEDED, _P.FAILED),
    (_P.REBOOTING, _I.COMMAND_OK): _row(_U._h_ok, _P.REBOOTING),
    (_P.REBOOTING, _I.COMMAND_FAILED): _row(_U._h_failed, _P.REBOOTING),
    (_P.REBOOTING, _I.TIMER): _row(_U._h_timeout_final, _P.REBOOTING, _P.TIMED_OUT),
    (_P.REBOOTING, _I.CANCEL): _row(_U._h_cancel_rejected, _P.REBOOTING),
    (_P.REBOOTING, _I.REGISTERED): _row(_U._h_reg_rebooting, _P.REBOOTING),
    (_P.REBOOTING, _I.UPDATED): _row(_U._h_reg_rebooting, _P.REBOOTING),
    (_P.REBOOTING, _I.RESUME): _row(_U._h_resume, _P.REBOOTING),
    # CANCELLING: Idle after Cancel /5/0/10 or an empty /5/0/1
    (_P.CANCELLING, _I.FIRMWARE_STATE): _row(
        _U._h_fw_cancelling, _P.CANCELLING, _P.CANCELLED, _P.INSTALLING
    ),
    (_P.CANCELLING, _I.FACTS): _row(_U._h_facts_follow, _P.CANCELLING, _P.CANCELLED, _P.INSTALLING),
    (_P.CANCELLING, _I.COMMAND_OK): _row(_U._h_ok, _P.CANCELLING),
    (_P.CANCELLING, _I.COMMAND_FAILED): _row(_U._h_failed, _P.CANCELLING, _P.CANCELLED),
    (_P.CANCELLING, _I.TIMER): _row(_U._h_timeout_cancel, _P.CANCELLING, _P.CANCELLED),
    (_P.CANCELLING, _I.REGISTERED): _row(_U._h_reg_follow, _P.CANCELLING),
    (_P.CANCELLING, _I.UPDATED): _row(_U._h_reg_follow, _P.CANCELLING),
    (_P.CANCELLING, _I.RESUME): _row(_U._h_resume, _P.CANCELLING),
    **_ignoring([_P.CANCELLING], [_I.CANCEL], "already cancelling"),
    # results of commands the job no longer waits for, in every phase
    **_ignoring(
        [p for p in Phase if p not in TERMINAL_PHASES],
        [_I.STALE_RESULT],
        "a result of a command the job does not wait for (sent before a restart)",
    ),
    # terminal phases are absorbing: late notifications, results, timers change nothing
    **_ignoring(TERMINAL_PHASES, list(Input), "the job has ended"),
}

_OPERATION: Final = {
    "read_facts": "the read of the device's facts",
    "write_uri": "Write /5/0/1 Package URI",
    "reset_uri": "Write of an empty /5/0/1 (reset)",
    "push": "Write /5/0/0 Package (push)",
    "execute": "Execute /5/0/2 Update",
    "cancel": "the cancel (/5/0/10 or an empty /5/0/1)",
}
"""Operations named in failure details."""

_BEFORE_DOWNLOADED: Final = frozenset({JobState.STARTING, JobState.DELIVERING, JobState.WAITING})
"""States in which a failed push leaves at most a partial image on the device."""

_BEFORE_INSTALL: Final = frozenset({_P.WAITING, _P.DELIVERING, _P.DOWNLOADED, _P.EXECUTING})
"""Phases in which facts naming the target version mean an install we did not follow."""


def _scheme_of(uri: str | None) -> str | None:
    return uri.split("://", 1)[0].lower() if uri and "://" in uri else None


def _compact(facts: DeviceFacts) -> dict[str, Any]:
    return {k: v for k, v in facts.to_json().items() if v is not None and k != "endpoint"}


def _command_details(command: Command) -> dict[str, Any]:
    out: dict[str, Any] = {"command_id": command.command_id}
    for name in ("paths", "uri", "path", "value", "method", "form", "size", "timeout_s"):
        if hasattr(command, name):
            value = getattr(command, name)
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


__all__ = [
    "ALL_FACT_PATHS",
    "FAILED_STATES",
    "FIRMWARE_STATE_PATHS",
    "MOVING_STATES",
    "PHASE_STATE",
    "TERMINAL",
    "TERMINAL_PHASES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "VERSION_PATHS",
    "Cancel",
    "CancelUpdate",
    "Command",
    "DeviceFacts",
    "Event",
    "Execute",
    "Finish",
    "Input",
    "JobPolicy",
    "JobState",
    "JobTarget",
    "Log",
    "Observe",
    "Phase",
    "Push",
    "RadioFigures",
    "ReadFacts",
    "ResetUri",
    "Row",
    "SetTimer",
    "TableViolation",
    "UpdateJob",
    "Wait",
    "WriteResource",
    "WriteUri",
    "version_of",
]
