"""A running fotakit site on an event loop in a background thread, for tests whose client
side is synchronous (the CLI through typer's CliRunner, the dashboard through Playwright's
sync API).

:class:`BackgroundSite` runs what ``fotakit server`` runs — the firmware repository (with
a trust store), the LwM2M server with CoAP ``/fw``, the REST API and dashboard (uvicorn on a
loopback port), the update service on SQLite — and a token per role. Subclasses add their
devices in :meth:`BackgroundSite.add_devices`. Everything started is stopped in reverse
order by :meth:`BackgroundSite.stop`; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent / "updates"))

from e2e_helpers import payload_of, server_config, sign, trust_for

from fotakit.api import ApiContext, Role, TokenStore, create_app, serve_api
from fotakit.packages import PrivateKey, TrustStore, generate_key
from fotakit.repository import PackageRecord, Repository
from fotakit.repository.repository import MAX_PACKAGE_SIZE
from fotakit.server import LwM2MServer
from fotakit.store import default_db_url
from fotakit.updates.engine_packages import BaseUris
from fotakit.updates.job import JobPolicy
from fotakit.updates.service import UpdateService

T = TypeVar("T")


@dataclass
class BackgroundSite:
    """A fotakit site on a loop of its own (see the module docstring)."""

    root: Path
    policy: JobPolicy = field(default_factory=JobPolicy)
    max_upload: int = MAX_PACKAGE_SIZE
    token_names: dict[str, str] = field(default_factory=dict)
    """Role label -> the name of that role's token (default: the role label)."""
    key: PrivateKey = field(default_factory=lambda: generate_key("ed25519"))
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    tokens: dict[str, str] = field(default_factory=dict)
    """Role label -> plaintext token."""
    url: str = ""
    server: Any = None
    service: Any = None
    repository: Any = None
    _thread: threading.Thread | None = None
    _stack: contextlib.AsyncExitStack | None = None

    @property
    def db_url(self) -> str:
        return default_db_url(self.root / "data")

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coro`` on the site's loop and wait for its result (bounded)."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self._start(), timeout=90)

    def stop(self) -> None:
        try:
            self.call(self._stop(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            self.loop.close()

    def signed_package(self, version: str, sequence: int, seed: int = 0) -> bytes:
        return sign(payload_of(6_000, seed), self.key, version=version, sequence=sequence)

    def publish(self, version: str, sequence: int, seed: int = 0) -> PackageRecord:
        """Store a signed package straight in the repository (no upload)."""
        data = self.signed_package(version, sequence, seed)
        record: PackageRecord = self.call(asyncio.to_thread(self.repository.add, data))
        return record

    async def add_devices(self, stack: contextlib.AsyncExitStack, trust: TrustStore) -> None:
        """Start the site's devices (registered with :attr:`server` when it returns)."""

    async def _start(self) -> None:
        stack = contextlib.AsyncExitStack()
        self._stack = stack
        try:
            await self._start_parts(stack)
        except BaseException:
            await stack.aclose()
            raise

    async def _stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()

    async def _start_parts(self, stack: contextlib.AsyncExitStack) -> None:
        trust = trust_for(self.key)
        repository = await asyncio.to_thread(
            Repository, self.root / "repository", self.db_url, trust
        )
        stack.push_async_callback(asyncio.to_thread, repository.close)
        self.repository = repository
        server = LwM2MServer(server_config(self.db_url, repository))
        await server.start()
        stack.push_async_callback(server.stop)
        self.server = server
        tokens = await asyncio.to_thread(TokenStore.open, self.db_url)
        stack.callback(tokens.close)
        for role in (Role.VIEWER, Role.OPERATOR, Role.ADMIN):
            name = self.token_names.get(role.label, role.label)
            _, self.tokens[role.label] = await asyncio.to_thread(tokens.create, name, role)
        ctx = ApiContext(
            server=server,
            repository=repository,
            tokens=tokens,
            node_id="node-a",
            max_upload_bytes=self.max_upload,
        )
        http = await serve_api(create_app(ctx), "127.0.0.1", 0)
        stack.push_async_callback(http.stop)
        stack.callback(ctx.close)  # runs first: open event streams end before HTTP stops
        self.url = f"http://127.0.0.1:{http.port}"
        service = UpdateService(
            server,
            repository,
            self.db_url,
            node_id="node-a",
            base_uris=BaseUris(coap=f"coap://127.0.0.1:{server.port}", http=self.url),
            policy=self.policy,
            tick_s=0.2,
            lease_s=5.0,
            resync_s=2.0,
            op_timeout_s=15.0,
            poll_s=3.0,
        )
        await service.start()
        stack.push_async_callback(service.stop)
        ctx.service = service
        self.service = service
        await self.add_devices(stack, trust)
