"""schemathesis against the OpenAPI document, over real HTTP to a real stack on SQLite.

Every operation but the endless event stream gets a bounded number of generated requests
(with an admin token); no answer may be a server error, and every answer must match the
document (status code documented, content type, response schema, invalid input refused).
Device routes target endpoints that do not exist (404 problems), which is fine.

Two checks are left out, on purpose: ``positive_data_acceptance`` (it expects a 2xx for
any schema-valid request, but unknown ids are 404, unverifiable packages 422, foreign
cursors 400 — answers the API documents as problems) and ``allow_header_conformance``
(``/devices/{ep}/observe/{path}`` (POST) and ``.../observe/{observation_id}`` (DELETE)
match the same URLs, so ``Allow`` rightly lists both, which the check reads as a
mismatch of one template).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from api_helpers import running_stack
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    positive_data_acceptance,
)

from fotakit.api.openapi import openapi_document
from fotakit.store import default_db_url

schema = schemathesis.openapi.from_dict(openapi_document()).exclude(path="/api/v1/events/stream")


class BackgroundStack:
    """running_stack on its own event loop in a thread (schemathesis calls are blocking)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ready = threading.Event()
        self.base = ""
        self.token = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="api-stack", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self.ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        url = default_db_url(self.root / "data")
        async with running_stack(self.root, url, devices=0) as stack:
            self.base = stack.base
            self.token = stack.tokens["admin"]
            self.ready.set()
            await self._stop.wait()

    def start(self) -> None:
        self._thread.start()
        assert self.ready.wait(60), "stack did not start"
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundStack]:
    server = BackgroundStack(tmp_path_factory.mktemp("schemathesis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms(case: Any, api_server: BackgroundStack) -> None:
    case.call_and_validate(
        base_url=api_server.base,
        headers={"Authorization": f"Bearer {api_server.token}"},
        timeout=30,
        excluded_checks=[positive_data_acceptance, allow_header_conformance],
    )
