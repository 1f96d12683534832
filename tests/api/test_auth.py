"""Authentication and roles: 401/403 per role for every protected route (the table is
derived from the app's routes, so a route without a role fails here), token storage
(hashed only), the first admin token, and the token routes over real HTTP."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import Stack, assert_problem, role_tokens
from fastapi.routing import APIRoute

from fotakit.api import ApiContext, Role, TokenStore, create_app
from fotakit.api.auth import ADMIN_TOKEN_ENV, hash_token, route_role
from fotakit.store import default_db_url

PUBLIC = {
    ("GET", "/api/v1/health"),
    ("GET", "/api/docs"),  # the Swagger UI page (public, as FastAPI's own was); no data
}
EXPECTED_MIN_ROLE = {
    # everything an operator may do that is not a GET; admin-only routes
    ("DELETE", "/api/v1/packages/{package_id}"): Role.ADMIN,
    ("GET", "/api/v1/tokens"): Role.ADMIN,
    ("POST", "/api/v1/tokens"): Role.ADMIN,
    ("DELETE", "/api/v1/tokens/{token_id}"): Role.ADMIN,
}


def _api_routes() -> list[tuple[str, str, Role | None]]:
    app = create_app(ApiContext())
    out = []
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path.startswith("/api/"):
            for method in sorted(route.methods or ()):
                out.append((method, route.path_format, route_role(route)))
    return out


ROUTES = _api_routes()


def test_every_route_declares_the_expected_role() -> None:
    assert len(ROUTES) >= 37
    for method, path, role in ROUTES:
        if (method, path) in PUBLIC:
            assert role is None
            continue
        assert role is not None, f"{method} {path} has no role"
        expected = EXPECTED_MIN_ROLE.get(
            (method, path), Role.VIEWER if method == "GET" else Role.OPERATOR
        )
        assert role == expected, (method, path, role)


@pytest.fixture(scope="module")
def token_db(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TokenStore, dict[str, str]]]:
    url = default_db_url(tmp_path_factory.mktemp("auth") / "data")
    store = TokenStore.open(url)
    try:
        yield store, role_tokens(store)
    finally:
        store.close()


@pytest.fixture
async def unit_client(
    token_db: tuple[TokenStore, dict[str, str]],
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The app with tokens only (no server: allowed requests end in 503/404/422 — all we
    check is that auth let them through). Pure API: httpx's ASGI transport."""
    store, tokens = token_db
    ctx = ApiContext(tokens=store)
    ctx.close()  # the event stream ends at once
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client, tokens


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "3/0/3" if m.group(1) == "path" else "x1", path)


@pytest.mark.parametrize(("method", "path", "role"), [r for r in ROUTES if r[2] is not None])
async def test_roles(
    unit_client: tuple[httpx.AsyncClient, dict[str, str]],
    method: str,
    path: str,
    role: Role,
) -> None:
    client, tokens = unit_client
    url = _concrete(path)
    kwargs = {"json": {}} if method in ("POST", "PUT") and "packages" not in path else {}
    # no token, a wrong token, a malformed header: 401 with WWW-Authenticate
    for headers in ({}, {"Authorization": "Bearer fk_wrong"}, {"Authorization": "Basic eDp5"}):
        r = await client.request(method, url, headers=headers, **kwargs)
        body = assert_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer"), body
    for who in Role:
        headers = {"Authorization": f"Bearer {tokens[who.label]}"}
        r = await client.request(method, url, headers=headers, **kwargs)
        if who < role:
            body = assert_problem(r, 403)
            assert role.label in body["detail"]
        else:
            assert r.status_code not in (401, 403), (who, r.status_code, r.text)


def test_tokens_are_stored_hashed_only(tmp_path: Path) -> None:
    url = default_db_url(tmp_path / "data")
    store = TokenStore.open(url)
    try:
        info, plaintext = store.create("ci", Role.OPERATOR)
        assert plaintext.startswith("fk_") and len(plaintext) >= 3 + 43
        assert store.verify(plaintext) == info
        assert store.verify(plaintext + "x") is None
        assert store.verify("") is None
    finally:
        store.close()
    raw = (tmp_path / "data").glob("*.db")
    for db in raw:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT * FROM api_tokens").fetchall()
        text = repr(rows)
        assert plaintext not in text
        assert hash_token(plaintext) in text


SEED = "fk_Q2l0eS1vZi1zdGFycy1hbmQtd2luZHMtNzM5MTQ2ODI"  # long and varied enough


