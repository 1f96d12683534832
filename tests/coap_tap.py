"""A relay that decodes every CoAP datagram it carries: counting what a peer really sent.

:class:`CoapTap` is a :class:`fotakit.sim.relay.UdpRelay` without impairments that keeps
each datagram, either way, as an aiocoap ``Message`` in arrival order, with its size on
the wire (the UDP payload's length). A client registers
with the tap's address instead of the server's; the tests then count, for example, the
notifications (responses carrying an Observe option, RFC 7641 §3.2) a device sent after
its observation was cancelled, and see how the server answered each (ACK or RST).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import aiocoap
from aiocoap.numbers.types import ACK, RST

from fotakit.sim.relay import Address, UdpRelay

WAIT = 5.0


@dataclass(frozen=True)
class Seen:
    """One datagram through the tap: ``up`` is client -> server."""

    up: bool
    message: aiocoap.Message
    size: int = 0
    """Bytes of the datagram (UDP payload) as it crossed the tap."""


class CoapTap(UdpRelay):
    """A relay without impairments that keeps every datagram, decoded, in order."""

    def __init__(self, target: Address) -> None:
        super().__init__(target)
        self.seen: list[Seen] = []
        self._changed = asyncio.Event()

    def _keep(self, up: bool, data: bytes) -> None:
        self.seen.append(Seen(up, aiocoap.Message.decode(data), len(data)))
        self._changed.set()

    def _from_client(self, data: bytes, client: Address, fd: int | None = None) -> None:
        self._keep(True, data)
        super()._from_client(data, client, fd)

    def _from_server(self, client: Address, data: bytes, fd: int | None = None) -> None:
        self._keep(False, data)
        super()._from_server(client, data, fd)

    async def wait_for(self, found: Callable[[list[Seen]], bool], timeout: float = WAIT) -> None:  # noqa: ASYNC109
        """Until ``found(self.seen)`` holds (re-checked at each datagram), bounded."""
        async with asyncio.timeout(timeout):
            while not found(self.seen):
                self._changed.clear()
                await self._changed.wait()

    def notifications_after(self, mark: int) -> list[aiocoap.Message]:
        """What clients sent after ``seen[mark]`` that carries an Observe option."""
        return [s.message for s in self.seen[mark:] if s.up and s.message.opt.observe is not None]

    def answers_to(self, mid: int) -> list[object]:
        """The types of the server's ACK/RST messages for a client's message ``mid``."""
        return [
            s.message.mtype
            for s in self.seen
            if not s.up and s.message.mid == mid and s.message.mtype in (ACK, RST)
        ]
