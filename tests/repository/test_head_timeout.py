"""The request-head deadline of the HTTP side (fotakit.repository.head_timeout), over real
TCP sockets: connections that never finish a head are closed within the bound."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from fotakit.api import serve_api
from fotakit.repository import Repository
from fotakit.repository.head_timeout import head_timeout_protocol
from fotakit.repository.http import HttpServer, create_http_app, serve_http

HEAD_TIMEOUT = 0.5
BOUND = HEAD_TIMEOUT + 3.0  # the deadline plus scheduling slack on a loaded machine
PARTIAL = b"GET /fw/0000000000000000 HTTP/1.1\r\nHost: fota.example\r\nX-Slow: "

Serve = Callable[..., Any]


@pytest.fixture(params=[serve_http, serve_api], ids=["fw-only", "api"])
async def port(request: pytest.FixtureRequest, repo: Repository) -> AsyncIterator[int]:
    serve: Serve = request.param
    server: HttpServer = await serve(
        create_http_app(repo), "127.0.0.1", 0, head_timeout=HEAD_TIMEOUT
    )
    try:
        yield server.port
    finally:
        await server.stop()


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded by BOUND)."""
    return await asyncio.wait_for(reader.read(), BOUND)


async def test_half_open_connections_are_closed_within_the_bound(port: int) -> None:
    silent, partial, trickling = [], [], []
    started = time.monotonic()
    for _ in range(20):
        silent.append(await asyncio.open_connection("127.0.0.1", port))
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(PARTIAL)
        partial.append((r, w))
        trickling.append(await asyncio.open_connection("127.0.0.1", port))

    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(PARTIAL)
        with contextlib.suppress(ConnectionError):
            while not writer.is_closing():  # a byte every 100 ms: never a whole head
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(0.1)

    tricklers = [asyncio.create_task(trickle(w)) for _, w in trickling]
    try:
        answers = await asyncio.gather(*(_until_closed(r) for r, _ in silent + partial + trickling))
    finally:
        for task in tricklers:
            task.cancel()
        for _, w in silent + partial + trickling:
            w.close()
    elapsed = time.monotonic() - started
    assert elapsed >= HEAD_TIMEOUT  # not closed before the deadline
    assert answers[:20] == [b""] * 20  # nothing sent, nothing answered: just closed
    for answer in answers[20:]:  # part of a head: 408, Connection: close (RFC 9110 §15.5.9)
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b"\r\nConnection: close\r\n" in answer


async def test_a_second_request_on_a_kept_alive_connection_has_its_own_deadline(
    port: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /fw/0000000000000000 HTTP/1.1\r\nHost: fota.example\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), BOUND)
        assert status.startswith(b"HTTP/1.1 404")  # a complete head is answered
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await asyncio.wait_for(reader.readexactly(length), BOUND)
        writer.write(PARTIAL)  # resets uvicorn's keep-alive timer, starts the head deadline
        answer = await _until_closed(reader)
        assert answer.startswith(b"HTTP/1.1 408 ")
    finally:
        writer.close()


async def test_a_head_sent_in_pieces_within_the_deadline_is_served(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for piece in (b"GET /fw/0000000000000000 HT", b"TP/1.1\r\nHost: a\r\n", b"\r\n"):
            writer.write(piece)
            await writer.drain()
        status = await asyncio.wait_for(reader.readline(), BOUND)
        assert status.startswith(b"HTTP/1.1 404")
    finally:
        writer.close()


@pytest.mark.parametrize("seconds", [0, -1.0])
def test_the_deadline_must_be_positive(seconds: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        head_timeout_protocol(seconds)
