"""Fixtures for the server tests: a started server on a fresh database, and a fake device."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from server_fakes import DEVICE_VALUES, FakeDevice, make_config

from fotakit.lwm2m.objects import builtin_registry
from fotakit.server import LwM2MServer


@pytest.fixture
async def server(sqlite_url: str) -> AsyncIterator[LwM2MServer]:
    srv = LwM2MServer(make_config(sqlite_url))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def device() -> AsyncIterator[FakeDevice]:
    dev = await FakeDevice.start(builtin_registry(), DEVICE_VALUES)
    try:
        yield dev
    finally:
        await dev.stop()
