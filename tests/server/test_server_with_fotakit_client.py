"""The server with fotakit's own client runtime as the device (an extra, end-to-end check).

The other server tests use a plain aiocoap device so they do not depend on the client.
"""

from __future__ import annotations

import asyncio

import pytest
from server_fakes import FAST, next_of

from fotakit.client import ClientConfig, LwM2MClient
from fotakit.lwm2m.path import Path
from fotakit.server import (
    Deregistered,
    DeviceUnreachable,
    LwM2MServer,
    ObservationEnded,
    Registered,
)


async def test_fotakit_client_registers_is_read_and_deregisters(server: LwM2MServer) -> None:
    config = ClientConfig(
        endpoint="agent-1",
        server_uri=f"coap://127.0.0.1:{server.port}",
        lifetime=60,
        transport=FAST,
    )
    client = LwM2MClient(config)
    async with server.subscribe() as events:
        await client.start()
        try:
            await client.wait_registered(5)
            registered = await next_of(events, Registered)
            assert registered.endpoint == "agent-1"
            reg = server.get("agent-1")
            assert reg is not None and reg.port == client.port
            manufacturer = await asyncio.wait_for(server.read_value("agent-1", "/3/0/0"), 5)
            assert isinstance(manufacturer, str) and manufacturer
            device = await asyncio.wait_for(server.read("agent-1", "/3/0"), 5)
            assert device[Path(3, 0, 0)] == manufacturer
        finally:
            await client.stop(deregister=True)
        await next_of(events, Deregistered)
    assert server.get("agent-1") is None


async def test_a_device_gone_from_its_port_ends_its_observation_and_fails_requests_at_once(
    server: LwM2MServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A device that rebooted onto a new port: the old port answers ICMP port unreachable.

    The observation on the old port ends, and a request in flight to it fails with that
    error instead of hanging until its timeout (aiocoap used to abort its error dispatch
    on a "cancelled twice" assertion when our error callback cancelled the observation).
    """
    config = ClientConfig(
        endpoint="agent-gone",
        server_uri=f"coap://127.0.0.1:{server.port}",
        lifetime=60,
        transport=FAST,
    )
    client = LwM2MClient(config)
    async with server.subscribe() as events:
        await client.start()
        await client.wait_registered(5)
        obs = await asyncio.wait_for(server.observe("agent-gone", "/3/0/0"), 5)
        await client.stop(deregister=False)  # the port is closed: ICMP from now on
        with pytest.raises(DeviceUnreachable):
            # 5 s is far below FAST's whole retransmission span: only the ICMP error
            # can end this read in time
            await asyncio.wait_for(server.read("agent-gone", "/3/0/1"), 5)
        ended = await next_of(events, ObservationEnded)
        assert ended.observation_id == obs.id
    assert "cancelled twice" not in caplog.text
