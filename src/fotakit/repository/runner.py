"""``fotakit server`` with the repository: LwM2M + CoAP ``/fw`` on one port; on the HTTP
port the REST API, the dashboard and HTTP ``/fw`` (:mod:`fotakit.api`).

The repository is opened with the trust store given (``--trust``), so REST uploads are
verified; without one it is read-only and uploads go through :meth:`Repository.add` in
another process (``fotakit package upload``) sharing the same directory and database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import os
import signal
from collections.abc import Callable

from fotakit.api import ApiContext, TokenStore, create_app, serve_api
from fotakit.packages import TrustStore
from fotakit.repository.coap import coap_resources
from fotakit.repository.head_timeout import HEAD_TIMEOUT
from fotakit.repository.http import HttpServer, create_http_app, serve_http
from fotakit.repository.repository import Repository
from fotakit.server import LwM2MServer, ServerConfig, run_server
from fotakit.updates.ratelimit import BucketConfig

log = logging.getLogger("fotakit.server")


def is_wildcard(host: str) -> bool:
    """Whether ``host`` is an unspecified address (``0.0.0.0``, ``::``): binding it listens
    on every interface, but it is no address a device can send to."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return host == ""


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
    trust: str | os.PathLike[str] | TrustStore | None = None,
    api: bool = True,
    http_head_timeout: float = HEAD_TIMEOUT,
) -> None:
    """Run the LwM2M server with ``/fw`` mounted, and HTTP delivery if ``http_port`` is set.

    With ``api`` (the default) the HTTP port serves the REST API and the dashboard
    (:func:`fotakit.api.create_app`, ``/fw`` included); on the first start with no admin
    token, one is created and printed once on stdout — after every port is bound, so a
    start that fails prints (and stores) none. ``trust`` (a PEM file or directory of
    trusted signer keys, or a :class:`TrustStore`) lets REST uploads verify packages;
    without it they answer 503. With ``updates`` off, the campaign and job routes answer
    503. An HTTP client has ``http_head_timeout`` seconds to send each request head.

    With ``updates`` the update service (jobs and campaigns, :mod:`fotakit.updates`) runs
    in the same process on the same database; devices fetch packages from
    ``public_host`` (default: the bind address) on the LwM2M and HTTP ports;
    ``global_rate`` bounds the devices started per minute over all campaigns and processes.
    Returns after SIGINT/SIGTERM (or ``stop``), with everything closed.
    """
    anchors = TrustStore.from_path(trust) if isinstance(trust, str | os.PathLike) else trust
    repository = await asyncio.to_thread(Repository, repository_dir, config.db_url, anchors)
    http: HttpServer | None = None
    api_ctx: ApiContext | None = None
    try:
        if http_port is not None and api:
            api_ctx = await _api_context(config, repository, node_id)
            http = await serve_api(
                create_app(api_ctx),
                http_host or config.host,
                http_port,
                head_timeout=http_head_timeout,
            )
            host = http_host or config.host
            shown = "127.0.0.1" if is_wildcard(host) else host
            log.info("dashboard and REST API: http://%s:%d/", shown, http.port)
        elif http_port is not None:
            app = create_http_app(repository)
            http = await serve_http(
                app, http_host or config.host, http_port, head_timeout=http_head_timeout
            )
        mounted = dataclasses.replace(
            config,
            extra_resources=config.extra_resources + tuple(coap_resources(repository)),
            node_id=node_id or config.node_id,
        )
        started = None
        if on_started is not None:
            callback = on_started
            http_server = http

            def started(server: LwM2MServer) -> None:
                callback(server, http_server)

        if updates:
            await _run_with_updates(
                mounted,
                repository,
                http,
                stop,
                started,
                node_id,
                public_host,
                global_rate,
                api_ctx,
            )
        else:
            await run_server(mounted, stop=stop, on_started=_with_api(api_ctx, started))
    finally:
        if api_ctx is not None:
            api_ctx.close()  # open event streams end
        if http is not None:
            await http.stop()
        if api_ctx is not None and api_ctx.tokens is not None:
            await asyncio.to_thread(api_ctx.tokens.close)
        await asyncio.to_thread(repository.close)


async def _api_context(
    config: ServerConfig, repository: Repository, node_id: str | None
) -> ApiContext:
    """The REST API's context (the first admin token comes later: :func:`_announce_admin`)."""
    tokens = await asyncio.to_thread(TokenStore.open, config.db_url)
    return ApiContext(repository=repository, tokens=tokens, node_id=node_id)


def _announce_admin(api_ctx: ApiContext | None) -> None:
    """Create and print the first admin token, once every port is bound.

    Only now: a start that fails (a port taken, a database refused) must neither print a
    token nor store one, or the next start would find an admin token nobody ever saw."""
    if api_ctx is None or api_ctx.tokens is None:
        return
    admin = api_ctx.tokens.ensure_admin()  # one small write, on a start that succeeded
    if admin is not None:
        print(f"admin token (store it now, it is not shown again): {admin}", flush=True)


def _with_api(
    api_ctx: ApiContext | None, started: Callable[[LwM2MServer], None] | None
) -> Callable[[LwM2MServer], None] | None:
    if api_ctx is None:
        return started

    def on_started(server: LwM2MServer) -> None:
        api_ctx.server = server
        _announce_admin(api_ctx)
        if started is not None:
            started(server)

    return on_started


async def _run_with_updates(
    config: ServerConfig,
    repository: Repository,
    http: HttpServer | None,
    stop: asyncio.Event | None,
    on_started: Callable[[LwM2MServer], None] | None,
    node_id: str | None,
    public_host: str | None,
    global_rate: BucketConfig | None = None,
    api_ctx: ApiContext | None = None,
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
        host = public_host or ("127.0.0.1" if is_wildcard(config.host) else config.host)
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
        if api_ctx is not None:
            api_ctx.server, api_ctx.service = server, service
            await asyncio.to_thread(_announce_admin, api_ctx)
        if on_started is not None:
            on_started(server)
        await stop_event.wait()
    finally:
        if api_ctx is not None:  # the API answers 503 from now on, not errors
            api_ctx.server = api_ctx.service = None
        if service is not None:
            await service.stop()
        await server.stop()
        for sig in installed:
            loop.remove_signal_handler(sig)
