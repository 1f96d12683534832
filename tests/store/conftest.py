"""Fixtures for the store tests: an open :class:`Store` on each backend of ``db_url``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fotakit.store import Store


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    try:
        yield s
    finally:
        s.close()
