"""End-to-end operations around an update: reboot via /3/0/4, cancel, reset, storage
limits, and the device objects the agent serves — all through the LwM2M server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from runtime_helpers import EP, WAIT, Packages, next_event, payload_of, read, state_is

from fotakit.agent.runtime import Agent, AgentEventKind
from fotakit.agent.slots import SlotState
from fotakit.client.objects.connectivity import SimulatedConnectivitySource
from fotakit.lwm2m.objects import State, UpdateResult
from fotakit.lwm2m.path import Path as LwPath
from fotakit.server import DeviceError, LwM2MServer, Notification, Registered

UPDATE_WAIT = 30.0


async def _downloaded(server: LwM2MServer, agent: Agent, packages: Packages, size: int) -> None:
    record = packages.publish(packages.build(payload_of(size, 21), version="8.0.0", sequence=4))
    await asyncio.wait_for(server.write(EP, "/5/0/1", packages.coap_uri(record)), WAIT)
    await agent.wait_for(AgentEventKind.STATE, state_is(State.DOWNLOADED), timeout=UPDATE_WAIT)


async def test_downloaded_image_survives_a_reboot_by_execute_3_0_4_and_installs_after(
    server: LwM2MServer, agent: Agent, packages: Packages
) -> None:
    await _downloaded(server, agent, packages, 25_000)
    async with server.subscribe() as events:
        await asyncio.wait_for(server.execute(EP, "/3/0/4"), WAIT)
        await agent.wait_for(AgentEventKind.REBOOTING, timeout=WAIT)
        booted = await agent.wait_for(AgentEventKind.BOOTED, timeout=WAIT)
        assert booted.detail["trial"] is False and booted.detail["version"] == "1.0.0"
        await next_event(events, Registered, lambda e: e.endpoint == EP)
    assert await read(server, "/5/0/3") == int(State.DOWNLOADED)
    assert await read(server, "/5/0/7") == "8.0.0"
    # the simulated radio still reaches observers through the rebooted client
    source = agent.connectivity_source
    assert isinstance(source, SimulatedConnectivitySource)
    async with server.subscribe() as events:
        await asyncio.wait_for(server.observe(EP, "/4/0/2"), WAIT)
        source.set(radio_signal_strength=-111)
        note = await next_event(events, Notification, lambda n: not n.initial)
        assert note.content[LwPath(4, 0, 2)] == -111
    await asyncio.wait_for(server.execute(EP, "/5/0/2"), WAIT)
    await agent.wait_for(AgentEventKind.CONFIRMED, timeout=UPDATE_WAIT)
    assert await read(server, "/3/0/3") == "8.0.0"


async def test_cancel_while_downloaded_drops_the_image_with_result_10(
    server: LwM2MServer, agent: Agent, packages: Packages
) -> None:
    await _downloaded(server, agent, packages, 25_000)
    await asyncio.wait_for(server.execute(EP, "/5/0/10"), WAIT)
    assert await read(server, "/5/0/3") == int(State.IDLE)
    assert await read(server, "/5/0/5") == int(UpdateResult.CANCELLED)
    assert agent.slots.slot(agent.slots.inactive_name).state is SlotState.EMPTY
    with pytest.raises(DeviceError) as info:
        await asyncio.wait_for(server.execute(EP, "/5/0/2"), WAIT)
    assert info.value.code == "4.05"


async def test_empty_package_uri_resets_a_downloaded_image(
    server: LwM2MServer, agent: Agent, packages: Packages
) -> None:
    await _downloaded(server, agent, packages, 25_000)
    await asyncio.wait_for(server.write(EP, "/5/0/1", ""), WAIT)
    assert await read(server, "/5/0/3") == int(State.IDLE)
    assert await read(server, "/5/0/5") == int(UpdateResult.INITIAL)
    assert agent.slots.slot(agent.slots.inactive_name).state is SlotState.EMPTY
    assert not (agent.config.data_dir / "slots" / agent.slots.inactive_name / "image").exists()


async def test_push_larger_than_the_slot_is_refused_4_13_with_result_2(
    server: LwM2MServer, make_agent: Callable[..., Agent], packages: Packages
) -> None:
    agent = make_agent(slots="max_trial_boots = 3\ncapacity = 16384")
    async with server.subscribe() as events:
        await agent.start()
        await next_event(events, Registered, lambda e: e.endpoint == EP)
    try:
        data = packages.build(payload_of(40_000, 22), version="8.1.0", sequence=4)
        with pytest.raises(DeviceError) as info:
            await asyncio.wait_for(server.write(EP, "/5/0/0", data), WAIT)
        assert info.value.code == "4.13"
        assert await read(server, "/5/0/5") == int(UpdateResult.NOT_ENOUGH_FLASH)
        assert await read(server, "/5/0/3") == int(State.IDLE)
    finally:
        await agent.stop()


async def test_pull_larger_than_the_slot_fails_with_result_2(
    server: LwM2MServer, make_agent: Callable[..., Agent], packages: Packages
) -> None:
    agent = make_agent(slots="max_trial_boots = 3\ncapacity = 16384")
    async with server.subscribe() as events:
        await agent.start()
        await next_event(events, Registered, lambda e: e.endpoint == EP)
    try:
        record = packages.publish(
            packages.build(payload_of(40_000, 23), version="8.2.0", sequence=4)
        )
        await asyncio.wait_for(server.write(EP, "/5/0/1", packages.http_uri(record)), WAIT)
        await agent.wait_for(
            AgentEventKind.STATE,
            state_is(State.IDLE, UpdateResult.NOT_ENOUGH_FLASH),
            timeout=UPDATE_WAIT,
        )
    finally:
        await agent.stop()


async def test_unsupported_scheme_sets_result_9_and_bad_uri_result_7(
    server: LwM2MServer, agent: Agent
) -> None:
    await asyncio.wait_for(server.write(EP, "/5/0/1", "ftp://127.0.0.1/fw"), WAIT)
    assert await read(server, "/5/0/5") == int(UpdateResult.UNSUPPORTED_PROTOCOL)
    await asyncio.wait_for(server.write(EP, "/5/0/1", "coap://"), WAIT)
    assert await read(server, "/5/0/5") == int(UpdateResult.INVALID_URI)
    assert await read(server, "/5/0/3") == int(State.IDLE)


async def test_package_uri_naming_nothing_fails_with_result_7(
    server: LwM2MServer, agent: Agent, packages: Packages
) -> None:
    uri = f"coap://127.0.0.1:{packages.coap_port}/fw/0000000000000000"
    await asyncio.wait_for(server.write(EP, "/5/0/1", uri), WAIT)
    await agent.wait_for(
        AgentEventKind.STATE, state_is(State.IDLE, UpdateResult.INVALID_URI), timeout=UPDATE_WAIT
    )


async def test_agent_serves_device_and_connectivity_objects(
    server: LwM2MServer, agent: Agent
) -> None:
    device = await asyncio.wait_for(server.read(EP, "/3/0"), WAIT)
    assert device[LwPath(3, 0, 0)] == "fotakit tests"
    assert device[LwPath(3, 0, 3)] == "1.0.0"
    assert device[LwPath(3, 0, 16)] == "U"
    assert LwPath(3, 0, 9) in device  # the simulated battery
    conn = await asyncio.wait_for(server.read(EP, "/4/0"), WAIT)
    assert LwPath(4, 0, 0) in conn and LwPath(4, 0, 2) in conn
    firmware = await asyncio.wait_for(server.read(EP, "/5/0"), WAIT)
    assert firmware[LwPath(5, 0, 9)] == 2  # pull and push
    protocols = sorted(v for p, v in firmware.items() if p.resource_id == 8)
    assert protocols == [0, 2, 3]


async def test_installer_receives_the_verified_payload_before_the_reboot(
    server: LwM2MServer, make_agent: Callable[..., Agent], packages: Packages, tmp_path: Path
) -> None:
    copy = tmp_path / "installed.bin"
    script = (
        "import os, shutil; "
        f"shutil.copy(os.environ['FOTAKIT_IMAGE'], {str(copy)!r}); "
        "assert os.environ['FOTAKIT_VERSION'] == '8.3.0'"
    )
    agent = make_agent(
        health=f'registration_deadline = 5\n[installer]\ncommand = ["{sys.executable}", "-c", '
        f'"{script}"]'
    )
    async with server.subscribe() as events:
        await agent.start()
        await next_event(events, Registered, lambda e: e.endpoint == EP)
    try:
        payload = payload_of(10_000, 24)
        data = packages.build(payload, version="8.3.0", sequence=4)
        await _downloaded_push(server, agent, data)
        await asyncio.wait_for(server.execute(EP, "/5/0/2"), WAIT)
        await agent.wait_for(AgentEventKind.CONFIRMED, timeout=UPDATE_WAIT)
        assert copy.read_bytes() == payload
    finally:
        await agent.stop()


async def test_failing_installer_keeps_the_image_downloaded_with_result_8(
    server: LwM2MServer, make_agent: Callable[..., Agent], packages: Packages
) -> None:
    agent = make_agent(health='registration_deadline = 5\n[installer]\ncommand = ["false"]')
    async with server.subscribe() as events:
        await agent.start()
        await next_event(events, Registered, lambda e: e.endpoint == EP)
    try:
        data = packages.build(payload_of(10_000, 25), version="8.4.0", sequence=4)
        await _downloaded_push(server, agent, data)
        await asyncio.wait_for(server.execute(EP, "/5/0/2"), WAIT)
        await agent.wait_for(
            AgentEventKind.STATE,
            state_is(State.DOWNLOADED, UpdateResult.UPDATE_FAILED),
            timeout=UPDATE_WAIT,
        )
        assert await read(server, "/3/0/3") == "1.0.0"
        assert agent.slots.pending_name is None
        # why, in /33600/0 (docs/agent-guide.md "Update diagnostics")
        assert await read(server, "/33600/0/4") == "install"
        assert await read(server, "/33600/0/3") == "8.4.0"
        text = await read(server, "/33600/0/0")
        assert isinstance(text, str) and text.startswith("installation failed: ")
    finally:
        await agent.stop()


async def _downloaded_push(server: LwM2MServer, agent: Agent, data: bytes) -> None:
    await asyncio.wait_for(server.write(EP, "/5/0/0", data), UPDATE_WAIT)
    await agent.wait_for(AgentEventKind.STATE, state_is(State.DOWNLOADED), timeout=UPDATE_WAIT)
