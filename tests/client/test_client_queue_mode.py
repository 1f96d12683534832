"""Queue mode (TS §6.5): the client is awake for a window after each message."""

from __future__ import annotations

from aiocoap.numbers.codes import Code

from fotakit.client import EventKind


async def test_queue_mode_client_sleeps_after_the_awake_window(rd, make_client):
    client = make_client(queue_mode=True, awake_window=1.0)
    await client.start()
    await client.wait_registered(5.0)
    assert client.awake
    registered = await client.wait_event(EventKind.REGISTERED, 1.0)
    sleeping = await client.wait_event(EventKind.SLEEPING, 5.0)
    assert sleeping.at - registered.at >= 0.9
    assert not client.awake


async def test_a_request_wakes_a_sleeping_client_for_another_window(rd, make_client):
    client = make_client(queue_mode=True, awake_window=0.3)
    await client.start()
    await client.wait_registered(5.0)
    await client.wait_event(EventKind.SLEEPING, 5.0)
    response = await rd.request(Code.GET, "/3/0/0")
    assert response.code == Code.CONTENT, "sleeping keeps the socket: the request is served"
    assert client.awake
    await client.wait_event(EventKind.SLEEPING, 5.0)
    assert not client.awake


async def test_default_awake_window_is_max_transmit_wait(make_client):
    client = make_client(queue_mode=True)
    assert client.config.awake_seconds == client.config.transport.max_transmit_wait
