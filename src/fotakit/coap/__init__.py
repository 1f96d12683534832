"""The one place that knows aiocoap: contexts bound to an address, transport tuning.

Everything else in fotakit speaks in terms of these helpers and of aiocoap's public
vocabulary (``Message``, codes, ``Resource``). Retransmission and block-wise transfer are
aiocoap's job (RFC 7252 §4.2, RFC 7959); we only choose its parameters.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiocoap
import aiocoap.resource
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import NON

# aiocoap binds UDP sockets with SO_REUSEPORT unless told otherwise. With it, the kernel
# hands the same ephemeral port to two sockets (seen: 129 duplicates in 3000 binds to port
# 0) and lets a second server bind a busy port, after which each socket gets a share of
# the other's datagrams: Registers and answers go missing. aiocoap's documented switch
# turns it off for the whole process; a user who really wants it can set it to 1.
os.environ.setdefault("AIOCOAP_REUSE_PORT", "0")


@dataclass(frozen=True, slots=True)
class TransportParams:
    """CoAP retransmission parameters (RFC 7252 §4.8). NB-IoT links want long ACK timeouts.

    ``request_timeout`` bounds one whole request/response exchange (including all
    retransmissions and every block of a block-wise transfer) from the caller's side.
    """

    ack_timeout: float = 2.0
    ack_random_factor: float = 1.5
    max_retransmit: int = 4
    request_timeout: float = 60.0

    def tuning(self) -> TransportTuning:
        """These values as an aiocoap ``TransportTuning``, for ``Message(transport_tuning=)``."""
        params = self

        class _Tuning(TransportTuning):  # type: ignore[misc]
            ACK_TIMEOUT = params.ack_timeout
            ACK_RANDOM_FACTOR = params.ack_random_factor
            MAX_RETRANSMIT = params.max_retransmit

        return _Tuning()

    @property
    def max_transmit_wait(self) -> float:
        """RFC 7252 §4.8.2 MAX_TRANSMIT_WAIT: how long a client in queue mode stays awake."""
        return float(
            self.ack_timeout * (2 ** (self.max_retransmit + 1) - 1) * self.ack_random_factor
        )


#: The critical options (RFC 7252 §5.4.1: odd numbers) a fotakit endpoint acts on when it
#: serves a request: Uri-Host, Uri-Port, Uri-Path, Uri-Path-Abbrev and Uri-Query pick the
#: resource (RFC 7252 §5.10.1-2), Accept (§5.10.4), Block2 and Block1 (RFC 7959 §2.1).
#: Every other critical option is unrecognised -- If-Match and If-None-Match (no resource
#: here is conditional), OSCORE, Q-Block1/2 (RFC 9177 §4.3 asks for 4.02 then), Proxy-Uri
#: and Proxy-Scheme (we are no proxy) and any number nobody registered.
RECOGNISED_CRITICAL_OPTIONS: frozenset[int] = frozenset({3, 7, 11, 13, 15, 17, 23, 27})

#: No-Response (RFC 7967 §2.1) suppressing every response class: how a NON request is
#: *rejected* without an answer (RFC 7252 §4.3) by a pipe that must end with a message.
_SUPPRESS_ALL = 2 | 8 | 16


def unrecognised_critical_options(request: aiocoap.Message) -> list[int]:
    """The numbers of the critical options in ``request`` this endpoint does not know."""
    return [
        int(option.number)
        for option in request.opt.option_list()
        if option.number & 1 and int(option.number) not in RECOGNISED_CRITICAL_OPTIONS
    ]


def bad_option_response(request: aiocoap.Message) -> aiocoap.Message | None:
    """The answer RFC 7252 §5.4.1 wants to a request with an unrecognised critical option.

    4.02 Bad Option naming the options (a diagnostic payload, RFC 7252 §5.5.2) for a CON
    request; a NON request is rejected (RFC 7252 §4.3), i.e. gets no answer at all. None
    when every critical option is recognised.
    """
    unknown = unrecognised_critical_options(request)
    if not unknown:
        return None
    names = ", ".join(str(number) for number in unknown)
    response = aiocoap.Message(
        code=Code.BAD_OPTION, payload=f"unrecognised critical option {names}".encode()
    )
    if request.mtype is NON:
        response.opt.no_response = _SUPPRESS_ALL
    return response


class FastRenderer(Protocol):
    """A resource that can answer some requests at once, without a task or a copy."""

    def render_now(
        self, request: aiocoap.Message, subpath: Sequence[str]
    ) -> aiocoap.Message | None:
        """The complete response to ``request``, or None to take aiocoap's normal path."""


