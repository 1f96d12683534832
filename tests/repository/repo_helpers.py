"""Helpers shared by the repository tests (fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

BuildFn = Callable[..., bytes]
REQUIRE_ENV = "FOTAKIT_REQUIRE_INTEROP"


def payload_of(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating bytes (so a misplaced block can never look right)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def files_under(root: Path) -> list[Path]:
    """Every regular file below ``root`` except the lock file."""
    return sorted(Path(d) / f for d, _, names in os.walk(root) for f in names if f != ".lock")


def skip_or_fail(reason: str) -> None:
    """Skip when an interop peer is missing, unless CI demands the peers."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} (and {REQUIRE_ENV}=1)")
    pytest.skip(reason)
