"""The Object 5 "Firmware Update" state machine, pure: no I/O, no asyncio, no wall clock.

Theory of operation
-------------------
Object 5 (OMA registry ``5.xml``, object version 1.2; TS Core 1.2 Appendix E.6) has one
State (/5/0/3: Idle, Downloading, Downloaded, Updating) and one Update Result (/5/0/5,
0..11). Everything that can move them is a :class:`Trigger`: a server operation (Write
/5/0/1 or /5/0/0, Execute /5/0/2 or /5/0/10) or an event of the device (the download
ended, the update ended, a deferral deadline passed). :data:`TRANSITIONS` is the whole
machine: one row per allowed (State, Trigger) pair giving the next State, the Update
Result and the :class:`Action` s the I/O shell (:mod:`fotakit.agent.object5`) must carry
out. :data:`REFUSALS` names the pairs a server may try but the table does not allow and
the CoAP code they are refused with; any other pair not in :data:`TRANSITIONS` is refused
4.05 Method Not Allowed. A refusal raises :class:`InvalidTransition` naming state and
trigger, and changes nothing. Everything that affects the state machine lives in this
file.

Rules from the specification that the table encodes (OMA LwM2M TS Core 1.2, Appendix
E.6, Firmware Update object: the state diagram and the resource descriptions of /5/0/3
and /5/0/5):

- Update Result "MUST be reset" to 0 when a download or an update starts.
- Reset: an empty Package URI or a Package of ``'\\0'`` (or empty, object 1.0) goes to
  Idle with Result 0, from Idle, Downloading or Downloaded; the image is dropped.
- A non-empty URI or Package while Downloading or Downloaded is refused 4.00 (state
  unchanged); any Package or URI write while Updating, Execute Update outside
  Downloaded, and Cancel in Idle or Updating are refused 4.05.
- An unsupported URI scheme in Idle sets Result 9, an invalid URI Result 7; the Write
  itself succeeds ("errors … MUST be reported only by the Update Result resource").
- Deferral (object 1.1): Execute Update that the device's policy defers keeps State
  Downloaded with Result 11. Maximum Defer Period (/5/0/13) 0 forbids deferral; the
  first deferral sets a deadline ``now + period``; after it the update starts by itself
  and no further deferral is allowed.
- Automatic Upgrade on Download (/5/0/14, object 1.2): when true, reaching Downloaded
  is followed at once by a second transition to Updating.
- Last State Change Time (/5/0/12) is written *before* the State changes: each
  :class:`Transition` carries the time and the state together, in that order.

Time comes from an injectable ``clock`` (epoch seconds), so tests drive deadlines.
"""

from __future__ import annotations

import enum
import json
import math
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

from aiocoap.numbers.codes import Code

from fotakit.lwm2m.errors import LwM2MError
from fotakit.lwm2m.objects import Severity, State, UpdateProtocol, UpdateResult

#: The longest Package URI /5/0/1 holds (its range is 0..255 bytes).
MAX_URI_LENGTH = 255


class Trigger(enum.Enum):
    """What may move the machine. Values are the words used in error messages."""

    WRITE_URI = "Write of a supported Package URI"
    WRITE_URI_UNSUPPORTED = "Write of a Package URI with an unsupported scheme"
    WRITE_URI_INVALID = "Write of an invalid Package URI"
    WRITE_PACKAGE = "Write of a Package (first block)"
    RESET = "Write of an empty Package URI or a '\\0' Package"
    PUSH_REFUSED = "Package larger than the storage"
    DOWNLOAD_COMPLETE = "download complete"
    DOWNLOAD_FAILED = "download failed"
    AUTOMATIC_UPDATE = "automatic upgrade on download"
    EXECUTE_UPDATE = "Execute Update"
    DEFER_UPDATE = "Execute Update deferred"
    DEFER_EXPIRED = "deferral deadline passed"
    CANCEL = "Execute Cancel"
    UPDATE_SUCCEEDED = "update succeeded"
    UPDATE_FAILED = "update failed, image kept for a retry"
    IMAGE_UNUSABLE = "update failed, image unusable"


class Action(enum.Enum):
    """Work a transition asks the I/O shell to do, in the order listed."""

    START_PULL = "start downloading the Package URI"
    CANCEL_DOWNLOAD = "stop the download or push in progress"
    DISCARD_IMAGE = "drop the downloaded image"
    START_UPDATE = "install the downloaded image"
    ARM_DEFER_TIMER = "start the update at the deferral deadline"


