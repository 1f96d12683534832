"""An observation the server holds on a client resource (TS Core 1.1.1 §6.4.3, RFC 7641).

aiocoap does the observe plumbing (tokens, ordering by sequence number, RST of unknown
notifications). This class is what a caller holds: the first value in :attr:`initial`,
then every notification, in order, by ``async for notification in obs`` (the same
notifications are also published as :class:`~fotakit.server.events.Notification`
events). Iteration ends when the observation ends, whatever the reason.

Cancellation (§6.4.5). aiocoap assigns every request a fresh token and offers no way to
send a GET with Observe=1 carrying the token of the observation, so ``cancel_observe``
does both halves RFC 7641 §3.6 allows: it sends a GET with Observe=1 on the same path
(clients that match the cancel by path stop at once) and drops its interest in the old
token, so that the next notification on it is answered with RST, which ends the
observation in every compliant client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

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
    token: bytes = b""
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
            observation = getattr(handle, "observation", None)
            if observation is not None and not observation.cancelled:
                observation.cancel()
            # Drop aiocoap's interest in the token now (not at the next notification), so
            # the very next notification is answered with RST (RFC 7641 §3.6).
            stop_interest = getattr(handle, "_stop_interest", None)
            if callable(stop_interest):
                stop_interest()
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
