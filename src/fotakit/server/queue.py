"""Queue mode: when a client is awake, and the requests waiting until it is.

TS Core 1.1.1 §6.5 and §8.3: a client in queue mode is reachable only for a while after
it sends something (Register, Update, a notification, a response); it stays awake at least
MAX_TRANSMIT_WAIT after its last message. The server must hold requests for a sleeping
client and send them when it next talks, instead of refusing them (Leshan's
``ClientSleepingException``, leshan#1286, is the pain point this answers).

Delivery is at most once: a queued request leaves the queue (and the database) right
before it is sent, so a crash mid-exchange never repeats an Execute.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from fotakit.server.requests import RequestSpec


class AwakeTracker:
    """Remembers when each endpoint last talked to us (monotonic clock, in memory only).

    After a restart nobody is awake until it talks: exactly right for queue mode.
    """

    def __init__(self, awake_time: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.awake_time = awake_time
        self._clock = clock
        self._last: dict[str, float] = {}

    def heard_from(self, endpoint: str) -> None:
        self._last[endpoint] = self._clock()

    def fell_asleep(self, endpoint: str) -> None:
        self._last.pop(endpoint, None)

    def forget(self, endpoint: str) -> None:
        self._last.pop(endpoint, None)

    def is_awake(self, endpoint: str) -> bool:
        last = self._last.get(endpoint)
        return last is not None and self._clock() - last < self.awake_time


@dataclass(eq=False)
class PendingRequest:
    """A request waiting for its client. ``future`` is None when restored after a restart.

    ``request_id`` is the store's ID, or None for requests not worth persisting (the
    re-establishment of a persisted observation, which is stored as an observation).
    """

    spec: RequestSpec
    request_id: int | None
    future: asyncio.Future[object] | None


class PendingQueues:
    """Per-endpoint FIFO queues of :class:`PendingRequest`."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[PendingRequest]] = {}

    def append(self, endpoint: str, item: PendingRequest) -> None:
        self._queues.setdefault(endpoint, deque()).append(item)

    def popleft(self, endpoint: str) -> PendingRequest | None:
        queue = self._queues.get(endpoint)
        if not queue:
            return None
        item = queue.popleft()
        if not queue:
            del self._queues[endpoint]
        return item

    def remove(self, endpoint: str, item: PendingRequest) -> bool:
        queue = self._queues.get(endpoint)
        if queue is None or item not in queue:
            return False
        queue.remove(item)
        if not queue:
            del self._queues[endpoint]
        return True

    def drain(self, endpoint: str) -> list[PendingRequest]:
        return list(self._queues.pop(endpoint, ()))

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def count(self, endpoint: str) -> int:
        return len(self._queues.get(endpoint, ()))

    def endpoints(self) -> list[str]:
        return list(self._queues)
