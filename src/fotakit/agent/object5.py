"""Object 5 "Firmware Update" instance /5/0: the I/O shell around the pure state machine.

TS Core 1.2 Appendix E.6 and the OMA registry ``5.xml`` (object 1.2, resources 0-14).
:class:`FirmwareUpdateInstance` maps the LwM2M operations onto
:class:`fotakit.agent.fsm.FirmwareUpdateMachine` and the machine's actions onto a
:class:`FirmwareUpdateDelegate` (the agent runtime), which does the real work:
downloading, storing, verifying, installing, persisting.

For every :class:`~fotakit.agent.fsm.Transition` the instance, in this order,

1. publishes the new values (Last State Change Time together with the State, so a Read
   never sees the new State with the old time),
2. calls ``delegate.persist(snapshot)`` — before anyone is told,
3. notifies observers: /5/0/12, then /5/0/3 and /5/0/5 with ``must_deliver`` so a
   server observing with ``pmin`` still sees every transition, in order,
4. carries out the transition's actions (start a pull, cancel, discard, install).

Push (delivery method 1 or 2): a Write of /5/0/0 that fits one message goes through
:meth:`FirmwareUpdateInstance.write`; a Block1 Write is streamed block by block to the
:class:`PushSink` the delegate opens (see :mod:`fotakit.client.block1`), never held whole
in RAM. Block 0 starts the push (Idle -> Downloading); the same block 0 again is a
harmless rewrite, a different one is a new Package while Downloading (4.00); a block
after a gap is 4.08; an image the storage cannot hold is 4.13 with Size1 and Result 2.
The last block calls ``sink.finish(total)``; the runtime verifies the image and reports
with :meth:`FirmwareUpdateInstance.download_finished`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from fotakit.agent.fsm import (
    Action,
    FirmwareSnapshot,
    FirmwareUpdateMachine,
    InvalidTransition,
    InvalidWrite,
    Transition,
    Trigger,
    is_reset_package,
)
from fotakit.client.block1 import Block1, BlockWriter, StreamedBody
from fotakit.client.instance import ExecuteResult, LwM2MObject, ObjectInstance, ResourceValue
from fotakit.lwm2m.codecs import ContentFormat
from fotakit.lwm2m.errors import (
    BadRequest,
    InternalServerError,
    MethodNotAllowed,
    NotFound,
    RequestEntityIncomplete,
    RequestEntityTooLarge,
    UnsupportedContentFormat,
)
from fotakit.lwm2m.objects import (
    FIRMWARE_UPDATE,
    DeliveryMethod,
    Severity,
    State,
    UpdateProtocol,
    UpdateResult,
)

__all__ = [
    "FirmwareSnapshot",
    "FirmwareUpdateDelegate",
    "FirmwareUpdateInstance",
    "NotEnoughStorage",
    "PushSink",
    "firmware_object",
]

_log = logging.getLogger(__name__)

PACKAGE = 0
PACKAGE_URI = 1
UPDATE = 2
STATE = 3
UPDATE_RESULT = 5
PKG_NAME = 6
PKG_VERSION = 7
PROTOCOL_SUPPORT = 8
DELIVERY_METHOD = 9
CANCEL = 10
SEVERITY = 11
LAST_STATE_CHANGE_TIME = 12
MAXIMUM_DEFER_PERIOD = 13
AUTOMATIC_UPGRADE = 14

RESOURCE_IDS = (0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)

#: A push with no block for this long is abandoned (Idle, Result 4 "connection lost"):
#: RFC 7252 EXCHANGE_LIFETIME (247 s) rounded up — no sender retransmits a block later.
DEFAULT_PUSH_TIMEOUT = 300.0
_UINT32_MAX = 2**32 - 1


class NotEnoughStorage(Exception):
    """The image does not fit: answered 4.13 with Size1 = ``size_limit``, Result 2."""

    def __init__(self, size_limit: int, message: str = "") -> None:
        super().__init__(message or f"the image does not fit in {size_limit} bytes")
        self.size_limit = size_limit


class PushSink(Protocol):
    """Where a pushed image goes (the runtime's inactive slot)."""

    def write_block(self, num: int, block_size: int, data: bytes) -> None:
        """Write ``data`` at byte ``num * block_size``; idempotent (a pwrite). May raise
        :class:`NotEnoughStorage`."""
        ...

    def finish(self, total_size: int) -> None:
        """The last block arrived; the image is ``total_size`` bytes. The runtime verifies
        it (asynchronously) and then calls ``download_finished``."""
        ...

    def abort(self) -> None:
        """The push was cancelled, reset or failed: drop what was written."""
        ...


class FirmwareUpdateDelegate(Protocol):
    """What the instance needs from the agent runtime. Methods must not block for long:
    start background work and report back with ``download_finished`` /
    ``update_finished``."""

    def supported_protocols(self) -> Sequence[UpdateProtocol]: ...

    def delivery_method(self) -> DeliveryMethod: ...

    def start_pull(self, uri: str) -> None: ...

    def open_push(self, size1: int | None) -> PushSink: ...

    def cancel_download(self) -> None: ...

    def discard_image(self) -> None: ...

    def start_update(self) -> None: ...

    def persist(self, snapshot: FirmwareSnapshot) -> None: ...


#: Decides whether an Execute Update is deferred (the user or the device's policy); it is
#: asked only when deferral is allowed (/5/0/13 > 0 and before the deadline).
DeferPolicy = Callable[[FirmwareSnapshot], bool]


@dataclass(slots=True)
class _Push:
    """One push in progress: its sink and counters, and block 0 to recognise a resend."""

    sink: PushSink
    body: StreamedBody
    first_block: bytes
    finished: bool = False


class _PackageWriter:
    """The :class:`BlockWriter` of /5/0/0 (a thin forwarder, so the instance's method
    names stay the Object 5 ones)."""

    def __init__(self, instance: FirmwareUpdateInstance) -> None:
        self._instance = instance

    def write_block(self, block: Block1, content_format: int | None) -> None:
        self._instance.receive_package_block(block, content_format)


class FirmwareUpdateInstance(ObjectInstance):
    """/5/0, all resources 0-14, driven by :class:`FirmwareUpdateMachine`.

    ``snapshot`` restores the state persisted before a restart: a push that was in
    progress cannot resume, so it ends as a failed download (Idle, Result 4); a pull in
    Downloading is left for the runtime to resume (``state``, ``package_uri``); Updating
    is left for the runtime to resolve with :meth:`update_finished`.

    ``push_timeout``: a push that receives no block for that many seconds is abandoned
    (Idle, Result 4), so a server that gave up half-way does not leave the device in
    Downloading for good. ``defer_policy`` decides whether an Execute Update is deferred.
    """

    def __init__(
        self,
        delegate: FirmwareUpdateDelegate,
        *,
        snapshot: FirmwareSnapshot | None = None,
        clock: Callable[[], float] = time.time,
        defer_policy: DeferPolicy | None = None,
        push_timeout: float | None = DEFAULT_PUSH_TIMEOUT,
    ) -> None:
        super().__init__()
        self.delegate = delegate
        self.defer_policy = defer_policy
        self.push_timeout = push_timeout
        self._push_timer: asyncio.TimerHandle | None = None
        self._clock = clock
        self.machine = FirmwareUpdateMachine(snapshot, clock=clock)
        self._view = self.machine.snapshot()
        self._push: _Push | None = None
        self._writer = _PackageWriter(self)
        self._defer_timer: asyncio.TimerHandle | None = None
        if self.machine.state is State.DOWNLOADING and not self.machine.package_uri:
            _log.info("a push was interrupted by a restart: reporting connection lost")
            self._publish(self.machine.download_failed(UpdateResult.CONNECTION_LOST))
        self._arm_defer_timer()

    # -- what the runtime reads ----------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._view.state

    @property
    def result(self) -> UpdateResult:
        return self._view.result

    @property
    def package_uri(self) -> str:
        return self._view.package_uri

    @property
    def snapshot(self) -> FirmwareSnapshot:
        """The values as published (and persisted), as a copy."""
        return replace(self._view, extra=dict(self._view.extra))

    # -- what the runtime reports ------------------------------------------------------------
    def download_finished(
        self,
        result: UpdateResult,
        *,
        pkg_name: str | None = None,
        pkg_version: str | None = None,
    ) -> bool:
        """The pull ended, or a pushed image was verified. SUCCESS (or INITIAL) ->
        Downloaded (then Updating with /5/0/14); 2, 3, 4, 5, 6, 7, 9 -> Idle with that
        Result. False (nothing done) if no download is in progress any more (e.g. it was
        cancelled meanwhile)."""
        if self.machine.state is not State.DOWNLOADING:
            _log.info("download finished with %s in State %s: ignored", result, self.state.name)
            return False
        if result in (UpdateResult.SUCCESS, UpdateResult.INITIAL):
            steps = self.machine.download_complete(pkg_name=pkg_name, pkg_version=pkg_version)
        else:
            steps = self.machine.download_failed(result)
        self._publish(steps, names_changed=pkg_name is not None or pkg_version is not None)
        return True

    def update_finished(self, result: UpdateResult, *, retryable: bool = False) -> bool:
        """The update ended (often after a reboot). SUCCESS -> Idle/1; UPDATE_FAILED ->
        Downloaded/8 if ``retryable`` (the image is kept), else Idle/8;
        INTEGRITY_CHECK_FAILURE -> Idle/5. False if not Updating."""
        if self.machine.state is not State.UPDATING:
            _log.info("update finished with %s in State %s: ignored", result, self.state.name)
            return False
        if result is UpdateResult.SUCCESS:
            steps = self.machine.update_succeeded()
        elif result is UpdateResult.UPDATE_FAILED and retryable:
            steps = self.machine.update_failed()
        else:
            steps = self.machine.image_unusable(result)
        self._publish(steps)
        return True

    def check_deferral(self) -> bool:
        """Start a deferred update whose deadline has passed; True if it started."""
        machine = self.machine
        deadline = machine.defer_deadline
        if (
            machine.state is not State.DOWNLOADED
            or machine.result is not UpdateResult.DEFERRED
            or deadline is None
            or self._clock() < deadline
        ):
            return False
        self._publish(machine.defer_expired())
        return True

    # -- LwM2M operations ----------------------------------------------------------------------
    def resource_ids(self) -> Sequence[int]:
        return RESOURCE_IDS

    def read(self, resource_id: int) -> ResourceValue:
        view = self._view
        if resource_id == PACKAGE_URI:
            return view.package_uri
        if resource_id == STATE:
            return int(view.state)
        if resource_id == UPDATE_RESULT:
            return int(view.result)
        if resource_id == PKG_NAME:
            return view.pkg_name
        if resource_id == PKG_VERSION:
            return view.pkg_version
        if resource_id == PROTOCOL_SUPPORT:
            return {i: int(p) for i, p in enumerate(self.delegate.supported_protocols())}
        if resource_id == DELIVERY_METHOD:
            return int(self.delegate.delivery_method())
        if resource_id == SEVERITY:
            return int(view.severity)
        if resource_id == LAST_STATE_CHANGE_TIME:
            return datetime.fromtimestamp(int(view.last_state_change), UTC)
        if resource_id == MAXIMUM_DEFER_PERIOD:
            return view.max_defer_period
        if resource_id == AUTOMATIC_UPGRADE:
            return view.auto_update
        raise NotFound(f"resource {resource_id} is not readable")

    def write(self, resource_id: int, value: ResourceValue, replace: bool) -> None:
        if resource_id == PACKAGE:
            if not isinstance(value, bytes):
                raise BadRequest("Package is Opaque")
            self._write_whole_package(value)
        elif resource_id == PACKAGE_URI:
            if not isinstance(value, str):
                raise BadRequest("Package URI is a String")
            self._write_package_uri(value)
        elif resource_id == SEVERITY:
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 2:
                raise BadRequest("Severity is 0, 1 or 2")
            self.machine.set_severity(Severity(value))
            self._settings_changed(SEVERITY)
        elif resource_id == MAXIMUM_DEFER_PERIOD:
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadRequest("Maximum Defer Period is an unsigned integer")
            if not 0 <= value <= _UINT32_MAX:
                raise BadRequest("Maximum Defer Period is out of range")
            self.machine.set_max_defer_period(value)
            self._settings_changed(MAXIMUM_DEFER_PERIOD)
        elif resource_id == AUTOMATIC_UPGRADE:
            if not isinstance(value, bool):
                raise BadRequest("Automatic Upgrade at Download is a Boolean")
            self.machine.set_auto_update(value)
            self._settings_changed(AUTOMATIC_UPGRADE)
        else:
            raise MethodNotAllowed(f"/5/0/{resource_id} is not writable")

    def execute(self, resource_id: int, args: str | None) -> ExecuteResult:
        if resource_id == UPDATE:
            machine = self.machine
            defer = False
            if self.defer_policy is not None and machine.may_defer():
                defer = self.defer_policy(self.snapshot)
            self._publish(machine.execute_update(defer=defer))
        elif resource_id == CANCEL:
            self._publish(self.machine.cancel())
        else:
            raise MethodNotAllowed(f"/5/0/{resource_id} is not executable")
        return None

    def block_writer(self, resource_id: int) -> BlockWriter | None:
        return self._writer if resource_id == PACKAGE else None

    # -- Package URI and Package ---------------------------------------------------------------
    def _write_package_uri(self, uri: str) -> None:
        method = self.delegate.delivery_method()
        supported = self.delegate.supported_protocols() if method.supports_pull else ()
        uri_before = self.machine.package_uri
        names_before = (self.machine.pkg_name, self.machine.pkg_version)
        steps = self.machine.write_package_uri(uri, supported)
        self._publish(
            steps,
            uri_changed=uri_before != self.machine.package_uri,
            names_changed=names_before != (self.machine.pkg_name, self.machine.pkg_version),
        )

    def _reset(self) -> None:
        uri_before = self.machine.package_uri
        steps = self.machine.reset()
        self._publish(steps, uri_changed=bool(uri_before), names_changed=True)

    def _write_whole_package(self, package: bytes) -> None:
        """A Package Write in one message (no Block1): reset, or a one-block push."""
        if is_reset_package(package):
            self._reset()
            return
        self.receive_package_block(
            Block1(num=0, more=False, szx=6, payload=package, size1=len(package)),
            int(ContentFormat.OPAQUE),
            whole=True,
        )

    def receive_package_block(
        self, block: Block1, content_format: int | None, *, whole: bool = False
    ) -> None:
        """One block of a pushed Package (RFC 7959 Block1); see the module docstring."""
        if content_format is None:
            raise BadRequest("a Package block needs Content-Format 42")
        if content_format != ContentFormat.OPAQUE:
            raise UnsupportedContentFormat("a pushed Package must be application/octet-stream")
        state = self.machine.state
        if state is State.UPDATING or (whole and state is not State.IDLE):
            raise InvalidTransition.refusing(state, Trigger.WRITE_PACKAGE)
        push = self._push
        if push is None:
            if block.num != 0:
                raise RequestEntityIncomplete("no Package transfer in progress: start at block 0")
            if state is not State.IDLE:
                raise InvalidTransition.refusing(state, Trigger.WRITE_PACKAGE)
            if not block.more and is_reset_package(block.payload):
                self._reset()
                return
            push = self._start_push(block)
        elif block.offset == 0:
            common = min(len(push.first_block), len(block.payload))
            if push.first_block[:common] != block.payload[:common]:
                raise InvalidWrite(state, Trigger.WRITE_PACKAGE)
            if len(block.payload) > len(push.first_block):
                push.first_block = block.payload
        if push.finished:
            # a late duplicate of a block already stored: acknowledge, write nothing
            total = push.body.total
            if total is None or block.end > total or (not block.more and block.end != total):
                raise InvalidWrite(state, Trigger.WRITE_PACKAGE)
            return
        if not whole:  # (a whole Package is one message of any size, not a block)
            push.body.check(block)
        try:
            size = len(block.payload) if whole else block.size
            push.sink.write_block(block.num, size, block.payload)
        except NotEnoughStorage as exc:
            self._fail_push(UpdateResult.NOT_ENOUGH_FLASH)
            raise RequestEntityTooLarge(str(exc), size1=exc.size_limit) from None
        except OSError as exc:
            self._fail_push(UpdateResult.NOT_ENOUGH_FLASH)
            raise InternalServerError(f"cannot store the Package: {exc.strerror}") from None
        push.body.accept(block)
        if push.body.complete:
            assert push.body.total is not None
            push.finished = True
            self._arm_push_timer()  # (disarms it: the push is over)
            self._finish_push(push, push.body.total)
        else:
            self._arm_push_timer()

    def _start_push(self, block: Block1) -> _Push:
        if not self.delegate.delivery_method().supports_push:
            raise MethodNotAllowed("this device takes firmware by pull only (/5/0/9 = 0)")
        try:
            sink = self.delegate.open_push(block.size1)
        except NotEnoughStorage as exc:
            self._publish(self.machine.push_refused())
            raise RequestEntityTooLarge(str(exc), size1=exc.size_limit) from None
        push = _Push(sink=sink, body=StreamedBody(), first_block=block.payload)
        self._push = push
        uri_before = self.machine.package_uri
        self._publish(self.machine.write_package(), uri_changed=bool(uri_before))
        return push

    def _finish_push(self, push: _Push, total: int) -> None:
        try:
            push.sink.finish(total)
        except NotEnoughStorage as exc:
            self._fail_push(UpdateResult.NOT_ENOUGH_FLASH)
            raise RequestEntityTooLarge(str(exc), size1=exc.size_limit) from None
        except Exception as exc:
            # "Errors during the Firmware Update process MUST be reported only by the
            # Update Result": the Write succeeded, the Result says what went wrong.
            code = getattr(exc, "update_result", None)
            try:
                result = UpdateResult(code) if code is not None else None
            except ValueError:
                result = None
            if result is None:
                result = (
                    UpdateResult.NOT_ENOUGH_FLASH
                    if isinstance(exc, OSError)
                    else UpdateResult.INTEGRITY_CHECK_FAILURE
                )
            _log.warning("pushed image refused at finish: %s (Result %d)", exc, result)
            self._fail_push(result)

    def _fail_push(self, result: UpdateResult) -> None:
        if self.machine.state is State.DOWNLOADING:
            self._publish(self.machine.download_failed(result))

    # -- settings ------------------------------------------------------------------------------
    def _settings_changed(self, resource_id: int) -> None:
        self._view = self.machine.snapshot()
        self.delegate.persist(self.snapshot)
        self.notify_changed(resource_id)

    # -- publishing transitions -----------------------------------------------------------------
    def _publish(
        self,
        steps: Sequence[Transition],
        *,
        uri_changed: bool = False,
        names_changed: bool = False,
    ) -> None:
        """Publish, persist, notify and act on each transition, in order."""
        final = self.machine.snapshot()
        for index, step in enumerate(steps):
            before = self._view
            self._view = replace(
                final,
                state=step.state,
                result=step.result,
                last_state_change=step.last_state_change,
                extra=dict(final.extra),
            )
            if step.state is not State.DOWNLOADING:
                self._end_push(step)
            self.delegate.persist(self.snapshot)
            if index == 0:
                if uri_changed:
                    self.notify_changed(PACKAGE_URI)
                if names_changed:
                    self.notify_changed(PKG_NAME)
                    self.notify_changed(PKG_VERSION)
            if step.state_changed:
                self.notify_changed(LAST_STATE_CHANGE_TIME)
                self.notify_changed(STATE, must_deliver=True)
            if step.result is not before.result:
                self.notify_changed(UPDATE_RESULT, must_deliver=True)
            self._act(step)
        self._view = final

    def _arm_push_timer(self) -> None:
        if self._push_timer is not None:
            self._push_timer.cancel()
            self._push_timer = None
        push = self._push
        if self.push_timeout is None or push is None or push.finished:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._push_timer = loop.call_later(self.push_timeout, self._push_timed_out, push)

    def _push_timed_out(self, push: _Push) -> None:
        self._push_timer = None
        if self._push is push and not push.finished:
            _log.warning("no Package block for %.0f s: push abandoned", self.push_timeout)
            self._fail_push(UpdateResult.CONNECTION_LOST)

    def _end_push(self, step: Transition) -> None:
        if self._push_timer is not None:
            self._push_timer.cancel()
            self._push_timer = None
        push, self._push = self._push, None
        if push is not None and not push.finished:
            push.sink.abort()
        elif push is not None and Action.CANCEL_DOWNLOAD in step.actions:
            push.sink.abort()  # finished but not yet verified: drop it too

    def _act(self, step: Transition) -> None:
        for action in step.actions:
            if action is Action.START_PULL:
                self.delegate.start_pull(self.machine.package_uri)
            elif action is Action.CANCEL_DOWNLOAD:
                self.delegate.cancel_download()
            elif action is Action.DISCARD_IMAGE:
                self.delegate.discard_image()
            elif action is Action.START_UPDATE:
                self._disarm_defer_timer()
                self.delegate.start_update()
            elif action is Action.ARM_DEFER_TIMER:
                self._arm_defer_timer()

    # -- the deferral deadline -------------------------------------------------------------
    def _arm_defer_timer(self) -> None:
        self._disarm_defer_timer()
        deadline = self.machine.defer_deadline
        if deadline is None or self.machine.result is not UpdateResult.DEFERRED:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop yet: the runtime calls check_deferral()
        delay = max(deadline - self._clock(), 0.0)
        self._defer_timer = loop.call_later(delay, self._deferral_due)

    def _disarm_defer_timer(self) -> None:
        if self._defer_timer is not None:
            self._defer_timer.cancel()
            self._defer_timer = None

    def _deferral_due(self) -> None:
        self._defer_timer = None
        if not self.check_deferral() and self.machine.result is UpdateResult.DEFERRED:
            self._arm_defer_timer()


def firmware_object(
    delegate: FirmwareUpdateDelegate | FirmwareUpdateInstance,
    *,
    snapshot: FirmwareSnapshot | None = None,
    clock: Callable[[], float] = time.time,
    defer_policy: DeferPolicy | None = None,
    push_timeout: float | None = DEFAULT_PUSH_TIMEOUT,
) -> LwM2MObject:
    """Object 5 with instance 0 (built from ``delegate``, or the instance given)."""
    if isinstance(delegate, FirmwareUpdateInstance):
        instance = delegate
    else:
        instance = FirmwareUpdateInstance(
            delegate,
            snapshot=snapshot,
            clock=clock,
            defer_policy=defer_policy,
            push_timeout=push_timeout,
        )
    return LwM2MObject(FIRMWARE_UPDATE, {0: instance})
