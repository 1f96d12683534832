"""Bounds on the registration table: lifetimes (``lt``) outside the configured range get
4.00, a new endpoint beyond ``max_registrations`` gets 5.03 with Max-Age, and
registrations that expired while the server was down are not loaded back
(docs/operator-guide.md "What the server does with registrations")."""

from __future__ import annotations

import pytest
from aiocoap.numbers.codes import Code
from server_fakes import FakeDevice, make_config

from fotakit.server import LwM2MServer


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
