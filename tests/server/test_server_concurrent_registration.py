"""Many clients at once (TS Core 1.1.1 §6.2): commits are shared, outcomes are not.

Registers of different endpoints no longer wait for each other, so their store writes
meet in one transaction (group commit). Each client still gets 2.01 only after its own
registration is committed, and a registration the database refuses answers 5.00 and
changes nothing, whatever its neighbours in the batch did.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from server_fakes import WAIT, FakeDevice, make_config

from db_helpers import Commits, refuse_endpoint
from fotakit.lwm2m.objects import builtin_registry
from fotakit.server import LwM2MServer
from fotakit.server.locks import KeyedLock


@pytest.fixture
async def server_on(db_url: str) -> AsyncIterator[LwM2MServer]:
    srv = LwM2MServer(make_config(db_url, max_register_rate=1000.0, register_burst=1000))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def devices(server_on: LwM2MServer) -> AsyncIterator[list[FakeDevice]]:
    """Thirty devices, each on a UDP port of its own.

    One socket cannot make concurrent requests (CoAP's NSTART=1 serialises them), so
    every client here is its own device. aiocoap binds with SO_REUSEPORT, under which a
    socket bound to port 0 can be given a port another socket holds, and the two then
    share (lose) each other's datagrams: such a newcomer is closed at once and replaced
    (a bounded number of times).
    """
    kept: list[FakeDevice] = []
    ports = {server_on.port}
    try:
        for _ in range(90):
            if len(kept) == 30:
                break
            dev = await FakeDevice.start(builtin_registry(), {})
            if dev.port in ports:
                await dev.stop()
                continue
            ports.add(dev.port)
            kept.append(dev)
        assert len(kept) == 30, "could not bind 30 distinct device ports"
        yield kept
    finally:
        for dev in kept:
            await dev.stop()


async def _register(
    dev: FakeDevice, port: int, endpoint: str, lifetime: int = 300
) -> aiocoap.Message:
    query = [f"ep={endpoint}", f"lt={lifetime}", "lwm2m=1.1", "b=U"]
    return await dev.send(port, Code.POST, ("rd",), query, b"</1/0>,</3/0>,</5/0>")


def _location(response: aiocoap.Message) -> tuple[str, ...]:
    return tuple(response.opt.location_path)


async def test_concurrent_registers_share_commits_and_each_is_stored(
    server_on: LwM2MServer, devices: list[FakeDevice], commits: Commits
) -> None:
    endpoints = [f"ep-{i:02d}" for i in range(30)]
    commits.count = 0
    responses = await asyncio.wait_for(
        asyncio.gather(
            *(
                _register(dev, server_on.port, ep)
                for dev, ep in zip(devices, endpoints, strict=True)
            )
        ),
        WAIT,
    )
    written = commits.count

    assert [r.code for r in responses] == [Code.CREATED] * 30
    assert 1 <= written < 30
    ids = [_location(r)[1] for r in responses]
    assert len(set(ids)) == 30
    for ep, reg_id, dev in zip(endpoints, ids, devices, strict=True):
        reg = server_on.get(ep)
        assert reg is not None and reg.registration_id == reg_id
        assert reg.port == dev.port
    stored = await server_on.store.list_registrations()
    assert {(r.endpoint, r.registration_id) for r in stored} == set(
        zip(endpoints, ids, strict=True)
    )


async def test_a_register_the_database_refuses_answers_5_00_and_changes_nothing(
    server_on: LwM2MServer, devices: list[FakeDevice], db_url: str
) -> None:
    first = await _register(devices[5], server_on.port, "bad")
    assert first.code == Code.CREATED
    before = server_on.get("bad")
    assert before is not None
    refuse_endpoint(db_url, "bad")
    endpoints = [f"good-{i}" for i in range(5)] + ["bad"] + [f"good-{i}" for i in range(5, 10)]

    responses = await asyncio.wait_for(
        asyncio.gather(
            *(
                _register(dev, server_on.port, ep, 99)
                for dev, ep in zip(devices, endpoints, strict=False)
            )
        ),
        WAIT,
    )

    assert responses[5].code == Code.INTERNAL_SERVER_ERROR
    others = responses[:5] + responses[6:]
    assert [r.code for r in others] == [Code.CREATED] * 10
    assert server_on.get("bad") == before
    stored = await server_on.store.get_registration_by_endpoint("bad")
    assert stored is not None and stored.registration_id == before.registration_id
    assert len(server_on.registrations) == 11
    # The client still holds a working registration: its Update is accepted.
    update = await devices[5].send(server_on.port, Code.POST, _location(first), ["lt=60"])
    assert update.code == Code.CHANGED


async def test_concurrent_updates_and_deregisters_of_many_clients_all_apply(
    server_on: LwM2MServer, devices: list[FakeDevice]
) -> None:
    endpoints = [f"ep-{i:02d}" for i in range(20)]
    locations = []
    for dev, ep in zip(devices, endpoints, strict=False):
        response = await _register(dev, server_on.port, ep)
        assert response.code == Code.CREATED
        locations.append(_location(response))

    async def update_then_maybe_leave(i: int) -> list[aiocoap.Message]:
        # One client waits for each answer (CoAP does not order concurrent requests);
        # the twenty clients run alongside each other.
        dev = devices[i]
        answers = [await dev.send(server_on.port, Code.POST, locations[i], ["lt=600"])]
        if i % 2:
            answers.append(await dev.send(server_on.port, Code.DELETE, locations[i]))
        return answers

    results = await asyncio.wait_for(
        asyncio.gather(*(update_then_maybe_leave(i) for i in range(20))), WAIT
    )

    for i, codes in enumerate([[r.code for r in rs] for rs in results]):
        assert codes == ([Code.CHANGED, Code.DELETED] if i % 2 else [Code.CHANGED])
    assert sorted(server_on.registrations) == endpoints[::2]
    assert all(r.lifetime == 600 for r in server_on.registrations.values())
    stored = await server_on.store.list_registrations()
    assert [(r.endpoint, r.lifetime) for r in stored] == [(ep, 600) for ep in endpoints[::2]]


# -- the per-endpoint lock ---------------------------------------------------------------


async def test_keyed_lock_excludes_per_key_and_lets_other_keys_through() -> None:
    locks = KeyedLock()
    order: list[str] = []
    a_held = asyncio.Event()
    release_a = asyncio.Event()

    async def first_a() -> None:
        async with locks.hold("a"):
            order.append("a1 in")
            a_held.set()
            await release_a.wait()
            order.append("a1 out")

    async def second_a() -> None:
        async with locks.hold("a"):
            order.append("a2 in")

    async def only_b() -> None:
        async with locks.hold("b"):
            order.append("b in")

    t1 = asyncio.create_task(first_a())
    await asyncio.wait_for(a_held.wait(), WAIT)
    t2 = asyncio.create_task(second_a())
    await asyncio.wait_for(only_b(), WAIT)  # "b" does not wait for "a"
    assert order == ["a1 in", "b in"]
    assert len(locks) == 1  # "b" was dropped once free; "a" is held and awaited
    release_a.set()
    await asyncio.wait_for(asyncio.gather(t1, t2), WAIT)
    assert order == ["a1 in", "b in", "a1 out", "a2 in"]
    assert len(locks) == 0


async def test_keyed_lock_forgets_a_waiter_that_was_cancelled() -> None:
    locks = KeyedLock()
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("k"):
            held.set()
            await release.wait()

    async def waiter() -> None:
        async with locks.hold("k"):
            raise AssertionError("a cancelled waiter must not get the lock")

    t1 = asyncio.create_task(holder())
    await asyncio.wait_for(held.wait(), WAIT)
    t2 = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # t2 is now waiting for the lock
    t2.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t2
    release.set()
    await asyncio.wait_for(t1, WAIT)
    assert len(locks) == 0
    async with locks.hold("k"):  # still usable
        assert len(locks) == 1


async def test_a_burst_larger_than_a_default_socket_buffer_is_answered_whole(
    server_on: LwM2MServer,
) -> None:
    """Registers that arrive while the loop is busy wait in the socket's receive buffer:
    a storm's worth fits (docs/benchmarks.md, B1), none is dropped for a device to
    retransmit 2-3 s later (RFC 7252 4.2)."""
    import socket

    n = 1500  # ~1.5 MB of kernel buffer on loopback: several times the Linux default
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        # sent without yielding: the server's loop reads none of them meanwhile
        for i in range(n):
            msg = aiocoap.Message(
                code=Code.POST,
                payload=b"</1/0>,</3/0>",
                content_format=40,
                uri_path=("rd",),
                uri_query=(f"ep=burst-{i}", "lt=300", "lwm2m=1.1"),
            )
            msg.mtype, msg.mid, msg.token = aiocoap.CON, i, i.to_bytes(2, "big")
            sock.sendto(msg.encode(), ("127.0.0.1", server_on.port))
        answered: set[bytes] = set()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(60):
            while len(answered) < n:
                reply = aiocoap.Message.decode(await loop.sock_recv(sock, 2048))
                if reply.mtype == aiocoap.CON:  # a separate response (RFC 7252 5.2.2)
                    ack = aiocoap.Message(code=Code.EMPTY)
                    ack.mtype, ack.mid = aiocoap.ACK, reply.mid
                    sock.sendto(ack.encode(), ("127.0.0.1", server_on.port))
                if reply.code == Code.EMPTY:
                    continue
                assert reply.code == Code.CREATED, reply
                answered.add(reply.token)
    finally:
        sock.close()
    assert len(server_on.registrations) == n
