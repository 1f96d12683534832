"""``fotakit agent`` on the command line: init-config, config errors, and a whole update
with ``--reexec`` (the agent re-executes itself into the new slot)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from runtime_helpers import (
    EP,
    WAIT,
    AgentProcess,
    Packages,
    next_event,
    payload_of,
    read,
    write_agent_config,
)

from fotakit.agent.config import load_config
from fotakit.lwm2m.objects import State, UpdateResult
from fotakit.server import LwM2MServer, Registered

START_WAIT = 30.0


def _fotakit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fotakit.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_init_config_writes_a_valid_example_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    assert _fotakit("agent", "init-config", str(path)).returncode == 0
    assert load_config(path).endpoint == "device-0001"
    again = _fotakit("agent", "init-config", str(path))
    assert again.returncode == 1 and "exists" in again.stderr


def test_run_with_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('endpoint = "d"\nserver_uri = "coap://127.0.0.1:1"\nlifetime = "soon"\n')
    done = _fotakit("agent", "run", "--config", str(path))
    assert done.returncode == 2
    assert "lifetime: expected an integer" in done.stderr


@pytest.fixture
async def process_list() -> AsyncIterator[list[AgentProcess]]:
    procs: list[AgentProcess] = []
    try:
        yield procs
    finally:
        for p in procs:
            await p.terminate()


async def test_update_with_reexec_restarts_the_process_into_the_new_slot(
    server: LwM2MServer,
    packages: Packages,
    tmp_path: Path,
    trust_dir: Path,
    process_list: list[AgentProcess],
) -> None:
    config = write_agent_config(
        tmp_path / "agent.toml",
        endpoint=EP,
        server_port=server.port,
        data_dir=tmp_path / "agent-data",
        trust_dir=trust_dir,
    )
    record = packages.publish(packages.build(payload_of(30_000, 31), version="9.1.0", sequence=2))
    async with server.subscribe() as events:
        proc = await AgentProcess(config, tmp_path / "agent.log", "--reexec").start()
        process_list.append(proc)
        await next_event(events, Registered, lambda e: e.endpoint == EP, timeout=START_WAIT)
        assert proc.proc is not None
        pid = proc.proc.pid
        await asyncio.wait_for(server.write(EP, "/5/0/1", packages.coap_uri(record)), WAIT)
        await proc.next("state", lambda e: e["state"] == int(State.DOWNLOADED), timeout=START_WAIT)
        await asyncio.wait_for(server.execute(EP, "/5/0/2"), WAIT)
        await proc.next("rebooting")
        booted = await proc.next("booted", timeout=START_WAIT)
        # a new program image in the same process (execv keeps the PID): boot count 1 again
        assert booted["boot"] == 1 and booted["trial"] is True and booted["version"] == "9.1.0"
        assert proc.proc.pid == pid and proc.proc.returncode is None
        await proc.next("confirmed", timeout=START_WAIT)
    assert await read(server, "/3/0/3") == "9.1.0"
    assert await read(server, "/5/0/5") == int(UpdateResult.SUCCESS)
