"""``fotakit server`` with the repository: LwM2M + CoAP ``/fw`` on one port, HTTP ``/fw``.

The repository is opened read-only here (no trust store): the server only delivers;
uploads go through :meth:`Repository.add` (``fotakit package upload``, later the REST API),
possibly from another process sharing the same directory and database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from collections.abc import Callable

from fotakit.repository.coap import coap_resources
from fotakit.repository.http import HttpServer, create_http_app, serve_http
from fotakit.repository.repository import Repository
from fotakit.server import LwM2MServer, ServerConfig, run_server
from fotakit.updates.ratelimit import BucketConfig


async def run_server_with_repository(
    config: ServerConfig,
    repository_dir: str | os.PathLike[str],
    *,
    http_host: str | None = None,
    http_port: int | None = None,
    stop: asyncio.Event | None = None,
    on_started: Callable[[LwM2MServer, HttpServer | None], None] | None = None,
    updates: bool = True,
    node_id: str | None = None,
    public_host: str | None = None,
    global_rate: BucketConfig | None = None,
) -> None:
    """Run the LwM2M server with ``/fw`` mounted, and HTTP delivery if ``http_port`` is set.

    With ``updates`` the update service (jobs and campaigns, :mod:`fotakit.updates`) runs
    in the same process on the same database; devices fetch packages from
    ``public_host`` (default: the bind address) on the LwM2M and HTTP ports;
    ``global_rate`` bounds the devices started per minute over all campaigns and processes.
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

        if updates:
            await _run_with_updates(
                mounted, repository, http, stop, started, node_id, public_host, global_rate
            )
        else:
            await run_server(mounted, stop=stop, on_started=started)
    finally:
        if http is not None:
            await http.stop()
        await asyncio.to_thread(repository.close)


async def _run_with_updates(
    config: ServerConfig,
    repository: Repository,
    http: HttpServer | None,
    stop: asyncio.Event | None,
    on_started: Callable[[LwM2MServer], None] | None,
    node_id: str | None,
    public_host: str | None,
    global_rate: BucketConfig | None = None,
) -> None:
    """:func:`run_server` with the :class:`~fotakit.updates.service.UpdateService` beside."""
    from fotakit.updates.engine_packages import BaseUris
    from fotakit.updates.service import UpdateService

    stop_event = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop_event.set)
            installed.append(sig)
    server = LwM2MServer(config)
    service: UpdateService | None = None
    try:
        await server.start()
        host = public_host or ("127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host)
        host = f"[{host}]" if ":" in host else host
        base = BaseUris(
            coap=f"coap://{host}:{server.port}",
            http=f"http://{host}:{http.port}" if http is not None else None,
        )
        service = UpdateService(
            server,
            repository,
            config.db_url,
            node_id=node_id,
            base_uris=base,
            global_rate=global_rate,
        )
        await service.start()
        if on_started is not None:
            on_started(server)
        await stop_event.wait()
    finally:
        if service is not None:
            await service.stop()
        await server.stop()
        for sig in installed:
            loop.remove_signal_handler(sig)
