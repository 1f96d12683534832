"""Waiting for a server event in tests: :func:`next_event` (shared by the agent and the
update tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fotakit.server import Event

E = TypeVar("E", bound=Event)


async def next_event(
    events: Any,
    kind: type[E],
    where: Callable[[E], bool] = lambda _e: True,
    timeout: float = 20.0,  # noqa: ASYNC109
) -> E:
    """The next server event of ``kind`` matching ``where`` (others skipped), time-bounded."""

    async def find() -> E:
        for _ in range(1_000_000):
            ev = await events.get()
            if isinstance(ev, kind) and where(ev):
                return ev
        raise AssertionError(f"no matching {kind.__name__} among 1000000 events")

    return await asyncio.wait_for(find(), timeout)
