"""Helpers for the agent runtime tests (fixtures are in conftest.py).

Everything here is real: an :class:`LwM2MServer` on loopback as the test driver, real
files, real sockets. Waiting is always on an event with a time bound, never a sleep.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: shared helpers

import event_helpers
from fotakit.agent.runtime import Agent, AgentEvent, AgentEventKind
from fotakit.coap import TransportParams
from fotakit.lwm2m.objects import State, UpdateResult
from fotakit.packages import PrivateKey, build_package_in_memory
from fotakit.repository import PackageRecord, Repository
from fotakit.server import Event, LwM2MServer, ServerConfig

WAIT = 10.0
FAST = TransportParams(
    ack_timeout=0.3, ack_random_factor=1.0, max_retransmit=2, request_timeout=3.0
)

E = TypeVar("E", bound=Event)


def server_config(db_url: str, **overrides: Any) -> ServerConfig:
    params: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "db_url": db_url,
        "transport": FAST,
        "expiry_grace": 0.0,
    }
    params.update(overrides)
    return ServerConfig(**params)


async def next_event(
    events: Any,
    kind: type[E],
    where: Callable[[E], bool] = lambda _e: True,
    timeout: float = WAIT,  # noqa: ASYNC109
) -> E:
    """:func:`event_helpers.next_event` with this module's default bound."""
    return await event_helpers.next_event(events, kind, where, timeout)


def payload_of(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


VENDOR = "example.com"
CLASS = "sensor-v2"


def agent_toml(
    *,
    endpoint: str,
    server_port: int,
    data_dir: Path,
    trust_dir: Path,
    health: str = "registration_deadline = 5",
    extra: str = "",
    slots: str = "max_trial_boots = 3",
    delivery: str = 'method = "both"',
) -> str:
    """An agent configuration for tests: loopback, fast timers, test trust anchors."""
    return f"""
endpoint = "{endpoint}"
server_uri = "coap://127.0.0.1:{server_port}"
lifetime = 60
data_dir = "{data_dir}"
local_host = "127.0.0.1"
initial_version = "1.0.0"
{extra}
[device]
manufacturer = "fotakit tests"
vendor_domain = "{VENDOR}"
class_name = "{CLASS}"
[slots]
{slots}
[trust]
anchors = ["{trust_dir}"]
[delivery]
{delivery}
[health]
{health}
[transport]
ack_timeout = 0.3
ack_random_factor = 1.0
max_retransmit = 2
request_timeout = 5.0
[connectivity]
source = "simulated"
"""


def write_agent_config(path: Path, **kwargs: Any) -> Path:
    path.write_text(agent_toml(**kwargs), encoding="utf-8")
    return path


EP = "agent-e2e"


def state_is(state: State, result: UpdateResult | None = None) -> Callable[[AgentEvent], bool]:
    """Matches an agent STATE event with this Object 5 State (and Update Result)."""

    def match(e: AgentEvent) -> bool:
        if e.detail.get("state") != int(state):
            return False
        return result is None or e.detail.get("result") == int(result)

    return match


async def read(server: LwM2MServer, path: str, endpoint: str = EP) -> object:
    return await asyncio.wait_for(server.read_value(endpoint, path), WAIT)


async def download_and_execute(
    server: LwM2MServer, agent: Agent, packages: Packages, version: str
) -> None:
    """Publish a good package of ``version``, have the agent pull it, Execute /5/0/2."""
    record = packages.publish(packages.build(payload_of(30_000, 8), version=version, sequence=3))
    await asyncio.wait_for(server.write(EP, "/5/0/1", packages.coap_uri(record)), WAIT)
    await agent.wait_for(AgentEventKind.STATE, state_is(State.DOWNLOADED), timeout=30.0)
    await asyncio.wait_for(server.execute(EP, "/5/0/2"), WAIT)


class AgentProcess:
    """``fotakit agent run --config ...`` in a subprocess; its stdout is one JSON event per
    line, which :meth:`next` reads (skipping others) with a time bound."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        self.config = config
        self.log = log
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []

    async def start(self) -> AgentProcess:
        with open(self.log, "ab") as log:  # noqa: ASYNC230 - a local log file
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "fotakit.cli",
                "agent",
                "run",
                "--config",
                str(self.config),
                "--log-level",
                "INFO",
                *self.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        return self

    async def next(
        self,
        event: str,
        where: Callable[[dict[str, Any]], bool] = lambda _e: True,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout

        async def find() -> dict[str, Any]:
            for _ in range(100_000):
                line = await stdout.readline()
                if not line:
                    raise AssertionError(
                        f"agent exited ({self.proc.returncode if self.proc else '?'}) before "
                        f"{event}; log: {self.log.read_text()[-2000:]}"
                    )
                record = json.loads(line)
                self.lines.append(record)
                if record.get("event") == event and where(record):
                    return record
            raise AssertionError(f"no {event} in 100000 lines")

        try:
            return await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"no {event} within {timeout} s; lines read: {self.lines[-20:]}"
            ) from None

    async def kill(self) -> None:
        """SIGKILL: the power cut."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), WAIT)

    async def terminate(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), WAIT)
            except TimeoutError:
                await self.kill()


def hang_until_released(flag: Path) -> str:
    """A TOML argv that never passes a health check (or never finishes an installation)
    while ``flag`` exists, and ends by itself once its agent died (reparented), so a
    SIGKILLed agent leaves no stray process behind. Bounded: 600 s at most."""
    script = (
        "import os, pathlib, time\\n"
        f"flag = pathlib.Path({str(flag)!r})\\n"
        "parent = os.getppid()\\n"
        "for _ in range(6000):\\n"
        "    ppid = os.getppid()\\n"
        "    if not flag.exists() or ppid != parent or ppid == 1: break\\n"
        "    time.sleep(0.1)"
    )
    return f'["{sys.executable}", "-c", "{script}"]'


@dataclass
class Packages:
    """Builds signed packages and publishes them in the repository (CoAP and HTTP)."""

    repo: Repository
    key: PrivateKey
    coap_port: int
    http_port: int

    def build(
        self,
        payload: bytes,
        *,
        version: str,
        sequence: int,
        class_name: str = CLASS,
        key: PrivateKey | None = None,
    ) -> bytes:
        return build_package_in_memory(
            payload,
            version=version,
            vendor_domain=VENDOR,
            class_name=class_name,
            sequence=sequence,
            key=key or self.key,
        )

    def publish(self, data: bytes) -> PackageRecord:
        return self.repo.add(data)

    def coap_uri(self, record: PackageRecord) -> str:
        return record.coap_uri("127.0.0.1", self.coap_port)

    def http_uri(self, record: PackageRecord) -> str:
        return record.http_uri("127.0.0.1", self.http_port)
