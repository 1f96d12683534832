"""Helpers for the REST API tests: a real stack (LwM2M server with the repository, the
update service, the API over uvicorn on a loopback port) and one token per role.

Everything is real: UDP on loopback, SQLite, HTTP through uvicorn (httpx as the client),
:class:`fotakit.agent.Agent` devices from the update tests' fleet helpers.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "updates"))

from e2e_helpers import Fleet, make_service, running_site, sign, trust_for

from fotakit.api import ApiContext, ApiHttpServer, Role, TokenStore, create_app, serve_api
from fotakit.packages import PrivateKey, generate_key

UPLOAD_CAP = 256 * 1024
__all__ = ["UPLOAD_CAP", "Fleet", "Stack", "running_stack", "sign", "trust_for"]


@dataclass
class Stack:
    site: Any
    service: Any
    ctx: ApiContext
    http: ApiHttpServer
    tokens: dict[str, str]
    key: PrivateKey
    fleet: Fleet
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"

    def client(self, role: str = "admin") -> httpx.AsyncClient:
        client = self.clients.get(role)
        if client is None:
            client = httpx.AsyncClient(
                base_url=self.base,
                headers={"Authorization": f"Bearer {self.tokens[role]}"},
                timeout=30,
            )
            self.clients[role] = client
        return client


def role_tokens(tokens: TokenStore) -> dict[str, str]:
    out = {}
    for role in Role:
        _, plaintext = tokens.create(f"test-{role.label}", role)
        out[role.label] = plaintext
    return out


@contextlib.asynccontextmanager
async def running_stack(
    root: Path,
    db_url: str,
    *,
    devices: int = 1,
    service_kwargs: dict[str, Any] | None = None,
    device_kwargs: dict[str, dict[str, Any]] | None = None,
) -> AsyncIterator[Stack]:
    """Server + repository + update service + API (+ ``devices`` registered agents)."""
    key = generate_key("ed25519")
    async with running_site(root, db_url, key) as site:
        service = make_service(site, db_url, **(service_kwargs or {}))
        await service.start()
        tokens = TokenStore.open(db_url)
        ctx = ApiContext(
            server=site.server,
            service=service,
            repository=site.repository,
            tokens=tokens,
            max_upload_bytes=UPLOAD_CAP,
            ping_s=5.0,
        )
        http = await serve_api(create_app(ctx), "127.0.0.1", 0)
        fleet = Fleet(root / "agents", trust_for(key))
        stack = Stack(site, service, ctx, http, role_tokens(tokens), key, fleet)
        try:
            eps = [f"dev-{i}" for i in range(devices)]
            for ep in eps:
                fleet.make(ep, site.server.port, **(device_kwargs or {}).get(ep, {}))
            if eps:
                await fleet.start(site.server, eps)
            yield stack
        finally:
            for client in stack.clients.values():
                await client.aclose()
            ctx.close()
            await http.stop()
            await fleet.stop()
            await service.stop()
            tokens.close()


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str) and isinstance(body["detail"], str)
    assert "type" in body
    return body
