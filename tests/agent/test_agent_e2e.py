"""End-to-end: the fotakit LwM2M server updates a running agent over real CoAP on loopback.

The server is the test driver (Write /5/0/1, Execute /5/0/2, Read /5/0/3, /5/0/5,
/3/0/3); the firmware repository serves the package over CoAP and HTTP. Every wait is on
an event (server events, agent events) with a time bound.
"""

from __future__ import annotations

import asyncio

from runtime_helpers import EP, WAIT, Packages, next_event, payload_of, read, state_is

from fotakit.agent.runtime import Agent, AgentEventKind
from fotakit.lwm2m.objects import State, UpdateResult
from fotakit.lwm2m.path import Path as LwPath
from fotakit.server import LwM2MServer, Notification, Registered

UPDATE_WAIT = 30.0


async def _update_and_expect_success(server: LwM2MServer, agent: Agent, version: str) -> None:
    """Execute /5/0/2 on a Downloaded agent and see it come back on ``version``."""
    async with server.subscribe() as events:
        await asyncio.wait_for(server.execute(EP, "/5/0/2"), WAIT)
        confirmed = await agent.wait_for(AgentEventKind.CONFIRMED, timeout=UPDATE_WAIT)
        assert confirmed.detail["version"] == version
        await next_event(events, Registered, lambda e: e.endpoint == EP, timeout=UPDATE_WAIT)
    assert await read(server, "/3/0/3") == version
    assert await read(server, "/5/0/5") == int(UpdateResult.SUCCESS)
    assert await read(server, "/5/0/3") == int(State.IDLE)
    assert agent.running_version == version
    assert agent.slots.highest_sequence == 2


async def test_pull_over_coap_updates_agent_into_the_new_slot(
    server: LwM2MServer, agent: Agent, packages: Packages
) -> None:
    record = packages.publish(packages.build(payload_of(50_000, 1), version="2.0.0", sequence=2))
    assert await read(server, "/3/0/3") == "1.0.0"
    old_slot = agent.slots.running.name
    async with server.subscribe() as events:
        await asyncio.wait_for(server.observe(EP, "/5/0/3"), WAIT)
        await asyncio.wait_for(server.write(EP, "/5/0/1", packages.coap_uri(record)), WAIT)
        seen: list[int] = []
        while len(seen) < 2:
            note = await next_event(events, Notification, lambda n: not n.initial)
            seen.append(int(note.content[LwPath(5, 0, 3)]))  # type: ignore[call-overload]
        assert seen == [int(State.DOWNLOADING), int(State.DOWNLOADED)]
    assert await read(server, "/5/0/7") == "2.0.0"
    await _update_and_expect_success(server, agent, "2.0.0")
    assert agent.slots.running.name != old_slot
    last_change = await read(server, "/5/0/12")
    assert last_change is not None


async def test_pull_over_http_updates_agent(
    server: LwM2MServer, agent: Agent, packages: Packages
) -> None:
    record = packages.publish(packages.build(payload_of(70_000, 2), version="2.1.0", sequence=2))
    await asyncio.wait_for(server.write(EP, "/5/0/1", packages.http_uri(record)), WAIT)
    await agent.wait_for(AgentEventKind.STATE, state_is(State.DOWNLOADED), timeout=UPDATE_WAIT)
    await _update_and_expect_success(server, agent, "2.1.0")


async def test_push_by_block1_write_updates_agent(
    server: LwM2MServer, agent: Agent, packages: Packages
) -> None:
    data = packages.build(payload_of(40_000, 3), version="2.2.0", sequence=2)
    await asyncio.wait_for(server.write(EP, "/5/0/0", data), UPDATE_WAIT)
    await agent.wait_for(AgentEventKind.STATE, state_is(State.DOWNLOADED), timeout=UPDATE_WAIT)
    await _update_and_expect_success(server, agent, "2.2.0")


async def test_every_state_change_of_an_update_is_notified_in_order(
    server: LwM2MServer, agent: Agent, packages: Packages
) -> None:
    """Idle -> Downloading -> Downloaded -> Updating, then (after the reboot and the new
    Register, which re-establishes the observation) Idle with Result 1."""
    record = packages.publish(packages.build(payload_of(20_000, 9), version="2.3.0", sequence=2))
    async with server.subscribe() as events:
        await asyncio.wait_for(server.observe(EP, "/5/0/3"), WAIT)
        await asyncio.wait_for(server.write(EP, "/5/0/1", packages.coap_uri(record)), WAIT)
        states: list[int] = []
        while len(states) < 2:
            note = await next_event(events, Notification, lambda n: not n.initial)
            states.append(int(note.content[LwPath(5, 0, 3)]))  # type: ignore[call-overload]
        await asyncio.wait_for(server.execute(EP, "/5/0/2"), WAIT)
        note = await next_event(events, Notification, lambda n: not n.initial)
        states.append(int(note.content[LwPath(5, 0, 3)]))  # type: ignore[call-overload]
        # a new Register ends the observations (TS Core §6.2.1): observe again
        await next_event(events, Registered, lambda e: e.endpoint == EP, timeout=UPDATE_WAIT)
        obs = await asyncio.wait_for(server.observe(EP, "/5/0/3"), WAIT)
        states.append(int(obs.initial[LwPath(5, 0, 3)]))  # type: ignore[call-overload]
        if states[-1] != int(State.IDLE):  # the health check has not passed yet
            note = await next_event(events, Notification, lambda n: not n.initial)
            states.append(int(note.content[LwPath(5, 0, 3)]))  # type: ignore[call-overload]
    assert states[:3] == [int(State.DOWNLOADING), int(State.DOWNLOADED), int(State.UPDATING)]
    assert states[-1] == int(State.IDLE)
    assert await read(server, "/5/0/5") == int(UpdateResult.SUCCESS)
