"""Serving the API over HTTP: uvicorn on the current event loop, with header limits that let
:class:`~fotakit.api.problems.LimitsMiddleware` answer oversized headers itself.

uvicorn's h11 parser refuses a request head larger than ``h11_max_incomplete_event_size``
(16 KiB by default) with a plain-text 400 before the application sees it. Here it is
raised to :data:`H11_MAX_HEAD` (1 MiB, bounded memory per connection), so a head between
:data:`~fotakit.api.problems.MAX_HEADER_BYTES` and that bound gets a 431 problem document.
A request head must also arrive within ``head_timeout`` seconds
(:mod:`fotakit.repository.head_timeout`), so a 1 MiB head cannot be trickled in for ever.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import uvicorn

from fotakit.repository.head_timeout import HEAD_TIMEOUT, head_timeout_protocol
from fotakit.repository.http import HttpServer

log = logging.getLogger("fotakit.api")

H11_MAX_HEAD: Final = 1 << 20


class ApiHttpServer(HttpServer):
    """:class:`fotakit.repository.http.HttpServer` with the API's uvicorn settings."""

    def __init__(
        self, app: Any, host: str, port: int, *, head_timeout: float = HEAD_TIMEOUT
    ) -> None:
        super().__init__(app, host, port, head_timeout=head_timeout)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=head_timeout_protocol(head_timeout),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            h11_max_incomplete_event_size=H11_MAX_HEAD,
        )
        config.load()
        self._server = uvicorn.Server(config)


async def serve_api(
    app: Any, host: str, port: int, *, head_timeout: float = HEAD_TIMEOUT
) -> ApiHttpServer:
    """Start serving ``app`` on ``host:port`` (0: any free port); ``await stop()``.

    ``head_timeout``: seconds a client has to send a request head before it is closed."""
    server = ApiHttpServer(app, host, port, head_timeout=head_timeout)
    await server.start()
    log.info("HTTP delivery listening on %s:%d (REST API, dashboard, /fw)", host, server.port)
    return server
