"""Helpers of the dashboard's browser tests: a real fotakit site for headless Chromium.

:class:`LiveSite` runs, on an event loop of its own in a background thread, everything
``fotakit server`` runs: the LwM2M server (with CoAP ``/fw``), the firmware repository
(with a trust store, so uploads verify), the REST API with the dashboard and HTTP ``/fw``
(uvicorn on a loopback port) and the update service on SQLite. The devices are real
:class:`fotakit.agent.Agent` s over real UDP: the fleet simulator
(:class:`fotakit.sim.fleet.FleetSimulator`, Wi-Fi link profile through its relay, each
device on its own 127.0.1.x address) for the main flow, and a few agents of the update
tests' :class:`Fleet` for the cases that need one device to behave in a set way (a failing
health check, offline, held back by a rate limit). The tests drive Debian's
``/usr/bin/chromium`` through Playwright's sync API from the main thread (no browser
download). Without that binary the tests are skipped, unless FOTAKIT_REQUIRE_INTEROP=1.

Waiting is always on a condition with a time bound (Playwright's ``expect`` timeouts,
futures with ``result(timeout)``), never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "updates"))

from e2e_helpers import (
    Fleet,
    payload_of,
    server_config,
    sign,
    trust_for,
)

from fotakit.api import ApiContext, Role, TokenStore, create_app, serve_api
from fotakit.packages import PrivateKey, generate_key
from fotakit.repository import PackageRecord, Repository
from fotakit.server import LwM2MServer
from fotakit.sim.fleet import FleetSimulator, SimConfig
from fotakit.store import default_db_url
from fotakit.updates.engine_packages import BaseUris
from fotakit.updates.job import JobPolicy
from fotakit.updates.service import UpdateService

CHROMIUM = Path("/usr/bin/chromium")
T = TypeVar("T")

#: The simulated devices (fleet simulator, "good" link profile: WLAN at -55 dBm).
SIM = tuple(f"sim-{i:04d}" for i in range(4))
SIM_RSSI = -55
#: Agents of their own: one whose new image fails its health check (the agent reverts:
#: the job fails "rolled_back"), one that goes offline at start.
BAD = "bad-0"
OFFLINE = "off-0"
#: Devices for the pause/resume/cancel test (a rate limit keeps its campaign running).
SLOW = ("slow-0", "slow-1")
#: A device updated on its own from its device page.
SOLO = "solo-0"
#: The site's upload cap, small so that a too large upload is cheap to test.
MAX_UPLOAD = 256 * 1024
POLICY = JobPolicy(prefer_pull=False, backoff_base_s=1.0, backoff_max_s=2.0, max_attempts=4)


@dataclass
class LiveSite:
    """A running fotakit site on a background event loop (see the module docstring)."""

    root: Path
    key: PrivateKey = field(default_factory=lambda: generate_key("ed25519"))
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    admin_token: str = ""
    viewer_token: str = ""
    base_url: str = ""
    server: Any = None
    service: Any = None
    repository: Any = None
    fleet: Any = None
    sim: Any = None
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
        _, self.admin_token = await asyncio.to_thread(tokens.create, "admin", Role.ADMIN)
        _, self.viewer_token = await asyncio.to_thread(tokens.create, "watcher", Role.VIEWER)
        ctx = ApiContext(
            server=server,
            repository=repository,
            tokens=tokens,
            node_id="node-a",
            max_upload_bytes=MAX_UPLOAD,
        )
        http = await serve_api(create_app(ctx), "127.0.0.1", 0)
        stack.push_async_callback(http.stop)
        stack.callback(ctx.close)  # runs first: open event streams end before HTTP stops
        self.base_url = f"http://127.0.0.1:{http.port}"
        service = UpdateService(
            server,
            repository,
            self.db_url,
            node_id="node-a",
            base_uris=BaseUris(coap=f"coap://127.0.0.1:{server.port}", http=self.base_url),
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
        fleet.make(BAD, server.port, health_command=("false",))
        fleet.make(OFFLINE, server.port)
        for ep in (*SLOW, SOLO):
            fleet.make(ep, server.port)
        await fleet.start(server, [BAD, OFFLINE, *SLOW, SOLO])
        await fleet.agents[OFFLINE].stop(deregister=True)
        self.fleet = fleet
        sim = FleetSimulator(
            SimConfig(
                devices=len(SIM),
                server=f"coap://127.0.0.1:{server.port}",
                trust=trust,
                profile="good",
                data_dir=self.root / "sim",
                prefix="sim",
                outages=False,
            )
        )
        await sim.start()
        stack.push_async_callback(sim.stop)
        assert tuple(d.endpoint for d in sim.devices) == SIM
        self.sim = sim

    async def _stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()

    def signed_package(self, version: str, sequence: int, seed: int = 0) -> bytes:
        return sign(payload_of(6_000, seed), self.key, version=version, sequence=sequence)

    def publish(self, version: str, sequence: int, seed: int = 0) -> PackageRecord:
        """Store a package straight in the repository (for tests that do not upload)."""
        data = self.signed_package(version, sequence, seed)
        record: PackageRecord = self.call(asyncio.to_thread(self.repository.add, data))
        return record


def chromium_or_skip() -> None:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("FOTAKIT_REQUIRE_INTEROP") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@dataclass
class Console:
    """What the page reported: console errors and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def allow(self, fragment: str) -> None:
        """An expected console error (e.g. the browser's "Failed to load resource: … 422"
        line for a request the test makes fail on purpose)."""
        self.allowed.append(fragment)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]
