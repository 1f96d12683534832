"""SIGKILL (a power cut) of ``fotakit agent run`` during download, during the slot write
of a push and during the trial boot: on restart the agent resumes or reverts, and Object 5
tells the truth."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from runtime_helpers import (
    EP,
    WAIT,
    AgentProcess,
    Packages,
    hang_until_released,
    next_event,
    payload_of,
    read,
    write_agent_config,
)

from fotakit.lwm2m.objects import State, UpdateResult
from fotakit.server import LwM2MServer, Registered
from fotakit.sim.relay import Impairment, UdpRelay

START_WAIT = 30.0
SIZE = 300_000


@pytest.fixture
async def processes() -> AsyncIterator[list[AgentProcess]]:
    procs: list[AgentProcess] = []
    try:
        yield procs
    finally:
        for p in procs:
            await p.terminate()


async def _start(
    procs: list[AgentProcess], config: Path, tmp_path: Path, server: LwM2MServer
) -> AgentProcess:
    async with server.subscribe() as events:
        proc = await AgentProcess(config, tmp_path / "agent.log").start()
        procs.append(proc)
        await next_event(events, Registered, lambda e: e.endpoint == EP, timeout=START_WAIT)
    return proc


async def test_sigkill_during_download_resumes_from_the_persisted_offset(
    server: LwM2MServer,
    packages: Packages,
    tmp_path: Path,
    trust_dir: Path,
    processes: list[AgentProcess],
) -> None:
    data_dir = tmp_path / "agent-data"
    config = write_agent_config(
        tmp_path / "agent.toml",
        endpoint=EP,
        server_port=server.port,
        data_dir=data_dir,
        trust_dir=trust_dir,
    )
    record = packages.publish(packages.build(payload_of(SIZE, 11), version="5.0.0", sequence=2))
    # the repository behind a slow link, so the kill lands mid-download
    relay = UdpRelay(
        ("127.0.0.1", packages.coap_port), downlink=Impairment(bandwidth=150_000), seed=1
    )
    host, port = await relay.start()
    try:
        uri = record.coap_uri(host, port)
        proc = await _start(processes, config, tmp_path, server)
        await asyncio.wait_for(server.write(EP, "/5/0/1", uri), WAIT)
        first = await proc.next("progress", timeout=START_WAIT)
        assert 0 < first["offset"] < SIZE
        relay.set_outage(True)  # the download stalls where it is
        await proc.kill()
        persisted = json.loads((data_dir / "download.json").read_text())
        assert persisted["uri"] == uri and persisted["offset"] >= first["offset"]
        relay.set_outage(False)

        before = relay.downstream.bytes_out
        proc = await _start(processes, config, tmp_path, server)
        booted = await proc.next("booted")
        assert booted["state"] == int(State.DOWNLOADING)
        resumed = await proc.next("resumed")
        assert 0 < resumed["offset"] <= persisted["offset"]
        await proc.next("state", lambda e: e["state"] == int(State.DOWNLOADED), timeout=START_WAIT)
        refetched = relay.downstream.bytes_out - before
        # only the rest (plus CoAP headers) came over the link again
        assert refetched < SIZE - resumed["offset"] + 40 * (SIZE // 1024 + 1)

        await asyncio.wait_for(server.execute(EP, "/5/0/2"), WAIT)
        await proc.next("confirmed", timeout=START_WAIT)  # after it registered again
        assert await read(server, "/3/0/3") == "5.0.0"
        assert await read(server, "/5/0/5") == int(UpdateResult.SUCCESS)
    finally:
        await relay.stop()


async def test_sigkill_during_the_slot_write_of_a_push_leaves_old_firmware_and_result_4(
    server: LwM2MServer,
    packages: Packages,
    tmp_path: Path,
    trust_dir: Path,
    processes: list[AgentProcess],
) -> None:
    # the agent reaches the server through a slow link, so the push takes a while
    relay = UdpRelay(("127.0.0.1", server.port), downlink=Impairment(bandwidth=100_000), seed=2)
    _, relay_port = await relay.start()
    data_dir = tmp_path / "agent-data"
    config = write_agent_config(
        tmp_path / "agent.toml",
        endpoint=EP,
        server_port=relay_port,
        data_dir=data_dir,
        trust_dir=trust_dir,
    )
    try:
        proc = await _start(processes, config, tmp_path, server)
        data = packages.build(payload_of(SIZE, 12), version="6.0.0", sequence=2)
        push = asyncio.ensure_future(server.write(EP, "/5/0/0", data))
        try:
            await proc.next("state", lambda e: e["state"] == int(State.DOWNLOADING))
            await proc.kill()  # blocks are being written into the inactive slot
        finally:
            push.cancel()
        info = json.loads((data_dir / "slots" / "b" / "info.json").read_text())
        assert info["state"] == "writing"

        proc = await _start(processes, config, tmp_path, server)
        await proc.next("booted")
        assert await read(server, "/3/0/3") == "1.0.0"
        assert await read(server, "/5/0/3") == int(State.IDLE)
        assert await read(server, "/5/0/5") == int(UpdateResult.CONNECTION_LOST)
        info = json.loads((data_dir / "slots" / "b" / "info.json").read_text())
        assert info["state"] == "empty"  # the half-written image is gone
        boot = json.loads((data_dir / "boot.json").read_text())
        assert boot["active"] == "a" and boot["pending"] is None
    finally:
        await relay.stop()


async def test_sigkill_during_trial_boots_counts_each_and_reverts_after_the_limit(
    server: LwM2MServer,
    packages: Packages,
    tmp_path: Path,
    trust_dir: Path,
    processes: list[AgentProcess],
) -> None:
    flag = tmp_path / "hang"
    flag.touch()
    hang = hang_until_released(flag)
    config = write_agent_config(
        tmp_path / "agent.toml",
        endpoint=EP,
        server_port=server.port,
        data_dir=tmp_path / "agent-data",
        trust_dir=trust_dir,
        health=f"registration_deadline = 10\ncommand = {hang}\ntimeout = 600",
        slots="max_trial_boots = 2",
    )
    try:
        record = packages.publish(
            packages.build(payload_of(20_000, 13), version="7.0.0", sequence=2)
        )
        proc = await _start(processes, config, tmp_path, server)
        await asyncio.wait_for(server.write(EP, "/5/0/1", packages.coap_uri(record)), WAIT)
        await proc.next("state", lambda e: e["state"] == int(State.DOWNLOADED), timeout=START_WAIT)
        await asyncio.wait_for(server.execute(EP, "/5/0/2"), WAIT)
        trial = await proc.next("trial", timeout=START_WAIT)
        assert trial["trial_boot"] == 1 and trial["version"] == "7.0.0"
        await proc.kill()

        proc = await _start(processes, config, tmp_path, server)
        trial = await proc.next("trial", timeout=START_WAIT)
        assert trial["trial_boot"] == 2
        assert await read(server, "/3/0/3") == "7.0.0"  # running the trial image
        assert await read(server, "/5/0/3") == int(State.UPDATING)
        await proc.kill()

        proc = await _start(processes, config, tmp_path, server)
        booted = await proc.next("booted")
        assert booted["trial"] is False and booted["version"] == "1.0.0"
        reverted = await proc.next("reverted")
        assert reverted["reason"] == "crash loop" and reverted["rejected"] == "7.0.0"
        assert await read(server, "/3/0/3") == "1.0.0"
        assert await read(server, "/5/0/3") == int(State.IDLE)
        assert await read(server, "/5/0/5") == int(UpdateResult.UPDATE_FAILED)
    finally:
        flag.unlink(missing_ok=True)  # any health command still running ends


async def test_sigkill_during_installation_returns_to_downloaded_8_and_retry_succeeds(
    server: LwM2MServer,
    packages: Packages,
    tmp_path: Path,
    trust_dir: Path,
    processes: list[AgentProcess],
) -> None:
    """Killed after Execute, while the installer runs (before the slot is pending): the
    restart finds Updating without a trial, so nothing was installed: Downloaded, Result
    8, the verified image kept for a retry."""
    flag = tmp_path / "hang-installer"
    flag.touch()
    config = write_agent_config(
        tmp_path / "agent.toml",
        endpoint=EP,
        server_port=server.port,
        data_dir=tmp_path / "agent-data",
        trust_dir=trust_dir,
        extra="",
        health="registration_deadline = 10\n[installer]\n"
        f"command = {hang_until_released(flag)}\ntimeout = 600",
    )
    record = packages.publish(packages.build(payload_of(20_000, 14), version="7.1.0", sequence=2))
    proc = await _start(processes, config, tmp_path, server)
    await asyncio.wait_for(server.write(EP, "/5/0/1", packages.coap_uri(record)), WAIT)
    await proc.next("state", lambda e: e["state"] == int(State.DOWNLOADED), timeout=START_WAIT)
    await asyncio.wait_for(server.execute(EP, "/5/0/2"), WAIT)
    await proc.next("state", lambda e: e["state"] == int(State.UPDATING))
    await proc.kill()  # the installer is running

    flag.unlink()
    proc = await _start(processes, config, tmp_path, server)
    booted = await proc.next("booted")
    assert booted["trial"] is False and booted["version"] == "1.0.0"
    assert await read(server, "/5/0/3") == int(State.DOWNLOADED)
    assert await read(server, "/5/0/5") == int(UpdateResult.UPDATE_FAILED)
    assert await read(server, "/33600/0/4") == "interrupted"  # why, in the agent's words
    assert await read(server, "/33600/0/3") == "7.1.0"
    await asyncio.wait_for(server.execute(EP, "/5/0/2"), WAIT)
    await proc.next("confirmed", timeout=START_WAIT)
    assert await read(server, "/3/0/3") == "7.1.0"
