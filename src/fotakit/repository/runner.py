"""``fotakit server`` with the repository: LwM2M + CoAP ``/fw`` on one port, HTTP ``/fw``.

The repository is opened read-only here (no trust store): the server only delivers;
uploads go through :meth:`Repository.add` (``fotakit package upload``, later the REST API),
possibly from another process sharing the same directory and database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable

from fotakit.repository.coap import coap_resources
from fotakit.repository.http import HttpServer, create_http_app, serve_http
from fotakit.repository.repository import Repository
from fotakit.server import LwM2MServer, ServerConfig, run_server


async def run_server_with_repository(
    config: ServerConfig,
    repository_dir: str | os.PathLike[str],
    *,
    http_host: str | None = None,
    http_port: int | None = None,
    stop: asyncio.Event | None = None,
    on_started: Callable[[LwM2MServer, HttpServer | None], None] | None = None,
) -> None:
    """Run the LwM2M server with ``/fw`` mounted, and HTTP delivery if ``http_port`` is set.

    Returns after SIGINT/SIGTERM (or ``stop``), with everything closed.
    """
    repository = await asyncio.to_thread(Repository, repository_dir, config.db_url)
    http: HttpServer | None = None
    try:
        if http_port is not None:
            app = create_http_app(repository)
            http = await serve_http(app, http_host or config.host, http_port)
        mounted = dataclasses.replace(
            config, extra_resources=config.extra_resources + tuple(coap_resources(repository))
        )
        started = None
        if on_started is not None:
            callback = on_started
            http_server = http

            def started(server: LwM2MServer) -> None:
                callback(server, http_server)

        await run_server(mounted, stop=stop, on_started=started)
    finally:
        if http is not None:
            await http.stop()
        await asyncio.to_thread(repository.close)
