"""Fixtures for the repository tests: a signing key, its trust store, packages, a repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from repo_helpers import BuildFn

from fotakit.packages import PrivateKey, TrustStore, build_package_in_memory, generate_key
from fotakit.repository import Repository


@pytest.fixture(scope="session")
def signing_key() -> PrivateKey:
    return generate_key("ed25519")


@pytest.fixture
def trust(signing_key: PrivateKey) -> TrustStore:
    store = TrustStore()
    store.add(None, signing_key.public_key())
    return store


@pytest.fixture
def build(signing_key: PrivateKey) -> BuildFn:
    """Build a signed package in memory: ``build(payload, version=..., sequence=...)``."""

    def _build(
        payload: bytes, *, version: str = "1.0.0", sequence: int = 1, key: PrivateKey | None = None
    ) -> bytes:
        return build_package_in_memory(
            payload,
            version=version,
            vendor_domain="example.com",
            class_name="sensor-v2",
            sequence=sequence,
            key=key or signing_key,
        )

    return _build


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    return tmp_path / "repository"


@pytest.fixture
def repo(repo_dir: Path, db_url: str, trust: TrustStore) -> Iterator[Repository]:
    r = Repository(repo_dir, db_url, trust)
    try:
        yield r
    finally:
        r.close()
