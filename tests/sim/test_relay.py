"""The impairment relay with real UDP sockets on loopback: delay, loss, bandwidth, counters."""

from __future__ import annotations

import asyncio
import math
import time
from typing import cast

import pytest

from fotakit.sim import Impairment, UdpRelay

Address = tuple[str, int]


class _Echo(asyncio.DatagramProtocol):
    """A server that answers every datagram with the same bytes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.transport.sendto(data, addr)


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.queue.put_nowait((asyncio.get_running_loop().time(), data))


async def _echo_server() -> tuple[asyncio.DatagramTransport, Address]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")[:2]


async def _client(relay: UdpRelay) -> tuple[asyncio.DatagramTransport, _Collector]:
    loop = asyncio.get_running_loop()
    collector = _Collector()
    transport, _ = await loop.create_datagram_endpoint(lambda: collector, remote_addr=relay.address)
    return transport, collector


async def test_round_trip_takes_at_least_both_one_way_delays() -> None:
    server, target = await _echo_server()
    relay = UdpRelay(target, uplink=Impairment(delay=0.03), downlink=Impairment(delay=0.02))
    async with relay:
        client, collector = await _client(relay)
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        client.sendto(b"ping")
        received_at, data = await asyncio.wait_for(collector.queue.get(), 2)
        client.close()
    server.close()
    assert data == b"ping"
    assert received_at - sent_at >= 0.05 - 0.002  # the loop clock's resolution
    assert relay.upstream.mean_delay >= 0.03 - 0.002
    assert relay.downstream.mean_delay >= 0.02 - 0.002


async def test_jitter_never_reorders_datagrams_of_one_client() -> None:
    server, target = await _echo_server()
    relay = UdpRelay(target, uplink=Impairment(delay=0.001, jitter=0.02), seed=7)
    async with relay:
        client, collector = await _client(relay)
        for i in range(50):
            client.sendto(i.to_bytes(2, "big"))
        got = [await asyncio.wait_for(collector.queue.get(), 2) for _ in range(50)]
        client.close()
    server.close()
    assert [int.from_bytes(data, "big") for _, data in got] == list(range(50))


async def _relay_saw(relay: UdpRelay, count: int) -> None:
    # The datagrams are already in the relay's socket buffer: a few loop turns read them.
    for _ in range(10_000):
        if relay.upstream.datagrams_in == count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"relay saw {relay.upstream.datagrams_in} of {count} datagrams")


async def test_loss_rate_is_within_statistical_bounds_and_repeats_with_the_seed() -> None:
    n, p, batch = 2000, 0.2, 20  # batches small enough for the kernel's socket buffers
    dropped = []
    for _ in range(2):
        server, target = await _echo_server()
        relay = UdpRelay(target, uplink=Impairment(loss=p), downlink=Impairment(), seed=42)
        async with relay:
            client, collector = await _client(relay)
            received = 0
            for start in range(0, n, batch):
                for i in range(start, start + batch):
                    client.sendto(i.to_bytes(2, "big"))
                await _relay_saw(relay, start + batch)
                for _ in range(start + batch - relay.upstream.dropped - received):
                    await asyncio.wait_for(collector.queue.get(), 2)
                    received += 1
            delivered = n - relay.upstream.dropped
            assert received == delivered
            client.close()
            assert relay.upstream.datagrams_in == n
            assert relay.upstream.datagrams_out == delivered
            assert relay.downstream.datagrams_out == delivered
            assert relay.downstream.dropped == 0
        server.close()
        dropped.append(relay.upstream.dropped)
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(dropped[0] - n * p) < 5 * sigma
    assert dropped[0] == dropped[1]  # same seed, same drops


async def test_counters_count_datagrams_and_bytes_each_way() -> None:
    server, target = await _echo_server()
    async with UdpRelay(target) as relay:
        client, collector = await _client(relay)
        for size in (10, 200, 1000):
            client.sendto(bytes(size))
            await asyncio.wait_for(collector.queue.get(), 2)
        client.close()
        for stats in (relay.upstream, relay.downstream):
            assert (stats.datagrams_in, stats.datagrams_out, stats.dropped) == (3, 3, 0)
            assert stats.bytes_in == stats.bytes_out == 1210
    server.close()


async def test_bandwidth_cap_spaces_datagrams_by_their_serialisation_time() -> None:
    server, target = await _echo_server()
    relay = UdpRelay(target, uplink=Impairment(bandwidth=100_000), downlink=Impairment())
    async with relay:
        client, collector = await _client(relay)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(10):
            client.sendto(bytes(1000))  # 10 kB at 100 kB/s: at least 0.1 s
        got = [await asyncio.wait_for(collector.queue.get(), 2) for _ in range(10)]
        client.close()
    server.close()
    assert got[-1][0] - start >= 0.1 - 0.002


async def test_each_client_gets_its_own_path_to_the_server() -> None:
    server, target = await _echo_server()
    async with UdpRelay(target) as relay:
        clients = [await _client(relay) for _ in range(3)]
        for i, (transport, _) in enumerate(clients):
            transport.sendto(bytes([i]))
        for i, (transport, collector) in enumerate(clients):
            _, data = await asyncio.wait_for(collector.queue.get(), 2)
            assert data == bytes([i])
            transport.close()
        assert relay.clients == 3
    server.close()


@pytest.mark.parametrize(
    "kwargs", [{"delay": -1.0}, {"jitter": -0.1}, {"loss": 1.0}, {"loss": -0.1}, {"bandwidth": 0}]
)
def test_impossible_impairments_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Impairment(**kwargs)


async def test_delay_counts_from_arrival_at_the_socket_not_from_the_relays_read() -> None:
    # The relay's loop is kept busy while the datagram waits in its socket: the time it
    # spends unread belongs to the configured delay instead of being added to it.
    server, target = await _echo_server()
    relay = UdpRelay(target, uplink=Impairment(delay=0.05), downlink=Impairment(delay=0.0))
    async with relay:
        client, collector = await _client(relay)
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        client.sendto(b"ping")
        busy_until = time.monotonic() + 0.02
        while time.monotonic() < busy_until:  # bounded: 20 ms of a blocked event loop
            pass
        received_at, data = await asyncio.wait_for(collector.queue.get(), 2)
        client.close()
    server.close()
    assert data == b"ping"
    assert relay.upstream.mean_read_lag >= 0.02 - 0.002
    assert received_at - sent_at < 0.05 + 0.015  # not 0.05 + the 20 ms it sat unread


async def test_trace_records_each_datagrams_arrival_and_forwarding_in_order() -> None:
    server, target = await _echo_server()
    relay = UdpRelay(
        target, uplink=Impairment(delay=0.01), downlink=Impairment(delay=0.02), trace=True
    )
    async with relay:
        client, collector = await _client(relay)
        client.sendto(b"ping")
        await asyncio.wait_for(collector.queue.get(), 2)
        client.close()
    server.close()
    assert relay.trace is not None
    assert [event for event, _ in relay.trace] == ["up-in", "up-out", "down-in", "down-out"]
    times = dict(relay.trace)
    assert times["up-out"] - times["up-in"] >= 0.01 - 0.001
    assert times["down-out"] - times["down-in"] >= 0.02 - 0.001
    assert times["up-out"] <= times["down-in"]
    assert UdpRelay(target).trace is None  # off unless asked for
