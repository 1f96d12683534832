"""Helpers of the dashboard's browser tests: a real fotakit site for headless Chromium.

:class:`LiveSite` (a :class:`site_helpers.BackgroundSite`) runs, on an event loop of its own
in a background thread, everything
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

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "updates"))

from e2e_helpers import Fleet

from fotakit.packages import TrustStore
from fotakit.sim.fleet import FleetSimulator, SimConfig
from fotakit.updates.job import JobPolicy
from site_helpers import BackgroundSite

CHROMIUM = Path("/usr/bin/chromium")

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
class LiveSite(BackgroundSite):
    """A running fotakit site on a background event loop (see the module docstring), with
    the simulated devices :data:`SIM` and the agents :data:`BAD`, :data:`OFFLINE` (stopped
    at start), :data:`SLOW` and :data:`SOLO`."""

    policy: JobPolicy = field(default_factory=lambda: POLICY)
    max_upload: int = MAX_UPLOAD
    token_names: dict[str, str] = field(default_factory=lambda: {"viewer": "watcher"})
    fleet: Fleet | None = None
    sim: Any = None

    @property
    def admin_token(self) -> str:
        return self.tokens["admin"]

    @property
    def viewer_token(self) -> str:
        return self.tokens["viewer"]

    @property
    def base_url(self) -> str:
        return self.url

    async def add_devices(self, stack: contextlib.AsyncExitStack, trust: TrustStore) -> None:
        server = self.server
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
