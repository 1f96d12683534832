"""Observation cancelling as RFC 7641 §3.6 says, on aiocoap internals (verified: 0.4.17).

aiocoap's client side has no way to cancel an observation on the wire: it gives every
request a fresh token (``TokenManager.request`` calls ``next_token``), so the GET with
Observe=1 that RFC 7641 §3.6 wants — *the token of the observation*, the options of the
registration — cannot be sent through ``Context.request``; and its message layer answers
an unknown CON response with RST but drops an unknown NON one in silence, so a device
sending NON notifications for a forgotten observation is never told (RFC 7641 §3.6
reactive cancellation, RFC 7252 §4.3: a NON may be rejected with RST). This module is the
one place that reaches into aiocoap for that, per context, by instance attributes only
(nothing global is patched):

* :func:`send_observation_cancel` sends a request under a token the caller chooses: the
  context's ``TokenManager.next_token`` hands that token to the request sent from within
  the call (a context variable, which the task ``Context.request`` starts inherits).
  While that cancel is outstanding, a *notification* (a CON or NON response with an
  Observe option) on its token is not taken for its answer: it is refused (RST), since
  it belongs to the observation being cancelled; the answer is the piggybacked one, or
  a separate response without Observe (RFC 7641 §4.1: it MUST NOT carry one).
* Every notification no request is waiting for is answered with RST, NON too (aiocoap
  already does CON).
* :func:`stop_observing` drops the interest of an aiocoap ``Request`` in its token at
  once (``Request._stop_interest``), not at its next notification, so that the very next
  notification on it is unknown and gets its RST.

Server side, block-wise requests (RFC 7959 §2.5): aiocoap's ``Block1Spool`` lets a gap or
an overlap in a Block1 transfer escape as a bare ``ValueError`` (5.00 Internal Server
Error). :class:`StrictBlock1Spool` answers what RFC 7959 says instead, and
:func:`use_strict_block1` puts it on a resource (the instance's ``_block1``).

Malformed datagrams: aiocoap's UDP transport logs a WARNING for each datagram it cannot
parse, and a Uri-Path, Uri-Query or other text option that is not UTF-8 (RFC 7252 §3.2:
string options are UTF-8) escapes its parser as ``UnicodeDecodeError`` and is logged by
asyncio with a full traceback -- 1.7 kB for a 10-byte datagram, a log flood for anyone
who sends garbage. :func:`count_malformed_datagrams` makes both one counter
(:class:`MalformedDatagrams`) with at most one summarising WARNING line per interval.

``tests/coap/test_compat.py`` checks each of these on the wire with raw UDP sockets and
fails on an aiocoap other than :data:`VERIFIED_AIOCOAP` until it is checked again.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import aiocoap
from aiocoap import error
from aiocoap.blockwise import Block1Spool, IncompleteException, _extract_block_key
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import ACK, NON, RST
from aiocoap.tokenmanager import TokenManager

#: The aiocoap release these internals were read in and tested against.
VERIFIED_AIOCOAP: Final = "0.4.17"

_CHOSEN_TOKEN: contextvars.ContextVar[bytes | None] = contextvars.ContextVar(
    "fotakit_chosen_token", default=None
)
_MARK = "_fotakit_cancel_aware"


class _CancelAwareness:
    """What one ``TokenManager`` learns: tokens with a cancel outstanding (and how many)."""

    def __init__(self, tman: TokenManager) -> None:
        self.tman = tman
        self.cancelling: dict[bytes, int] = {}
        self._next_token = tman.next_token
        self._process_response = tman.process_response
        tman.next_token = self.next_token
        tman.process_response = self.process_response

    def next_token(self) -> bytes:
        chosen = _CHOSEN_TOKEN.get()
        return chosen if chosen is not None else bytes(self._next_token())

    def process_response(self, response: aiocoap.Message) -> bool:
        token = bytes(response.token)
        if (
            response.opt.observe is not None
            and response.mtype is not ACK
            and token in self.cancelling
        ):
            # A notification of the observation being cancelled. (A piggybacked answer
            # is the cancel's own, by its Message ID, Observe option or not.)
            matched = False
        else:
            matched = bool(self._process_response(response))
        if not matched and response.opt.observe is not None and response.mtype is NON:
            self._reset(response)
        return matched

    def _reset(self, message: aiocoap.Message) -> None:
        """RST for a NON notification (aiocoap's message layer sends it for a CON)."""
        remote = message.remote
        if remote is None or remote.is_multicast_locally:
            return
        manager = getattr(self.tman, "token_interface", None)
        send = getattr(manager, "_send_initially", None)
        if send is None:
            return
        rst = aiocoap.Message(code=Code.EMPTY, payload=b"")
        rst.mtype = RST
        rst.mid = message.mid
        rst.remote = remote.as_response_address()
        send(rst)


def _awareness(ctx: aiocoap.Context) -> list[_CancelAwareness]:
    out = []
    for iface in ctx.request_interfaces:
        if not isinstance(iface, TokenManager):
            continue
        found = getattr(iface, _MARK, None)
        if found is None:
            found = _CancelAwareness(iface)
            setattr(iface, _MARK, found)
        out.append(found)
    return out


def reset_unknown_notifications(ctx: aiocoap.Context) -> None:
    """From now on ``ctx`` answers every notification it has no request for with RST."""
    _awareness(ctx)


def send_observation_cancel(ctx: aiocoap.Context, message: aiocoap.Message, token: bytes) -> Any:
    """Send ``message`` (a GET with Observe=1) under ``token``; aiocoap's ``Request``.

    The caller must have stopped the observation's own interest in ``token`` first
    (:func:`stop_observing`), or aiocoap would hand the token's messages to both.
    """
    managers = _awareness(ctx)
    for manager in managers:
        manager.cancelling[token] = manager.cancelling.get(token, 0) + 1
    reset = _CHOSEN_TOKEN.set(token)
    try:
        handle = ctx.request(message, handle_blockwise=False)
    finally:
        _CHOSEN_TOKEN.reset(reset)

    def done(_future: Any) -> None:
        for manager in managers:
            left = manager.cancelling.get(token, 0) - 1
            if left > 0:
                manager.cancelling[token] = left
            else:
                manager.cancelling.pop(token, None)

    handle.response.add_done_callback(done)
    return handle


def stop_observing(handle: Any) -> None:
    """End an aiocoap observation request: no callbacks, and its token is free now."""
    observation = getattr(handle, "observation", None)
    if observation is not None and not observation.cancelled:
        observation.cancel()
    stop_interest = getattr(handle, "_stop_interest", None)
    if callable(stop_interest):
        stop_interest()


#: RFC 7959 §2.2: NUM is at most 20 bits (the option is 0 to 3 bytes long).
_MAX_BLOCK_NUMBER: Final = (1 << 20) - 1


class StrictBlock1Spool(Block1Spool):  # type: ignore[misc]
    """aiocoap's Block1 reassembly with RFC 7959's answers to a transfer gone wrong.

    * A Block1 value that cannot be right -- SZX 7 (reserved on UDP; BERT is for reliable
      transports only, RFC 8323 §6) or a NUM beyond 20 bits (RFC 7959 §2.2) -- is
      4.00 Bad Request. (So is a non-final block whose payload is not the block size;
      aiocoap already says that.)
    * A block that does not continue the body received so far -- a gap, an overlap, a
      block > 0 with no block 0 before it, or a block size *larger* than the one used
      so far (RFC 7959 §2.3 lets a client only keep or lower it) -- is 4.08 Request
      Entity Incomplete (RFC 7959 §2.5, §2.9.2). A lower size whose offset continues the
      body is accepted, as §2.3 asks.
    """

    def feed_and_take(self, req: aiocoap.Message) -> aiocoap.Message:
        block1 = req.opt.block1
        if block1 is None:
            return req
        if block1.size_exponent == 7:
            raise error.BadRequest("Block1 SZX 7 is reserved over UDP (RFC 7959 §2.2)")
        if block1.block_number > _MAX_BLOCK_NUMBER:
            raise error.BadRequest("Block1 NUM exceeds 20 bits (RFC 7959 §2.2)")
        if block1.more and len(req.payload) != block1.size:
            # aiocoap checks this for later blocks only; block 0 too (RFC 7959 §2.3).
            raise error.BadRequest("Block1 payload size does not match SZX")
        if block1.block_number > 0:
            try:
                so_far = self._assemblies[_extract_block_key(req)]
            except KeyError:
                raise IncompleteException("Block1 transfer without block 0") from None
            if block1.size_exponent > so_far.opt.block1.size_exponent:
                raise IncompleteException("Block1 size grew during the transfer")
        try:
            return super().feed_and_take(req)
        except error.RenderableError:
            raise
        except ValueError:
            # aiocoap's "gaps or overlaps in data" (Message._append_request_block).
            raise IncompleteException(
                f"Block1 block {block1.block_number} does not continue the body"
            ) from None


def use_strict_block1(resource: Any) -> Any:
    """Give an aiocoap ``Resource`` the :class:`StrictBlock1Spool`; returns the resource."""
    resource._block1 = StrictBlock1Spool()
    return resource


#: aiocoap's (0.4.17, ``transports/udp6.py``) message for a datagram it cannot parse.
_UNPARSABLE_WARNING: Final = "Ignoring unparsable message from %s"


class MalformedDatagrams:
    """How many datagrams an endpoint dropped as not CoAP, logged as a rate-limited summary.

    ``count`` is the total since start. The first drop is logged at once; later ones are
    summed and logged with the next drop that comes ``interval`` seconds or more after
    the last line, so a flood costs one WARNING line per interval and no traceback.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.count = 0
        self.interval = interval
        self._log = logger
        self._clock = clock
        self._unlogged = 0
        self._next_line: float | None = None

    def note(self, address: Any, reason: str) -> None:
        """One datagram from ``address`` was dropped because of ``reason``."""
        self.count += 1
        self._unlogged += 1
        now = self._clock()
        if self._next_line is not None and now < self._next_line:
            return
        self._log.warning(
            "dropped %d malformed CoAP datagram(s) (%d since start); latest from %s: %s",
            self._unlogged,
            self.count,
            _host_port(address),
            reason,
        )
        self._unlogged = 0
        self._next_line = now + self.interval


def _host_port(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"[{address[0]}]:{address[1]}"
    return str(address)


class _UnparsableToCounter:
    """A UDP interface's logger, except that the per-datagram unparsable WARNING counts."""

    def __init__(self, log: Any, counter: MalformedDatagrams) -> None:
        self._wrapped = log
        self._counter = counter

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        if msg == _UNPARSABLE_WARNING and args:
            self._counter.note(args[0], "not a CoAP message")
            return
        self._wrapped.warning(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


def count_malformed_datagrams(ctx: aiocoap.Context, counter: MalformedDatagrams) -> int:
    """Route ``ctx``'s malformed-datagram drops to ``counter``; how many interfaces it hooked.

    Per UDP message interface (instance attributes only): its logger, and its
    ``datagram_msg_received`` (which the transport looks up per datagram), so that a
    ``UnicodeDecodeError`` from decoding the datagram is counted instead of escaping to
    asyncio's exception handler. Nothing else is caught: an error from dispatching a
    well-formed message (which aiocoap logs itself, then re-raises) goes on as before.
    """
    hooked = 0
    for iface in ctx.request_interfaces:
        message_interface: Any = getattr(
            getattr(iface, "token_interface", None), "message_interface", None
        )
        receive = getattr(message_interface, "datagram_msg_received", None)
        if receive is None or getattr(message_interface, _MALFORMED_MARK, False):
            continue
        message_interface.log = _UnparsableToCounter(message_interface.log, counter)

        def received(
            data: bytes, ancdata: Any, flags: int, address: Any, _receive: Any = receive
        ) -> None:
            try:
                _receive(data, ancdata, flags, address)
            except UnicodeDecodeError:
                # Raised only while decoding: dispatch happens after a complete decode.
                counter.note(address, "text option is not UTF-8 (RFC 7252 §3.2)")

        message_interface.datagram_msg_received = received
        setattr(message_interface, _MALFORMED_MARK, True)
        hooked += 1
    return hooked


_MALFORMED_MARK = "_fotakit_counts_malformed"
