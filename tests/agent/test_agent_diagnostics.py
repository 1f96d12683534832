"""End-to-end: why an update failed reaches the server through /33600/0.

A real agent, a real :class:`LwM2MServer` and a real firmware repository on loopback.
After a failed attempt the server reads the agent's own words from object 33600
"fotakit Update Diagnostics" (docs/agent-guide.md), also after the agent restarted, and
:meth:`DeviceIO.read_failure_text` returns them; a device without the object gives None.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from runtime_helpers import (
    EP,
    FAST,
    WAIT,
    Packages,
    download_and_execute,
    next_event,
    payload_of,
    read,
    state_is,
)

from fotakit.agent.diagnostics import MAX_TEXT_CHARS, FailureRecord, UpdateDiagnostics
from fotakit.agent.runtime import Agent, AgentEventKind
from fotakit.client import ClientConfig, LwM2MClient
from fotakit.lwm2m.objects import FailurePhase, State, UpdateResult
from fotakit.packages import PrivateKey
from fotakit.server import DeviceError, LwM2MServer, Registered
from fotakit.updates.engine_io import DeviceIO

UPDATE_WAIT = 30.0
#: A health check that fails with words of its own, as a device's self-test would.
FAILING_CHECK = (
    'registration_deadline = 5\ncommand = ["sh", "-c", "echo modem firmware missing; exit 1"]'
)


async def start(agent: Agent, server: LwM2MServer, endpoint: str = EP) -> None:
    async with server.subscribe() as events:
        await agent.start()
        await next_event(events, Registered, lambda e: e.endpoint == endpoint)


async def test_a_failed_health_check_is_explained_and_survives_a_restart(
    server: LwM2MServer, make_agent: Callable[..., Agent], packages: Packages
) -> None:
    agent = make_agent(health=FAILING_CHECK)
    await start(agent, server)
    try:
        assert await read(server, "/33600/0/0") == ""  # nothing failed yet
        registration = server.get(EP)
        assert registration is not None
        assert "/33600/0" in [link.target for link in registration.objects]
        await download_and_execute(server, agent, packages, "3.0.0")
        await agent.wait_for(AgentEventKind.REVERTED, timeout=UPDATE_WAIT)
        await agent.wait_for(AgentEventKind.REGISTERED, timeout=UPDATE_WAIT)
        text = await read(server, "/33600/0/0")
        assert isinstance(text, str)
        assert "health command sh exited with status 1" in text
        assert "modem firmware missing" in text and "rolled back to 1.0.0" in text
        assert await read(server, "/33600/0/2") == int(UpdateResult.UPDATE_FAILED)
        assert await read(server, "/33600/0/3") == "3.0.0"
        assert await read(server, "/33600/0/4") == "health check"
        failed_at = await read(server, "/33600/0/1")
        assert isinstance(failed_at, datetime) and failed_at.timestamp() > 0
        assert await DeviceIO(server).read_failure_text(EP, WAIT) == text
    finally:
        await agent.stop(deregister=False)

    again = make_agent(health=FAILING_CHECK)  # the device restarts: a new process
    await start(again, server)
    try:
        assert await read(server, "/33600/0/0") == text
        assert await read(server, "/33600/0/1") == failed_at
        assert await read(server, "/3/0/3") == "1.0.0"
        assert await DeviceIO(server).read_failure_text(EP, WAIT) == text
    finally:
        await again.stop()


async def test_a_package_from_an_untrusted_signer_is_explained(
    server: LwM2MServer, agent: Agent, packages: Packages, rogue_key: PrivateKey
) -> None:
    record = packages.publish(
        packages.build(payload_of(30_000, 5), version="9.0.0", sequence=9, key=rogue_key)
    )
    await asyncio.wait_for(server.write(EP, "/5/0/1", packages.coap_uri(record)), WAIT)
    failed = state_is(State.IDLE, UpdateResult.INTEGRITY_CHECK_FAILURE)
    await agent.wait_for(AgentEventKind.STATE, failed, timeout=UPDATE_WAIT)
    text = await DeviceIO(server).read_failure_text(EP, WAIT)
    assert text is not None and "key" in text.lower()
    assert await read(server, "/33600/0/2") == int(UpdateResult.INTEGRITY_CHECK_FAILURE)
    assert await read(server, "/33600/0/4") == "verify"
    assert await read(server, "/33600/0/3") == ""  # an unauthenticated version is not told


async def test_a_failure_object_5_decides_alone_gets_the_results_meaning(
    server: LwM2MServer, agent: Agent
) -> None:
    await asyncio.wait_for(server.write(EP, "/5/0/1", "gopher://example.com/fw"), WAIT)
    failed = state_is(State.IDLE, UpdateResult.UNSUPPORTED_PROTOCOL)
    await agent.wait_for(AgentEventKind.STATE, failed, timeout=UPDATE_WAIT)
    assert await DeviceIO(server).read_failure_text(EP, WAIT) == "unsupported protocol"
    assert await read(server, "/33600/0/4") == "download"


async def test_a_device_without_the_object_or_silent_gives_none(server: LwM2MServer) -> None:
    endpoint = f"plain-{uuid.uuid4().hex[:8]}"
    client = LwM2MClient(
        ClientConfig(
            endpoint=endpoint, server_uri=f"coap://127.0.0.1:{server.port}", transport=FAST
        )
    )
    io = DeviceIO(server)
    async with server.subscribe() as events:
        await client.start()
        await next_event(events, Registered, lambda e: e.endpoint == endpoint)
    try:
        with pytest.raises(DeviceError) as refused:
            await asyncio.wait_for(server.read_value(endpoint, "/33600/0/0"), WAIT)
        assert refused.value.code == "4.04"
        assert await io.read_failure_text(endpoint, WAIT) is None
    finally:
        port = client.port
        await client.stop(deregister=False)
    # The registration stays but the device went silent (its port is held by a socket
    # that never answers, so no ICMP error cuts the wait short): the read times out.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", port))
        started = time.monotonic()
        assert await io.read_failure_text(endpoint, 1.0) is None
        assert time.monotonic() - started >= 0.9
    assert await io.read_failure_text("never-registered", 1.0) is None


def test_the_record_is_kept_on_disk_and_a_damaged_file_is_only_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "diagnostics.json"
    first = UpdateDiagnostics(state)
    assert first.record == FailureRecord()  # never failed: empty text, time 0
    kept = first.record_failure(
        FailurePhase.VERIFY, "x" * 5000, result=5, version=None, at=1_700_000_000.5
    )
    assert len(kept.text) == MAX_TEXT_CHARS and kept.text.endswith("...")
    assert UpdateDiagnostics(state).record == kept  # what a restart reads back
    state.write_text('{"text": 3}', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="fotakit.agent.diagnostics"):
        damaged = UpdateDiagnostics(state)  # the agent still starts
    assert damaged.record == FailureRecord()
    assert any("diagnostics.json" in r.getMessage() for r in caplog.records)