class _Given:
    """Marker in :data:`TRANSITIONS`: the Result is the one the trigger reports."""

    def __repr__(self) -> str:
        return "GIVEN"


#: The Result column of a row whose code comes with the trigger (download failures etc.).
GIVEN: Final = _Given()


@dataclass(frozen=True, slots=True)
class Row:
    """One row of :data:`TRANSITIONS`."""

    state: State
    result: UpdateResult | _Given
    actions: tuple[Action, ...] = ()


_S = State
_R = UpdateResult
_A = Action
_T = Trigger

#: The transition table: (State, Trigger) -> next State, Update Result, actions.
TRANSITIONS: Final[dict[tuple[State, Trigger], Row]] = {
    # a download starts: pull from the URI, or push into /5/0/0
    (_S.IDLE, _T.WRITE_URI): Row(_S.DOWNLOADING, _R.INITIAL, (_A.START_PULL,)),
    (_S.IDLE, _T.WRITE_URI_UNSUPPORTED): Row(_S.IDLE, _R.UNSUPPORTED_PROTOCOL),
    (_S.IDLE, _T.WRITE_URI_INVALID): Row(_S.IDLE, _R.INVALID_URI),
    (_S.IDLE, _T.WRITE_PACKAGE): Row(_S.DOWNLOADING, _R.INITIAL),
    (_S.IDLE, _T.PUSH_REFUSED): Row(_S.IDLE, _R.NOT_ENOUGH_FLASH),
    # reset: empty URI or '\0' Package
    (_S.IDLE, _T.RESET): Row(_S.IDLE, _R.INITIAL, (_A.DISCARD_IMAGE,)),
    (_S.DOWNLOADING, _T.RESET): Row(_S.IDLE, _R.INITIAL, (_A.CANCEL_DOWNLOAD, _A.DISCARD_IMAGE)),
    (_S.DOWNLOADED, _T.RESET): Row(_S.IDLE, _R.INITIAL, (_A.DISCARD_IMAGE,)),
    # the download ends
    (_S.DOWNLOADING, _T.DOWNLOAD_COMPLETE): Row(_S.DOWNLOADED, _R.INITIAL),
    (_S.DOWNLOADING, _T.DOWNLOAD_FAILED): Row(_S.IDLE, GIVEN, (_A.DISCARD_IMAGE,)),
    # cancel (object 1.1)
    (_S.DOWNLOADING, _T.CANCEL): Row(_S.IDLE, _R.CANCELLED, (_A.CANCEL_DOWNLOAD, _A.DISCARD_IMAGE)),
    (_S.DOWNLOADED, _T.CANCEL): Row(_S.IDLE, _R.CANCELLED, (_A.DISCARD_IMAGE,)),
    # the update starts: Execute, deferral deadline, or automatically (object 1.2)
    (_S.DOWNLOADED, _T.EXECUTE_UPDATE): Row(_S.UPDATING, _R.INITIAL, (_A.START_UPDATE,)),
    (_S.DOWNLOADED, _T.DEFER_UPDATE): Row(_S.DOWNLOADED, _R.DEFERRED, (_A.ARM_DEFER_TIMER,)),
    (_S.DOWNLOADED, _T.DEFER_EXPIRED): Row(_S.UPDATING, _R.INITIAL, (_A.START_UPDATE,)),
    (_S.DOWNLOADED, _T.AUTOMATIC_UPDATE): Row(_S.UPDATING, _R.INITIAL, (_A.START_UPDATE,)),
    # the update ends
    (_S.UPDATING, _T.UPDATE_SUCCEEDED): Row(_S.IDLE, _R.SUCCESS),
    (_S.UPDATING, _T.UPDATE_FAILED): Row(_S.DOWNLOADED, _R.UPDATE_FAILED),
    (_S.UPDATING, _T.IMAGE_UNUSABLE): Row(_S.IDLE, GIVEN, (_A.DISCARD_IMAGE,)),
}