def test_ensure_admin_once_and_seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    url = default_db_url(tmp_path / "a")
    store = TokenStore.open(url)
    try:
        first = store.ensure_admin()
        assert first is not None and store.verify(first) is not None
        assert store.verify(first).role is Role.ADMIN  # type: ignore[union-attr]
        assert store.ensure_admin() is None
    finally:
        store.close()
    store = TokenStore.open(url)  # a second start
    try:
        assert store.ensure_admin() is None
    finally:
        store.close()
    monkeypatch.setenv(ADMIN_TOKEN_ENV, SEED)
    store = TokenStore.open(default_db_url(tmp_path / "b"))
    try:
        assert store.ensure_admin() == SEED
        assert store.verify(SEED) is not None
    finally:
        store.close()


async def test_token_routes(stack: Stack) -> None:
    admin = stack.client("admin")
    me = (await admin.get("/api/v1/me")).json()
    assert me == {"name": "test-admin", "role": "admin"}
    r = await admin.post("/api/v1/tokens", json={"name": "ci", "role": "viewer"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["token"].startswith("fk_") and created["role"] == "viewer"
    listed = (await admin.get("/api/v1/tokens")).json()["items"]
    assert created["id"] in {t["id"] for t in listed}
    assert all("token" not in t for t in listed)
    async with httpx.AsyncClient(
        base_url=stack.base, headers={"Authorization": f"Bearer {created['token']}"}
    ) as ci:
        assert (await ci.get("/api/v1/me")).json() == {"name": "ci", "role": "viewer"}
        assert (await admin.delete(f"/api/v1/tokens/{created['id']}")).status_code == 204
        assert_problem(await ci.get("/api/v1/me"), 401)  # revoked: at once
    assert_problem(await admin.delete(f"/api/v1/tokens/{created['id']}"), 404)
    assert_problem(await admin.post("/api/v1/tokens", json={"name": "x", "role": "root"}), 422)
    assert_problem(await admin.post("/api/v1/tokens", json={"name": " ", "role": "viewer"}), 422)


async def test_generic_problems(stack: Stack) -> None:
    c = stack.client("admin")
    body = assert_problem(await c.get("/api/v1/nothing-here"), 404)
    assert "/api/v1/nothing-here" in body["detail"]
    r = await c.patch("/api/v1/fleet")
    assert_problem(r, 405)
    assert "GET" in r.headers.get("allow", "")
    async with httpx.AsyncClient(base_url=stack.base) as anon:
        health = (await anon.get("/api/v1/health")).json()
    assert health["status"] == "ok" and health["node_id"] == "node-a" and health["version"]


async def test_dashboard_files_need_no_token(tmp_path: Path) -> None:
    from fotakit.api import serve_api

    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>fotakit</title>")
    (static / "app.js").write_text("console.log(1)")
    http = await serve_api(create_app(ApiContext(dashboard_dir=static)), "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http.port}") as c:
            index = await c.get("/")
            assert index.status_code == 200 and "fotakit" in index.text
            assert index.headers["content-type"].startswith("text/html")
            assert (await c.get("/ui/app.js")).text == "console.log(1)"
            assert_problem(await c.get("/ui/missing.js"), 404)
            assert_problem(await c.get("/api/v1/fleet"), 401)
    finally:
        await http.stop()
    empty = create_app(ApiContext(dashboard_dir=tmp_path / "none"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=empty), base_url="http://x"
    ) as c:
        assert "not installed" in assert_problem(await c.get("/"), 404)["detail"]


@pytest.mark.parametrize(
    ("seed", "why"),
    [
        ("admin", "it has 5"),
        ("fk_demo-token", "it has 13"),
        ("a" * 64, "about 0 bits"),
        ("0123456789abcde" * 2 + "01", "about 124 bits"),  # 32 characters of 15 kinds
        ("ab" * 40, "about 80 bits"),
        ("fk_a token with spaces and enough length to pass", "other characters"),
    ],
)
def test_a_weak_admin_seed_is_refused_saying_the_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: str, why: str
) -> None:
    monkeypatch.setenv(ADMIN_TOKEN_ENV, seed)
    store = TokenStore.open(default_db_url(tmp_path / "w"))
    try:
        with pytest.raises(ValueError, match="at least 32 characters") as refused:
            store.ensure_admin()
        assert why in str(refused.value) and "least 128 bits" in str(refused.value)
        assert store.list() == []  # nothing stored
    finally:
        store.close()
