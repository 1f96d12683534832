"""Swagger UI at ``/api/docs`` works offline: the page and everything it loads (script,
style sheet, icon, the OpenAPI document) come from the fotakit server itself, never from
a CDN (docs/rest-api.md)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
from api_helpers import Stack


class _Refs(HTMLParser):
    """Every URL the page makes the browser load: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


async def test_swagger_ui_loads_only_from_the_server_itself(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as anon:  # no token needed
        page = await anon.get("/api/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        refs = _Refs()
        refs.feed(page.text)
        # the inline configuration names the document the UI renders
        spec_urls = re.findall(r"url:\s*'([^']+)'", page.text)
        urls = refs.urls + spec_urls
        assert any(u.endswith("swagger-ui-bundle.js") for u in urls), urls
        assert any(u.endswith("swagger-ui.css") for u in urls), urls
        assert spec_urls == ["/api/v1/openapi.json"], spec_urls
        for url in urls:
            absolute = urljoin(stack.base + "/api/docs", url)
            assert urlsplit(absolute).netloc == urlsplit(stack.base).netloc, url  # no CDN
            fetched = await anon.get(absolute)
            assert fetched.status_code == 200, (url, fetched.status_code)
            assert len(fetched.content) > 100, url
        script = await anon.get("/api/docs/assets/swagger-ui-bundle.js")
        assert "SwaggerUIBundle" in script.text
        assert script.headers["content-type"].startswith(
            ("text/javascript", "application/javascript")
        )
