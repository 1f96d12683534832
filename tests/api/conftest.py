"""Fixtures of the REST API tests (see api_helpers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from api_helpers import Stack, running_stack


@pytest.fixture
async def stack(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path, sqlite_url, devices=1) as s:
        yield s
