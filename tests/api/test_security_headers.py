"""CSP, frame, referrer and nosniff headers (fotakit.api.security) over real HTTP: on the
dashboard's files, on the Swagger UI page (its inline script allowed by hash only), and
nosniff on every response. tests/dashboard runs the pages in Chromium under these
policies and fails on any console error, which a CSP violation is."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fotakit.api import ApiContext, create_app, serve_api
from fotakit.api.security import DASHBOARD_POLICY
from fotakit.dashboard import STATIC_DIR

PAGE_HEADERS = {
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


@pytest.fixture
async def base() -> AsyncIterator[str]:
    http = await serve_api(create_app(ApiContext(dashboard_dir=STATIC_DIR)), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{http.port}"
    finally:
        await http.stop()


def _directives(policy: str) -> dict[str, str]:
    return {d.split()[0]: d.partition(" ")[2] for d in (p.strip() for p in policy.split(";"))}


@pytest.mark.parametrize("path", ["/", "/ui/", "/ui/app.js", "/ui/style.css", "/ui/missing"])
async def test_dashboard_responses_carry_the_policy_and_frame_headers(base: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.get(path)
    for name, value in PAGE_HEADERS.items():
        assert response.headers.get(name) == value, (path, name)
    policy = _directives(response.headers["content-security-policy"])
    assert policy == _directives(DASHBOARD_POLICY)
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"


def test_the_dashboard_page_has_nothing_inline_its_policy_would_refuse() -> None:
    for page in [STATIC_DIR / "index.html", *Path(STATIC_DIR).glob("**/*.html")]:
        html = page.read_text()
        assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) is None, page  # inline script
        assert "<style" not in html and " style=" not in html, page
        assert re.search(r"\son[a-z]+=", html) is None, page  # inline handlers
    for script in Path(STATIC_DIR).glob("**/*.js"):
        code = script.read_text()
        assert 'setAttribute("style"' not in code and "innerHTML" not in code, script


async def test_swagger_ui_allows_its_own_inline_script_by_hash_only(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        page = await client.get("/api/docs")
    for name, value in PAGE_HEADERS.items():
        assert page.headers.get(name) == value, name
    policy = _directives(page.headers["content-security-policy"])
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    assert inline, "FastAPI's Swagger page configures the UI in an inline script"
    hashes = {
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in inline
    }
    assert set(policy["script-src"].split()) == {"'self'", *hashes}
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/fleet", "/api/v1/openapi.json"])
async def test_api_responses_are_nosniff_without_a_page_policy(base: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in response.headers
