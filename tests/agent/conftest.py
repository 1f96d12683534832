"""Fixtures for the agent tests: the LwM2M server (the test driver), signing keys, trust
anchors on disk, and a firmware repository serving packages over CoAP and HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiocoap
import aiocoap.resource
import pytest
from runtime_helpers import (
    EP,
    Packages,
    next_event,
    server_config,
    write_agent_config,
)

from fotakit.agent.config import load_config
from fotakit.agent.runtime import Agent
from fotakit.coap import create_endpoint
from fotakit.packages import (
    PrivateKey,
    TrustStore,
    generate_key,
    write_key_pair,
)
from fotakit.repository import Repository
from fotakit.repository.coap import coap_resources
from fotakit.repository.http import create_http_app, serve_http
from fotakit.server import LwM2MServer, Registered


@pytest.fixture
async def server(sqlite_url: str) -> AsyncIterator[LwM2MServer]:
    srv = LwM2MServer(server_config(sqlite_url))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture(scope="session")
def signing_key() -> PrivateKey:
    return generate_key("ed25519")


@pytest.fixture(scope="session")
def rogue_key() -> PrivateKey:
    """A key the repository accepts but the device does not trust."""
    return generate_key("ed25519")


@pytest.fixture
def trust_dir(tmp_path: Path, signing_key: PrivateKey) -> Path:
    """The device's trust anchors: a directory with the vendor's public key."""
    d = tmp_path / "trust"
    d.mkdir()
    write_key_pair(signing_key, d, "vendor")
    for private in d.glob("*"):
        if "PRIVATE" in private.read_text():
            private.unlink()
    return d


@pytest.fixture
def repository(
    tmp_path: Path, sqlite_url: str, signing_key: PrivateKey, rogue_key: PrivateKey
) -> Iterator[Repository]:
    trust = TrustStore()
    trust.add(None, signing_key.public_key())
    trust.add(None, rogue_key.public_key())
    repo = Repository(tmp_path / "repository", sqlite_url, trust)
    try:
        yield repo
    finally:
        repo.close()


@pytest.fixture
async def packages(repository: Repository, signing_key: PrivateKey) -> AsyncIterator[Packages]:
    site = aiocoap.resource.Site()
    for path, resource in coap_resources(repository):
        site.add_resource(path, resource)
    ctx, coap_port = await create_endpoint(site, "127.0.0.1", 0)
    http = await serve_http(create_http_app(repository), "127.0.0.1", 0)
    try:
        yield Packages(repository, signing_key, coap_port, http.port)
    finally:
        await http.stop()
        await ctx.shutdown()


@pytest.fixture
def make_agent(tmp_path: Path, server: LwM2MServer, trust_dir: Path) -> Callable[..., Agent]:
    """``make_agent(**agent_toml options)``: an Agent (not started) on ``tmp_path``."""

    def make(**kwargs: object) -> Agent:
        path = write_agent_config(
            tmp_path / "agent.toml",
            endpoint=EP,
            server_port=server.port,
            data_dir=tmp_path / "agent-data",
            trust_dir=trust_dir,
            **kwargs,  # type: ignore[arg-type]
        )
        return Agent(load_config(path))

    return make


@pytest.fixture
async def agent(make_agent: Callable[..., Agent], server: LwM2MServer) -> AsyncIterator[Agent]:
    """A started agent on firmware 1.0.0, registered with ``server``."""
    a = make_agent()
    async with server.subscribe() as events:
        await a.start()
        await next_event(events, Registered, lambda e: e.endpoint == EP)
    try:
        yield a
    finally:
        await a.stop()
