"""Helpers for the CLI tests: a real fotakit site on a background event loop, and a runner.

(The ``site`` fixture lives in conftest.py; tests import these names from here, since
several test directories have a conftest module.)

:class:`CliSite` runs, on an event loop of its own in a background thread, what
``fotakit server`` runs: the LwM2M server (with CoAP ``/fw``), the firmware repository,
the REST API (uvicorn on a loopback port), the update service on SQLite, and a few real
:class:`fotakit.agent.Agent` devices over real UDP. The CLI under test runs in the main
thread through typer's CliRunner, talking real HTTP to the site — so ``asyncio.run`` in
``campaign watch`` has a loop of its own. Waiting is on futures with a time bound, never a
sleep.
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

from typer.testing import CliRunner, Result

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "updates"))

from e2e_helpers import Fleet, payload_of, server_config, sign, trust_for

from fotakit.api import ApiContext, Role, TokenStore, create_app, serve_api
from fotakit.cli import app
from fotakit.packages import PrivateKey, generate_key
from fotakit.repository import PackageRecord, Repository
from fotakit.server import LwM2MServer
from fotakit.store import default_db_url
from fotakit.updates.engine_packages import BaseUris
from fotakit.updates.job import JobPolicy
from fotakit.updates.service import UpdateService

T = TypeVar("T")

#: Healthy devices, and one whose new image fails its health check (the agent reverts).
GOOD = ("cli-0", "cli-1", "cli-2")
BAD = "cli-bad"
POLICY = JobPolicy(prefer_pull=False, backoff_base_s=1.0, backoff_max_s=2.0, max_attempts=3)

#: Variables that would change what the CLI under test sees.
CLEAN_ENV = {
    "FOTAKIT_URL": None,
    "FOTAKIT_TOKEN": None,
    "FOTAKIT_CONFIG": None,
    "FOTAKIT_HOST": None,
    "FOTAKIT_PORT": None,
    "FOTAKIT_DB": None,
    "FOTAKIT_HTTP_PORT": None,
    "COLUMNS": "200",
    "XDG_CONFIG_HOME": "/nonexistent/fotakit-tests",  # no user config file
}


def run_cli(
    *args: str, env: dict[str, str | None] | None = None, input: str | None = None
) -> Result:
    """``fotakit ARGS`` in-process (stdout and stderr kept apart), no HOME config file."""
    merged: dict[str, str | None] = dict(CLEAN_ENV)
    merged.update(env or {})
    return CliRunner().invoke(app, list(args), env=merged, input=input, catch_exceptions=False)


@dataclass
class CliSite:
    """A running fotakit site on a background event loop (see the module docstring)."""

    root: Path
    key: PrivateKey = field(default_factory=lambda: generate_key("ed25519"))
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    tokens: dict[str, str] = field(default_factory=dict)
    url: str = ""
    server: Any = None
    service: Any = None
    repository: Any = None
    fleet: Any = None
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

    async def _start(self) -> None:
        stack = contextlib.AsyncExitStack()
        self._stack = stack
        try:
            await self._start_parts(stack)
        except BaseException:
            await stack.aclose()
            raise

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
            _, plaintext = await asyncio.to_thread(tokens.create, role.label, role)
            self.tokens[role.label] = plaintext
        ctx = ApiContext(server=server, repository=repository, tokens=tokens, node_id="node-a")
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
            policy=POLICY,
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
        fleet = Fleet(self.root / "agents", trust)
        stack.push_async_callback(fleet.stop)
        for ep in GOOD:
            fleet.make(ep, server.port)
        fleet.make(BAD, server.port, health_command=("false",))
        await fleet.start(server, [*GOOD, BAD])
        self.fleet = fleet

    async def _stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()

    def publish(self, version: str, sequence: int, seed: int = 0) -> PackageRecord:
        """A signed package stored straight in the repository."""
        data = sign(payload_of(6_000, seed), self.key, version=version, sequence=sequence)
        record: PackageRecord = self.call(asyncio.to_thread(self.repository.add, data))
        return record

    def remote(self, role: str = "operator") -> dict[str, str | None]:
        """The environment that points the CLI at this site with ``role``'s token."""
        return {"FOTAKIT_URL": self.url, "FOTAKIT_TOKEN": self.tokens[role]}

    def cli(self, *args: str, role: str = "operator", **env: str | None) -> Result:
        return run_cli(*args, env={**self.remote(role), **env})
