"""Security headers of the pages a browser renders: the dashboard and the Swagger UI.

* ``Content-Security-Policy`` (CSP Level 3, W3C): the dashboard (``/``, ``/ui/*``, see
  docs/dashboard.md) loads only its own files — no inline script or style, no other
  origin, never framed (``frame-ancestors 'none'``), no ``<base>``, forms post only here.
  The Swagger UI page (``/api/docs``) has one inline script, FastAPI's configuration
  call; it is allowed by its SHA-256 only (:func:`docs_policy`).
* ``X-Frame-Options: DENY`` (RFC 7034) for browsers without ``frame-ancestors``.
* ``Referrer-Policy: no-referrer`` (W3C Referrer Policy): dashboard URLs (``#/devices/…``)
  never leave in a Referer header.
* ``X-Content-Type-Options: nosniff`` (WHATWG Fetch §3.5) on *every* response, API and
  ``/fw`` included: a browser never runs a package or a JSON body as a script.

A pure ASGI middleware: it adds headers to ``http.response.start`` and does not touch
bodies, so streaming (``/fw``, the event stream) is unaffected.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DASHBOARD_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def docs_policy(page: str) -> str:
    """The policy of the Swagger UI ``page``: the dashboard's, with each inline script of
    the page allowed by its hash (CSP3 hash-source) — nothing else inline."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(page)
    )
    return DASHBOARD_POLICY.replace("script-src 'self'", f"script-src 'self' {hashes}".rstrip())


def _page_headers(policy: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", policy.encode()),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]


class SecurityHeadersMiddleware:
    """Adds the headers above: the page headers to ``pages`` (exact paths, or prefixes
    written ``/ui/*``) with the policy of each, nosniff to every response."""

    def __init__(self, app: ASGIApp, pages: Iterable[tuple[str, str]]) -> None:
        self.app = app
        self.pages = [(path, _page_headers(policy)) for path, policy in pages]

    def _for(self, path: str) -> list[tuple[bytes, bytes]]:
        for page, headers in self.pages:
            if path == page or (page.endswith("/*") and path.startswith(page[:-1])):
                return headers
        return []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [(b"x-content-type-options", b"nosniff"), *self._for(scope["path"])]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                added = [(n, v) for n, v in extra if n not in names]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, with_headers)
