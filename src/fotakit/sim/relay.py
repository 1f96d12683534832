"""An in-process UDP relay that impairs the path between CoAP clients and a server.

netem is not available where fotakit's benchmarks and simulator run, so the relay stands
in for a slow, lossy radio link (docs/simulator.md, docs/benchmarks.md): each
datagram is delayed by a fixed one-way ``delay`` plus uniform ``jitter``, dropped with
probability ``loss`` (i.i.d., from a seeded RNG so runs repeat), and optionally serialised
at ``bandwidth`` bytes per second. Each direction has its own :class:`Impairment` and its
own counters.

Clients send to :attr:`UdpRelay.address`; each client address gets its own upstream
socket towards the server, so the server sees one distinct peer per client and replies
find their way back. ``upstream_host`` chooses the local address that socket binds to
(fixed, or per client, e.g. the client's own host so the server sees each simulated
device at its own 127.x.y.z and rate limits per source host apply per device).
With ``idle_timeout`` a session that carried nothing for that long is closed with its
socket (clients that come and go do not pile up sockets in a long run).

Datagrams of one direction and one client are delivered in the order they were sent
(jitter never reorders them: a later datagram waits for an earlier one), which is how a
single radio bearer behaves.

Delays count from the moment a datagram reached the relay's socket (the kernel's receive
timestamp, ``SIOCGSTAMPNS`` on Linux), not from when the relay's event loop got round to
reading it: a sleeping process takes 0.1-0.3 ms to wake up for a datagram, and counting
from the read would add that on top of the configured delay, unmeasured. Where the
timestamp is not available the read time is used.

Outages take the whole link down (:meth:`UdpRelay.set_outage`) or only the clients of
one source host (``host=``), which is how the fleet simulator takes one device offline
while the other devices sharing its relay carry on.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: read times only
    fcntl = None  # type: ignore[assignment]

Address = tuple[str, int]

MAX_SESSIONS: Final = 65536
MAX_BACKLOG: Final = 1024
"""Datagrams of one client held while its upstream socket is being made."""
SPIN: Final = 0.002
SIOCGSTAMPNS: Final = 0x8907
"""Linux ioctl: receive timestamp (CLOCK_REALTIME timespec) of the last datagram read."""
MAX_TRACE: Final = 1_000_000
"""At most this many events are kept when tracing (then tracing stops)."""
MAX_STAMP_AGE: Final = 1.0
"""A kernel timestamp older than this (or in the future) is distrusted (clock stepped)."""


def _enable_stamps(transport: asyncio.BaseTransport) -> int | None:
    """The socket's fd with receive timestamps switched on, or None where unsupported."""
    sock = transport.get_extra_info("socket")
    if fcntl is None or sock is None:
        return None
    fd = int(sock.fileno())
    try:
        # The first request switches timestamping on; it fails (ENOENT): nothing read yet.
        fcntl.ioctl(fd, SIOCGSTAMPNS, bytes(16))
    except OSError as exc:
        if exc.errno != 2:
            return None
    return fd


def _arrival(fd: int | None, now: float) -> float:
    """Loop time at which the datagram just read from ``fd`` reached the socket."""
    if fd is None or fcntl is None:
        return now
    try:
        sec, nsec = struct.unpack("qq", fcntl.ioctl(fd, SIOCGSTAMPNS, bytes(16)))
    except OSError:
        return now
    age = time.time() - (sec + nsec * 1e-9)
    return now - age if 0.0 <= age < MAX_STAMP_AGE else now


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
    """Sum of the delays actually applied to forwarded datagrams, each from its arrival at
    the relay's socket to its forwarding (timers fire late; wake-ups take time)."""
    read_lag_total: float = 0.0
    """Sum over arrived datagrams of arrival-to-read time: the relay's own wake-up latency,
    which the configured delay absorbs (see the module doc)."""
    outage_dropped: int = 0
    """Datagrams lost to an outage (:meth:`UdpRelay.set_outage`); also counted in dropped."""

    @property
    def mean_delay(self) -> float:
        return self.delay_total / self.datagrams_out if self.datagrams_out else 0.0

    @property
    def mean_read_lag(self) -> float:
        return self.read_lag_total / self.datagrams_in if self.datagrams_in else 0.0


