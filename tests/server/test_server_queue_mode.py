"""Queue mode (TS Core 1.1.1 §6.5, §8.3): requests to a sleeping client wait for it.

The awake time is measured on a clock the test drives, so "the client fell asleep" is a
step of the test, not a sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from server_fakes import FakeDevice, make_config, next_of

from fotakit.lwm2m.path import Path
from fotakit.server import (
    LwM2MServer,
    NotRegistered,
    QueuedRequestCompleted,
    RequestQueued,
)

AWAKE = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep_past_awake_time(self) -> None:
        self.now += AWAKE + 1


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def qserver(sqlite_url: str, clock: Clock) -> AsyncIterator[LwM2MServer]:
    srv = LwM2MServer(make_config(sqlite_url, queue_awake_time=AWAKE), clock=clock)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def wait_queued(events: object, count: int) -> list[RequestQueued]:
    """The next ``count`` RequestQueued events."""
    found = []
    for _ in range(count):
        ev = await next_of(events, RequestQueued)
        assert isinstance(ev, RequestQueued)
        found.append(ev)
    return found


async def test_request_to_awake_queue_client_is_sent_at_once(
    qserver: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(qserver.port, "q", queue=True)
    assert qserver.is_awake("q")
    assert await asyncio.wait_for(qserver.read_value("q", "/3/0/3"), 5) == "1.0.0"
    assert qserver.queued("q") == 0


async def test_request_to_sleeping_client_waits_until_its_update(
    qserver: LwM2MServer, device: FakeDevice, clock: Clock
) -> None:
    await device.register(qserver.port, "q", queue=True)
    clock.sleep_past_awake_time()
    assert not qserver.is_awake("q")
    async with qserver.subscribe() as events:
        read = asyncio.create_task(qserver.read_value("q", "/3/0/3"))
        await wait_queued(events, 1)
        write = asyncio.create_task(qserver.write("q", "/5/0/1", "coap://127.0.0.1/fw"))
        await wait_queued(events, 1)
    assert qserver.queued("q") == 2
    assert not read.done() and [s for s in device.seen if s.method != "POST"] == []
    pending = await qserver.store.list_pending_requests("q")
    assert [p.operation for p in pending] == ["read", "write"]
    response = await device.update(qserver.port)
    assert str(response.code).startswith("2.04")
    assert await asyncio.wait_for(read, 5) == "1.0.0"
    await asyncio.wait_for(write, 5)
    assert [(s.method, s.path) for s in device.seen] == [
        ("GET", Path(3, 0, 3)),
        ("PUT", Path(5, 0, 1)),
    ]
    assert await qserver.store.list_pending_requests("q") == []


async def test_caller_timeout_withdraws_the_queued_request(
    qserver: LwM2MServer, device: FakeDevice, clock: Clock
) -> None:
    await device.register(qserver.port, "q", queue=True)
    clock.sleep_past_awake_time()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(qserver.execute("q", "/3/0/4"), 0.2)
    assert qserver.queued("q") == 0
    await device.update(qserver.port)
    # The next request goes straight out; the abandoned Execute never reached the client.
    assert await asyncio.wait_for(qserver.read_value("q", "/3/0/9"), 5) == 87
    assert [s.method for s in device.seen] == ["GET"]
    assert await qserver.store.list_pending_requests("q") == []


async def test_deregister_fails_queued_requests(
    qserver: LwM2MServer, device: FakeDevice, clock: Clock
) -> None:
    await device.register(qserver.port, "q", queue=True)
    clock.sleep_past_awake_time()
    async with qserver.subscribe() as events:
        read = asyncio.create_task(qserver.read("q", "/3/0"))
        await wait_queued(events, 1)
    await device.deregister(qserver.port)
    with pytest.raises(NotRegistered):
        await asyncio.wait_for(read, 5)
    assert await qserver.store.list_pending_requests() == []


async def test_queued_request_survives_restart_and_completes_as_event(
    sqlite_url: str, device: FakeDevice, clock: Clock
) -> None:
    first = LwM2MServer(make_config(sqlite_url, queue_awake_time=AWAKE), clock=clock)
    await first.start()
    try:
        await device.register(first.port, "q", queue=True)
        clock.sleep_past_awake_time()
        async with first.subscribe() as events:
            read = asyncio.create_task(first.read_value("q", "/3/0/3"))
            await wait_queued(events, 1)
    finally:
        await first.stop()
    with pytest.raises(Exception, match="server stopped"):
        await asyncio.wait_for(read, 5)
    second = LwM2MServer(make_config(sqlite_url, queue_awake_time=AWAKE), clock=clock)
    await second.start()
    try:
        assert second.queued("q") == 1
        async with second.subscribe() as events:
            response = await device.update(second.port)
            assert str(response.code).startswith("2.04")
            ev = await next_of(events, QueuedRequestCompleted)
        assert isinstance(ev, QueuedRequestCompleted)
        assert ev.operation == "read" and ev.path == Path(3, 0, 3) and ev.code == "2.05"
        assert ev.content == {Path(3, 0, 3): "1.0.0"}
        assert await second.store.list_pending_requests() == []
    finally:
        await second.stop()