#: The codes a GIVEN row accepts from its trigger.
GIVEN_RESULTS: Final[dict[Trigger, frozenset[UpdateResult]]] = {
    _T.DOWNLOAD_FAILED: frozenset(
        {
            _R.NOT_ENOUGH_FLASH,
            _R.OUT_OF_RAM,
            _R.CONNECTION_LOST,
            _R.INTEGRITY_CHECK_FAILURE,
            _R.UNSUPPORTED_PACKAGE_TYPE,
            _R.INVALID_URI,
            _R.UNSUPPORTED_PROTOCOL,
        }
    ),
    _T.IMAGE_UNUSABLE: frozenset({_R.INTEGRITY_CHECK_FAILURE, _R.UPDATE_FAILED}),
}

_WRITES: Final = (
    _T.WRITE_URI,
    _T.WRITE_URI_UNSUPPORTED,
    _T.WRITE_URI_INVALID,
    _T.WRITE_PACKAGE,
)

#: Refusals with a code other than 4.05: a non-empty URI or Package while a download is
#: in progress or done is 4.00 with the state unchanged (Anjay's behaviour).
REFUSALS: Final[dict[tuple[State, Trigger], Code]] = {
    **{(_S.DOWNLOADING, t): Code.BAD_REQUEST for t in _WRITES},
    **{(_S.DOWNLOADED, t): Code.BAD_REQUEST for t in _WRITES},
}


class InvalidTransition(LwM2MError):
    """The table does not allow ``trigger`` in ``state``: 4.05 Method Not Allowed."""

    code: ClassVar[Code] = Code.METHOD_NOT_ALLOWED

    def __init__(self, state: State, trigger: Trigger) -> None:
        super().__init__(f"{trigger.value} is not allowed in State {state.value} ({state.name})")
        self.state = state
        self.trigger = trigger

    @staticmethod
    def refusing(state: State, trigger: Trigger) -> InvalidTransition:
        """The error for (``state``, ``trigger``), with the code :data:`REFUSALS` gives."""
        if REFUSALS.get((state, trigger)) == Code.BAD_REQUEST:
            return InvalidWrite(state, trigger)
        return InvalidTransition(state, trigger)


class InvalidWrite(InvalidTransition):
    """A non-empty URI or Package while Downloading or Downloaded: 4.00 Bad Request."""

    code: ClassVar[Code] = Code.BAD_REQUEST


@dataclass(frozen=True, slots=True)
class Transition:
    """One step taken: what the I/O shell publishes (time first, then State and Result)
    and the actions it then carries out."""

    trigger: Trigger
    previous: State
    state: State
    result: UpdateResult
    last_state_change: float
    actions: tuple[Action, ...]

    @property
    def state_changed(self) -> bool:
        return self.state is not self.previous


def classify_uri(uri: str, supported: Collection[UpdateProtocol]) -> Trigger:
    """Which trigger a Write of ``uri`` to /5/0/1 is (RFC 3986 syntax, /5/0/8 schemes).

    Empty: reset. Not a URI with a scheme and a host, over 255 bytes, or holding spaces or
    control characters: invalid (Result 7). A scheme not in ``supported``: unsupported
    (Result 9).
    """
    if uri == "":
        return Trigger.RESET
    if len(uri.encode("utf-8")) > MAX_URI_LENGTH or any(c <= " " or c == "\x7f" for c in uri):
        return Trigger.WRITE_URI_INVALID
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        return Trigger.WRITE_URI_INVALID
    if not parts.scheme or not host:
        return Trigger.WRITE_URI_INVALID
    protocol = UpdateProtocol.from_scheme(parts.scheme)
    if protocol is None or protocol not in supported:
        return Trigger.WRITE_URI_UNSUPPORTED
    return Trigger.WRITE_URI


def is_reset_package(package: bytes) -> bool:
    """True for the Package values that reset the machine: ``b"\\0"`` (1.0.1+) or empty."""
    return package in (b"", b"\x00")


