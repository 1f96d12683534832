"""API tokens that expire: creation (store, REST, CLI), the 401 an expired token gets, and
the upgrade of an ``api_tokens`` table made before ``expires_at`` existed (SQLite and
PostgreSQL), over real databases and real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from api_helpers import assert_problem
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from fotakit.api import ApiContext, Role, TokenStore, create_app, serve_api
from fotakit.api.auth import hash_token
from fotakit.cli import app
from fotakit.store import default_db_url, normalize_url

# The table as fotakit created it before tokens could expire.
_OLD_TABLE = """CREATE TABLE api_tokens (
    id VARCHAR(32) NOT NULL PRIMARY KEY,
    name VARCHAR(64) NOT NULL,
    role VARCHAR(16) NOT NULL,
    hash VARCHAR(64) NOT NULL UNIQUE,
    created_at {timestamp} NOT NULL
)"""


def _expire_now(db_url: str, token_id: str) -> None:
    """Move a token's expiry into the past (what time would do)."""
    engine = create_engine(normalize_url(db_url))
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE api_tokens SET expires_at = :t WHERE id = :id"),
                {"t": datetime.now(UTC) - timedelta(seconds=1), "id": token_id},
            )
    finally:
        engine.dispose()


@pytest.fixture
def store(db_url: str) -> AsyncIterator[TokenStore]:
    tokens = TokenStore.open(db_url)
    yield tokens
    tokens.close()


@pytest.fixture
async def api(store: TokenStore) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client of the API (token routes only) with an admin token; and the base URL."""
    _, admin = store.create("root", Role.ADMIN)
    http = await serve_api(create_app(ApiContext(tokens=store)), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{http.port}"
    headers = {"Authorization": f"Bearer {admin}"}
    try:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
            yield client, base
    finally:
        await http.stop()


def test_an_api_tokens_table_without_expires_at_is_upgraded(db_url: str) -> None:
    engine = create_engine(normalize_url(db_url))
    timestamp = "TIMESTAMP WITH TIME ZONE" if engine.dialect.name == "postgresql" else "DATETIME"
    if engine.dialect.name == "sqlite":
        Path(str(engine.url.database)).parent.mkdir(parents=True, exist_ok=True)
    try:
        with engine.begin() as conn:
            conn.execute(text(_OLD_TABLE.format(timestamp=timestamp)))
            conn.execute(
                text("INSERT INTO api_tokens VALUES ('t1', 'old', 'admin', :h, :c)"),
                {"h": hash_token("fk_old-token"), "c": datetime.now(UTC)},
            )
    finally:
        engine.dispose()
    for _ in range(2):  # the upgrade happens once; opening again changes nothing
        store = TokenStore.open(db_url)
        try:
            old = store.verify("fk_old-token")
            assert old is not None and old.name == "old" and old.expires_at is None
            assert not old.expired()
            info, plaintext = store.create("ci", Role.VIEWER, expires_in=timedelta(hours=1))
            again = store.verify(plaintext)
            assert again is not None and again.expires_at == info.expires_at
        finally:
            store.close()


def test_the_store_refuses_an_expiry_that_is_not_in_the_future(store: TokenStore) -> None:
    with pytest.raises(ValueError, match="not in the future"):
        store.create("x", Role.VIEWER, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    with pytest.raises(ValueError, match="time zone"):
        store.create("x", Role.VIEWER, expires_at=datetime(2099, 1, 1))
    with pytest.raises(ValueError, match="not both"):
        store.create(
            "x",
            Role.VIEWER,
            expires_at=datetime(2099, 1, 1, tzinfo=UTC),
            expires_in=timedelta(hours=1),
        )


async def test_an_expired_token_gets_401_saying_it_expired(
    api: tuple[httpx.AsyncClient, str], db_url: str
) -> None:
    admin, base = api
    r = await admin.post("/api/v1/tokens", json={"name": "ci", "role": "viewer", "expires_in": 60})
    assert r.status_code == 201, r.text
    created = r.json()
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(seconds=55) < expires - datetime.now(UTC) <= timedelta(seconds=60)
    listed = {t["id"]: t for t in (await admin.get("/api/v1/tokens")).json()["items"]}
    assert listed[created["id"]]["expires_at"] == created["expires_at"]
    headers = {"Authorization": f"Bearer {created['token']}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as ci:
        assert (await ci.get("/api/v1/me")).status_code == 200  # valid until it expires
        _expire_now(db_url, created["id"])
        r = await ci.get("/api/v1/me")
        body = assert_problem(r, 401)
        assert "'ci' expired at" in body["detail"]
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


async def test_a_token_with_expires_at_and_the_bad_requests(
    api: tuple[httpx.AsyncClient, str],
) -> None:
    admin, _ = api
    when = "2099-01-01T00:00:00+00:00"
    r = await admin.post("/api/v1/tokens", json={"name": "a", "role": "viewer", "expires_at": when})
    assert r.status_code == 201, r.text
    assert datetime.fromisoformat(r.json()["expires_at"]) == datetime(2099, 1, 1, tzinfo=UTC)
    forever = await admin.post("/api/v1/tokens", json={"name": "b", "role": "viewer"})
    assert forever.json()["expires_at"] is None
    for bad in (
        {"expires_at": "2000-01-01T00:00:00Z"},  # in the past
        {"expires_at": "2099-01-01T00:00:00"},  # no offset
        {"expires_in": 0},
        {"expires_in": 60, "expires_at": when},
    ):
        assert_problem(
            await admin.post("/api/v1/tokens", json={"name": "x", "role": "viewer", **bad}), 422
        )


def test_cli_tokens_create_expires_in(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    r = runner.invoke(app, ["tokens", "create", "ci", "--expires-in", "30d", *data])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[-1]
    store = TokenStore.open(default_db_url(tmp_path))
    try:
        info = store.verify(token)
    finally:
        store.close()
    assert info is not None and info.expires_at is not None
    assert abs(info.expires_at - info.created_at - timedelta(days=30)) < timedelta(seconds=1)
    listed = runner.invoke(app, ["tokens", "list", *data], env={"COLUMNS": "200"})
    assert info.expires_at.isoformat()[:16] in listed.stdout
    for bad in ("0", "abc", "-5m", "3y"):
        r = runner.invoke(app, ["tokens", "create", "x", "--expires-in", bad, *data])
        assert r.exit_code == 2, (bad, r.output)
        assert "--expires-in" in r.output
