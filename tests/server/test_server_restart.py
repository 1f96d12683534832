"""Persistence across restarts: a stopped server object, and a SIGKILLed server process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import pytest
from aiocoap.numbers.codes import Code
from server_fakes import FakeDevice, make_config, next_of

from fotakit.lwm2m.path import Path
from fotakit.server import LwM2MServer, Notification, ObservationEnded, Registered

STATE = Path(5, 0, 3)


async def test_registration_survives_a_restart(db_url: str, device: FakeDevice) -> None:
    first = LwM2MServer(make_config(db_url))
    await first.start()
    try:
        await device.register(first.port, "dev1", lifetime=300, queue=True)
        before = first.get("dev1")
    finally:
        await first.stop()
    second = LwM2MServer(make_config(db_url))
    await second.start()
    try:
        assert second.get("dev1") == before
        response = await device.update(second.port)
        assert response.code == Code.CHANGED
        assert await asyncio.wait_for(second.read_value("dev1", "/3/0/3"), 5) == "1.0.0"
    finally:
        await second.stop()


async def test_observation_is_reestablished_on_the_next_update(
    db_url: str, device: FakeDevice
) -> None:
    first = LwM2MServer(make_config(db_url))
    await first.start()
    try:
        await device.register(first.port, "dev1")
        obs = await first.observe("dev1", STATE)
    finally:
        await first.stop()
    # Same port, as a restarted server has: the device's notifications on the old token
    # reach the new process, which answers them with RST.
    second = LwM2MServer(make_config(db_url, port=first.port))
    await second.start()
    try:
        async with second.subscribe() as events:
            await device.update(second.port)
            initial = await next_of(events, Notification)
            assert isinstance(initial, Notification) and initial.initial
            assert initial.observation_id == obs.id and initial.content == {STATE: 0}
            device.set(STATE, 2)
            ev = await next_of(events, Notification)
        assert isinstance(ev, Notification) and ev.observation_id == obs.id
        assert ev.content == {STATE: 2}
        assert obs.id in second.observations
        assert [o.observation_id for o in await second.store.list_observations()] == [obs.id]
    finally:
        await second.stop()


async def test_register_after_restart_drops_persisted_observations(
    db_url: str, device: FakeDevice
) -> None:
    first = LwM2MServer(make_config(db_url))
    await first.start()
    try:
        await device.register(first.port, "dev1")
        await first.observe("dev1", STATE)
    finally:
        await first.stop()
    second = LwM2MServer(make_config(db_url))
    await second.start()
    try:
        async with second.subscribe() as events:
            await device.register(second.port, "dev1")
            await next_of(events, Registered)
        assert second.observations == {}
        assert await second.store.list_observations() == []
        assert not any(isinstance(e, ObservationEnded) for e in [])
    finally:
        await second.stop()


@pytest.fixture
async def spawn(tmp_path: object) -> AsyncIterator[object]:
    processes: list[asyncio.subprocess.Process] = []

    async def start(db: str) -> tuple[asyncio.subprocess.Process, int]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fotakit.server",
            "--port",
            "0",
            "--db",
            db,
            "--log-level",
            "WARNING",
            stdout=asyncio.subprocess.PIPE,
        )
        processes.append(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        words = line.decode().split()
        assert words[:1] == ["listening"], line
        return proc, int(words[2])

    yield start
    for proc in processes:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_update_after_sigkill_and_restart_answers_changed(
    db_url: str, device: FakeDevice, spawn: object
) -> None:
    proc, port = await spawn(db_url)  # type: ignore[operator]
    response = await device.register(port, "killed", lifetime=300)
    assert response.code == Code.CREATED
    os.kill(proc.pid, signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGKILL
    _, port2 = await spawn(db_url)  # type: ignore[operator]
    update = await device.update(port2, ["lt=600"])
    assert update.code == Code.CHANGED


async def test_sigterm_stops_the_server_cleanly(db_url: str, spawn: object) -> None:
    proc, _ = await spawn(db_url)  # type: ignore[operator]
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_a_node_loads_back_only_its_own_registrations(
    db_url: str, device: FakeDevice
) -> None:
    """Several processes share the database: each stores its node ID with the
    registrations it holds and, restarted, takes back only those (docs/operator-guide.md
    "Several processes on PostgreSQL")."""
    a = LwM2MServer(make_config(db_url, node_id="node-a"))
    await a.start()
    try:
        await device.register(a.port, "on-a", lifetime=300)
    finally:
        await a.stop()
    b = LwM2MServer(make_config(db_url, node_id="node-b"))
    await b.start()
    try:
        await device.register(b.port, "on-b", lifetime=300)
        stored = {r.endpoint: r.node_id for r in await b.store.list_registrations()}
    finally:
        await b.stop()
    assert stored == {"on-a": "node-a", "on-b": "node-b"}
    again = LwM2MServer(make_config(db_url, node_id="node-a"))
    await again.start()
    try:
        assert set(again.registrations) == {"on-a"}
    finally:
        await again.stop()
