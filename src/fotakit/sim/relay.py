"""An in-process UDP relay that impairs the path between CoAP clients and a server.

netem is not available where fotakit's benchmarks and simulator run, so the relay stands
in for a slow, lossy radio link (docs/performance-anchors.md §7, "common harness"): each
datagram is delayed by a fixed one-way ``delay`` plus uniform ``jitter``, dropped with
probability ``loss`` (i.i.d., from a seeded RNG so runs repeat), and optionally serialised
at ``bandwidth`` bytes per second. Each direction has its own :class:`Impairment` and its
own counters.

Clients send to :attr:`UdpRelay.address`; each client address gets its own upstream
socket towards the server, so the server sees one distinct peer per client and replies
find their way back. Datagrams of one direction and one client are delivered in the order
they were sent (jitter never reorders them: a later datagram waits for an earlier one),
which is how a single radio bearer behaves.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

Address = tuple[str, int]

MAX_SESSIONS: Final = 65536
SPIN: Final = 0.002


@dataclass(frozen=True, slots=True)
class Impairment:
    """What one direction of the link does to a datagram."""

    delay: float = 0.0
    """One-way delay in seconds (RTT = uplink delay + downlink delay)."""
    jitter: float = 0.0
    """Extra delay, uniform in [0, jitter] seconds, per datagram."""
    loss: float = 0.0
    """Probability in [0, 1) that a datagram is dropped."""
    bandwidth: float | None = None
    """Bytes per second the direction carries (None: unlimited)."""

    def __post_init__(self) -> None:
        if self.delay < 0 or self.jitter < 0:
            raise ValueError("delay and jitter must not be negative")
        if not 0 <= self.loss < 1:
            raise ValueError("loss must be in [0, 1)")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be positive")


@dataclass(slots=True)
class DirectionStats:
    """Counters of one direction: what arrived, what was forwarded, what was dropped."""

    datagrams_in: int = 0
    bytes_in: int = 0
    datagrams_out: int = 0
    bytes_out: int = 0
    dropped: int = 0
    delay_total: float = 0.0
    """Sum of the delays actually applied to forwarded datagrams (timers fire late)."""

    @property
    def mean_delay(self) -> float:
        return self.delay_total / self.datagrams_out if self.datagrams_out else 0.0


@dataclass(slots=True)
class _InFlight:
    at: float
    arrived: float
    size: int
    deliver: Callable[[], None]


@dataclass(slots=True)
class _Lane:
    """One direction for one client: its impairment, RNG and scheduling state."""

    impairment: Impairment
    rng: random.Random
    stats: DirectionStats
    link_free_at: float = 0.0
    last_delivery: float = 0.0
    queue: deque[_InFlight] = field(default_factory=deque)
    handle: asyncio.Handle | None = None

    def schedule(self, now: float, size: int) -> float | None:
        """When a datagram of ``size`` bytes arriving ``now`` is delivered; None: dropped."""
        self.stats.datagrams_in += 1
        self.stats.bytes_in += size
        imp = self.impairment
        if imp.loss and self.rng.random() < imp.loss:
            self.stats.dropped += 1
            return None
        sent = now
        if imp.bandwidth is not None:
            sent = max(now, self.link_free_at) + size / imp.bandwidth
            self.link_free_at = sent
        at = sent + imp.delay + (self.rng.uniform(0.0, imp.jitter) if imp.jitter else 0.0)
        at = max(at, self.last_delivery)  # FIFO: never before the previous datagram
        self.last_delivery = at
        return at


class _Downstream(asyncio.DatagramProtocol):
    """The relay's socket towards the server for one client: replies go back to it."""

    def __init__(self, relay: UdpRelay, client: Address) -> None:
        self._relay = relay
        self._client = client

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay._from_server(self._client, data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable while the server restarts: the datagram is lost


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay) -> None:
        self._relay = relay

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay._from_client(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        pass


@dataclass(slots=True)
class _Session:
    up: _Lane
    down: _Lane
    transport: asyncio.DatagramTransport | None = None
    backlog: list[bytes] = field(default_factory=list)


class UdpRelay:
    """Relay datagrams between clients and ``target`` with impairments; see module doc."""

    def __init__(
        self,
        target: Address,
        *,
        uplink: Impairment | None = None,
        downlink: Impairment | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        spin: float = SPIN,
    ) -> None:
        """``uplink`` is client→server, ``downlink`` server→client (default: as uplink).

        ``spin``: seconds before a datagram is due during which the relay polls instead of
        sleeping (precise delays for a little CPU; 0 to always sleep).
        """
        self.target = target
        self.uplink = uplink or Impairment()
        self.downlink = downlink or self.uplink
        self._host = host
        self._port = port
        self._seed = seed
        self.spin = spin
        self.upstream = DirectionStats()
        self.downstream = DirectionStats()
        self._sessions: dict[Address, _Session] = {}
        self._listener: asyncio.DatagramTransport | None = None
        self._pending: set[asyncio.Handle] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.address: Address = (host, 0)

    async def start(self) -> Address:
        """Bind the listening socket; returns the address clients should send to."""
        self._loop = asyncio.get_running_loop()
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Listener(self), local_addr=(self._host, self._port)
        )
        self._listener = transport
        sockname = transport.get_extra_info("sockname")
        self.address = (sockname[0], int(sockname[1]))
        return self.address

    async def stop(self) -> None:
        """Drop everything in flight and close every socket."""
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        for session in self._sessions.values():
            if session.transport is not None:
                session.transport.close()
        self._sessions.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    async def __aenter__(self) -> UdpRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def clients(self) -> int:
        return len(self._sessions)

    # -- forwarding -------------------------------------------------------------------------

    def _session(self, client: Address) -> _Session | None:
        session = self._sessions.get(client)
        if session is not None:
            return session
        if len(self._sessions) >= MAX_SESSIONS:
            return None
        index = len(self._sessions)
        session = _Session(
            up=_Lane(self.uplink, random.Random(f"{self._seed}/up/{index}"), self.upstream),
            down=_Lane(self.downlink, random.Random(f"{self._seed}/down/{index}"), self.downstream),
        )
        self._sessions[client] = session
        assert self._loop is not None
        task = self._loop.create_task(self._connect(client, session))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
        return session

    async def _connect(self, client: Address, session: _Session) -> None:
        assert self._loop is not None
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Downstream(self, client), remote_addr=self.target
        )
        session.transport = transport
        for data in session.backlog:
            transport.sendto(data)
        session.backlog.clear()

    def _from_client(self, data: bytes, client: Address) -> None:
        session = self._session(client)
        if session is None:
            self.upstream.dropped += 1
            return
        self._later(session.up, data, lambda: self._to_server(session, data))

    def _from_server(self, client: Address, data: bytes) -> None:
        session = self._sessions.get(client)
        if session is None:
            return
        self._later(session.down, data, lambda: self._to_client(client, data))

    def _later(self, lane: _Lane, data: bytes, deliver: Callable[[], None]) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        at = lane.schedule(now, len(data))
        if at is None:
            return
        lane.queue.append(_InFlight(at, now, len(data), deliver))
        if len(lane.queue) == 1:
            self._arm(lane)

    def _arm(self, lane: _Lane) -> None:
        """Wake up shortly before the lane's next datagram is due (the queue is FIFO)."""
        loop = self._loop
        assert loop is not None
        wake = lane.queue[0].at - self.spin
        if wake <= loop.time():
            handle: asyncio.Handle = loop.call_soon(self._due, lane)
        else:
            handle = loop.call_at(wake, self._due, lane)
        lane.handle = handle
        self._pending.add(handle)

    def _due(self, lane: _Lane) -> None:
        # The loop's timers wake up to a millisecond late (epoll rounds its timeout up) and
        # a sleeping process wakes slowly: the last ``spin`` seconds are spent polling, so
        # the delay added is the configured one, not the OS timer slack on top of it.
        loop = self._loop
        if lane.handle is not None:
            self._pending.discard(lane.handle)
            lane.handle = None
        if loop is None or self._listener is None:
            return
        now = loop.time()
        while lane.queue and lane.queue[0].at <= now:
            item = lane.queue.popleft()
            lane.stats.datagrams_out += 1
            lane.stats.bytes_out += item.size
            lane.stats.delay_total += now - item.arrived
            item.deliver()
        if lane.queue:
            self._arm(lane)

    def _to_server(self, session: _Session, data: bytes) -> None:
        if session.transport is None:
            session.backlog.append(data)
        else:
            session.transport.sendto(data)

    def _to_client(self, client: Address, data: bytes) -> None:
        if self._listener is not None:
            self._listener.sendto(data, client)
