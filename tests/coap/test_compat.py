"""fotakit.coap.compat on the wire: a raw UDP socket plays the device, aiocoap the server.

These pin the aiocoap internals the module relies on (``TokenManager.next_token`` and
``process_response``, the message manager's ``_send_initially``, ``Request._stop_interest``):
on another aiocoap release they fail until someone has read those internals again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import aiocoap
import aiocoap.meta
import aiocoap.resource
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import ACK, CON, NON, RST

from fotakit.coap import create_endpoint
from fotakit.coap.compat import (
    VERIFIED_AIOCOAP,
    MalformedDatagrams,
    reset_unknown_notifications,
    send_observation_cancel,
    stop_observing,
)

WAIT = 5.0


class RawPeer:
    """A plain UDP socket on loopback that sends and receives single CoAP messages."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])

    async def receive(self) -> tuple[aiocoap.Message, tuple[str, int]]:
        loop = asyncio.get_running_loop()
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 2048), WAIT)
        return aiocoap.Message.decode(data), addr

    async def send(self, msg: aiocoap.Message, addr: tuple[str, int]) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, bytes(msg.encode()), addr)


def message(mtype: object, mid: int, token: bytes, code: Code, **opts: object) -> aiocoap.Message:
    msg = aiocoap.Message(code=code, **opts)
    msg.mtype = mtype
    msg.mid = mid
    msg.token = token
    return msg


@pytest.fixture
async def ctx() -> AsyncIterator[tuple[aiocoap.Context, int]]:
    context, port = await create_endpoint(aiocoap.resource.Site(), "127.0.0.1", 0)
    reset_unknown_notifications(context)
    try:
        yield context, port
    finally:
        await context.shutdown()


@pytest.fixture
def peer() -> Iterator[RawPeer]:
    raw = RawPeer()
    yield raw
    raw.sock.close()


def get(port: int, observe: int) -> aiocoap.Message:
    return aiocoap.Message(code=Code.GET, uri=f"coap://127.0.0.1:{port}/5/0/3", observe=observe)


def test_the_aiocoap_release_is_the_one_compat_was_checked_against() -> None:
    assert aiocoap.meta.version == VERIFIED_AIOCOAP, (
        "fotakit.coap.compat reaches into aiocoap internals; re-check them for this release"
    )


async def test_cancel_goes_out_under_the_chosen_token_and_its_answer_completes_it(
    ctx: tuple[aiocoap.Context, int], peer: RawPeer
) -> None:
    context, port = ctx
    handle = send_observation_cancel(context, get(peer.port, 1), b"\x0b\x5e")
    request, addr = await peer.receive()
    assert addr[1] == port
    assert request.token == b"\x0b\x5e"
    assert request.opt.observe == 1 and request.mtype == CON
    # A notification on that token is not the answer: refused with RST (RFC 7641 §3.6).
    await peer.send(message(CON, 7, b"\x0b\x5e", Code.CONTENT, observe=9, payload=b"1"), addr)
    refused, _ = await peer.receive()
    assert (refused.mtype, refused.mid, refused.code) == (RST, 7, Code.EMPTY)
    assert not handle.response.done()
    # The answer (no Observe option) is.
    await peer.send(message(ACK, request.mid, b"\x0b\x5e", Code.CONTENT, payload=b"2"), addr)
    answer = await asyncio.wait_for(handle.response, WAIT)
    assert answer.code == Code.CONTENT and answer.opt.observe is None
    # Ordinary requests still get fresh tokens.
    plain = context.request(get(peer.port, 0), handle_blockwise=False)
    fresh, _ = await peer.receive()
    assert fresh.token not in (b"", b"\x0b\x5e")
    plain.response.cancel()


@pytest.mark.parametrize("mtype", [CON, NON], ids=["CON", "NON"])
async def test_a_stopped_observation_gets_rst_for_its_next_notification(
    ctx: tuple[aiocoap.Context, int], peer: RawPeer, mtype: object
) -> None:
    context, _ = ctx
    handle = context.request(get(peer.port, 0), handle_blockwise=False)
    request, addr = await peer.receive()
    await peer.send(message(ACK, request.mid, request.token, Code.CONTENT, observe=1), addr)
    await asyncio.wait_for(handle.response, WAIT)
    notifications: asyncio.Queue[aiocoap.Message] = asyncio.Queue()
    handle.observation.register_callback(notifications.put_nowait, _suppress_deprecation=True)
    await peer.send(message(mtype, 100, request.token, Code.CONTENT, observe=2), addr)
    if mtype == CON:
        ack, _ = await peer.receive()
        assert (ack.mtype, ack.mid) == (ACK, 100)
    assert (await asyncio.wait_for(notifications.get(), WAIT)).opt.observe == 2
    stop_observing(handle)
    await peer.send(message(mtype, 101, request.token, Code.CONTENT, observe=3), addr)
    reset, _ = await peer.receive()
    assert (reset.mtype, reset.mid, reset.code) == (RST, 101, Code.EMPTY)
    assert notifications.empty()


async def test_a_piggybacked_answer_completes_the_cancel_even_with_an_observe_option(
    ctx: tuple[aiocoap.Context, int], peer: RawPeer
) -> None:
    # RFC 7641 §4.1 forbids the option there, but the ACK is the answer by its Message ID.
    context, _ = ctx
    handle = send_observation_cancel(context, get(peer.port, 1), b"\x0c\x01")
    request, addr = await peer.receive()
    answer = message(ACK, request.mid, b"\x0c\x01", Code.CONTENT, observe=4, payload=b"x")
    await peer.send(answer, addr)
    got = await asyncio.wait_for(handle.response, WAIT)
    assert got.code == Code.CONTENT and got.opt.observe == 4


def test_malformed_datagrams_are_summarised_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    counter = MalformedDatagrams(logging.getLogger("test.malformed"), 60.0, lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.malformed"):
        counter.note(("::1", 5683), "first")
        for _ in range(99):
            now[0] += 0.5
            counter.note(("::1", 5683), "flood")
        assert len(caplog.records) == 1  # 49.5 s later: still inside the interval
        now[0] += 11
        counter.note(("::1", 5684), "later")
    assert counter.count == 101
    first, second = (r.getMessage() for r in caplog.records)
    assert first.startswith("dropped 1 malformed") and "first" in first
    assert second.startswith("dropped 100 malformed") and "(101 since start)" in second
    assert "[::1]:5684" in second