@dataclass(slots=True)
class FirmwareSnapshot:
    """Everything of Object 5 that must survive a restart, as JSON.

    ``last_state_change`` and ``defer_deadline`` are epoch seconds. A snapshot taken in
    Downloading means a pull to resume (``package_uri`` set) or an interrupted push (no
    URI); one taken in Updating is resolved by the runtime (update succeeded or not).
    """

    state: State = State.IDLE
    result: UpdateResult = UpdateResult.INITIAL
    package_uri: str = ""
    pkg_name: str = ""
    pkg_version: str = ""
    severity: Severity = Severity.MANDATORY
    max_defer_period: int = 0
    defer_deadline: float | None = None
    auto_update: bool = False
    last_state_change: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # for the runtime's own use

    def to_json(self) -> str:
        data = asdict(self)
        data["state"] = int(self.state)
        data["result"] = int(self.result)
        data["severity"] = int(self.severity)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FirmwareSnapshot:
        """Parse :meth:`to_json` output; ValueError for anything else."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"firmware snapshot is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("firmware snapshot is not a JSON object")
        try:
            deadline = data.get("defer_deadline")
            snapshot = cls(
                state=State(_int(data["state"])),
                result=UpdateResult(_int(data["result"])),
                package_uri=_str(data.get("package_uri", "")),
                pkg_name=_str(data.get("pkg_name", "")),
                pkg_version=_str(data.get("pkg_version", "")),
                severity=Severity(_int(data.get("severity", int(Severity.MANDATORY)))),
                max_defer_period=_int(data.get("max_defer_period", 0)),
                defer_deadline=None if deadline is None else _float(deadline),
                auto_update=_bool(data.get("auto_update", False)),
                last_state_change=_float(data.get("last_state_change", 0.0)),
                extra=dict(data.get("extra") or {}),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"firmware snapshot lacks or mistypes {exc}") from None
        if snapshot.max_defer_period < 0:
            raise ValueError("negative max_defer_period in firmware snapshot")
        return snapshot


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not a boolean")
    return value


class FirmwareUpdateMachine:
    """State, Result and the writable settings of Object 5; one method per trigger.

    Each trigger method applies :data:`TRANSITIONS` and returns the :class:`Transition`
    s taken (two when Automatic Upgrade follows a completed download), or raises
    :class:`InvalidTransition` and changes nothing.
    """

    def __init__(
        self,
        snapshot: FirmwareSnapshot | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        snap = snapshot if snapshot is not None else FirmwareSnapshot()
        self.clock = clock
        self.state = snap.state
        self.result = snap.result
        self.package_uri = snap.package_uri
        self.pkg_name = snap.pkg_name
        self.pkg_version = snap.pkg_version
        self.severity = snap.severity
        self.max_defer_period = snap.max_defer_period
        self.defer_deadline = snap.defer_deadline
        self.auto_update = snap.auto_update
        self.last_state_change = snap.last_state_change
        self.extra = dict(snap.extra)

    def snapshot(self) -> FirmwareSnapshot:
        return FirmwareSnapshot(
            state=self.state,
            result=self.result,
            package_uri=self.package_uri,
            pkg_name=self.pkg_name,
            pkg_version=self.pkg_version,
            severity=self.severity,
            max_defer_period=self.max_defer_period,
            defer_deadline=self.defer_deadline,
            auto_update=self.auto_update,
            last_state_change=self.last_state_change,
            extra=dict(self.extra),
        )

    # -- the one place a transition happens ------------------------------------------------
    def allowed(self, trigger: Trigger) -> bool:
        return (self.state, trigger) in TRANSITIONS

    def _check(self, trigger: Trigger) -> Row:
        row = TRANSITIONS.get((self.state, trigger))
        if row is None:
            raise InvalidTransition.refusing(self.state, trigger)
        return row

    def _apply(self, trigger: Trigger, given: UpdateResult | None = None) -> Transition:
        row = self._check(trigger)
        if isinstance(row.result, _Given):
            if given is None or given not in GIVEN_RESULTS[trigger]:
                raise ValueError(f"{trigger.value} cannot report Update Result {given!r}")
            result = given
        else:
            result = row.result
        previous = self.state
        if row.state is not previous:
            # /5/0/12 "Last State Change Time": set before the State changes
            self.last_state_change = self.clock()
        self.state = row.state
        self.result = result
        if row.state is State.IDLE:
            self.defer_deadline = None
        return Transition(
            trigger, previous, self.state, self.result, self.last_state_change, row.actions
        )

    # -- server operations -----------------------------------------------------------------
    def write_package_uri(
        self, uri: str, supported: Collection[UpdateProtocol]
    ) -> list[Transition]:
        """Write /5/0/1: start a pull, report Result 7 or 9, or reset (empty URI)."""
        trigger = classify_uri(uri, supported)
        self._check(trigger)
        if trigger is Trigger.RESET:
            self.package_uri = ""
            self.pkg_name = self.pkg_version = ""
        elif trigger is Trigger.WRITE_URI:
            self.package_uri = uri
        return [self._apply(trigger)]

    def write_package(self) -> list[Transition]:
        """The first block (or the whole) of a non-empty Package arrived: a push starts."""
        self._check(Trigger.WRITE_PACKAGE)
        self.package_uri = ""
        return [self._apply(Trigger.WRITE_PACKAGE)]

    def reset(self) -> list[Transition]:
        """Write of an empty Package URI or a ``'\\0'`` (or empty) Package."""
        self._check(Trigger.RESET)
        self.package_uri = ""
        self.pkg_name = self.pkg_version = ""
        return [self._apply(Trigger.RESET)]

    def push_refused(self) -> list[Transition]:
        """A push announced (Size1) more than the storage holds: Result 2, answer 4.13."""
        return [self._apply(Trigger.PUSH_REFUSED)]

    def may_defer(self) -> bool:
        """Whether an Execute Update may be deferred now (/5/0/13 and the deadline)."""
        if self.state is not State.DOWNLOADED or self.max_defer_period <= 0:
            return False
        return self.defer_deadline is None or self.clock() < self.defer_deadline

    def execute_update(self, *, defer: bool = False) -> list[Transition]:
        """Execute /5/0/2. ``defer``: the device's policy wants to defer it (Result 11),
        honoured only if :meth:`may_defer`; otherwise the update starts."""
        self._check(Trigger.EXECUTE_UPDATE)
        if defer and self.may_defer():
            if self.defer_deadline is None:
                self.defer_deadline = self.clock() + self.max_defer_period
            return [self._apply(Trigger.DEFER_UPDATE)]
        self.defer_deadline = None
        return [self._apply(Trigger.EXECUTE_UPDATE)]

    def defer_expired(self) -> list[Transition]:
        """The deferral deadline passed: the deferred update starts by itself."""
        if (
            self.result is not UpdateResult.DEFERRED
            or self.defer_deadline is None
            or self.clock() < self.defer_deadline
        ):
            raise InvalidTransition(self.state, Trigger.DEFER_EXPIRED)
        self.defer_deadline = None
        return [self._apply(Trigger.DEFER_EXPIRED)]

    def cancel(self) -> list[Transition]:
        """Execute /5/0/10 Cancel."""
        return [self._apply(Trigger.CANCEL)]

    # -- device events -----------------------------------------------------------------------
    def download_complete(
        self, *, pkg_name: str | None = None, pkg_version: str | None = None
    ) -> list[Transition]:
        """The image is complete (and verified); with /5/0/14 true the update follows."""
        self._check(Trigger.DOWNLOAD_COMPLETE)
        if pkg_name is not None:
            self.pkg_name = pkg_name
        if pkg_version is not None:
            self.pkg_version = pkg_version
        steps = [self._apply(Trigger.DOWNLOAD_COMPLETE)]
        if self.auto_update:
            steps.append(self._apply(Trigger.AUTOMATIC_UPDATE))
        return steps

    def download_failed(self, result: UpdateResult) -> list[Transition]:
        """The download or push failed with ``result`` (2, 3, 4, 5, 6, 7 or 9)."""
        return [self._apply(Trigger.DOWNLOAD_FAILED, result)]

    def update_succeeded(self) -> list[Transition]:
        return [self._apply(Trigger.UPDATE_SUCCEEDED)]

    def update_failed(self) -> list[Transition]:
        """The update failed but the image is kept: back to Downloaded, Result 8."""
        return [self._apply(Trigger.UPDATE_FAILED)]

    def image_unusable(self, result: UpdateResult) -> list[Transition]:
        """The update failed and the image cannot be used again: Idle, Result 5 or 8."""
        return [self._apply(Trigger.IMAGE_UNUSABLE, result)]

    # -- settings (RW resources without transitions) ---------------------------------------
    def set_severity(self, severity: Severity) -> None:
        self.severity = severity

    def set_max_defer_period(self, seconds: int) -> None:
        if seconds < 0:
            raise ValueError("Maximum Defer Period must be >= 0")
        self.max_defer_period = seconds

    def set_auto_update(self, enabled: bool) -> None:
        self.auto_update = enabled
