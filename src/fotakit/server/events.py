"""Events the server publishes, and the fan-out that delivers them to every subscriber.

One event per registration change (TS Core 1.1.1 §6.2: Register, Update, De-register, and
the server-side end of a lifetime), one per notification of an observation (§6.4.4), and
one per queued request completed after a restart, whose original caller is gone (§6.5).

Each subscriber gets every event, in the order the server produced them::

    async with server.subscribe() as events:
        ev = await asyncio.wait_for(events.get(), timeout=5)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fotakit.lwm2m.model import Content
from fotakit.lwm2m.path import Path
from fotakit.server.registrations import Registration


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base class: something happened concerning ``endpoint``."""

    endpoint: str


@dataclass(frozen=True, kw_only=True)
class Registered(Event):
    """A Register was accepted; ``replaced`` is the registration it superseded, if any."""

    registration: Registration
    replaced: Registration | None = None


@dataclass(frozen=True, kw_only=True)
class Updated(Event):
    """An Update was accepted; ``registration`` holds the parameters after it."""

    registration: Registration
    previous: Registration


@dataclass(frozen=True, kw_only=True)
class Deregistered(Event):
    """The client sent De-register."""

    registration: Registration


@dataclass(frozen=True, kw_only=True)
class Expired(Event):
    """The lifetime (plus grace) passed without an Update; the registration is gone."""

    registration: Registration


@dataclass(frozen=True, kw_only=True)
class Notification(Event):
    """A notification of observation ``observation_id`` (the first value included)."""

    observation_id: str
    path: Path
    content: Content
    initial: bool = False


@dataclass(frozen=True, kw_only=True)
class ObservationEnded(Event):
    """An observation stopped: cancelled, re-registered, de-registered, or a 4.xx/5.xx."""

    observation_id: str
    path: Path
    reason: str


@dataclass(frozen=True, kw_only=True)
class RequestQueued(Event):
    """A request for a sleeping queue-mode client was stored; it goes out on next contact."""

    request_id: int
    operation: str
    path: Path


@dataclass(frozen=True, kw_only=True)
class QueuedRequestCompleted(Event):
    """A queued request restored after a restart (its caller is gone) got its answer.

    ``code`` is the CoAP response code (``"2.05"``), or None when no answer came, in
    which case ``error`` says why. ``content`` is the decoded payload of a Read.
    """

    request_id: int
    operation: str
    path: Path
    code: str | None
    content: Content | None = None
    payload: bytes = b""
    error: str | None = None


@dataclass
class Subscription:
    """One subscriber's queue of events (unbounded: a subscriber must keep reading)."""

    _queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)

    async def get(self) -> Event:
        return await self._queue.get()

    def get_nowait(self) -> Event:
        return self._queue.get_nowait()

    def empty(self) -> bool:
        return self._queue.empty()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            yield await self._queue.get()


class EventBus:
    """Fan-out: :meth:`publish` puts each event on every current subscription."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    def publish(self, event: Event) -> None:
        for sub in list(self._subscriptions):
            sub._queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        sub = Subscription()
        self._subscriptions.append(sub)
        try:
            yield sub
        finally:
            self._subscriptions.remove(sub)

    async def events(self) -> AsyncIterator[Event]:
        """Every event from now on, as an async iterator (unsubscribes when closed)."""
        async with self.subscribe() as sub:
            while True:
                yield await sub.get()
