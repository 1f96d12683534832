"""An observation the server holds on a client resource (TS Core 1.1.1 §6.4.3, RFC 7641).

aiocoap does the observe plumbing (tokens, ordering by sequence number). This class is
what a caller holds: the first value in :attr:`initial`, then every notification, in
order, by ``async for notification in obs`` (the same notifications are also published as
:class:`~fotakit.server.events.Notification` events). Iteration ends when the observation
ends, whatever the reason.

Cancellation (TS Core §6.4.5, RFC 7641 §3.6). Ending an observation here drops aiocoap's
interest in its token at once, so any later notification on it is answered with RST
(reactive cancellation; NON notifications too, see :mod:`fotakit.coap.compat`).
``LwM2MServer.cancel_observe`` then also cancels proactively: a GET with Observe=1 under
the observation's own :attr:`Observation.token` and the registration's options, which
ends the observation on the device before it sends anything more.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fotakit.coap.compat import stop_observing
from fotakit.lwm2m.codecs import ContentFormat
from fotakit.lwm2m.model import Content
from fotakit.lwm2m.path import Path
from fotakit.server.events import Notification


@dataclass(eq=False)
class Observation:
    """A live (or ended) observation of ``path`` on ``endpoint``."""

    id: str
    endpoint: str
    registration_id: str
    path: Path
    format: ContentFormat | None
    initial: Content = field(default_factory=dict)
    token: bytes = b""  # the CoAP token of the registration (RFC 7641 §3.6 cancel)
    ended: bool = False
    end_reason: str = ""
    _queue: asyncio.Queue[Notification | None] = field(default_factory=asyncio.Queue)
    _handle: Any = None  # the aiocoap request whose .observation feeds us

    def _push(self, notification: Notification) -> None:
        if not self.ended:
            self._queue.put_nowait(notification)

    def _end(self, reason: str) -> bool:
        """Mark ended; False if it already was. Stops aiocoap's interest in the token."""
        if self.ended:
            return False
        self.ended = True
        self.end_reason = reason
        self._queue.put_nowait(None)
        handle, self._handle = self._handle, None
        if handle is not None:
            # Now, not at the next notification: that one is answered with RST.
            stop_observing(handle)
        return True

    def __aiter__(self) -> AsyncIterator[Notification]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Notification]:
        while True:
            item = await self._queue.get()
            if item is None:
                self._queue.put_nowait(None)  # later iterators end too
                return
            yield item

    async def next(self) -> Notification:
        """The next notification; raises StopAsyncIteration if the observation ended."""
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)
            raise StopAsyncIteration
        return item
