"""Observe, notifications and cancel (TS Core 1.1.1 §6.4, RFC 7641) with a real device."""

from __future__ import annotations

import asyncio

import pytest
from aiocoap.numbers.codes import Code
from server_fakes import FakeDevice, next_of

from fotakit.lwm2m.path import Path
from fotakit.server import DeviceError, LwM2MServer, Notification, ObservationEnded

STATE = Path(5, 0, 3)


async def test_observe_returns_initial_value_then_notifications_in_order(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "dev1")
    async with server.subscribe() as events:
        obs = await server.observe("dev1", STATE)
        assert obs.initial == {STATE: 0}
        first = await next_of(events, Notification)
        assert isinstance(first, Notification) and first.initial
        received = []
        for state in (1, 2, 3):
            device.set(STATE, state)
            ev = await next_of(events, Notification)
            assert isinstance(ev, Notification)
            received.append(ev)
    assert [ev.content for ev in received] == [{STATE: 1}, {STATE: 2}, {STATE: 3}]
    assert {ev.observation_id for ev in received} == {obs.id}
    assert all(ev.endpoint == "dev1" and ev.path == STATE for ev in received)
    # The observation's own iterator kept all three too, in order (nothing lossy).
    from_obs = [await asyncio.wait_for(obs.next(), 5) for _ in range(3)]
    assert [n.content[STATE] for n in from_obs] == [1, 2, 3]
    stored = await server.store.get_observation(obs.id)
    assert stored is not None and stored.path == "/5/0/3" and stored.endpoint == "dev1"


async def test_cancel_observe_stops_notifications_and_forgets_it(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "dev1")
    obs = await server.observe("dev1", STATE)
    assert device.observer_count(STATE) == 1
    async with server.subscribe() as events:
        await server.cancel_observe(obs)
        ended = await next_of(events, ObservationEnded)
        assert isinstance(ended, ObservationEnded) and ended.observation_id == obs.id
        # The proactive GET with Observe=1 reached the device under the observation's
        # token, so aiocoap on the device ended the observation (RFC 7641 §3.6).
        assert device.seen[-1].observe == 1 and device.seen[-1].path == STATE
        await asyncio.wait_for(device.state.observation_ended.wait(), 5)
        assert device.observer_count(STATE) == 0
        device.set(STATE, 1)  # nobody to notify
        while not events.empty():
            assert not isinstance(events.get_nowait(), Notification)
    assert obs.ended and obs.id not in server.observations
    assert await server.store.get_observation(obs.id) is None
    assert [n async for n in obs] == []


async def test_observe_of_a_missing_resource_raises_device_error(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "dev1")
    with pytest.raises(DeviceError) as err:
        await server.observe("dev1", "/9/0/0")
    assert err.value.code == "4.04"
    assert server.observations == {}
    assert await server.store.list_observations() == []


async def test_reregister_ends_observations(server: LwM2MServer, device: FakeDevice) -> None:
    await device.register(server.port, "dev1")
    obs = await server.observe("dev1", STATE)
    async with server.subscribe() as events:
        response = await device.register(server.port, "dev1")
        assert response.code == Code.CREATED
        ended = await next_of(events, ObservationEnded)
    assert isinstance(ended, ObservationEnded) and ended.reason == "re-registered"
    assert obs.ended and server.observations == {}
    assert await server.store.list_observations() == []


async def test_deregister_ends_observations(server: LwM2MServer, device: FakeDevice) -> None:
    await device.register(server.port, "dev1")
    obs = await server.observe("dev1", STATE)
    await device.deregister(server.port)
    assert obs.ended
    assert [n async for n in obs] == []
    assert await server.store.list_observations() == []
