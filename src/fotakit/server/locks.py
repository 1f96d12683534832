"""One asyncio lock per endpoint name, so registration changes of one client stay in order.

Register, Update, De-register and expiry of one endpoint must commit and then change the
server's memory one at a time, in order (TS Core 1.1.1 §6.2: a later Register replaces an
earlier one; an Update refers to the registration that is current). Different endpoints
have nothing to order, and must not wait for each other: their store writes queue up
together, and the store commits them in one transaction (group commit, see
:mod:`fotakit.store.async_store`). A lock exists only while someone holds or awaits it.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class KeyedLock:
    """``async with locks.hold(endpoint): ...`` — mutual exclusion per key."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def hold(self, key: str) -> _Held:
        return _Held(self, key)

    def __len__(self) -> int:
        """How many keys are held or awaited right now."""
        return len(self._entries)

    async def _acquire(self, key: str) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        entry.users += 1
        try:
            await entry.lock.acquire()
        except BaseException:
            self._release_user(key, entry)
            raise
        return entry

    def _release(self, key: str, entry: _Entry) -> None:
        entry.lock.release()
        self._release_user(key, entry)

    def _release_user(self, key: str, entry: _Entry) -> None:
        entry.users -= 1
        if entry.users == 0:
            del self._entries[key]


class _Held:
    __slots__ = ("_entry", "_key", "_locks")

    def __init__(self, locks: KeyedLock, key: str) -> None:
        self._locks = locks
        self._key = key
        self._entry: _Entry | None = None

    async def __aenter__(self) -> None:
        self._entry = await self._locks._acquire(self._key)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._entry is not None
        self._locks._release(self._key, self._entry)
