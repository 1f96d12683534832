"""What the REST API runs on: :class:`ApiContext` (server, update service, repository,
tokens), shared by every route through ``request.app.state.ctx``.

The context is mutable on purpose: ``fotakit server`` starts HTTP before the LwM2M server
(devices need the HTTP port in their package URIs), so ``server`` and ``service`` are set
once they run. Until then, and for good when the process runs without them (``--no-updates``
leaves ``service`` None), routes that need them answer 503 problem.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

from fotakit import __version__
from fotakit.api.problems import ApiProblem
from fotakit.repository.repository import MAX_PACKAGE_SIZE

if TYPE_CHECKING:
    from fotakit.api.auth import TokenStore
    from fotakit.repository import Repository
    from fotakit.server import LwM2MServer
    from fotakit.updates.service import UpdateService


@dataclass
class ApiContext:
    """The parts the API serves (see the module docstring). ``uploads``: whether package
    uploads are possible (None: whether ``repository`` has a trust store)."""

    server: LwM2MServer | None = None
    service: UpdateService | None = None
    repository: Repository | None = None
    tokens: TokenStore | None = None
    node_id: str | None = None
    version: str = __version__
    max_upload_bytes: int = MAX_PACKAGE_SIZE
    uploads: bool | None = None
    dashboard_dir: Path | None = None
    ping_s: float = 15.0
    """Seconds between ``: ping`` comments on the SSE stream."""
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the process stops: open event streams end."""

    def close(self) -> None:
        """End the open event streams (call before stopping the HTTP server)."""
        self.closing.set()

    @property
    def uploads_enabled(self) -> bool:
        if self.uploads is not None:
            return self.uploads and self.repository is not None
        return self.repository is not None and getattr(self.repository, "_trust", None) is not None

    def need_server(self) -> LwM2MServer:
        if self.server is None:
            raise ApiProblem(503, "the LwM2M server is not running", kind="unavailable")
        return self.server

    def need_service(self) -> UpdateService:
        if self.service is None:
            raise ApiProblem(
                503,
                "the update service is not running in this process (campaigns and jobs "
                "are unavailable)",
                kind="unavailable",
            )
        return self.service

    def need_repository(self) -> Repository:
        if self.repository is None:
            raise ApiProblem(503, "no firmware repository configured", kind="unavailable")
        return self.repository


def get_ctx(request: Request) -> ApiContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, ApiContext)
    return ctx
