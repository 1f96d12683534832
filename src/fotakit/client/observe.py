"""Observe and Notify with notification attributes (TS Core 1.1.1 §6.4, §5.1.2; RFC 7641).

aiocoap owns the CoAP side of an observation: the Observe option numbering, the token,
cancellation by RST or by a new request on the same token (RFC 7641 §3.6). It hands us a
``ServerObservation``; we decide *when* to notify and call ``trigger(response)`` with the
rendered notification. The decision follows the attributes in force for the path:

- a change reported by device code (``notify_changed``) is evaluated at once, or at the
  end of ``pmin`` if a notification went out less than ``pmin`` ago;
- ``gt``/``lt``/``st`` filter changes of a numeric resource, compared with the value last
  notified (:func:`fotakit.lwm2m.attributes.should_notify`);
- ``pmax`` forces a notification when that long passed without one;
- a change reported with ``must_deliver`` (a State transition of Object 5, which a
  server must see even when Idle -> Downloading -> Downloaded happens within ``pmin``)
  is rendered at once and queued; queued values go out in order, each ``pmin`` after
  the previous notification, never merged or dropped (the ``gt``/``lt``/``st`` filters
  do not apply to them). Ordinary changes that arrive while values are queued are
  evaluated once the queue is empty.

aiocoap's ``ServerObservation.trigger`` keeps one pending response only (a newer trigger
overwrites one not yet sent), so queued values are handed over one per event-loop turn,
and only when the previous one has been taken.

Timers are asyncio ``call_at`` handles, one of each kind per observation at most, all
cancelled when the observation ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import CON, NON

from fotakit.client.attributes import AttributeStore
from fotakit.lwm2m.attributes import should_notify
from fotakit.lwm2m.errors import LwM2MError, NotFound
from fotakit.lwm2m.model import Content
from fotakit.lwm2m.path import Path

_log = logging.getLogger(__name__)

#: Renders the current state of a path: (content, payload) in the observation's format.
Renderer = Callable[[Path, int], tuple[Content, bytes]]

#: Must-deliver values waiting for pmin, per observation. Object 5 makes at most a few
#: transitions per update; a queue this long means nobody is reading, so the oldest go.
MAX_QUEUED = 64
# How many event-loop turns to wait for aiocoap to take a triggered notification.
_HANDOVER_TURNS = 100
_TIMER_SLACK = 0.001


def _observed_value(path: Path, content: Content) -> object:
    """What ``gt``/``lt``/``st`` compare: the single value of a resource, else the content."""
    if path.depth >= 3 and len(content) == 1 and path in content:
        return content[path]
    return dict(content)


class Observation:
    """One accepted observation of ``path``, notifying in content format ``fmt``."""

    def __init__(
        self,
        manager: ObservationManager,
        path: Path,
        fmt: int,
        server_observation: Any,
    ) -> None:
        self.manager = manager
        self.path = path
        self.fmt = fmt
        self._servobs = server_observation
        self._loop = asyncio.get_running_loop()
        self.last_value: object = None
        self.last_sent: float | None = None
        self.notifications = 0
        self._pmin_timer: asyncio.TimerHandle | None = None
        self._pmax_timer: asyncio.TimerHandle | None = None
        self._handover: asyncio.Handle | None = None
        # must-deliver snapshots not yet sent: (observed value, payload)
        self._queue: deque[tuple[object, bytes]] = deque()
        self._dirty = False  # an ordinary change came in while values were queued
        self.active = True

    # -- lifecycle ---------------------------------------------------------------------
    def started(self, content: Content) -> None:
        """The first (2.05) response went out carrying ``content``."""
        self.last_value = _observed_value(self.path, content)
        self.last_sent = self._loop.time()
        self._schedule_pmax()

    def close(self) -> None:
        self.active = False
        for timer in (self._pmin_timer, self._pmax_timer, self._handover):
            if timer is not None:
                timer.cancel()
        self._pmin_timer = self._pmax_timer = None
        self._handover = None
        self._queue.clear()

    # -- events --------------------------------------------------------------------------
    def changed(self, must_deliver: bool = False) -> None:
        """Device code reported a change under (or above) the observed path."""
        if not self.active or self.last_sent is None:
            return  # not started yet: the first response carries the current value
        if must_deliver:
            self._enqueue()
            return
        if self._queue or self._handover is not None:
            self._dirty = True  # looked at once the queued values are out
            return
        if self._pmin_timer is not None:
            return  # an evaluation is already waiting for pmin
        attrs = self.manager.attributes.effective(self.path)
        earliest = self.last_sent + (attrs.pmin or 0)
        if self._loop.time() < earliest:
            self._pmin_timer = self._loop.call_at(earliest, self._pmin_elapsed)
            return
        self._evaluate(forced=False)

    def attributes_changed(self) -> None:
        """Write-Attributes touched this path: re-arm pmax with the new value."""
        if self.active and self.last_sent is not None:
            self._schedule_pmax()

    def _pmin_elapsed(self) -> None:
        self._pmin_timer = None
        if self._queue:
            self._drain()
            return
        self._evaluate(forced=False, pmin_elapsed=True)

    # -- must-deliver queue ----------------------------------------------------------------
    def _enqueue(self) -> None:
        try:
            content, payload = self.manager.render(self.path, self.fmt)
        except LwM2MError as exc:
            self.end(exc)
            return
        value = _observed_value(self.path, content)
        previous = self._queue[-1][0] if self._queue else self.last_value
        if value == previous:
            return  # e.g. /5/0 told of /5/0/3 and then /5/0/5 of the same transition
        if len(self._queue) >= MAX_QUEUED:
            _log.warning(
                "observation of %s: %d values unsent, dropping the oldest",
                self.path,
                len(self._queue),
            )
            self._queue.popleft()
        self._queue.append((value, payload))
        if self._pmin_timer is None and self._handover is None:
            self._drain()

    def _drain(self, turns: int = 0) -> None:
        """Send the oldest queued value if pmin allows and aiocoap is ready for it."""
        self._handover = None
        if not self.active or not self._queue or self.last_sent is None:
            return
        attrs = self.manager.attributes.effective(self.path)
        earliest = self.last_sent + (attrs.pmin or 0)
        # (a timer may fire a hair before its time on a coarse clock: _TIMER_SLACK)
        if self._loop.time() < earliest - _TIMER_SLACK:
            if self._pmin_timer is None:
                self._pmin_timer = self._loop.call_at(earliest, self._pmin_elapsed)
            return
        if self._trigger_pending() and turns < _HANDOVER_TURNS:
            self._handover = self._loop.call_soon(self._drain, turns + 1)
            return
        value, payload = self._queue.popleft()
        self._send(Message(code=Code.CONTENT, payload=payload, content_format=self.fmt))
        self.last_value = value
        self.last_sent = self._loop.time()
        self.notifications += 1
        if self._pmin_timer is not None:
            self._pmin_timer.cancel()
            self._pmin_timer = None
        self._schedule_pmax()
        if self._queue or self._dirty:
            # the next value (or a look at ordinary changes) waits for pmin, and at
            # least for aiocoap to take this one
            self._handover = self._loop.call_soon(self._after_send)

    def _after_send(self, turns: int = 0) -> None:
        self._handover = None
        if self._trigger_pending() and turns < _HANDOVER_TURNS:
            self._handover = self._loop.call_soon(self._after_send, turns + 1)
            return
        if self._queue:
            self._drain()
        elif self._dirty:
            self._dirty = False
            self.changed()

    def _trigger_pending(self) -> bool:
        """True while aiocoap has not yet taken the last triggered notification."""
        pending = getattr(self._servobs, "_trigger", None)
        return isinstance(pending, asyncio.Future) and pending.done()

    def _pmax_elapsed(self) -> None:
        self._pmax_timer = None
        if self._queue or self._handover is not None:
            # queued values are older than the current one: they go first (pmin allowing)
            self._schedule_pmax()
            if self._handover is None:
                self._drain()
            return
        self._evaluate(forced=True)

    def _schedule_pmax(self) -> None:
        if self._pmax_timer is not None:
            self._pmax_timer.cancel()
            self._pmax_timer = None
        attrs = self.manager.attributes.effective(self.path)
        if attrs.pmax and self.last_sent is not None:
            self._pmax_timer = self._loop.call_at(self.last_sent + attrs.pmax, self._pmax_elapsed)

    # -- decision and sending --------------------------------------------------------------
    def end(self, exc: LwM2MError) -> None:
        """Send ``exc`` as the final notification: an error ends it (RFC 7641 §3.2)."""
        if self.active:
            self._send(Message(code=exc.code, payload=exc.message.encode()[:128]))
            self.close()

    def _evaluate(self, *, forced: bool, pmin_elapsed: bool = False) -> None:
        if not self.active or self.last_sent is None:
            return
        try:
            content, payload = self.manager.render(self.path, self.fmt)
        except LwM2MError as exc:
            # The target cannot be read any more (e.g. its instance was deleted).
            self.end(exc)
            return
        value = _observed_value(self.path, content)
        attrs = self.manager.attributes.effective(self.path)
        since = self._loop.time() - self.last_sent
        if pmin_elapsed and attrs.pmin:
            # the timer was set for exactly pmin; a coarse clock may fire it a hair early
            since = max(since, float(attrs.pmin))
        if forced or should_notify(self.last_value, value, since, attrs):
            response = Message(code=Code.CONTENT, payload=payload, content_format=self.fmt)
            self._send(response)
            self.last_value = value
            self.last_sent = self._loop.time()
            self.notifications += 1
            if self._pmin_timer is not None:
                # what was waiting for pmin has just been sent; later changes re-arm it
                self._pmin_timer.cancel()
                self._pmin_timer = None
        self._schedule_pmax()

    def _send(self, response: Message) -> None:
        response.mtype = CON if self.manager.confirmable else NON
        self._servobs.trigger(response)
        self.manager.sent()


class ObservationManager:
    """All observations of one client; routes changes and attribute writes to them."""

    def __init__(
        self,
        attributes: AttributeStore,
        render: Renderer,
        *,
        confirmable: bool = True,
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        self.attributes = attributes
        self.render = render
        self.confirmable = confirmable
        self._on_sent = on_sent
        self._observations: set[Observation] = set()
        self._membership = asyncio.Event()

    @property
    def observations(self) -> list[Observation]:
        return sorted(self._observations, key=lambda o: o.path)

    def observed_paths(self) -> list[Path]:
        return [o.path for o in self.observations if o.active]

    def add(self, path: Path, fmt: int, server_observation: Any) -> Observation:
        observation = Observation(self, path, fmt, server_observation)
        self._observations.add(observation)
        self._membership.set()

        def cancelled() -> None:
            observation.close()
            self._observations.discard(observation)
            self._membership.set()
            _log.debug("observation of %s ended", path)

        server_observation.accept(cancelled)
        return observation

    async def wait_for_count(self, count: int, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until exactly ``count`` observations are active (tests, diagnostics)."""
        async with asyncio.timeout(timeout):
            while len(self._observations) != count:
                self._membership.clear()
                await self._membership.wait()

    def changed(self, path: Path, must_deliver: bool = False) -> None:
        """A value at ``path`` changed: every observation above or below it evaluates.

        ``must_deliver``: queue the value as it is now for each of them (see the module
        docstring).
        """
        for observation in list(self._observations):
            if observation.path.startswith(path) or path.startswith(observation.path):
                observation.changed(must_deliver)

    def removed(self, path: Path) -> None:
        """``path`` was deleted: observations of it or below it end with 4.04."""
        for observation in list(self._observations):
            if observation.path.startswith(path):
                observation.end(NotFound(f"{path} was deleted"))

    def attributes_changed(self, path: Path) -> None:
        for observation in list(self._observations):
            if observation.path.startswith(path):
                observation.attributes_changed()

    def sent(self) -> None:
        if self._on_sent is not None:
            self._on_sent()

    def close(self) -> None:
        for observation in list(self._observations):
            observation.close()
        self._observations.clear()
        self._membership.set()
