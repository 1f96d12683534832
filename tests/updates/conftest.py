"""Fixtures for the update tests.

Kept free of module-level imports of ``fotakit.updates`` modules that are still being
written: each fixture imports what it needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fotakit.updates.store import UpdateStore


@pytest.fixture
def ustore(db_url: str) -> Iterator[UpdateStore]:
    """An open :class:`UpdateStore` on a fresh database (SQLite, and PostgreSQL if set)."""
    from fotakit.updates.store import UpdateStore

    store = UpdateStore.open(db_url)
    try:
        yield store
    finally:
        store.close()
