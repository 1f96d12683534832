"""Registration Interface (TS Core 1.1.1 §6.2) over real UDP with a real aiocoap client."""

from __future__ import annotations

import logging

import pytest
from aiocoap.numbers.codes import Code
from server_fakes import FakeDevice, make_config, next_of

from fotakit.lwm2m.codecs import ContentFormat
from fotakit.server import (
    Deregistered,
    Expired,
    LwM2MServer,
    NotRegistered,
    Registered,
    Updated,
)


async def test_register_answers_created_with_location_and_stores_the_client(
    server: LwM2MServer, device: FakeDevice
) -> None:
    async with server.subscribe() as events:
        response = await device.register(server.port, "dev1", lifetime=120, version="1.1")
        ev = await next_of(events, Registered)
    assert response.code == Code.CREATED
    location = tuple(response.opt.location_path)
    assert location[0] == "rd" and len(location) == 2
    reg = server.get("dev1")
    assert reg is not None
    assert reg.registration_id == location[1]
    assert (reg.address, reg.port) == ("127.0.0.1", device.port)
    assert reg.lifetime == 120 and reg.lwm2m_version == "1.1"
    assert [link.target for link in reg.objects] == ["/1/0", "/3/0", "/5/0"]
    assert isinstance(ev, Registered) and ev.registration == reg and ev.replaced is None
    stored = await server.store.get_registration(reg.registration_id)
    assert stored is not None and stored.endpoint == "dev1" and stored.port == device.port


async def test_update_answers_changed_and_applies_new_lifetime(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "dev1", lifetime=120)
    async with server.subscribe() as events:
        response = await device.update(server.port, ["lt=600"])
        ev = await next_of(events, Updated)
    assert response.code == Code.CHANGED
    reg = server.get("dev1")
    assert reg is not None and reg.lifetime == 600
    assert isinstance(ev, Updated) and ev.previous.lifetime == 120
    stored = await server.store.get_registration(reg.registration_id)
    assert stored is not None and stored.lifetime == 600


async def test_update_of_unknown_registration_answers_not_found(
    server: LwM2MServer, device: FakeDevice
) -> None:
    device.location = "rd/nosuchid"
    response = await device.update(server.port)
    assert response.code == Code.NOT_FOUND


async def test_deregister_answers_deleted_and_forgets_the_client(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "dev1")
    reg = server.get("dev1")
    assert reg is not None
    async with server.subscribe() as events:
        response = await device.deregister(server.port)
        ev = await next_of(events, Deregistered)
    assert response.code == Code.DELETED
    assert server.get("dev1") is None
    assert isinstance(ev, Deregistered) and ev.registration.registration_id == reg.registration_id
    assert await server.store.get_registration(reg.registration_id) is None
    again = await device.deregister(server.port)
    assert again.code == Code.NOT_FOUND
    with pytest.raises(NotRegistered):
        await server.read("dev1", "/3/0/0")


async def test_register_twice_replaces_the_first(server: LwM2MServer, device: FakeDevice) -> None:
    await device.register(server.port, "dev1")
    first_location = device.location
    async with server.subscribe() as events:
        await device.register(server.port, "dev1", lifetime=77)
        ev = await next_of(events, Registered)
    assert device.location != first_location
    assert isinstance(ev, Registered) and ev.replaced is not None
    assert len(server.registrations) == 1 and server.registrations["dev1"].lifetime == 77
    assert len(await server.store.list_registrations()) == 1
    second_location = device.location
    device.location = first_location
    stale = await device.update(server.port)
    assert stale.code == Code.NOT_FOUND
    device.location = second_location
    assert (await device.update(server.port)).code == Code.CHANGED


async def test_registration_expires_after_its_lifetime(
    server: LwM2MServer, device: FakeDevice
) -> None:
    async with server.subscribe() as events:
        await device.register(server.port, "short", lifetime=1)
        reg = server.get("short")
        ev = await next_of(events, Expired)
    assert isinstance(ev, Expired) and ev.endpoint == "short"
    assert reg is not None and ev.registration.registration_id == reg.registration_id
    assert server.get("short") is None
    assert await server.store.get_registration(reg.registration_id) is None
    late = await device.update(server.port)
    assert late.code == Code.NOT_FOUND


async def test_update_keeps_a_registration_alive_past_its_first_lifetime(
    server: LwM2MServer, device: FakeDevice
) -> None:
    other = await FakeDevice.start(device.state.registry, {})
    try:
        async with server.subscribe() as events:
            await device.register(server.port, "kept", lifetime=2)
            await other.register(server.port, "marker", lifetime=1)
            await device.update(server.port, ["lt=60"])
            ev = await next_of(events, Expired)
        # "marker" (lt=1) expired, which is after the first lifetime of "kept" began.
        assert ev.endpoint == "marker"
        assert server.get("kept") is not None
    finally:
        await other.stop()


async def test_each_registration_change_is_logged_in_one_line(
    server: LwM2MServer, device: FakeDevice, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fotakit.server")
    await device.register(server.port, "dev1", lifetime=300, version="1.1")
    await device.update(server.port)
    await device.deregister(server.port)
    lines = [r.getMessage() for r in caplog.records if r.name == "fotakit.server"]
    registered = [line for line in lines if line.startswith("registered ")]
    assert len(registered) == 1
    assert "ep=dev1" in registered[0] and "lt=300" in registered[0]
    assert "lwm2m=1.1" in registered[0] and f"addr=127.0.0.1:{device.port}" in registered[0]
    assert "objects=</1/0>,</3/0>,</5/0>" in registered[0]
    assert sum(line.startswith("updated ") for line in lines) == 1
    assert sum(line.startswith("deregistered ") for line in lines) == 1


async def test_queue_mode_and_formats_are_taken_from_the_register(
    server: LwM2MServer, device: FakeDevice
) -> None:
    payload = b'</>;rt="oma.lwm2m";ct="60 110 112",</1/0>,</3/0>'
    response = await device.register(server.port, "q1", queue=True, payload=payload)
    assert response.code == Code.CREATED
    reg = server.get("q1")
    assert reg is not None and reg.queue_mode
    assert int(ContentFormat.SENML_CBOR) in reg.content_formats
    response10 = await device.register(server.port, "q0", version="1.0", binding="UQ")
    assert response10.code == Code.CREATED
    reg10 = server.get("q0")
    assert reg10 is not None and reg10.queue_mode and reg10.binding == "U"


async def test_subscribers_each_get_every_event(server: LwM2MServer, device: FakeDevice) -> None:
    async with server.subscribe() as first, server.subscribe() as second:
        await device.register(server.port, "dev1")
        await device.update(server.port)
        for events in (first, second):
            assert isinstance(await next_of(events, Registered), Registered)
            assert isinstance(await next_of(events, Updated), Updated)


async def test_expired_while_down_expires_at_start(sqlite_url: str, device: FakeDevice) -> None:
    first = LwM2MServer(make_config(sqlite_url))
    await first.start()
    try:
        await device.register(first.port, "sleepy", lifetime=1)
    finally:
        await first.stop()
    second = LwM2MServer(make_config(sqlite_url))
    async with second.subscribe() as events:
        await second.start()
        try:
            ev = await next_of(events, Expired)
            assert ev.endpoint == "sleepy"
            assert second.get("sleepy") is None
        finally:
            await second.stop()
