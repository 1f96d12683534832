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

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from typer.testing import CliRunner, Result

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "updates"))

from e2e_helpers import Fleet

from fotakit.cli import app
from fotakit.packages import TrustStore
from fotakit.updates.job import JobPolicy
from site_helpers import BackgroundSite

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
class CliSite(BackgroundSite):
    """A running fotakit site on a background event loop (see the module docstring), with
    the devices :data:`GOOD` and :data:`BAD`."""

    policy: JobPolicy = field(default_factory=lambda: POLICY)
    fleet: Fleet | None = None

    async def add_devices(self, stack: contextlib.AsyncExitStack, trust: TrustStore) -> None:
        fleet = Fleet(self.root / "agents", trust)
        stack.push_async_callback(fleet.stop)
        for ep in GOOD:
            fleet.make(ep, self.server.port)
        fleet.make(BAD, self.server.port, health_command=("false",))
        await fleet.start(self.server, [*GOOD, BAD])
        self.fleet = fleet

    def remote(self, role: str = "operator") -> dict[str, str | None]:
        """The environment that points the CLI at this site with ``role``'s token."""
        return {"FOTAKIT_URL": self.url, "FOTAKIT_TOKEN": self.tokens[role]}

    def cli(self, *args: str, role: str = "operator", **env: str | None) -> Result:
        return run_cli(*args, env={**self.remote(role), **env})
