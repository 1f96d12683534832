"""The per-device update job, pure: one device, one target package, no I/O, no clock.

Theory of operation
-------------------
An :class:`UpdateJob` takes one device from its current firmware to ``target.version``
through Object 5 (TS Core 1.2 Appendix E.6; ``lwm2m-reference.md`` §2). It never does
I/O: every input method (:meth:`~UpdateJob.start`, :meth:`~UpdateJob.on_facts`,
:meth:`~UpdateJob.on_firmware_state`, :meth:`~UpdateJob.on_registered`,
:meth:`~UpdateJob.on_command_result`, :meth:`~UpdateJob.on_timer`,
:meth:`~UpdateJob.cancel`, :meth:`~UpdateJob.hold`, :meth:`~UpdateJob.resume`) takes the
time ``now`` (epoch seconds) from the caller and returns the list of :class:`Command` s the
I/O shell (``fotakit.updates.engine``) carries out, in order. Every command has a unique
``command_id``; operations on the device are answered with
:meth:`~UpdateJob.on_command_result` (reads may also answer with
:meth:`~UpdateJob.on_facts`).

:data:`TRANSITIONS` is the whole machine: for each (:class:`JobState`, :class:`Input`)
pair it names the states the input may lead to. A pair that is not in the table is not
an error of the caller: the input is recorded as ignored (a :class:`Log` naming state
and input) and nothing changes, so a late notification or a stale command result can
never crash the engine. Everything that affects the job's state lives in this file.

The path of a job::

    PENDING -start-> STARTING (read /5/0, /3/0/3, /4/0)
        -> SUCCEEDED at once if /3/0/3 already equals the target (exact string equality)
        -> reset first (empty Package URI) when Object 5 is not Idle
        -> DELIVERING (Write /5/0/1, or push /5/0/0)   [WAITING: window, poor link, retry]
        -> DOWNLOADED (Execute /5/0/2, or /5/0/14 installs by itself) [WAITING: deferred]
        -> INSTALLING (State Updating) -> REBOOTING (the device re-registers)
        -> SUCCEEDED only when the device re-registered and /3/0/3 (or /5/0/7 when /3/0/3
           is absent) equals the target exactly and Object 5 is no longer Updating;
           FAILED ``rolled_back`` when it came back on its old version.

Rules the handlers encode:

- /5/0/3 and /5/0/5 arrive by observation *and* by the read the shell does on every
  Register and Update (observations die with a reboot; pmin coalesces fast changes);
  both go through the same handler, so a change lost to pmin is recovered by the read.
- Every non-terminal state except WAITING has a deadline (:class:`JobPolicy`); past it
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
- A failed (or out-of-time) push leaves a partial image nobody will complete: a device
  found Downloading/Downloaded by the retry is reset (empty Package URI), never waited for.
- A version read after the reboot that missed /3/0/3 is repeated on the job's own
  (``policy.version_rereads`` times, then ``version_unknown``), not left to the next Update.
- Cancel: before anything reached the device -> CANCELLED at once; while delivering or
  downloaded -> CANCELLING (Execute /5/0/10 on 1.1+ clients, else an empty Package URI),
  CANCELLED when Idle is seen or the cancel deadline passes; while installing or
  rebooting the cancel is rejected (the spec answers 4.05) and the job goes on.
- :meth:`UpdateJob.snapshot` is JSON-able; a job built from it and then
  :meth:`~UpdateJob.resume` d re-reads the device instead of repeating the last
  operation (a job restored in DELIVERING reads /5/0/3 rather than rewriting the URI).
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Callable
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
TERMINAL: Final = TERMINAL_STATES
"""Alias of :data:`TERMINAL_STATES`."""


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


_S = JobState
_I = Input

#: The transition table: (state, input) -> the states the input may lead to.
TRANSITIONS: Final[dict[tuple[JobState, Input], frozenset[JobState]]] = {
    (_S.PENDING, _I.START): frozenset({_S.STARTING}),
    (_S.PENDING, _I.HOLD): frozenset({_S.WAITING}),
    (_S.PENDING, _I.CANCEL): frozenset({_S.CANCELLED}),
    (_S.PENDING, _I.RESUME): frozenset({_S.PENDING}),
    (_S.WAITING, _I.START): frozenset({_S.STARTING, _S.WAITING}),
    (_S.WAITING, _I.TIMER): frozenset(
        {_S.WAITING, _S.STARTING, _S.DOWNLOADED, _S.INSTALLING, _S.FAILED}
    ),
    (_S.WAITING, _I.HOLD): frozenset({_S.WAITING}),
    (_S.WAITING, _I.CANCEL): frozenset({_S.CANCELLED, _S.CANCELLING}),
    (_S.WAITING, _I.RESUME): frozenset({_S.WAITING}),
    (_S.WAITING, _I.FIRMWARE_STATE): frozenset({_S.WAITING, _S.INSTALLING}),
    (_S.WAITING, _I.FACTS): frozenset({_S.WAITING, _S.INSTALLING, _S.REBOOTING}),
    (_S.WAITING, _I.REGISTERED): frozenset({_S.WAITING}),
    (_S.WAITING, _I.UPDATED): frozenset({_S.WAITING}),
    (_S.STARTING, _I.FACTS): frozenset(
        {
            _S.REBOOTING,
            _S.STARTING,
            _S.SUCCEEDED,
            _S.WAITING,
            _S.DELIVERING,
            _S.DOWNLOADED,
            _S.INSTALLING,
            _S.FAILED,
        }
    ),
    (_S.STARTING, _I.FIRMWARE_STATE): frozenset(
        {
            _S.REBOOTING,
            _S.STARTING,
            _S.SUCCEEDED,
            _S.WAITING,
            _S.DELIVERING,
            _S.DOWNLOADED,
            _S.INSTALLING,
            _S.FAILED,
        }
    ),
    (_S.STARTING, _I.COMMAND_OK): frozenset({_S.STARTING}),
    (_S.STARTING, _I.COMMAND_FAILED): frozenset({_S.STARTING, _S.WAITING, _S.FAILED}),
    (_S.STARTING, _I.TIMER): frozenset({_S.WAITING, _S.TIMED_OUT}),
    (_S.STARTING, _I.CANCEL): frozenset({_S.CANCELLED, _S.CANCELLING}),
    (_S.STARTING, _I.HOLD): frozenset({_S.WAITING}),
    (_S.STARTING, _I.REGISTERED): frozenset({_S.STARTING}),
    (_S.STARTING, _I.UPDATED): frozenset({_S.STARTING}),
    (_S.STARTING, _I.RESUME): frozenset({_S.STARTING}),
    (_S.DELIVERING, _I.FIRMWARE_STATE): frozenset(
        {
            _S.STARTING,
            _S.DELIVERING,
            _S.DOWNLOADED,
            _S.INSTALLING,
            _S.REBOOTING,
            _S.WAITING,
            _S.FAILED,
        }
    ),
    (_S.DELIVERING, _I.FACTS): frozenset(
        {
            _S.STARTING,
            _S.DELIVERING,
            _S.DOWNLOADED,
            _S.INSTALLING,
            _S.REBOOTING,
            _S.WAITING,
            _S.FAILED,
        }
    ),
    (_S.DELIVERING, _I.COMMAND_OK): frozenset({_S.DELIVERING}),
    (_S.DELIVERING, _I.COMMAND_FAILED): frozenset(
        {_S.DELIVERING, _S.WAITING, _S.FAILED, _S.TIMED_OUT}
    ),
    (_S.DELIVERING, _I.TIMER): frozenset({_S.WAITING, _S.TIMED_OUT}),
    (_S.DELIVERING, _I.CANCEL): frozenset({_S.CANCELLING}),
    (_S.DELIVERING, _I.REGISTERED): frozenset({_S.DELIVERING}),
    (_S.DELIVERING, _I.UPDATED): frozenset({_S.DELIVERING}),
    (_S.DELIVERING, _I.RESUME): frozenset({_S.DELIVERING}),
    (_S.DOWNLOADED, _I.FIRMWARE_STATE): frozenset(
        {_S.DOWNLOADED, _S.INSTALLING, _S.REBOOTING, _S.WAITING, _S.FAILED}
    ),
    (_S.DOWNLOADED, _I.FACTS): frozenset(
        {_S.DOWNLOADED, _S.INSTALLING, _S.REBOOTING, _S.WAITING, _S.FAILED}
    ),
    (_S.DOWNLOADED, _I.COMMAND_OK): frozenset({_S.DOWNLOADED, _S.INSTALLING}),
    (_S.DOWNLOADED, _I.COMMAND_FAILED): frozenset({_S.DOWNLOADED, _S.FAILED}),
    (_S.DOWNLOADED, _I.TIMER): frozenset({_S.WAITING, _S.TIMED_OUT}),
    (_S.DOWNLOADED, _I.CANCEL): frozenset({_S.CANCELLING}),
    (_S.DOWNLOADED, _I.REGISTERED): frozenset({_S.DOWNLOADED, _S.REBOOTING}),
    (_S.DOWNLOADED, _I.UPDATED): frozenset({_S.DOWNLOADED}),
    (_S.DOWNLOADED, _I.RESUME): frozenset({_S.DOWNLOADED}),
    (_S.INSTALLING, _I.FIRMWARE_STATE): frozenset({_S.INSTALLING, _S.REBOOTING, _S.FAILED}),
    (_S.INSTALLING, _I.FACTS): frozenset({_S.INSTALLING, _S.REBOOTING, _S.FAILED}),
    (_S.INSTALLING, _I.COMMAND_OK): frozenset({_S.INSTALLING}),
    (_S.INSTALLING, _I.COMMAND_FAILED): frozenset({_S.INSTALLING}),
    (_S.INSTALLING, _I.TIMER): frozenset({_S.TIMED_OUT}),
    (_S.INSTALLING, _I.CANCEL): frozenset({_S.INSTALLING}),
    (_S.INSTALLING, _I.REGISTERED): frozenset({_S.REBOOTING}),
    (_S.INSTALLING, _I.UPDATED): frozenset({_S.INSTALLING}),
    (_S.INSTALLING, _I.RESUME): frozenset({_S.INSTALLING}),
    (_S.REBOOTING, _I.FIRMWARE_STATE): frozenset({_S.REBOOTING}),
    (_S.REBOOTING, _I.FACTS): frozenset({_S.REBOOTING, _S.SUCCEEDED, _S.FAILED}),
    (_S.REBOOTING, _I.COMMAND_OK): frozenset({_S.REBOOTING}),
    (_S.REBOOTING, _I.COMMAND_FAILED): frozenset({_S.REBOOTING}),
    (_S.REBOOTING, _I.TIMER): frozenset({_S.TIMED_OUT}),
    (_S.REBOOTING, _I.CANCEL): frozenset({_S.REBOOTING}),
    (_S.REBOOTING, _I.REGISTERED): frozenset({_S.REBOOTING}),
    (_S.REBOOTING, _I.UPDATED): frozenset({_S.REBOOTING}),
    (_S.REBOOTING, _I.RESUME): frozenset({_S.REBOOTING}),
    (_S.CANCELLING, _I.FIRMWARE_STATE): frozenset({_S.CANCELLING, _S.CANCELLED, _S.INSTALLING}),
    (_S.CANCELLING, _I.FACTS): frozenset({_S.CANCELLING, _S.CANCELLED, _S.INSTALLING}),
    (_S.CANCELLING, _I.COMMAND_OK): frozenset({_S.CANCELLING}),
    (_S.CANCELLING, _I.COMMAND_FAILED): frozenset({_S.CANCELLING, _S.CANCELLED}),
    (_S.CANCELLING, _I.TIMER): frozenset({_S.CANCELLED}),
    (_S.CANCELLING, _I.CANCEL): frozenset({_S.CANCELLING}),
    (_S.CANCELLING, _I.REGISTERED): frozenset({_S.CANCELLING}),
    (_S.CANCELLING, _I.UPDATED): frozenset({_S.CANCELLING}),
    (_S.CANCELLING, _I.RESUME): frozenset({_S.CANCELLING}),
}


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
        self.state = JobState.PENDING
        self.reason: FailureReason | None = None
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
        self._write_acked = False
        self._seen_downloading = False
        self._resetting = False
        self._execute_sent = False
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
        self._out: list[Command] = []
        if snapshot is not None:
            self._restore(snapshot)

    # -- public inputs --------------------------------------------------------------------------
    def start(self, now: float, facts: DeviceFacts | None = None) -> list[Command]:
        """Start (or release a throttled job); ``facts`` may carry registration facts
        (LwM2M version, queue mode, lifetime, RTT) known before any read."""
        return self._run(Input.START, now, {}, lambda: self._on_start(now, facts))

    def resume(self, now: float) -> list[Command]:
        """After :meth:`from_snapshot` in a new process: re-read, re-observe, re-arm."""
        return self._run(Input.RESUME, now, {}, lambda: self._on_resume(now))

    def on_facts(
        self, facts: DeviceFacts, now: float, *, command_id: str | None = None
    ) -> list[Command]:
        details = {"facts": _compact(facts), "command_id": command_id}
        return self._run(Input.FACTS, now, details, lambda: self._on_facts(facts, now, command_id))

    def on_firmware_state(
        self, state: int, result: int, now: float, *, source: str = "observe"
    ) -> list[Command]:
        """/5/0/3 and /5/0/5 seen (``source``: "observe" or "read")."""
        details = {"fw_state": state, "fw_result": result, "source": source}
        return self._run(
            Input.FIRMWARE_STATE, now, details, lambda: self._on_fw(state, result, now, source)
        )

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
        return self._run(which, now, {"kind": kind}, lambda: self._on_registered(facts, now, kind))

    def on_command_result(
        self, command_id: str, ok: bool, code: str | None, now: float
    ) -> list[Command]:
        which = Input.COMMAND_OK if ok else Input.COMMAND_FAILED
        kind = self._pending.get(command_id)
        details = {"command_id": command_id, "code": code, "command": kind}
        if kind is None:
            self._log("input_ignored", {"input": str(which), "why": "unknown command", **details})
            return self._flush()
        return self._run(which, now, details, lambda: self._on_result(command_id, ok, code, now))

    def on_timer(self, now: float) -> list[Command]:
        return self._run(Input.TIMER, now, {"deadline": self.deadline}, lambda: self._on_timer(now))

    def cancel(self, now: float) -> list[Command]:
        return self._run(Input.CANCEL, now, {}, lambda: self._on_cancel(now))

    def hold(self, until: float, now: float, *, why: str = "throttle") -> list[Command]:
        """A server-side throttle (rate limit, concurrency cap): wait until ``until``.
        Never counts as an attempt."""
        details = {"until": until, "why": why}
        return self._run(Input.HOLD, now, details, lambda: self._on_hold(until, now))

    # -- persistence ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue this job elsewhere (JSON-able)."""
        return {
            "job_id": self.job_id,
            "endpoint": self.endpoint,
            "target": self.target.to_json(),
            "state": str(self.state),
            "reason": None if self.reason is None else str(self.reason),
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
                "resetting": self._resetting,
                "execute_sent": self._execute_sent,
                "execute_attempted": self._execute_attempted,
                "executed": self._executed,
                "push_failed": self._push_failed,
                "reregistered": self._reregistered,
                "resumed": self._resumed,
            },
            "cancel_method": self._cancel_method,
            "link_wait_since": self._link_wait_since,
            "deferrals": self._deferrals,
            "defer_deadline": self._defer_deadline,
            "contact_timeout": self._contact_timeout,
            "version_rereads": self._version_rereads,
        }

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any], policy: JobPolicy | None = None) -> UpdateJob:
        return cls(
            snap["job_id"],
            snap["endpoint"],
            JobTarget.from_json(snap["target"]),
            policy,
            snapshot=snap,
        )

    def _restore(self, snap: dict[str, Any]) -> None:
        self.state = JobState(snap["state"])
        self.reason = None if snap["reason"] is None else FailureReason(snap["reason"])
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
            )
        )
        self._counter = int(snap["counter"])
        self._pending = dict(snap["pending"])
        flags = snap["flags"]
        self._have_facts = flags["have_facts"]
        self._delivered = flags["delivered"]
        self._write_acked = flags["write_acked"]
        self._seen_downloading = flags["seen_downloading"]
        self._resetting = flags["resetting"]
        self._execute_sent = flags["execute_sent"]
        self._execute_attempted = flags.get("execute_attempted", self._execute_sent)
        self._executed = flags["executed"]
        self._push_failed = flags.get("push_failed", False)
        self._reregistered = flags["reregistered"]
        self._resumed = flags["resumed"]
        self._cancel_method = snap["cancel_method"]
        self._link_wait_since = snap["link_wait_since"]
        self._deferrals = int(snap["deferrals"])
        self._defer_deadline = snap["defer_deadline"]
        self._contact_timeout = snap["contact_timeout"]
        self._version_rereads = int(snap.get("version_rereads", 0))

    # -- machinery ------------------------------------------------------------------------------
    @property
    def terminal(self) -> bool:
        return self.state.terminal

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

    def _flush(self) -> list[Command]:
        out, self._out = self._out, []
        return out

    def _run(
        self, which: Input, now: float, details: dict[str, Any], handler: Callable[[], None]
    ) -> list[Command]:
        before = self.state
        row = TRANSITIONS.get((before, which))
        if row is None:
            self._log("input_ignored", {"state": str(before), "input": str(which), **details})
            return self._flush()
        self._log("input", {"state": str(before), "input": str(which), **details})
        try:
            handler()
        except Exception as exc:  # a bug of this file must not take the engine down
            self._log("error", {"state": str(before), "input": str(which), "error": repr(exc)})
        if self.state not in row:  # a bug of this file; recorded, never raised at the shell
            self._log(
                "table_violation",
                {"state": str(before), "input": str(which), "to": str(self.state)},
            )
        return self._flush()

    def _go(self, state: JobState, now: float, timeout: float | None = None) -> None:
        """Enter ``state``; arm its deadline (``timeout`` s) or clear the timer."""
        if state != self.state:
            self._log("state", {"from": str(self.state), "to": str(state)})
            self.state = state
        if state is not JobState.WAITING:
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
        self, state: JobState, reason: FailureReason | None, now: float, **why: Any
    ) -> None:
        self.reason = reason
        self._go(state, now)
        self._contact_timeout = None
        self._pending.clear()
        if self.deadline is not None:
            self._set_timer(None)
        details = {"state": str(state), "reason": None if reason is None else str(reason), **why}
        self._log("finished", details)
        self._emit(Finish(command_id=self._next_id(), state=state, reason=reason))

    def _fail(self, reason: FailureReason, now: float, **why: Any) -> None:
        """A failure: retry after a backoff while the budget allows, else terminal."""
        if reason.retryable and not self._executed and self.attempts < self.policy.max_attempts:
            delay = self._backoff()
            self._log("retry", {"reason": str(reason), "attempt": self.attempts, "in_s": delay})
            self.reason = reason
            self._to_wait(Wait.RETRY, now + delay)
            return
        final = JobState.TIMED_OUT if reason is FailureReason.TIMED_OUT else JobState.FAILED
        self._finish(final, reason, now, **why)

    def _backoff(self) -> float:
        p = self.policy
        base = min(p.backoff_max_s, p.backoff_base_s * 2.0 ** max(0, self.attempts - 1))
        spread = zlib.crc32(f"{self.job_id}:{self.attempts}".encode()) / 0xFFFFFFFF
        return base * (1.0 + p.backoff_jitter * (2.0 * spread - 1.0))

    def _to_wait(self, why: Wait, until: float) -> None:
        if self.state is not JobState.WAITING:
            self._log("state", {"from": str(self.state), "to": "waiting", "wait": str(why)})
            self.state = JobState.WAITING
        self.wait = why
        self._contact_timeout = None
        self._set_timer(until)

    def _window_closed(self, now: float) -> float | None:
        hook = self.policy.window
        if hook is None:
            return None
        opens = hook(now)
        return None if opens is None else max(opens, now)

    # -- handlers -------------------------------------------------------------------------------
    def _on_start(self, now: float, facts: DeviceFacts | None) -> None:
        if self.state is JobState.WAITING and self.wait is not Wait.THROTTLE:
            self._log("start_ignored", {"wait": str(self.wait)})
            return
        if facts is not None:
            self.facts = self.facts.merged(facts)
        if self.attempts == 0:
            self.attempts = 1
        self._begin(now)

    def _on_hold(self, until: float, now: float) -> None:
        if self.state is JobState.WAITING and self.wait is not Wait.THROTTLE:
            # already waiting for another reason (a retry keeps counting as one)
            self._set_timer(max(until, self.deadline or now))
            return
        self._to_wait(Wait.THROTTLE, max(until, now))

    def _begin(self, now: float) -> None:
        """(Re-)enter STARTING: read everything the decision needs."""
        self._have_facts = False
        self._go(JobState.STARTING, now, self.policy.start_timeout_s)
        self._device(lambda cid: ReadFacts(command_id=cid, paths=ALL_FACT_PATHS))

    def _on_resume(self, now: float) -> None:
        self._pending.clear()
        self._resumed = True
        self._execute_sent = False
        state = self.state
        if state is JobState.PENDING:
            return
        if state is JobState.WAITING:
            self._set_timer(self.deadline)
            return
        if state is JobState.STARTING:
            self._device(lambda cid: ReadFacts(command_id=cid, paths=ALL_FACT_PATHS))
        elif state is JobState.CANCELLING:
            self._observe()
            self._send_cancel(now)
        else:
            self._observe()
            paths = VERSION_PATHS if state is JobState.REBOOTING else FIRMWARE_STATE_PATHS
            self._device(lambda cid: ReadFacts(command_id=cid, paths=paths))
        self._set_timer(self.deadline)

    def _observe(self) -> None:
        self._device(lambda cid: Observe(command_id=cid, paths=FIRMWARE_STATE_PATHS))

    def _on_registered(self, facts: DeviceFacts | None, now: float, kind: str) -> None:
        if facts is not None:
            self.facts = self.facts.merged(facts)
        self._contact(now)
        state = self.state
        if kind == "update":
            if state is not JobState.WAITING:
                paths = VERSION_PATHS if state is JobState.REBOOTING else FIRMWARE_STATE_PATHS
                self._device(lambda cid: ReadFacts(command_id=cid, paths=paths))
            return
        # a new registration: the device (re)booted, its observations are gone
        if state is JobState.WAITING:
            return
        if state is JobState.STARTING:
            self._device(lambda cid: ReadFacts(command_id=cid, paths=ALL_FACT_PATHS))
            return
        installing = state is JobState.INSTALLING or (
            state is JobState.DOWNLOADED
            and (self.facts.auto_upgrade is True or self._execute_attempted)
        )
        if installing or state is JobState.REBOOTING:
            self._reregistered = True
            self._executed = True
            if state is not JobState.REBOOTING:
                self._go(JobState.REBOOTING, now, self.policy.reregistration_timeout_s)
            self._observe()
            self._device(lambda cid: ReadFacts(command_id=cid, paths=VERSION_PATHS))
            return
        self._observe()
        self._device(lambda cid: ReadFacts(command_id=cid, paths=FIRMWARE_STATE_PATHS))

    def _on_facts(self, facts: DeviceFacts, now: float, command_id: str | None) -> None:
        if command_id is None:  # answers the oldest read still open
            command_id = next((c for c, k in self._pending.items() if k == "read_facts"), None)
        if command_id is not None:
            self._pending.pop(command_id, None)
        self.facts = self.facts.merged(facts)
        self._have_facts = True
        self._contact(now)
        state = self.state
        if state is JobState.STARTING:
            self._decide_start(facts, now, command_id)
        elif state is JobState.REBOOTING:
            self._judge(facts, now)
        elif (
            state in _BEFORE_INSTALL
            and self._delivered
            and facts.firmware_version is not None
            and facts.firmware_version == self.target.version
        ):
            # /3/0/3 is the target: our package got installed while we were not looking;
            # never deliver again (success still needs a re-registration and a fresh read)
            self._executed = True
            self._log("on_target_unconfirmed", {"version": facts.firmware_version})
            self._go(JobState.REBOOTING, now, self.policy.reregistration_timeout_s)
        elif facts.fw_state is not None and facts.fw_result is not None:
            self._on_fw(facts.fw_state, facts.fw_result, now, "read")

    def _decide_start(self, fresh: DeviceFacts, now: float, command_id: str | None) -> None:
        facts = self.facts
        if not self._have_facts:
            return  # a notification before the first read: the read decides
        fw = _state(facts.fw_state)
        if fw is None:
            if command_id is not None and fresh.fw_state is None:
                self._finish(JobState.FAILED, FailureReason.NO_FIRMWARE_OBJECT, now)
            return
        # /5/0/7 stands in for /3/0/3 only after a successful update (Idle, Result 1)
        idle_ok = fw is State.IDLE and facts.fw_result == UpdateResult.SUCCESS
        version = version_of(facts) if facts.firmware_version is not None or idle_ok else None
        if not self._delivered and version is not None and version == self.target.version:
            self._finish(JobState.SUCCEEDED, None, now, why="already_on_target", version=version)
            return
        if self._delivered and version is not None and version == self.target.version:
            # our package got installed while we were not looking (an Execute whose answer
            # was lost, a restart): never deliver again; success still needs a registration
            self._executed = True
            self._log("on_target_unconfirmed", {"version": version})
            self._go(JobState.REBOOTING, now, self.policy.reregistration_timeout_s)
            return
        if self.old_version is None and not self._delivered:
            self.old_version = facts.firmware_version or facts.pkg_version
        if fw is State.IDLE:
            self._resetting = False
            self._deliver(now)
        elif fw is State.DOWNLOADING and self._ours_on_device():
            self._go(JobState.DELIVERING, now, self._delivery_timeout())
        elif fw is State.DOWNLOADED and self._ours_on_device():
            self._enter_downloaded(now)
        elif fw is State.UPDATING:
            if self._delivered:
                self._executed = True
                self._go(JobState.INSTALLING, now, self.policy.updating_timeout_s)
            else:
                self._log("device_busy", {"fw_state": int(fw)})  # someone else's update
                self._arm(now, self.policy.updating_timeout_s)
        elif not self._resetting:
            if self._push_failed:
                self._log("reset_failed_push", {"fw_state": int(fw)})
            self._resetting = True
            self._device(lambda cid: ResetUri(command_id=cid))

    def _ours_on_device(self) -> bool:
        """Downloading/Downloaded is our transfer, worth following: this job delivered,
        is not resetting, and its push did not fail (a partial pushed image is never
        completed by anyone: it is reset, not waited for)."""
        return self._delivered and not self._resetting and not self._push_failed

    def _delivery_timeout(self) -> float:
        transfer = self.plan.timeout_s if self.plan is not None else 0.0
        return max(self.policy.downloading_timeout_s, transfer)

    def _deliver(self, now: float) -> None:
        opens = self._window_closed(now)
        if opens is not None:
            self._to_wait(Wait.WINDOW, opens)
            return
        plan = choose_delivery(self.facts, self.target, self.policy)
        self.plan = plan
        self._log("delivery", plan.to_json())
        if plan.choice is Choice.NONE:
            assert plan.failure is not None
            self._finish(JobState.FAILED, plan.failure, now, why=plan.reason)
            return
        if plan.choice is Choice.WAIT:
            if self._link_wait_since is None:
                self._link_wait_since = now
            if now - self._link_wait_since >= self.policy.link_wait_max_s:
                self._finish(JobState.FAILED, FailureReason.LINK_TOO_POOR, now, why=plan.reason)
                return
            self._to_wait(Wait.LINK, now + self.policy.link_recheck_s)
            return
        self._link_wait_since = None
        self._delivered = True
        self._push_failed = False
        self._write_acked = False
        self._seen_downloading = False
        self._go(JobState.DELIVERING, now, self._delivery_timeout())
        self._observe()
        if plan.choice is Choice.PULL:
            assert plan.uri is not None
            uri = plan.uri
            self._device(lambda cid: WriteUri(command_id=cid, uri=uri))
        else:
            target = self.target
            self._device(
                lambda cid: Push(
                    command_id=cid,
                    package_id=target.package_id,
                    form=plan.form,
                    size=plan.size,
                    timeout_s=plan.timeout_s,
                )
            )

    def _enter_downloaded(self, now: float) -> None:
        self._go(JobState.DOWNLOADED, now, self.policy.downloaded_timeout_s)
        if self.facts.auto_upgrade:
            self._log("automatic_upgrade", {"resource": "/5/0/14"})
            return
        self._try_execute(now)

    def _try_execute(self, now: float) -> None:
        if self._execute_sent:
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
        self._execute_sent = True
        self._execute_attempted = True
        self._device(lambda cid: Execute(command_id=cid, path=UPDATE_PATH))

    def _on_fw(self, raw_state: int, raw_result: int, now: float, source: str) -> None:
        self.facts = self.facts.merged(DeviceFacts(fw_state=raw_state, fw_result=raw_result))
        self._contact(now)
        fw = _state(raw_state)
        if fw is None:
            self._log("unknown_fw_state", {"fw_state": raw_state})
            return
        state = self.state
        failure = FailureReason.from_update_result(raw_result)
        if state is JobState.STARTING:
            if self._resetting or fw is State.IDLE or fw is State.UPDATING:
                self._decide_start(DeviceFacts(fw_state=raw_state), now, None)
        elif state is JobState.DELIVERING:
            self._fw_delivering(fw, raw_result, failure, now, source)
        elif state is JobState.DOWNLOADED:
            self._fw_downloaded(fw, raw_result, failure, now)
        elif state is JobState.INSTALLING:
            if fw is State.IDLE:
                self._go(JobState.REBOOTING, now, self.policy.reregistration_timeout_s)
                if self._reregistered:
                    self._device(lambda cid: ReadFacts(command_id=cid, paths=VERSION_PATHS))
            elif fw is State.DOWNLOADED and raw_result == UpdateResult.UPDATE_FAILED:
                self._finish(JobState.FAILED, FailureReason.UPDATE_FAILED, now, fw_result=8)
        elif state is JobState.REBOOTING:
            if self._reregistered and fw is not State.UPDATING:
                self._device(lambda cid: ReadFacts(command_id=cid, paths=VERSION_PATHS))
        elif state is JobState.CANCELLING:
            if fw is State.IDLE:
                self._finish(JobState.CANCELLED, FailureReason.CANCELLED, now, fw_result=raw_result)
            elif fw is State.UPDATING:
                self._log("cancel_rejected", {"fw_state": int(fw)})
                self._executed = True
                self._go(JobState.INSTALLING, now, self.policy.updating_timeout_s)
        elif state is JobState.WAITING and fw is State.UPDATING and self._delivered:
            # e.g. the Maximum Defer Period ran out and the device installs by itself
            self._executed = True
            self._go(JobState.INSTALLING, now, self.policy.updating_timeout_s)

    def _fw_delivering(
        self,
        fw: State,
        result: int,
        failure: FailureReason | None,
        now: float,
        source: str,
    ) -> None:
        if fw is State.DOWNLOADING:
            self._seen_downloading = True
        elif fw is State.DOWNLOADED:
            self._enter_downloaded(now)
        elif fw is State.UPDATING:
            self._executed = True  # /5/0/14: installing by itself; pmin hid Downloaded
            self._go(JobState.INSTALLING, now, self.policy.updating_timeout_s)
        elif failure is not None:
            self._fail(failure, now, fw_result=result)
        elif result == UpdateResult.SUCCESS:
            self._executed = True
            self._go(JobState.REBOOTING, now, self.policy.reregistration_timeout_s)
        elif self._seen_downloading or (self._write_acked and source == "read"):
            # Idle/0 after the download had started: the device lost it (reboot, reset)
            self._fail(FailureReason.CONNECTION_LOST, now, fw_result=result, why="download lost")
        elif self._resumed and source == "read" and not self._write_acked:
            self._log("restart", {"why": "restored before the write was acknowledged"})
            self._resumed = False
            self._begin(now)  # read everything again, then decide (never a blind rewrite)

    def _fw_downloaded(
        self, fw: State, result: int, failure: FailureReason | None, now: float
    ) -> None:
        if fw is State.UPDATING:
            self._executed = True
            self._go(JobState.INSTALLING, now, self.policy.updating_timeout_s)
        elif fw is State.DOWNLOADED:
            if result == UpdateResult.DEFERRED:
                self._deferred(now)
            elif result == UpdateResult.UPDATE_FAILED and self._execute_sent:
                self._finish(JobState.FAILED, FailureReason.UPDATE_FAILED, now, fw_result=result)
            elif not self.facts.auto_upgrade:
                self._try_execute(now)
        elif failure is not None:
            self._finish(JobState.FAILED, failure, now, fw_result=result)
        elif result == UpdateResult.SUCCESS:
            self._executed = True
            self._go(JobState.REBOOTING, now, self.policy.reregistration_timeout_s)
        elif fw is State.IDLE:
            self._fail(FailureReason.CONNECTION_LOST, now, fw_result=result, why="image lost")

    def _deferred(self, now: float) -> None:
        """Update Result 11: the device (its user) deferred the update (object 1.1)."""
        self._deferrals += 1
        self._execute_sent = False
        self._execute_attempted = False  # the device answered: it did not install
        max_defer = self.facts.max_defer_s
        if self._defer_deadline is None and max_defer:
            self._defer_deadline = now + max_defer
        if self._deferrals > self.policy.max_deferrals:
            self._finish(JobState.FAILED, FailureReason.DEFERRED, now, deferrals=self._deferrals)
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
            self._finish(JobState.FAILED, FailureReason.VERSION_UNKNOWN, now, **details)
        elif version == self.target.version and failure is None:
            self._finish(JobState.SUCCEEDED, None, now, **details)
        elif version == self.old_version or result == UpdateResult.UPDATE_FAILED:
            self._finish(JobState.FAILED, FailureReason.ROLLED_BACK, now, **details)
        elif failure is not None:
            self._finish(JobState.FAILED, failure, now, **details)
        else:
            self._finish(JobState.FAILED, FailureReason.WRONG_VERSION, now, **details)

    def _reread_version(self, now: float) -> None:
        """A version read missed /3/0/3: read again on our own (never wait for the next
        Update), at most ``policy.version_rereads`` times, then end ``version_unknown``."""
        if any(kind == "read_facts" for kind in self._pending.values()):
            return  # a read is on its way: its answer is judged
        if self._version_rereads >= self.policy.version_rereads:
            self._finish(
                JobState.FAILED,
                FailureReason.VERSION_UNKNOWN,
                now,
                why="/3/0/3 not read",
                rereads=self._version_rereads,
            )
            return
        self._version_rereads += 1
        self._log("reread_version", {"reread": self._version_rereads})
        self._device(lambda cid: ReadFacts(command_id=cid, paths=VERSION_PATHS))

    def _on_result(self, command_id: str, ok: bool, code: str | None, now: float) -> None:
        kind = self._pending.pop(command_id)
        state = self.state
        if ok:
            self._contact(now)
            if kind == "write_uri":
                self._write_acked = True
            elif kind == "push":
                self._write_acked = True
                self._device(lambda cid: ReadFacts(command_id=cid, paths=FIRMWARE_STATE_PATHS))
            elif kind == "reset_uri" and state is JobState.STARTING:
                self._device(lambda cid: ReadFacts(command_id=cid, paths=FIRMWARE_STATE_PATHS))
            elif kind == "execute" and state is JobState.DOWNLOADED:
                self._executed = True
                self._go(JobState.INSTALLING, now, self.policy.updating_timeout_s)
            elif kind == "cancel" and state is JobState.CANCELLING:
                self._device(lambda cid: ReadFacts(command_id=cid, paths=FIRMWARE_STATE_PATHS))
            return
        reason = _reason_for_code(code)
        if kind in ("observe", "write_resource"):
            return  # reads on Register/Update cover a lost observation
        if kind == "read_facts":
            if state is JobState.STARTING:
                self._fail(reason, now, code=code)
            return
        if kind == "push" and state in _BEFORE_DOWNLOADED:
            self._push_failed = True  # whatever it left on the device is reset first
        if kind in ("write_uri", "push") and state is JobState.DELIVERING:
            if kind == "push" and code == "timeout":
                reason = FailureReason.TIMED_OUT
            self._fail(reason, now, code=code, command=kind)
        elif kind == "reset_uri" and state is JobState.STARTING:
            if code == "4.05":
                self._device(lambda cid: ReadFacts(command_id=cid, paths=FIRMWARE_STATE_PATHS))
            else:
                self._fail(reason, now, code=code, command=kind)
        elif kind == "execute" and state is JobState.DOWNLOADED:
            self._execute_sent = False
            if code not in ("timeout", "unreachable", "superseded"):
                self._execute_attempted = False  # not sent, or refused by the device
            if code == "4.05" or reason is FailureReason.UNREACHABLE:
                # not Downloaded any more, or the answer was lost: find out by reading
                self._device(lambda cid: ReadFacts(command_id=cid, paths=FIRMWARE_STATE_PATHS))
            else:
                self._finish(JobState.FAILED, reason, now, code=code, command=kind)
        elif kind == "cancel" and state is JobState.CANCELLING:
            if self._cancel_method == "execute" and code in ("4.00", "4.04", "4.05"):
                self._log("cancel_fallback", {"code": code, "method": "reset"})
                self._cancel_method = "reset"
                self._device(lambda cid: Cancel(command_id=cid, method="reset"))
            elif code == "4.05":
                self._device(lambda cid: ReadFacts(command_id=cid, paths=FIRMWARE_STATE_PATHS))
            elif reason is not FailureReason.UNREACHABLE:
                self._finish(JobState.CANCELLED, FailureReason.CANCELLED, now, code=code)

    def _on_timer(self, now: float) -> None:
        if self.deadline is None or now < self.deadline:
            self._log("timer_early", {"deadline": self.deadline})
            return
        state = self.state
        if state is JobState.WAITING:
            self._wake(now)
        elif state is JobState.CANCELLING:
            self._finish(JobState.CANCELLED, FailureReason.CANCELLED, now, why="unconfirmed")
        elif state in (JobState.INSTALLING, JobState.REBOOTING):
            self._finish(JobState.TIMED_OUT, FailureReason.TIMED_OUT, now, timed_out=str(state))
        else:
            if state is JobState.DELIVERING and self._pushing():
                self._push_failed = True  # out of time: a partial image, reset before retry
            self._fail(FailureReason.TIMED_OUT, now, timed_out=str(state))

    def _pushing(self) -> bool:
        """A push of this job was sent and not (yet) acknowledged."""
        plan = self.plan
        return plan is not None and plan.choice is Choice.PUSH and not self._write_acked

    def _wake(self, now: float) -> None:
        why = self.wait
        if why is Wait.RETRY:
            self.attempts += 1
        if why in (Wait.EXECUTE_WINDOW, Wait.DEFERRED):
            self._go(JobState.DOWNLOADED, now, self.policy.downloaded_timeout_s)
            self._try_execute(now)
            return
        if self.attempts == 0:
            self.attempts = 1
        self._begin(now)

    def _on_cancel(self, now: float) -> None:
        state = self.state
        if state in (JobState.INSTALLING, JobState.REBOOTING):
            self._log("cancel_rejected", {"state": str(state), "why": "installing"})
            return
        if state is JobState.CANCELLING:
            return
        if not self._delivered and not self._resetting:
            self._finish(JobState.CANCELLED, FailureReason.CANCELLED, now, why="not started")
            return
        self._go(JobState.CANCELLING, now, self.policy.cancel_timeout_s)
        self._send_cancel(now)

    def _send_cancel(self, now: float) -> None:
        facts = self.facts
        modern = facts.lwm2m_version is not None and facts.lwm2m_version != "1.0"
        method: Literal["execute", "reset"] = (
            "execute" if modern and facts.has_cancel is not False else "reset"
        )
        if self._cancel_method == "reset":
            method = "reset"
        self._cancel_method = method
        self._device(lambda cid: Cancel(command_id=cid, method=method))


_BEFORE_DOWNLOADED: Final = frozenset({JobState.STARTING, JobState.DELIVERING, JobState.WAITING})
"""States in which a failed push leaves at most a partial image on the device."""

_BEFORE_INSTALL: Final = frozenset({JobState.WAITING, JobState.DELIVERING, JobState.DOWNLOADED})
"""States in which facts naming the target version mean an install we did not follow."""


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
    "FIRMWARE_STATE_PATHS",
    "TERMINAL",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "VERSION_PATHS",
    "Cancel",
    "CancelUpdate",
    "Command",
    "DeviceFacts",
    "Execute",
    "Finish",
    "Input",
    "JobPolicy",
    "JobState",
    "JobTarget",
    "Log",
    "Observe",
    "Push",
    "RadioFigures",
    "ReadFacts",
    "ResetUri",
    "SetTimer",
    "UpdateJob",
    "Wait",
    "WriteResource",
    "WriteUri",
    "version_of",
]
