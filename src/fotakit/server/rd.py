"""The Registration Interface over CoAP: ``/rd`` and ``/rd/<id>`` (TS Core 1.1.1 §6.2).

=========================  =====================  ==========================================
Operation                  Request                Answer
=========================  =====================  ==========================================
Register                   POST /rd?ep=..&lt=..   2.01 Created, Location-Path rd/<id>
Update                     POST /rd/<id>?lt=..    2.04 Changed; 4.04 for an unknown <id>
De-register                DELETE /rd/<id>        2.02 Deleted; 4.04 for an unknown <id>
=========================  =====================  ==========================================

Bad query parameters or a payload that is not link-format get 4.00, an unsupported
``lwm2m`` version 4.12, other methods 4.05, other paths 4.04 (aiocoap's Site). A Register
flood from one source host, or a Register of a new endpoint when the registration table
is full (``ServerConfig.max_registrations``), gets 5.03 with Max-Age; an ``lt`` outside
the configured lifetime bounds gets 4.00. These resources only translate between
CoAP and :class:`~fotakit.server.server.LwM2MServer`, which owns all state.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiocoap
import aiocoap.resource
from aiocoap.numbers.codes import Code

from fotakit.coap import FastSite
from fotakit.coap.compat import use_strict_block1
from fotakit.lwm2m.errors import LwM2MError
from fotakit.lwm2m.registration import RegistrationError, UnsupportedVersion
from fotakit.store.errors import InvalidRecord

if TYPE_CHECKING:
    from fotakit.server.server import LwM2MServer

log = logging.getLogger("fotakit.server")


_V4_MAPPED = "::ffff:"


def remote_host_port(remote: Any) -> tuple[str, int]:
    """The source host and port of a request (IPv4-mapped IPv6 shown as plain IPv4)."""
    # Fast path for aiocoap's UDP transport (every Register pays this): an IPv4 client
    # on the dual-stack socket has a sockaddr ("::ffff:a.b.c.d", port, flow, scope 0),
    # and the kernel writes that mapped form one way only, so slicing it gives exactly
    # what the generic hostinfo parsing below gives, without its ipaddress round trips.
    sockaddr = getattr(remote, "sockaddr", None)
    if type(sockaddr) is tuple and len(sockaddr) == 4 and sockaddr[3] == 0:
        address, port = sockaddr[0], sockaddr[1]
        if (
            type(address) is str
            and type(port) is int
            and address.startswith(_V4_MAPPED)
            and address.count(".") == 3
        ):
            return address[len(_V4_MAPPED) :], port or 5683
    parts = urlsplit("coap://" + str(remote.hostinfo))
    host = parts.hostname or ""
    port = parts.port or 5683
    return host, port


def _error(code: Any, text: str) -> aiocoap.Message:
    return aiocoap.Message(code=code, payload=text.encode("utf-8", "replace")[:200])


async def _guarded(kind: str, call: Any) -> aiocoap.Message:
    """Run one registration operation; map every failure to its precise CoAP code."""
    try:
        result: aiocoap.Message = await call
        return result
    except UnsupportedVersion as exc:
        return _error(Code.PRECONDITION_FAILED, str(exc))
    except (RegistrationError, InvalidRecord, UnicodeDecodeError) as exc:
        return _error(Code.BAD_REQUEST, str(exc))
    except LwM2MError as exc:
        return _error(exc.code, exc.message)
    except Exception:
        # The client gets 5.00 and nothing was changed: state moves only after the commit.
        log.exception("%s failed", kind)
        return _error(Code.INTERNAL_SERVER_ERROR, f"{kind} failed")


class RegisterResource(aiocoap.resource.Resource):  # type: ignore[misc]
    """``/rd``: POST is Register."""

    def __init__(self, server: LwM2MServer) -> None:
        super().__init__()
        self._server = server

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        host, port = remote_host_port(request.remote)
        wait = self._server._register_limiter.acquire(host)
        if wait > 0:
            response = _error(Code.SERVICE_UNAVAILABLE, "register rate limit exceeded")
            response.opt.max_age = self._server._register_limiter.max_age(wait)
            return response
        self._server._remember_remote(host, port, request.remote)
        return await _guarded(
            "register",
            self._server._on_register(
                list(request.opt.uri_query), bytes(request.payload), host, port
            ),
        )


class RegistrationResource(aiocoap.resource.Resource, aiocoap.resource.PathCapable):  # type: ignore[misc]
    """``/rd/<id>``: POST is Update, DELETE is De-register."""

    def __init__(self, server: LwM2MServer) -> None:
        super().__init__()
        self._server = server

    def _registration_id(self, request: aiocoap.Message) -> str | None:
        path = tuple(request.opt.uri_path)
        return path[0] if len(path) == 1 and path[0] else None

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        reg_id = self._registration_id(request)
        if reg_id is None:
            return _error(Code.NOT_FOUND, "no such registration")
        host, port = remote_host_port(request.remote)
        self._server._remember_remote(host, port, request.remote)
        return await _guarded(
            "update",
            self._server._on_update(
                reg_id, list(request.opt.uri_query), bytes(request.payload), host, port
            ),
        )

    async def render_delete(self, request: aiocoap.Message) -> aiocoap.Message:
        reg_id = self._registration_id(request)
        if reg_id is None:
            return _error(Code.NOT_FOUND, "no such registration")
        return await _guarded("de-register", self._server._on_deregister(reg_id))


def build_site(server: LwM2MServer) -> aiocoap.resource.Site:
    site = FastSite()
    # Register and Update payloads may come block-wise (RFC 7959 §2.5).
    site.add_resource(["rd"], use_strict_block1(RegisterResource(server)))
    site.add_resource(["rd"], use_strict_block1(RegistrationResource(server)))
    for path, resource in server.config.extra_resources:
        if len(path) == 1:
            site.add_fast_resource(path[0], resource)
        else:
            site.add_resource(list(path), resource)
    return site
