"""End-to-end: bad images are never confirmed; the device ends on the old firmware with
the right Update Result (tampered 5, unknown signer 5, wrong class 6, older sequence 6,
failing health check 8, crash loop 8)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from runtime_helpers import (
    EP,
    WAIT,
    Packages,
    download_and_execute,
    next_event,
    payload_of,
    read,
    state_is,
)

from fotakit.agent.runtime import Agent, AgentEvent, AgentEventKind
from fotakit.agent.slots import SlotState
from fotakit.lwm2m.objects import State, UpdateResult
from fotakit.packages import PrivateKey
from fotakit.server import LwM2MServer, Registered

UPDATE_WAIT = 30.0


async def _expect_failure(server: LwM2MServer, agent: Agent, result: UpdateResult) -> None:
    await agent.wait_for(AgentEventKind.STATE, state_is(State.IDLE, result), timeout=UPDATE_WAIT)
    assert await read(server, "/5/0/3") == int(State.IDLE)
    assert await read(server, "/5/0/5") == int(result)
    assert await read(server, "/3/0/3") == "1.0.0"
    assert agent.slots.pending_name is None
    assert agent.slots.slot(agent.slots.inactive_name).state is SlotState.EMPTY


async def test_tampered_pushed_package_fails_with_result_5(
    server: LwM2MServer, agent: Agent, packages: Packages
) -> None:
    data = bytearray(packages.build(payload_of(20_000, 4), version="9.0.0", sequence=9))
    data[-100] ^= 0x01  # one bit of the payload
    await asyncio.wait_for(server.write(EP, "/5/0/0", bytes(data)), UPDATE_WAIT)
    await _expect_failure(server, agent, UpdateResult.INTEGRITY_CHECK_FAILURE)


async def test_package_from_an_untrusted_signer_fails_early_with_result_5(
    server: LwM2MServer, agent: Agent, packages: Packages, rogue_key: PrivateKey
) -> None:
    seen: list[AgentEvent] = []
    agent.add_listener(seen.append)
    record = packages.publish(
        packages.build(payload_of(300_000, 5), version="9.0.0", sequence=9, key=rogue_key)
    )
    await asyncio.wait_for(server.write(EP, "/5/0/1", packages.coap_uri(record)), WAIT)
    await _expect_failure(server, agent, UpdateResult.INTEGRITY_CHECK_FAILURE)
    # refused on the envelope: not even the first 64 KiB of progress were reached
    assert [e for e in seen if e.kind is AgentEventKind.FAILED]
    assert not [e for e in seen if e.kind is AgentEventKind.PROGRESS]


async def test_package_for_another_device_class_fails_with_result_6(
    server: LwM2MServer, agent: Agent, packages: Packages
) -> None:
    record = packages.publish(
        packages.build(payload_of(30_000, 6), version="9.0.0", sequence=9, class_name="other")
    )
    await asyncio.wait_for(server.write(EP, "/5/0/1", packages.http_uri(record)), WAIT)
    await _expect_failure(server, agent, UpdateResult.UNSUPPORTED_PACKAGE_TYPE)


async def test_package_older_than_the_anti_rollback_counter_fails_with_result_6(
    server: LwM2MServer, make_agent: Callable[..., Agent], packages: Packages
) -> None:
    agent = make_agent(extra="initial_sequence = 5")
    async with server.subscribe() as events:
        await agent.start()
        await next_event(events, Registered, lambda e: e.endpoint == EP)
    try:
        record = packages.publish(
            packages.build(payload_of(30_000, 7), version="0.9.0", sequence=4)
        )
        await asyncio.wait_for(server.write(EP, "/5/0/1", packages.coap_uri(record)), WAIT)
        await _expect_failure(server, agent, UpdateResult.UNSUPPORTED_PACKAGE_TYPE)
        assert agent.slots.highest_sequence == 5
    finally:
        await agent.stop()


async def test_failing_health_check_reverts_to_the_old_slot_with_result_8(
    server: LwM2MServer, make_agent: Callable[..., Agent], packages: Packages, tmp_path: Path
) -> None:
    agent = make_agent(health='registration_deadline = 5\ncommand = ["false"]')
    async with server.subscribe() as events:
        await agent.start()
        await next_event(events, Registered, lambda e: e.endpoint == EP)
    try:
        old_slot = agent.slots.running.name
        await download_and_execute(server, agent, packages, "3.0.0")
        trial = await agent.wait_for(AgentEventKind.TRIAL, timeout=UPDATE_WAIT)
        assert trial.detail["version"] == "3.0.0"
        reverted = await agent.wait_for(AgentEventKind.REVERTED, timeout=UPDATE_WAIT)
        assert reverted.detail["rejected"] == "3.0.0"
        assert "health command false exited" in reverted.detail["reason"]
        await agent.wait_for(AgentEventKind.REGISTERED, timeout=UPDATE_WAIT)
        assert await read(server, "/3/0/3") == "1.0.0"
        assert await read(server, "/5/0/5") == int(UpdateResult.UPDATE_FAILED)
        assert await read(server, "/5/0/3") == int(State.IDLE)
        assert agent.slots.running.name == old_slot
        assert agent.slots.highest_sequence == 0  # never confirmed: counter unchanged
    finally:
        await agent.stop()


async def test_crash_loop_of_the_new_image_reverts_with_result_8(
    server: LwM2MServer, make_agent: Callable[..., Agent], packages: Packages
) -> None:
    """The trial image "crashes" (the agent stops without confirming) on every start; after
    max_trial_boots starts the next boot reverts by itself."""
    # a health check that never finishes: the trial is never confirmed
    hang = 'registration_deadline = 5\ncommand = ["sleep", "600"]\ntimeout = 900'
    agent = make_agent(health=hang, slots="max_trial_boots = 2")
    async with server.subscribe() as events:
        await agent.start()
        await next_event(events, Registered, lambda e: e.endpoint == EP)
    await download_and_execute(server, agent, packages, "4.0.0")
    trial = await agent.wait_for(AgentEventKind.TRIAL, timeout=UPDATE_WAIT)
    assert trial.detail["trial_boot"] == 1
    for start in (2, 3):
        await agent.stop(deregister=False)  # the crash
        agent = make_agent(health=hang, slots="max_trial_boots = 2")
        await agent.start()
        booted = await agent.wait_for(AgentEventKind.BOOTED, timeout=WAIT)
        if start == 2:
            assert booted.detail["trial"] is True and booted.detail["trial_boot"] == 2
            assert booted.detail["version"] == "4.0.0"
    try:
        assert booted.detail["trial"] is False and booted.detail["version"] == "1.0.0"
        reverted = await agent.wait_for(AgentEventKind.REVERTED, timeout=WAIT)
        assert reverted.detail["reason"] == "crash loop"
        await agent.wait_for(AgentEventKind.REGISTERED, timeout=UPDATE_WAIT)
        assert await read(server, "/33600/0/4") == "crash loop"
        assert await read(server, "/33600/0/3") == "4.0.0"
        assert await read(server, "/3/0/3") == "1.0.0"
        assert await read(server, "/5/0/5") == int(UpdateResult.UPDATE_FAILED)
        assert await read(server, "/5/0/3") == int(State.IDLE)
    finally:
        await agent.stop()
