"""Cancel Observation (TS Core 1.1.1 §6.4.5, RFC 7641 §3.6) against lwm2m-node-lib 1.4.0.

The lwm2m-node-lib client (``peers/nodelib_client.js``) registers through a tap
(``tests/coap_tap.py``: a relay that decodes every datagram either way), so the test
counts what the Node client really sends after the cancel.

What lwm2m-node-lib 1.4.0 does with RFC 7641's proactive cancel: nothing useful. Its read
handler takes a GET carrying *any* Observe option for a new registration (``read.js``,
``createObservers``), and never answers it (node-coap then sends only the empty ACK). So
the only thing that ends its observation is the reactive half: its next notification on
the observation's token is answered with RST, which ends the node-coap observe stream.
What it may still send after the cancel is refused with RST, never acknowledged or
delivered, and after that it sends nothing, however the value changes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiocoap.numbers.types import RST

from coap_tap import CoapTap, Seen
from fotakit.lwm2m.path import Path
from fotakit.server import LwM2MServer, Notification, ObservationEnded, Registered

pytestmark = pytest.mark.interop

NodePeer = Any  # conftest.NodePeer (conftest is pytest's to import)
ServerEvents = Any
StartPeer = Callable[..., Awaitable[NodePeer]]

STATE = Path(5, 0, 3)
WAIT = 5.0


def is_cancel(seen: Seen) -> bool:
    return not seen.up and seen.message.opt.observe == 1


async def test_nodelib_client_stops_notifying_once_the_cancel_rst_reached_it(
    server: LwM2MServer, server_events: ServerEvents, node_peers: StartPeer
) -> None:
    ep = "nodelib-cancel"
    async with CoapTap(("127.0.0.1", server.port)) as tap:
        peer = await node_peers(
            "nodelib_client.js", "127.0.0.1", str(tap.address[1]), ep, "60", name=ep
        )
        await server_events.next(Registered, ep)
        await peer.expect("registered")

        async def sync() -> None:
            """Two Reads through the same path: when the first is answered, whatever the
            client sent before it reached the server (and got its ACK or RST); the second
            goes out after that ACK or RST, so when it is answered the client has had it."""
            for _ in range(2):
                await asyncio.wait_for(server.read(ep, "/3/0/0"), WAIT)

        async def change(value: int) -> None:
            peer.send(f"set /5/0/3 {value}")
            await peer.expect("set", path="/5/0/3", value=str(value))
            await sync()

        async def cancel_and_change(cancel: asyncio.Task[None]) -> list[int]:
            """Await the cancel going out, then change the value five times; how many
            notification-shaped messages the client sent for each change."""
            ended = await server_events.next(ObservationEnded, ep)
            assert ended.observation_id == obs.id and ended.reason == "cancelled"
            # The proactive cancel: GET, Observe=1, the observation's token (RFC 7641 §3.6).
            await tap.wait_for(lambda seen: any(is_cancel(s) for s in seen[mark:]))
            [get] = [s.message for s in tap.seen[mark:] if is_cancel(s)]
            assert get.token == obs.token and get.opt.uri_path == ("5", "0", "3")
            await peer.expect("request", method="GET", path="/5/0/3", observe=True)
            assert not cancel.done()  # lwm2m-node-lib never answers it
            sent = []
            for value in range(2, 7):
                before = len(tap.notifications_after(mark))
                await change(value)
                sent.append(len(tap.notifications_after(mark)) - before)
            return sent

        obs = await asyncio.wait_for(server.observe(ep, STATE), WAIT)
        assert not obs.ended, obs.end_reason
        assert (await server_events.next(Notification, ep)).initial
        await change(1)
        note = await server_events.next(Notification, ep)
        assert note.observation_id == obs.id and note.content == {STATE: 1}

        mark = len(tap.seen)
        async with server.subscribe() as after_cancel:
            cancel = asyncio.create_task(server.cancel_observe(obs))
            try:
                sent = await cancel_and_change(cancel)
            finally:
                cancel.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cancel
            delivered = []
            while not after_cancel.empty():
                event = after_cancel.get_nowait()
                if isinstance(event, Notification):
                    delivered.append(event)

    late = tap.notifications_after(mark)
    # lwm2m-node-lib ignores the GET, so its next notification still goes out; with it
    # at most its late answer to that GET (node-lib marks it Observe=1 as well).
    assert 1 <= len(late) <= 2, late
    assert sent[-3:] == [0, 0, 0], sent  # stopped: more changes, nothing sent
    for message in late:
        assert message.token == obs.token, message
        assert tap.answers_to(message.mid) == [RST], message  # refused, never ACKed
    assert delivered == []
    assert obs.id not in server.observations
