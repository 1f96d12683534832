"""The engine's I/O adapter against a real server: a request the device can no longer
answer because it rebooted is abandoned when the device registers anew.

A fotakit client registers through an in-process relay; the relay's link goes down, so a
read the engine sends waits for an answer that cannot come (the device "rebooted": its old
socket is gone behind the dead link). The same endpoint then registers directly, from a
new port, as a rebooted device does. :meth:`DeviceIO.superseded` on that Register (what
the engine calls on every Register) ends the read at once as ``superseded`` — without it
the read holds the device's turn until its timeout — and the next read reaches the new
registration.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from e2e_helpers import FAST, running_site

from fotakit.client import ClientConfig, LwM2MClient
from fotakit.packages import generate_key
from fotakit.server import Registered
from fotakit.sim.relay import UdpRelay
from fotakit.updates.engine_io import DeviceIO

OP_TIMEOUT = 30.0


async def test_a_read_to_a_rebooted_device_is_superseded_by_its_new_registration(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with running_site(tmp_path, sqlite_url, generate_key("ed25519")) as site:
        server = site.server
        io = DeviceIO(server)
        relay = UdpRelay(("127.0.0.1", server.port))
        relay_host, relay_port = await relay.start()
        before = LwM2MClient(
            ClientConfig(
                endpoint="dev",
                server_uri=f"coap://{relay_host}:{relay_port}",
                lifetime=60,
                transport=FAST,
            )
        )
        after = LwM2MClient(
            ClientConfig(
                endpoint="dev",
                server_uri=f"coap://127.0.0.1:{server.port}",
                lifetime=60,
                transport=FAST,
            )
        )
        try:
            await before.start()
            await before.wait_registered(10)
            relay.set_outage(True)  # the old registration's address answers no more
            async with server.subscribe() as events:
                read = asyncio.ensure_future(io.read_facts("dev", OP_TIMEOUT, ("/3/0/3",)))
                await after.start()  # the "rebooted" device, from a new port
                async with asyncio.timeout(10):
                    while True:
                        event = await events.get()
                        if isinstance(event, Registered) and event.endpoint == "dev":
                            break
                assert io.superseded("dev")
                facts = await asyncio.wait_for(read, 5)  # well before OP_TIMEOUT
                again = await io.read_facts("dev", OP_TIMEOUT, ("/3/0/3",))
        finally:
            await after.stop(deregister=False)
            await before.stop(deregister=False)
            await relay.stop()
    assert facts.codes == {"/3/0/3": "superseded"}
    assert not facts.reachable
    assert again.codes == {"/3/0/3": "2.05"}
    assert not io.superseded("dev")  # nothing in flight any more
