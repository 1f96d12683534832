"""``GET /api/v1/events/stream``: server-sent events of devices and update jobs.

Messages (``text/event-stream``, one JSON object per ``data:`` line):

* ``event: job`` — an update event as the engine logs it (the Event shape of the REST
  API; ``id`` is null: the live event has no log id yet, read the log for it);
* ``event: device`` — ``{"kind": "registered|updated|deregistered|expired",
  "endpoint", "at"}`` for registration changes;
* ``event: notification`` — ``{"endpoint", "observation_id", "path", "values"}`` for
  notifications of observations (``POST /devices/{ep}/observe/{path}``);
* ``: ping`` comment lines every :attr:`ApiContext.ping_s` seconds (keeps proxies from
  closing an idle stream, and notices a client that went away).

Filters: ``endpoint`` applies to every message; ``campaign_id`` to job events only
(device messages are not campaign-scoped). The stream ends when the client disconnects
or the process stops (:meth:`ApiContext.close`). Authentication: the bearer header, or
``?access_token=`` because browsers' EventSource cannot set headers. Limits: events of
this process only (another server process sharing the database streams its own); a
client that reads too slowly loses the oldest job events (queue of 10 000).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from fotakit.api.auth import Role, require
from fotakit.api.common import API_PREFIX, iso, value_json
from fotakit.api.context import ApiContext, get_ctx
from fotakit.server import Deregistered, Event, Expired, Notification, Registered, Updated
from fotakit.store.records import utcnow
from fotakit.updates.records import NewEvent

router = APIRouter(prefix=API_PREFIX, tags=["events"])
Ctx = Annotated[ApiContext, Depends(get_ctx)]

_DEVICE_KINDS: Final = {
    Registered: "registered",
    Updated: "updated",
    Deregistered: "deregistered",
    Expired: "expired",
}
_QUEUE: Final = 10_000
_CLOSED: Final = object()


def job_message(ev: NewEvent) -> dict[str, Any]:
    return {
        "id": None,
        "at": iso(ev.at),
        "endpoint": ev.endpoint,
        "job_id": ev.job_id,
        "campaign_id": ev.campaign_id,
        "kind": ev.kind,
        "data": dict(ev.details),
    }


def server_message(ev: Event) -> tuple[str, dict[str, Any]] | None:
    kind = _DEVICE_KINDS.get(type(ev))
    if kind is not None:
        return "device", {"kind": kind, "endpoint": ev.endpoint, "at": iso(utcnow())}
    if isinstance(ev, Notification):
        values = {str(k): value_json(v) for k, v in sorted(ev.content.items())}
        return "notification", {
            "endpoint": ev.endpoint,
            "observation_id": ev.observation_id,
            "path": str(ev.path),
            "values": values,
        }
    return None


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _messages(
    ctx: ApiContext, endpoint: str | None, campaign_id: str | None
) -> AsyncIterator[bytes]:
    merged: asyncio.Queue[object] = asyncio.Queue(_QUEUE)

    def put(item: object) -> None:
        if merged.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                merged.get_nowait()
        merged.put_nowait(item)

    async def pump_server() -> None:
        server = ctx.server
        if server is None:
            server_ready.set()
            return
        async with server.subscribe() as sub:
            server_ready.set()
            async for ev in sub:
                if endpoint is not None and ev.endpoint != endpoint:
                    continue
                msg = server_message(ev)
                if msg is not None:
                    put(msg)

    async def pump_jobs() -> None:
        service = ctx.service
        if service is None:
            jobs_ready.set()
            return
        try:
            subscription = service.subscribe(_QUEUE)
            queue = await subscription.__aenter__()
        except RuntimeError:  # not started
            jobs_ready.set()
            return
        try:
            jobs_ready.set()
            while True:
                ev = await queue.get()
                if endpoint is not None and ev.endpoint != endpoint:
                    continue
                if campaign_id is not None and ev.campaign_id != campaign_id:
                    continue
                put(("job", job_message(ev)))
        finally:
            await subscription.__aexit__(None, None, None)

    async def closing() -> None:
        await ctx.closing.wait()
        put(_CLOSED)

    server_ready = asyncio.Event()
    jobs_ready = asyncio.Event()
    tasks = [
        asyncio.ensure_future(pump_server()),
        asyncio.ensure_future(pump_jobs()),
        asyncio.ensure_future(closing()),
    ]
    try:
        # subscribed before the first byte: a client that saw it misses nothing after
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await server_ready.wait()
                await jobs_ready.wait()
        yield b": stream open\n\n"
        while True:
            try:
                item = await asyncio.wait_for(merged.get(), ctx.ping_s)
            except TimeoutError:
                yield b": ping\n\n"
                continue
            if item is _CLOSED:
                return
            assert isinstance(item, tuple)
            yield sse(item[0], item[1])
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@router.get(
    "/events/stream",
    dependencies=[Depends(require(Role.VIEWER, query_token=True))],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def stream(
    ctx: Ctx,
    campaign_id: Annotated[str | None, Query(max_length=64)] = None,
    endpoint: Annotated[str | None, Query(max_length=255)] = None,
    access_token: Annotated[
        str | None, Query(max_length=512, description="The token, for EventSource.")
    ] = None,
) -> StreamingResponse:
    """Live device and job events as server-sent events (see the module docstring)."""
    return StreamingResponse(
        _messages(ctx, endpoint, campaign_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
