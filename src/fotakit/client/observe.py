"""Observe and Notify with notification attributes (TS Core 1.1.1 §6.4, §5.1.2; RFC 7641).

aiocoap owns the CoAP side of an observation: the Observe option numbering, the token,
cancellation by RST or by a new request on the same token (RFC 7641 §3.6). It hands us a
``ServerObservation``; we decide *when* to notify and call ``trigger(response)`` with the
rendered notification. The decision follows the attributes in force for the path:

- a change reported by device code (``notify_changed``) is evaluated at once, or at the
  end of ``pmin`` if a notification went out less than ``pmin`` ago;
- ``gt``/``lt``/``st`` filter changes of a numeric resource, compared with the value last
  notified (:func:`fotakit.lwm2m.attributes.should_notify`);
- ``pmax`` forces a notification when that long passed without one.

Timers are asyncio ``call_at`` handles, one of each kind per observation at most, all
cancelled when the observation ends.
"""

from __future__ import annotations

import asyncio
import logging
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
        self.active = True

    # -- lifecycle ---------------------------------------------------------------------
    def started(self, content: Content) -> None:
        """The first (2.05) response went out carrying ``content``."""
        self.last_value = _observed_value(self.path, content)
        self.last_sent = self._loop.time()
        self._schedule_pmax()

    def close(self) -> None:
        self.active = False
        for timer in (self._pmin_timer, self._pmax_timer):
            if timer is not None:
                timer.cancel()
        self._pmin_timer = self._pmax_timer = None

    # -- events --------------------------------------------------------------------------
    def changed(self) -> None:
        """Device code reported a change under (or above) the observed path."""
        if not self.active or self.last_sent is None or self._pmin_timer is not None:
            return  # not started yet, or an evaluation is already waiting for pmin
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
        self._evaluate(forced=False, pmin_elapsed=True)

    def _pmax_elapsed(self) -> None:
        self._pmax_timer = None
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

    def changed(self, path: Path) -> None:
        """A value at ``path`` changed: every observation above or below it evaluates."""
        for observation in list(self._observations):
            if observation.path.startswith(path) or path.startswith(observation.path):
                observation.changed()

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