class FastSite(aiocoap.resource.Site):  # type: ignore[misc]
    """An aiocoap ``Site`` with a synchronous fast path for bulk-delivery resources.

    For every request aiocoap's server path names a new task after the request's repr and
    the ``Site`` copies the request to strip the path before dispatch; at one request per
    firmware block those two cost about a third of the server's time per block
    (docs/benchmarks.md, B2). A resource mounted with :meth:`add_fast_resource` is asked
    first, synchronously, by :class:`_FastPathContext`; whatever it declines (None) takes
    the ordinary route, so errors, Observe and block-wise assembly stay aiocoap's.
    """

    def __init__(self) -> None:
        super().__init__()
        self._fast: dict[str, FastRenderer] = {}

    def add_fast_resource(self, segment: str, resource: Any) -> None:
        """Mount ``resource`` at ``/segment`` and ask it first through ``render_now``."""
        self.add_resource((segment,), resource)
        if hasattr(resource, "render_now"):
            self._fast[segment] = resource

    def render_now(self, request: aiocoap.Message) -> aiocoap.Message | None:
        path = request.opt.uri_path
        if not path:
            return None
        resource = self._fast.get(path[0])
        if resource is None:
            return None
        return resource.render_now(request, path[1:])


class _FastPathContext(aiocoap.Context):  # type: ignore[misc]
    """``aiocoap.Context`` that lets a :class:`FastSite` answer before a render task exists.

    It is also the one door every incoming request passes, so it refuses those carrying an
    unrecognised critical option (:func:`bad_option_response`) for every resource at once.

    Overrides ``Context.render_to_pipe`` (the token manager's entry for each incoming
    request, aiocoap 0.4.17); anything the site declines goes to aiocoap's implementation.
    """

    def render_to_pipe(self, pipe: Any) -> None:
        # Before any resource sees it: a request with a critical option nobody here
        # understands must not be served as if the option were absent (RFC 7252 §5.4.1).
        refused = bad_option_response(pipe.request)
        if refused is not None:
            pipe.add_response(refused, is_last=True)
            return
        site = self.serversite
        if isinstance(site, FastSite):
            response = site.render_now(pipe.request)
            if response is not None:
                pipe.add_response(response, is_last=True)
                return
        super().render_to_pipe(pipe)


async def create_endpoint(site: Any, host: str, port: int) -> tuple[aiocoap.Context, int]:
    """Bind a UDP CoAP endpoint serving ``site`` on ``host:port`` (port 0 picks one).

    The same context is used for outgoing requests, so they leave from the bound address
    and port — which LwM2M needs: the server reaches a client at the address and port its
    Register came from. Returns the context and the port actually bound.
    """
    ctx = await _FastPathContext.create_server_context(site, bind=(host, port), transports=["udp6"])
    return ctx, bound_port(ctx)


def bound_port(ctx: aiocoap.Context) -> int:
    """The local UDP port of a context created by :func:`create_endpoint`."""
    for iface in ctx.request_interfaces:
        message_interface = iface.token_interface.message_interface
        transport = getattr(message_interface, "transport", None)
        if transport is not None:
            return int(transport.get_extra_info("socket").getsockname()[1])
    raise RuntimeError("context has no UDP transport")
