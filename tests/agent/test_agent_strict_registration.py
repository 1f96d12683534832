"""The agent registers with a strict LwM2M server, and says why when it is refused.

The peer here is a tiny Registration Interface endpoint (an aiocoap resource at ``/rd``
on real UDP loopback) that parses the root link's ``ct`` the strict way: one bare
content-format number (TS Core 1.1.1 §6.2.1 example ``</>;rt="oma.lwm2m";ct=...``). A
quoted list is refused with 4.00 Bad Request and a diagnostic payload (RFC 7252
§5.5.2), as some deployed servers do. The agent must register with it out of the box,
and when the user configures several formats, every refused Register must surface as an
agent event and a WARNING log line carrying the code and the diagnostic, and be retried.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiocoap
import pytest
from aiocoap import Message
from aiocoap import resource as coap_resource
from aiocoap.numbers.codes import Code
from runtime_helpers import EP, WAIT, write_agent_config

from fotakit.agent.config import load_config
from fotakit.agent.runtime import Agent, AgentEventKind
from fotakit.coap import create_endpoint

DIAGNOSTIC = "root link ct must be one bare content-format number"
_ROOT = re.compile(r"<[^>]*>(;[^,]*)?")


class StrictRd(coap_resource.Resource, coap_resource.PathCapable):  # type: ignore[misc]
    """``POST /rd`` (Register) answering 2.01, or 4.00 + diagnostic for a non-bare ``ct``;
    ``DELETE /rd/<n>`` answering 2.02. Every Register payload is queued for the test."""

    def __init__(self) -> None:
        super().__init__()
        self.registers: asyncio.Queue[bytes] = asyncio.Queue()
        self.counter = 0

    async def render(self, request: Message) -> Message:
        path = tuple(request.opt.uri_path)
        if path == ("rd",) and request.code == Code.POST:
            payload = bytes(request.payload)
            self.registers.put_nowait(payload)
            if not self._ct_is_bare(payload.decode("utf-8", errors="replace")):
                return Message(code=Code.BAD_REQUEST, payload=DIAGNOSTIC.encode("utf-8"))
            self.counter += 1
            return Message(code=Code.CREATED, location_path=("rd", str(self.counter)))
        if len(path) == 2 and path[0] == "rd" and request.code in (Code.POST, Code.DELETE):
            return Message(code=Code.CHANGED if request.code == Code.POST else Code.DELETED)
        return Message(code=Code.NOT_FOUND)

    @staticmethod
    def _ct_is_bare(links: str) -> bool:
        """Every ``ct`` of the first link (the root link, if any) is a bare integer."""
        first = _ROOT.match(links)
        if first is None or first.group(1) is None:
            return True
        for attribute in first.group(1).split(";")[1:]:
            name, _, value = attribute.partition("=")
            if name == "ct" and not value.isdigit():
                return False
        return True


@pytest.fixture
async def strict_rd() -> AsyncIterator[tuple[StrictRd, int]]:
    rd = StrictRd()
    ctx: aiocoap.Context
    ctx, port = await create_endpoint(rd, "127.0.0.1", 0)
    try:
        yield rd, port
    finally:
        await ctx.shutdown()


def strict_agent(tmp_path: Path, port: int, trust_dir: Path, extra: str = "") -> Agent:
    path = write_agent_config(
        tmp_path / "agent.toml",
        endpoint=EP,
        server_port=port,
        data_dir=tmp_path / "agent-data",
        trust_dir=trust_dir,
        extra=extra,
    )
    return Agent(load_config(path))


async def test_the_default_agent_registers_with_a_strict_server(
    strict_rd: tuple[StrictRd, int], tmp_path: Path, trust_dir: Path
) -> None:
    rd, port = strict_rd
    agent = strict_agent(tmp_path, port, trust_dir)
    await agent.start()
    try:
        registered = await agent.wait_for(AgentEventKind.REGISTERED, timeout=WAIT)
        assert registered.detail["registration"] == "1"
        payload = await asyncio.wait_for(rd.registers.get(), WAIT)
        assert payload.startswith(b'</>;rt="oma.lwm2m";ct=112,'), payload
    finally:
        await agent.stop()


async def test_a_refused_register_is_an_event_and_a_warning_and_is_retried(
    strict_rd: tuple[StrictRd, int],
    tmp_path: Path,
    trust_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rd, port = strict_rd
    agent = strict_agent(tmp_path, port, trust_dir, extra="advertise_formats = [110, 112]")
    caplog.set_level(logging.WARNING, logger="fotakit.client.registration")
    await agent.start()
    try:
        first = await agent.wait_for(AgentEventKind.REGISTRATION_FAILED, timeout=WAIT)
        assert first.detail["code"] == "4.00"
        assert first.detail["diagnostic"] == DIAGNOSTIC
        assert DIAGNOSTIC in first.detail["detail"]
        payload = await asyncio.wait_for(rd.registers.get(), WAIT)
        assert b'ct="110 112"' in payload  # what the user asked for, as the RFC writes it
        # the agent keeps going: after the backoff it tries again, and says so again
        again = await agent.wait_for(AgentEventKind.REGISTRATION_FAILED, timeout=WAIT)
        assert again.detail["code"] == "4.00"
        assert agent.running and not agent.client.registered
    finally:
        await agent.stop()
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "fotakit.client.registration"
    ]
    assert len(warnings) >= 2
    assert "4.00" in warnings[0] and DIAGNOSTIC in warnings[0] and EP in warnings[0]


async def test_a_register_nobody_answers_is_reported_without_a_code(
    tmp_path: Path, trust_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    sink.bind(("127.0.0.1", 0))
    caplog.set_level(logging.WARNING, logger="fotakit.client.registration")
    agent = strict_agent(tmp_path, sink.getsockname()[1], trust_dir)
    try:
        await agent.start()
        failed = await agent.wait_for(AgentEventKind.REGISTRATION_FAILED, timeout=WAIT)
        assert failed.detail["code"] is None and failed.detail["detail"].startswith("Register")
        assert any("no answer" in r.getMessage() for r in caplog.records)
    finally:
        await agent.stop()
        sink.close()
