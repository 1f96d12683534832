"""A deadline on reading an HTTP request head: half-open (slowloris) connections are closed.

uvicorn (0.54) bounds the *size* of a request head (``h11_max_incomplete_event_size``) and
the idle time *between* requests (``timeout_keep_alive``), but not the time a client takes
to send a head: a connection that sends nothing, or a header line every few seconds, is
kept open for ever, each holding a socket and a buffer. uvicorn offers no option for it,
so this is a small guard at the protocol level (independent of the ASGI application): a
subclass of uvicorn's h11 protocol that arms a timer when the server starts waiting for a
request head — on connect, and when the first bytes of a further request on a kept-alive
connection arrive — and disarms it once the head is parsed. Bytes trickling in do not
extend the deadline. On expiry, a client that sent part of a head gets ``408 Request
Timeout`` with ``Connection: close`` (RFC 9110 §15.5.9); one that sent nothing is closed
without a response (it may be a browser's speculative preconnect). Either way the
connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT: Final = 10.0
"""Default seconds a client has to send a whole request head (``--http-head-timeout``)."""

_BODY = b"request head not received in time\n"
_408 = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + _BODY
)


class HeadTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline of :attr:`head_timeout` s on each request head."""

    head_timeout: float = HEAD_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False  # bytes of the awaited head have arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        awaiting = self.conn.their_state is h11.IDLE
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            # Still no complete head: part of one (a new request on a kept-alive
            # connection starts its deadline with its first bytes).
            self._head_started = self._head_started or (awaiting and bool(data))
            if self._head_timer is None:
                self._arm()
        else:
            self._disarm()

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout, self._expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._head_started = False

    def _expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self._head_started:
            self.transport.write(_408)
        self.transport.close()


def head_timeout_protocol(seconds: float) -> type[HeadTimeoutProtocol]:
    """The :class:`HeadTimeoutProtocol` class with a deadline of ``seconds`` (uvicorn's
    ``Config(http=...)`` takes a class, built per connection)."""
    if not seconds > 0:
        raise ValueError(f"the head timeout must be positive, not {seconds}")
    return type("HeadTimeoutProtocol", (HeadTimeoutProtocol,), {"head_timeout": float(seconds)})
