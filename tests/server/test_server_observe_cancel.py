"""Cancel Observation (TS Core 1.1.1 §6.4.5) the way RFC 7641 §3.6 says, over real UDP.

* Proactive: ``cancel_observe`` sends a GET with Observe=1 under the *token of the
  observation*, so the device drops the observation at once and sends nothing more —
  shown with fotakit's own client, counting on its side what it sends.
* Reactive: a notification for an observation the server does not know (an unknown
  token, or a cancelled observation) is answered with RST, CON or NON (RFC 7641 §3.6,
  RFC 7252 §4.2/§4.3) — shown with a raw UDP socket posing as a device.
"""

from __future__ import annotations

import asyncio
import socket

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import CON, NON, RST
from server_fakes import FAST, WAIT, next_of

from fotakit.client import ClientConfig, LwM2MClient
from fotakit.client.objects import DeviceInfo, DeviceInstance, device_object
from fotakit.lwm2m.objects import builtin_registry
from fotakit.lwm2m.path import Path
from fotakit.server import LwM2MServer, Notification, ObservationEnded

FIRMWARE_VERSION = Path(3, 0, 3)


@pytest.mark.parametrize("confirmable", [True, False], ids=["CON", "NON"])
async def test_cancel_ends_the_observation_on_the_fotakit_client_at_once(
    server: LwM2MServer, confirmable: bool
) -> None:
    registry = builtin_registry()
    definition = registry.get(3)
    assert definition is not None
    device = DeviceInstance(DeviceInfo(firmware_version="1.0.0"))
    config = ClientConfig(
        endpoint="cancel-me",
        server_uri=f"coap://127.0.0.1:{server.port}",
        lifetime=60,
        transport=FAST,
        confirmable_notifications=confirmable,
    )
    client = LwM2MClient(config, objects=[device_object(definition, device)], registry=registry)
    await client.start()
    try:
        await client.wait_registered(WAIT)
        async with server.subscribe() as events:
            obs = await asyncio.wait_for(server.observe("cancel-me", FIRMWARE_VERSION), WAIT)
            [on_device] = client.observations.observations
            initial = await next_of(events, Notification)
            assert isinstance(initial, Notification) and initial.initial
            device.set_firmware_version("1.0.1")
            note = await next_of(events, Notification)
            assert isinstance(note, Notification) and not note.initial
            assert note.content == {FIRMWARE_VERSION: "1.0.1"}
            sent_before = on_device.notifications
            assert sent_before == 1

            await asyncio.wait_for(server.cancel_observe(obs), WAIT)
            ended = await next_of(events, ObservationEnded)
            assert isinstance(ended, ObservationEnded) and ended.observation_id == obs.id

            # The GET with Observe=1 carried the observation's token: the client's
            # aiocoap matched it to the observation and ended it (RFC 7641 §3.6).
            assert client.observations.observations == []
            assert not on_device.active
            for version in ("1.0.2", "1.0.3", "1.0.4"):
                device.set_firmware_version(version)  # would notify at once (pmin 0)
            # A later exchange on the same path: anything sent before it has arrived.
            assert (
                await asyncio.wait_for(server.read_value("cancel-me", FIRMWARE_VERSION), WAIT)
                == "1.0.4"
            )
            assert on_device.notifications == sent_before
            while not events.empty():
                assert not isinstance(events.get_nowait(), Notification)
    finally:
        await client.stop(deregister=False)


def _notification(mtype: object, token: bytes, mid: int) -> bytes:
    """A 2.05 notification (Observe option present) as a device would send it."""
    msg = aiocoap.Message(code=Code.CONTENT, payload=b"42", observe=7, content_format=0)
    msg.mtype = mtype
    msg.mid = mid
    msg.token = token
    return bytes(msg.encode())


async def _answer_to(sock: socket.socket, data: bytes, port: int) -> aiocoap.Message:
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, data, ("127.0.0.1", port))
    reply, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), WAIT)
    return aiocoap.Message.decode(reply)


@pytest.mark.parametrize("mtype", [CON, NON], ids=["CON", "NON"])
async def test_a_notification_with_an_unknown_token_is_answered_with_rst(
    server: LwM2MServer, mtype: object
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        reply = await _answer_to(
            sock, _notification(mtype, b"\xde\xad\xbe\xef", 0x4242), server.port
        )
    assert int(reply.mtype) == 3  # RST (RFC 7252 §3: Type 3 is Reset)
    assert reply.mtype == RST
    assert reply.mid == 0x4242
    assert reply.code == Code.EMPTY
    assert reply.token == b""
