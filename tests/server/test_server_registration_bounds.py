"""Bounds on the registration table: lifetimes (``lt``) outside the configured range get
4.00, a new endpoint beyond ``max_registrations`` gets 5.03 with Max-Age, and
registrations that expired while the server was down are not loaded back
(docs/operator-guide.md "What the server does with registrations")."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from aiocoap.numbers.codes import Code
from server_fakes import DEVICE_VALUES, FakeDevice, make_config

from fotakit.lwm2m.objects import builtin_registry
from fotakit.lwm2m.path import Path
from fotakit.server import LwM2MServer
from fotakit.server.persistence import to_record
from fotakit.store.records import utcnow
from fotakit.updates.inventory import DeviceInventory


async def registered_endpoints(server: LwM2MServer) -> list[str]:
    return sorted(rec.endpoint for rec in await server.store.list_registrations())


@pytest.mark.parametrize(
    ("lifetime", "bound"),
    [(0, "minimum 30 s"), (29, "minimum 30 s"), (3601, "maximum 3600 s"), (2**32 - 1, "maximum")],
)
async def test_register_with_a_lifetime_out_of_bounds_gets_bad_request(
    sqlite_url: str, device: FakeDevice, lifetime: int, bound: str
) -> None:
    config = make_config(sqlite_url, min_lifetime=30, max_lifetime=3600)
    async with LwM2MServer(config) as server:
        response = await device.register(server.port, "dev1", lifetime=lifetime)
        assert response.code == Code.BAD_REQUEST
        assert bound in response.payload.decode()
        assert await registered_endpoints(server) == []
        assert (await device.register(server.port, "dev1", lifetime=3600)).code == Code.CREATED


async def test_default_bounds_refuse_lt_zero_and_huge_but_accept_a_long_sane_lifetime(
    server: LwM2MServer, device: FakeDevice
) -> None:
    assert (await device.register(server.port, "zero", lifetime=0)).code == Code.BAD_REQUEST
    huge = await device.register(server.port, "huge", lifetime=2**32 - 1)
    assert huge.code == Code.BAD_REQUEST
    week = await device.register(server.port, "week", lifetime=7 * 86400, version="1.0")
    assert week.code == Code.CREATED
    assert await registered_endpoints(server) == ["week"]


async def test_update_with_a_lifetime_out_of_bounds_is_refused_and_keeps_the_registration(
    sqlite_url: str, device: FakeDevice
) -> None:
    config = make_config(sqlite_url, min_lifetime=30, max_lifetime=3600)
    async with LwM2MServer(config) as server:
        assert (await device.register(server.port, "dev1", lifetime=120)).code == Code.CREATED
        before = server.get("dev1")
        for lt in ("lt=0", "lt=5000"):
            response = await device.update(server.port, [lt])
            assert response.code == Code.BAD_REQUEST
        assert server.get("dev1") == before
        assert before is not None
        stored = await server.store.get_registration(before.registration_id)
        assert stored is not None and stored.lifetime == 120
        assert (await device.update(server.port, ["lt=3600"])).code == Code.CHANGED
        reg = server.get("dev1")
        assert reg is not None and reg.lifetime == 3600


def test_inverted_lifetime_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="min_lifetime <= max_lifetime"):
        make_config("sqlite://", min_lifetime=100, max_lifetime=10)


async def test_a_new_endpoint_beyond_the_cap_gets_service_unavailable_with_max_age(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(sqlite_url, max_registrations=3, registrations_full_max_age=45)
    devices = [await FakeDevice.start(builtin_registry(), DEVICE_VALUES) for _ in range(5)]
    try:
        async with LwM2MServer(config) as server:
            for i, dev in enumerate(devices[:3]):
                assert (await dev.register(server.port, f"dev{i}")).code == Code.CREATED
            with caplog.at_level(logging.WARNING, logger="fotakit.server"):
                for i, dev in enumerate(devices[3:], start=3):
                    response = await dev.register(server.port, f"dev{i}")
                    assert response.code == Code.SERVICE_UNAVAILABLE
                    assert response.opt.max_age == 45
            warnings = [r for r in caplog.records if "registration table full" in r.getMessage()]
            assert len(warnings) == 1  # rate-limited: one line for the two refusals
            assert await registered_endpoints(server) == ["dev0", "dev1", "dev2"]
            # A re-Register of a registered endpoint is always accepted, even when full.
            assert (await devices[0].register(server.port, "dev0")).code == Code.CREATED
            assert (await devices[0].update(server.port)).code == Code.CHANGED
            # A De-register frees a place for a new endpoint.
            assert (await devices[1].deregister(server.port)).code == Code.DELETED
            assert (await devices[3].register(server.port, "dev3")).code == Code.CREATED
            assert (await devices[4].register(server.port, "dev4")).code == (
                Code.SERVICE_UNAVAILABLE
            )
            assert await registered_endpoints(server) == ["dev0", "dev2", "dev3"]
    finally:
        for dev in devices:
            await dev.stop()


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_registrations"):
        make_config("sqlite://", max_registrations=0)


async def test_registrations_expired_while_down_are_not_loaded_nor_read(db_url: str) -> None:
    fresh = await FakeDevice.start(builtin_registry(), DEVICE_VALUES)
    stale = await FakeDevice.start(builtin_registry(), DEVICE_VALUES)
    try:
        first = LwM2MServer(make_config(db_url))
        await first.start()
        try:
            assert (await fresh.register(first.port, "fresh", lifetime=300)).code == Code.CREATED
            assert (await stale.register(first.port, "stale", lifetime=60)).code == Code.CREATED
            reg = first.get("stale")
            assert reg is not None
            # "stale" was last heard from an hour ago with a 60 s lifetime: it expired
            # while no server ran (stored as the server stores it, only older).
            an_hour_ago = utcnow() - timedelta(hours=1)
            old = reg.replace(registered_at=an_hour_ago, last_update=an_hour_ago)
            await first.store.upsert_registration(to_record(old, first.node_id))
        finally:
            await first.stop()
        second = LwM2MServer(make_config(db_url))
        await second.start()
        try:
            # Checked before anything else runs: not loaded, not online (no stored row).
            assert second.get("stale") is None and "stale" not in second.registrations
            assert await registered_endpoints(second) == ["fresh"]
            inventory = DeviceInventory(second, read_timeout=5.0)
            await inventory.start()
            try:
                await inventory.settled()
                assert inventory("fresh").firmware_version is not None
            finally:
                await inventory.stop()
            assert any(seen.path == Path(3, 0) for seen in fresh.seen)
            assert stale.seen == []  # never read: not heard from since the restart
            # It comes back online when heard from again.
            assert (await stale.register(second.port, "stale")).code == Code.CREATED
        finally:
            await second.stop()
    finally:
        await fresh.stop()
        await stale.stop()