@dataclass(slots=True)
class _InFlight:
    at: float
    arrived: float
    size: int
    deliver: Callable[[], None]
    event: str


@dataclass(slots=True)
class _Lane:
    """One direction for one client: its impairment, RNG and scheduling state."""

    impairment: Impairment
    rng: random.Random
    stats: DirectionStats
    host: str = ""
    """The client's host (per-host outages apply to it)."""
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
        self._fd: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._fd = _enable_stamps(transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay._from_server(self._client, data, self._fd)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable while the server restarts: the datagram is lost


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay) -> None:
        self._relay = relay
        self._fd: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._fd = _enable_stamps(transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay._from_client(data, (addr[0], addr[1]), self._fd)

    def error_received(self, exc: Exception) -> None:
        pass


@dataclass(slots=True)
class _Session:
    up: _Lane
    down: _Lane
    transport: asyncio.DatagramTransport | None = None
    backlog: list[bytes] = field(default_factory=list)
    last_active: float = 0.0
    """Loop time of the last datagram either way (for ``idle_timeout``)."""


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
        trace: bool = False,
        upstream_host: str | Callable[[Address], str] | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        """``uplink`` is client→server, ``downlink`` server→client (default: as uplink).

        ``spin``: seconds before a datagram is due during which the relay polls instead of
        sleeping (precise delays for a little CPU; 0 to always sleep).

        ``trace``: record every datagram's arrival and forwarding in :attr:`trace` as
        ``(event, loop time)``, event one of ``up-in``, ``up-out``, ``down-in``,
        ``down-out`` — enough to split a lockstep exchange into the server's and the
        client's turnaround and the relay's own share.

        ``upstream_host``: the local address each client's upstream socket binds to — a
        host, or a function of the client's address (e.g. ``lambda c: c[0]``: the same
        host as the client). None: the operating system picks it.

        ``idle_timeout``: a client's session (and its upstream socket) is closed after this
        many seconds without a datagram either way, so clients that come and go (a
        download's socket, a device that rebooted onto a new port) do not pile up open
        sockets; make it longer than any quiet spell of a live client (an LwM2M client's
        registration lifetime). None: sessions live until :meth:`stop`.
        """
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
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
        self.trace: list[tuple[str, float]] | None = [] if trace else None
        self._outage = False
        self._outage_timer: asyncio.TimerHandle | None = None
        self._upstream_host = upstream_host
        self._down_hosts: dict[str, asyncio.TimerHandle | None] = {}
        self._idle_timeout = idle_timeout
        self._last_sweep = 0.0
        self._next_index = 0
        self.sessions_closed = 0
        """Sessions closed for being idle (see ``idle_timeout``)."""

    # -- outages ----------------------------------------------------------------------------

    @property
    def outage(self) -> bool:
        """True while the link is down: every datagram, either way, is lost."""
        return self._outage

    def set_outage(self, down: bool, *, host: str | None = None) -> None:
        """Take the link down (``True``) or bring it back (``False``).

        While down, datagrams arriving from either side are dropped, and so are datagrams
        already in flight that fall due: a radio link that loses coverage loses what was
        in the air too. Drops count in :attr:`DirectionStats.dropped` and
        :attr:`DirectionStats.outage_dropped`; the loss RNG is not consumed, so the random
        losses after the outage are the ones the seed gives without it.

        ``host``: only the clients whose source address is this host lose their link (the
        whole link's state is left alone).
        """
        if host is not None:
            timer = self._down_hosts.pop(host, None)
            if timer is not None:
                timer.cancel()
            if down:
                self._down_hosts[host] = None
            return
        if self._outage_timer is not None:
            self._outage_timer.cancel()
            self._outage_timer = None
        self._outage = down

    def outage_for(self, seconds: float, *, host: str | None = None) -> None:
        """Take the link down now and bring it back after ``seconds`` (a timed blackout);
        ``host``: only for the clients of that source host."""
        if seconds < 0:
            raise ValueError("an outage cannot last a negative time")
        assert self._loop is not None, "start the relay first"
        if host is not None:
            self.set_outage(True, host=host)
            self._down_hosts[host] = self._loop.call_later(
                seconds, lambda: self.set_outage(False, host=host)
            )
            return
        self.set_outage(True)
        self._outage_timer = self._loop.call_later(seconds, self.set_outage, False)

    def host_down(self, host: str) -> bool:
        """True while the clients of ``host`` have no link (its own or the whole link's
        outage)."""
        return self._outage or host in self._down_hosts

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
        self.set_outage(False)
        for timer in self._down_hosts.values():
            if timer is not None:
                timer.cancel()
        self._down_hosts.clear()
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
        self._sweep()
        if len(self._sessions) >= MAX_SESSIONS:
            return None
        index = self._next_index
        self._next_index += 1
        session = _Session(
            up=_Lane(
                self.uplink, random.Random(f"{self._seed}/up/{index}"), self.upstream, client[0]
            ),
            down=_Lane(
                self.downlink,
                random.Random(f"{self._seed}/down/{index}"),
                self.downstream,
                client[0],
            ),
        )
        self._sessions[client] = session
        assert self._loop is not None
        task = self._loop.create_task(self._connect(client, session))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
        return session

    async def _connect(self, client: Address, session: _Session) -> None:
        assert self._loop is not None
        bind = self._upstream_host
        host = bind(client) if callable(bind) else bind
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Downstream(self, client),
            remote_addr=self.target,
            local_addr=(host, 0) if host is not None else None,
        )
        session.transport = transport
        for data in session.backlog:
            transport.sendto(data)
        session.backlog.clear()

    def _sweep(self) -> None:
        """Close the sessions idle for longer than ``idle_timeout`` (checked at most every
        quarter of it, when a new client arrives)."""
        if self._idle_timeout is None or self._loop is None:
            return
        now = self._loop.time()
        if now - self._last_sweep < self._idle_timeout / 4:
            return
        self._last_sweep = now
        for client, session in list(self._sessions.items()):
            busy = session.up.queue or session.down.queue
            if busy or now - session.last_active <= self._idle_timeout:
                continue
            if session.transport is None:
                continue  # its socket is still being made
            session.transport.close()
            del self._sessions[client]
            self.sessions_closed += 1

    def _from_client(self, data: bytes, client: Address, fd: int | None = None) -> None:
        session = self._session(client)
        if session is None:
            self.upstream.dropped += 1
            return
        assert self._loop is not None
        session.last_active = self._loop.time()
        self._later(session.up, data, lambda: self._to_server(session, data), fd, "up")

    def _from_server(self, client: Address, data: bytes, fd: int | None = None) -> None:
        session = self._sessions.get(client)
        if session is None:
            return
        assert self._loop is not None
        session.last_active = self._loop.time()
        self._later(session.down, data, lambda: self._to_client(client, data), fd, "down")

    def _later(
        self,
        lane: _Lane,
        data: bytes,
        deliver: Callable[[], None],
        fd: int | None,
        direction: str,
    ) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        arrived = _arrival(fd, now)
        lane.stats.read_lag_total += now - arrived
        self._note(direction + "-in", arrived)
        if self._outage or lane.host in self._down_hosts:
            lane.stats.datagrams_in += 1
            lane.stats.bytes_in += len(data)
            lane.stats.dropped += 1
            lane.stats.outage_dropped += 1
            return
        at = lane.schedule(arrived, len(data))
        if at is None:
            return
        lane.queue.append(_InFlight(at, arrived, len(data), deliver, direction + "-out"))
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
            if self._outage or lane.host in self._down_hosts:
                lane.stats.dropped += 1
                lane.stats.outage_dropped += 1
                continue
            lane.stats.datagrams_out += 1
            lane.stats.bytes_out += item.size
            lane.stats.delay_total += now - item.arrived
            item.deliver()
            self._note(item.event, now)
        if lane.queue:
            self._arm(lane)

    def _note(self, event: str, at: float) -> None:
        if self.trace is not None:
            if len(self.trace) < MAX_TRACE:
                self.trace.append((event, at))

    def _to_server(self, session: _Session, data: bytes) -> None:
        if session.transport is None:
            if len(session.backlog) < MAX_BACKLOG:  # bounded while the socket is made
                session.backlog.append(data)
            else:
                session.up.stats.dropped += 1
        else:
            session.transport.sendto(data)

    def _to_client(self, client: Address, data: bytes) -> None:
        if self._listener is not None:
            self._listener.sendto(data, client)
