"""The SSE stream over real HTTP: device registration events and job events as they
happen; ``?access_token=``; filters; the stream ends when the server closes it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from api_helpers import Stack, assert_problem, sign


async def _messages(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event, data) per message; ("comment", text) for comment lines."""
    event = None
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event or "message", json.loads(line[6:])
            event = None


async def _until(messages: AsyncIterator[tuple[str, Any]], want: Any) -> tuple[str, Any]:
    async with asyncio.timeout(30):
        async for event, data in messages:
            if want(event, data):
                return event, data
    raise AssertionError("stream ended")


async def test_stream_shows_registrations_and_job_events(stack: Stack) -> None:
    token = stack.tokens["viewer"]
    async with (
        httpx.AsyncClient(base_url=stack.base, timeout=30) as client,
        client.stream("GET", "/api/v1/events/stream", params={"access_token": token}) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        messages = _messages(r)
        assert await _until(messages, lambda e, d: e == "comment") == ("comment", "stream open")
        # a device registers
        stack.fleet.make("dev-new", stack.site.server.port)
        await stack.fleet.start(stack.site.server, ["dev-new"])
        _, data = await _until(messages, lambda e, d: e == "device" and d["endpoint"] == "dev-new")
        assert data["kind"] == "registered" and data["at"]
        # a job runs
        data_pkg = sign(b"\x11" * 2000, stack.key, version="2.0.0", sequence=2)
        pkg = (await stack.client("operator").post("/api/v1/packages", content=data_pkg)).json()
        job = (
            await stack.client("operator").post(
                "/api/v1/devices/dev-0/update", json={"package_id": pkg["id"]}
            )
        ).json()
        _, data = await _until(messages, lambda e, d: e == "job" and d["job_id"] == job["id"])
        assert data["endpoint"] == "dev-0" and data["kind"]
        # the process stops: the stream ends
        stack.ctx.close()
        async with asyncio.timeout(10):
            async for _ in messages:
                pass


async def test_stream_filters_by_endpoint(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.tokens['viewer']}"}
    async with (
        httpx.AsyncClient(base_url=stack.base, timeout=30, headers=headers) as client,
        client.stream("GET", "/api/v1/events/stream", params={"endpoint": "dev-b"}) as r,
    ):
        messages = _messages(r)
        await _until(messages, lambda e, d: e == "comment")
        stack.fleet.make("dev-a", stack.site.server.port)
        stack.fleet.make("dev-b", stack.site.server.port)
        await stack.fleet.start(stack.site.server, ["dev-a"])
        await stack.fleet.start(stack.site.server, ["dev-b"])
        _, data = await _until(messages, lambda e, d: e == "device")
        assert data["endpoint"] == "dev-b", data  # dev-a registered first, and was filtered


async def test_stream_needs_a_token(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as client:
        assert_problem(await client.get("/api/v1/events/stream"), 401)
        r = await client.get("/api/v1/events/stream", params={"access_token": "fk_bad"})
        assert_problem(r, 401)
