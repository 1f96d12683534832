"""The REST client against a small real server (Starlette over uvicorn on loopback) that
answers the way a broken or unusual server might: pages, repeated cursors, HTML instead of
JSON, problem documents with validation errors, plain-text 500s, a slow answer, an event
stream — and a campaign whose event stream is missing, so ``watch`` must poll."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from rich.console import Console
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from fotakit.cli_campaign import watch_campaign
from fotakit.cli_remote import AsyncRemoteClient, CliError, RemoteClient, ServerEvent
from fotakit.repository.http import serve_http

PROBLEM = "application/problem+json"


class Odd:
    """State of the odd server: a campaign that completes after a few polls."""

    def __init__(self) -> None:
        self.polls = 0
        self.release = threading.Event()


def make_app(odd: Odd) -> Starlette:
    async def devices(request: Request) -> Response:
        cursor = int(request.query_params.get("cursor") or 0)
        limit = int(request.query_params.get("limit") or 100)
        items = [{"endpoint": f"d{i}"} for i in range(cursor, min(cursor + limit, 7))]
        following = cursor + len(items)
        return JSONResponse(
            {"items": items, "next_cursor": str(following) if following < 7 else None}
        )

    async def looping(_: Request) -> Response:
        return JSONResponse({"items": [{"endpoint": "x"}], "next_cursor": "same"})

    async def html(_: Request) -> Response:
        return Response("<html>hello</html>", media_type="text/html")

    async def problem(_: Request) -> Response:
        body = {
            "type": "about:blank",
            "title": "Unprocessable Content",
            "status": 422,
            "detail": "the campaign is invalid",
            "errors": [{"loc": ["body", "waves", 0], "msg": "must be > 0"}],
        }
        return JSONResponse(body, status_code=422, media_type=PROBLEM)

    async def plain500(_: Request) -> Response:
        return PlainTextResponse("boom\nmore", status_code=500)

    async def slow(_: Request) -> Response:
        await asyncio.to_thread(odd.release.wait, 10)
        return JSONResponse({})

    async def stream(_: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b": ping\n\n"
            yield b'event: job\ndata: {"id": 1,\ndata:  "kind": "state"}\n\n'
            yield b'event: device\r\ndata: {"kind": "registered"}\r\n\r\n'

        return StreamingResponse(body(), media_type="text/event-stream")

    async def campaign(_: Request) -> Response:
        odd.polls += 1
        done = odd.polls >= 3
        return JSONResponse(
            {
                "id": "c1",
                "name": "polled",
                "state": "completed" if done else "running",
                "wave": 0,
                "package_id": "p",
                "progress": {
                    "total": 2,
                    "finished": 2 if done else 0,
                    "by_state": {"succeeded": 2} if done else {"delivering": 2},
                    "by_reason": {},
                },
            }
        )

    async def events(request: Request) -> Response:
        if request.query_params.get("campaign_id") != "c1":
            return await stream(request)
        return JSONResponse(
            {"title": "Not Found", "status": 404, "detail": "no stream here"},
            status_code=404,
            media_type=PROBLEM,
        )

    return Starlette(
        routes=[
            Route("/api/v1/devices", devices),
            Route("/api/v1/looping", looping),
            Route("/api/v1/html", html),
            Route("/api/v1/problem", problem),
            Route("/api/v1/plain500", plain500),
            Route("/api/v1/slow", slow),
            Route("/api/v1/campaigns/c1", campaign),
            Route("/api/v1/events/stream", events),
        ]
    )


@pytest.fixture(scope="module")
def odd_server() -> Iterator[tuple[str, Odd]]:
    odd = Odd()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def call(coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result(30)

    http = call(serve_http(make_app(odd), "127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{http.port}", odd
    finally:
        odd.release.set()
        call(http.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_paging_follows_cursors_up_to_the_limit(odd_server: tuple[str, Odd]) -> None:
    url, _ = odd_server
    with RemoteClient(url, "fk_t") as client:
        assert [d["endpoint"] for d in client.paged("/devices", limit=None)] == [
            f"d{i}" for i in range(7)
        ]
        assert len(list(client.paged("/devices", limit=5))) == 5


def test_a_repeated_cursor_stops_paging_with_an_error(odd_server: tuple[str, Odd]) -> None:
    url, _ = odd_server
    with RemoteClient(url, None) as client, pytest.raises(CliError, match="repeated"):
        list(client.paged("/looping", limit=None))


def test_html_instead_of_json_is_an_error_naming_the_url(odd_server: tuple[str, Odd]) -> None:
    url, _ = odd_server
    with RemoteClient(url, None) as client, pytest.raises(CliError) as info:
        client.get("/html")
    assert "expected JSON" in info.value.message and url in info.value.message


def test_problem_documents_give_status_title_detail_and_the_field(
    odd_server: tuple[str, Odd],
) -> None:
    url, _ = odd_server
    with RemoteClient(url, None) as client, pytest.raises(CliError) as info:
        client.get("/problem")
    assert info.value.status == 422 and info.value.exit_code == 1
    assert info.value.message == (
        "422 Unprocessable Content: the campaign is invalid (body.waves.0: must be > 0)"
    )


def test_a_plain_text_error_shows_its_first_line(odd_server: tuple[str, Odd]) -> None:
    url, _ = odd_server
    with RemoteClient(url, None) as client, pytest.raises(CliError) as info:
        client.get("/plain500")
    assert info.value.message == "500 Internal Server Error: boom"


def test_a_slow_server_is_a_timeout_error(odd_server: tuple[str, Odd]) -> None:
    url, _ = odd_server
    with RemoteClient(url, None, timeout=0.3) as client, pytest.raises(CliError) as info:
        client.get("/slow")
    assert "did not answer within 0.3 s" in info.value.message


def test_a_url_without_a_scheme_is_a_usage_error() -> None:
    with pytest.raises(CliError) as info:
        RemoteClient("127.0.0.1:8080", None)
    assert info.value.exit_code == 2


async def test_the_event_stream_is_parsed(odd_server: tuple[str, Odd]) -> None:
    url, _ = odd_server
    async with AsyncRemoteClient(url, "fk_t") as client:
        got = [event async for event in client.stream_events(campaign_id="streamed")]
    assert got == [
        ServerEvent("job", {"id": 1, "kind": "state"}),
        ServerEvent("device", {"kind": "registered"}),
    ]


async def test_a_refused_event_stream_is_a_cli_error(odd_server: tuple[str, Odd]) -> None:
    url, _ = odd_server
    async with AsyncRemoteClient(url, "fk_t") as client:
        with pytest.raises(CliError, match="404 Not Found: no stream here"):
            async for _ in client.stream_events(campaign_id="c1"):
                pass


async def test_watch_falls_back_to_polling_without_an_event_stream(
    odd_server: tuple[str, Odd],
) -> None:
    url, odd = odd_server
    odd.polls = 0
    out = Console(file=io.StringIO(), width=120)
    async with AsyncRemoteClient(url, "fk_t") as client:
        code = await asyncio.wait_for(
            watch_campaign(client, "c1", out=out, interval=0.05, max_wait=20), 30
        )
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert code == 0, text
    assert odd.polls >= 3
    assert "no event stream (404 Not Found: no stream here)" in text
    assert "campaign c1 completed: 2/2 finished (2 succeeded)" in text


def test_json_problem_bodies_are_kept_on_the_error(odd_server: tuple[str, Odd]) -> None:
    url, _ = odd_server
    with RemoteClient(url, None) as client, pytest.raises(CliError) as info:
        client.get("/problem")
    assert info.value.problem is not None
    assert json.dumps(info.value.problem)  # the whole document, for --json users
