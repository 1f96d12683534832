"""The server with fotakit's own client runtime as the device (an extra, end-to-end check).

The other server tests use a plain aiocoap device so they do not depend on the client.
"""

from __future__ import annotations

import asyncio

from server_fakes import FAST, next_of

from fotakit.client import ClientConfig, LwM2MClient
from fotakit.lwm2m.path import Path
from fotakit.server import Deregistered, LwM2MServer, Registered


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
