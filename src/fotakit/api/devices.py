"""Device routes: fleet overview, device list and detail, LwM2M passthrough, tags, the
device's update event log and firmware (Object 5) history, single-device update jobs.

Sources: the store's devices table (every device ever registered; ``last_seen``), the
unexpired registrations in the database, whichever node sharing it holds them
(``online``, address; the announced objects only for devices registered with this node),
and the update service's inventory (class = /3/0/1 Model Number, firmware version =
/3/0/3) when it runs, with the views other nodes stored for their devices — so every node
shows the whole fleet (:mod:`fotakit.updates.fleet`, docs/operator-guide.md "Several
processes on PostgreSQL").

Passthrough maps device outcomes to HTTP: not registered (but known) -> 503, never seen ->
404, CoAP 4.04 -> 404, 4.05 -> 409, other 4.xx/5.xx -> 502 (the device said no), no answer
-> 504, network error -> 503, an undecodable answer -> 502; the CoAP code is in ``detail``.
Limits: the device list is built in memory from the store and the registrations (fine for
fleets of tens of thousands); the firmware history reads the newest
:data:`HISTORY_EVENTS` events of the device.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response

from fotakit.api import models
from fotakit.api.auth import Role, require
from fotakit.api.common import (
    API_PREFIX,
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    iso,
    page_by_key,
    value_from_json,
    value_json,
)
from fotakit.api.context import ApiContext, get_ctx
from fotakit.api.jobs import job_json
from fotakit.api.problems import ApiProblem, not_found
from fotakit.lwm2m.codecs import CodecError
from fotakit.lwm2m.model import Content
from fotakit.lwm2m.path import InvalidPath
from fotakit.lwm2m.path import Path as LwPath
from fotakit.server import (
    DeviceError,
    DeviceUnreachable,
    InvalidResponse,
    NotRegistered,
    Registration,
    RequestTimeout,
)
from fotakit.store.records import DeviceRecord, JsonValue, RegistrationRecord
from fotakit.updates.fleet import is_live, live_registrations
from fotakit.updates.inventory import TAGS_ATTRIBUTE
from fotakit.updates.store import DeviceBusy
from fotakit.updates.targets import DeviceView

router = APIRouter(prefix=API_PREFIX, tags=["devices"])
T = TypeVar("T")

HISTORY_EVENTS: Final = 5000
LIVE_READ_S: Final = 5.0
VIEWER = Depends(require(Role.VIEWER))
OPERATOR = Depends(require(Role.OPERATOR))
Ctx = Annotated[ApiContext, Depends(get_ctx)]
Endpoint = Annotated[str, Path(min_length=1, max_length=255)]
ResPath = Annotated[str, Path(min_length=1, max_length=64, description="e.g. 3/0/3")]


# -- device views ---------------------------------------------------------------------------


def _tags(record: DeviceRecord | None) -> list[str]:
    raw = record.attributes.get(TAGS_ATTRIBUTE) if record is not None else None
    return sorted(t for t in raw if isinstance(t, str)) if isinstance(raw, list) else []


def _hostinfo(reg: Registration | RegistrationRecord) -> str:
    if isinstance(reg, Registration):
        return reg.hostinfo
    host = f"[{reg.address}]" if ":" in reg.address else reg.address
    return f"{host}:{reg.port}"


def _device(
    endpoint: str,
    record: DeviceRecord | None,
    reg: Registration | RegistrationRecord | None,
    view: DeviceView | None,
    here: str,
) -> dict[str, Any]:
    """``reg``: this node's live registration of the device, else an unexpired one
    another node stored (None: offline); ``here``: this node's ID."""
    node = here if isinstance(reg, Registration) else reg.node_id if reg is not None else None
    last_seen = reg.last_update if reg is not None else None
    if last_seen is not None and last_seen.tzinfo is None:  # naive from the database: UTC
        last_seen = last_seen.replace(tzinfo=UTC)
    if record is not None and (last_seen is None or record.last_seen > last_seen):
        last_seen = record.last_seen
    tags = _tags(record)
    if view is not None and view.tags and not tags:
        tags = sorted(view.tags)
    return {
        "endpoint": endpoint,
        "online": reg is not None,
        "class": view.class_name if view is not None else None,
        "firmware_version": view.firmware_version if view is not None else None,
        "tags": tags,
        "lwm2m_version": reg.lwm2m_version if reg else (record.lwm2m_version if record else None),
        "binding": reg.binding if reg is not None else None,
        "queue_mode": bool(reg.queue_mode) if reg is not None else False,
        "address": _hostinfo(reg) if reg is not None else None,
        "registration_id": reg.registration_id if reg is not None else None,
        "node": node,
        "last_seen": iso(last_seen),
    }


async def _views(ctx: ApiContext, endpoints: list[str]) -> dict[str, DeviceView]:
    inventory = ctx.service.inventory if ctx.service is not None else None
    return await inventory.current(endpoints) if inventory is not None else {}


async def _all_devices(ctx: ApiContext) -> list[dict[str, Any]]:
    server = ctx.need_server()
    records = {r.endpoint: r for r in await server.store.list_devices()}
    regs: dict[str, Registration | RegistrationRecord] = dict(await live_registrations(server))
    regs.update(server.registrations)  # this node's own: the freshest
    endpoints = sorted(set(records) | set(regs))
    views = await _views(ctx, endpoints)
    return [
        _device(ep, records.get(ep), regs.get(ep), views.get(ep), server.node_id)
        for ep in endpoints
    ]


async def _registration_of(
    ctx: ApiContext, endpoint: str
) -> Registration | RegistrationRecord | None:
    """This node's registration of ``endpoint``, else another node's unexpired one."""
    server = ctx.need_server()
    reg = server.get(endpoint)
    if reg is not None:
        return reg
    stored = await server.store.get_registration_by_endpoint(endpoint)
    now = datetime.now(UTC)
    if stored is not None and is_live(stored, now, server.config.expiry_grace):
        return stored
    return None


async def _one_device(ctx: ApiContext, endpoint: str) -> dict[str, Any]:
    server = ctx.need_server()
    reg = await _registration_of(ctx, endpoint)
    record = await server.store.get_device(endpoint)
    if reg is None and record is None:
        raise not_found("device", endpoint)
    views = await _views(ctx, [endpoint])
    return _device(endpoint, record, reg, views.get(endpoint), server.node_id)


def _registration_json(reg: Registration | RegistrationRecord) -> dict[str, Any]:
    return {
        "registration_id": reg.registration_id,
        "address": reg.address,
        "port": reg.port,
        "lifetime": reg.lifetime,
        "lwm2m_version": reg.lwm2m_version,
        "binding": reg.binding,
        "queue_mode": reg.queue_mode,
        "sms": reg.sms,
        "root_path": reg.root_path,
        "content_formats": sorted(reg.content_formats),
        "registered_at": iso(reg.registered_at),
        "last_update": iso(reg.last_update),
        "expires_at": iso(reg.expires_at),
    }


def _objects(reg: Registration) -> list[dict[str, Any]]:
    out = []
    for link in reg.objects:
        try:
            p = link.path(reg.root_path)
        except ValueError:
            continue
        if p.depth not in (1, 2):
            continue
        ids = p.ids
        out.append(
            {
                "path": str(p),
                "object_id": ids[0],
                "instance_id": ids[1] if len(ids) > 1 else None,
                "version": link.params.get("ver"),
            }
        )
    return out


# -- passthrough --------------------------------------------------------------------------


async def _device_call(ctx: ApiContext, endpoint: str, call: Awaitable[T]) -> T:
    try:
        return await call
    except NotRegistered:
        record = await ctx.need_server().store.get_device(endpoint)
        if record is None:
            raise not_found("device", endpoint) from None
        raise ApiProblem(
            503, f"device {endpoint!r} is offline (not registered)", kind="device-offline"
        ) from None
    except DeviceError as exc:
        status = {"4.04": 404, "4.05": 409}.get(exc.code, 502)
        raise ApiProblem(
            status, f"the device answered {exc.code} {exc.message}".rstrip(), kind="device-error"
        ) from None
    except RequestTimeout:
        raise ApiProblem(
            504, f"device {endpoint!r} did not answer in time", kind="timeout"
        ) from None
    except DeviceUnreachable as exc:
        raise ApiProblem(
            503, f"device {endpoint!r} is unreachable: {exc}", kind="device-unreachable"
        ) from None
    except (CodecError, ValueError) as exc:  # a value the device's format cannot carry
        raise ApiProblem(422, f"value: {exc}", kind="validation") from None
    except InvalidResponse as exc:
        raise ApiProblem(
            502, f"invalid answer from the device: {exc}", kind="device-error"
        ) from None


def _lw_path(text: str, *, min_depth: int = 1) -> LwPath:
    try:
        p = LwPath.parse("/" + text.strip("/"))
    except (InvalidPath, ValueError) as exc:
        raise ApiProblem(422, f"path: {exc}", kind="validation") from None
    if p.depth < min_depth:
        raise ApiProblem(422, f"path: {p} is too short here", kind="validation")
    return p


def _content_json(p: LwPath, content: Content) -> dict[str, Any]:
    if p.depth >= 3 and p in content and len(content) == 1:
        return {"path": str(p), "value": value_json(content[p])}
    return {"path": str(p), "values": {str(k): value_json(v) for k, v in sorted(content.items())}}


# -- routes -------------------------------------------------------------------------------


@router.get("/fleet", response_model=models.Fleet, dependencies=[VIEWER])
async def fleet(ctx: Ctx) -> dict[str, Any]:
    """Counts over every known device: online/offline, by firmware version and class."""
    devices = await _all_devices(ctx)
    by_version: Counter[str] = Counter()
    by_class: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    for d in devices:
        version = d["firmware_version"] or "unknown"
        cls = d["class"] or "unknown"
        by_version[version] += 1
        by_class[cls] += 1
        pairs[(cls, version)] += 1
    online = sum(1 for d in devices if d["online"])
    return {
        "total": len(devices),
        "online": online,
        "offline": len(devices) - online,
        "by_version": dict(sorted(by_version.items())),
        "by_class": dict(sorted(by_class.items())),
        "by_class_version": [
            {"class": c, "version": v, "count": n} for (c, v), n in sorted(pairs.items())
        ],
    }


@router.get("/devices", response_model=models.DevicePage, dependencies=[VIEWER])
async def list_devices(
    ctx: Ctx,
    online: bool | None = None,
    class_: Annotated[str | None, Query(alias="class", max_length=255)] = None,
    version: Annotated[str | None, Query(max_length=255)] = None,
    tag: Annotated[str | None, Query(max_length=255)] = None,
    q: Annotated[str | None, Query(max_length=255, description="Endpoint substring.")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Devices by endpoint name, filtered (all filters AND-ed), a page at a time."""
    devices = [
        d
        for d in await _all_devices(ctx)
        if (online is None or d["online"] == online)
        and (class_ is None or d["class"] == class_)
        and (version is None or d["firmware_version"] == version)
        and (tag is None or tag in d["tags"])
        and (q is None or q in d["endpoint"])
    ]
    items, nxt = page_by_key(devices, lambda d: [d["endpoint"]], limit, cursor)
    return {"items": items, "next_cursor": nxt}


@router.get("/devices/{endpoint}", response_model=models.DeviceDetail, dependencies=[VIEWER])
async def get_device(ctx: Ctx, endpoint: Endpoint) -> dict[str, Any]:
    """One device with its registration, announced objects, latest 20 jobs and the
    device profile a job started now would use (with why)."""
    device = await _one_device(ctx, endpoint)
    reg = await _registration_of(ctx, endpoint)
    jobs: list[dict[str, Any]] = []
    profile: dict[str, Any] | None = None
    if ctx.service is not None:
        records = await ctx.service.jobs(endpoint=endpoint)
        records.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        jobs = [job_json(j) for j in records[:20]]
        chosen, why = ctx.service.device_profile(endpoint)
        profile = {**chosen.to_json(), "why": why}
    return {
        **device,
        "registration": _registration_json(reg) if reg is not None else None,
        "objects": _objects(reg) if isinstance(reg, Registration) else [],
        "jobs": jobs,
        "profile": profile,
    }


@router.get(
    "/devices/{endpoint}/profile",
    response_model=models.DeviceProfileChoice,
    dependencies=[VIEWER],
)
async def device_profile(ctx: Ctx, endpoint: Endpoint) -> dict[str, Any]:
    """The device profile a job started now would use for this device, and why."""
    service = ctx.need_service()
    await _one_device(ctx, endpoint)
    await service.profiles()  # fresh from the store
    profile, why = service.device_profile(endpoint)
    stored = profile is not service.builtin_profile()
    return {"profile": {**profile.to_json(), "stored": stored}, "why": why}


@router.get(
    "/devices/{endpoint}/resources/{path:path}",
    response_model=models.ResourceValue,
    response_model_exclude_none=True,
    dependencies=[VIEWER],
)
async def read_resource(ctx: Ctx, endpoint: Endpoint, path: ResPath) -> dict[str, Any]:
    """Live Read of an object, instance, resource or resource instance."""
    p = _lw_path(path)
    await _one_device(ctx, endpoint)
    content = await _device_call(ctx, endpoint, ctx.need_server().read(endpoint, p))
    return _content_json(p, content)


@router.put("/devices/{endpoint}/resources/{path:path}", status_code=204, dependencies=[OPERATOR])
async def write_resource(
    ctx: Ctx, endpoint: Endpoint, path: ResPath, body: models.WriteBody
) -> Response:
    """Write (replace) one resource; the value is converted to the resource's type."""
    p = _lw_path(path, min_depth=3)
    await _one_device(ctx, endpoint)
    server = ctx.need_server()
    rdef = server.config.registry.resource(p)
    value = value_from_json(body.value, rdef.type if rdef is not None else None)
    await _device_call(ctx, endpoint, server.write(endpoint, p, value))
    return Response(status_code=204)


@router.post("/devices/{endpoint}/execute/{path:path}", status_code=204, dependencies=[OPERATOR])
async def execute(
    ctx: Ctx, endpoint: Endpoint, path: ResPath, body: models.ExecuteBody | None = None
) -> Response:
    """Execute a resource, with optional arguments."""
    p = _lw_path(path, min_depth=3)
    if p.depth != 3:
        raise ApiProblem(422, f"path: Execute needs a resource path, not {p}", kind="validation")
    await _one_device(ctx, endpoint)
    args = body.args if body is not None else None
    await _device_call(ctx, endpoint, ctx.need_server().execute(endpoint, p, args))
    return Response(status_code=204)


@router.post(
    "/devices/{endpoint}/observe/{path:path}",
    status_code=201,
    response_model=models.ObservationOut,
    response_model_exclude_none=True,
    dependencies=[OPERATOR],
)
async def observe(ctx: Ctx, endpoint: Endpoint, path: ResPath) -> dict[str, Any]:
    """Observe a path; notifications arrive on the event stream as ``notification``."""
    p = _lw_path(path)
    await _one_device(ctx, endpoint)
    obs = await _device_call(ctx, endpoint, ctx.need_server().observe(endpoint, p))
    first = _content_json(p, obs.initial) if obs.initial else {"path": str(p)}
    return {"observation_id": obs.id, **first}


@router.delete(
    "/devices/{endpoint}/observe/{observation_id}", status_code=204, dependencies=[OPERATOR]
)
async def cancel_observe(
    ctx: Ctx, endpoint: Endpoint, observation_id: Annotated[str, Path(max_length=64)]
) -> Response:
    """Cancel an observation made on this device."""
    server = ctx.need_server()
    obs = server.observations.get(observation_id)
    if obs is None or obs.endpoint != endpoint:
        raise not_found("observation", observation_id)
    await server.cancel_observe(obs)
    return Response(status_code=204)


@router.put("/devices/{endpoint}/tags", response_model=models.Device, dependencies=[OPERATOR])
async def set_tags(ctx: Ctx, endpoint: Endpoint, body: models.TagsBody) -> dict[str, Any]:
    """Replace the device's tags (campaign targets select by them)."""
    server = ctx.need_server()
    tags = sorted(set(body.tags))
    for tag in tags:
        if not tag or tag != tag.strip() or len(tag) > 255:
            raise ApiProblem(
                422, f"tags: invalid tag {tag!r} (non-empty, no outer spaces)", kind="validation"
            )
    inventory = ctx.service.inventory if ctx.service is not None else None
    if inventory is not None:
        try:
            await inventory.set_tags(endpoint, tags)
        except LookupError:
            raise not_found("device", endpoint) from None
    else:
        record = await server.store.get_device(endpoint)
        if record is None:
            raise not_found("device", endpoint)
        attributes: dict[str, JsonValue] = {**record.attributes}
        attributes[TAGS_ATTRIBUTE] = list[JsonValue](tags)
        if await server.store.set_device_attributes(endpoint, attributes) is None:
            raise not_found("device", endpoint)
    return await _one_device(ctx, endpoint)


def event_json(ev: Any) -> dict[str, Any]:
    return {
        "id": ev.id,
        "at": iso(ev.at),
        "endpoint": ev.endpoint,
        "job_id": ev.job_id,
        "campaign_id": ev.campaign_id,
        "kind": ev.kind,
        "data": dict(ev.details),
    }


def event_page(events: list[Any], limit: int) -> dict[str, Any]:
    nxt = str(events[-1].id) if len(events) == limit and events else None
    return {"items": [event_json(e) for e in events], "next_cursor": nxt}


def after_id_of(after_id: int | None, cursor: str | None) -> int:
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 18:
            raise ApiProblem(400, f"invalid cursor {cursor[:64]!r}", kind="invalid-cursor")
        return int(cursor)
    return after_id or 0


AfterId = Annotated[int | None, Query(ge=0, le=2**62, description="Events after this id.")]


@router.get("/devices/{endpoint}/events", response_model=models.EventPage, dependencies=[VIEWER])
async def device_events(
    ctx: Ctx,
    endpoint: Endpoint,
    after_id: AfterId = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The device's update event log, oldest first."""
    service = ctx.need_service()
    await _one_device(ctx, endpoint)
    start = after_id_of(after_id, cursor)
    events = await service.events(endpoint=endpoint, after_id=start, limit=limit)
    return event_page(events, limit)


def _fw_points(events: list[Any]) -> list[dict[str, Any]]:
    """One point per change of (State, Result) seen in the event log: from notifications
    and reads (``fw_state``/``fw_result``, top level or in a facts read). A value an event
    does not carry is the last one seen (a job's summary names the Result only)."""
    points: list[dict[str, Any]] = []
    last_state: int | None = None
    last_result: int | None = None
    for ev in events:
        details: Mapping[str, Any] = ev.details
        facts = details.get("facts")
        source: Mapping[str, Any] = facts if isinstance(facts, Mapping) else details
        state, result = source.get("fw_state"), source.get("fw_result")
        if not isinstance(state, int) and not isinstance(result, int):
            continue
        last_state = state if isinstance(state, int) else last_state
        last_result = result if isinstance(result, int) else last_result
        point = {"at": iso(ev.at), "state": last_state, "result": last_result}
        if points and (points[-1]["state"], points[-1]["result"]) == (
            point["state"],
            point["result"],
        ):
            continue  # the same pair seen again (a re-read): one point per change
        points.append(point)
    return points


@router.get("/devices/{endpoint}/firmware", response_model=models.Firmware, dependencies=[VIEWER])
async def firmware(ctx: Ctx, endpoint: Endpoint) -> dict[str, Any]:
    """Object 5 State (/5/0/3) and Result (/5/0/5): live when the device is online and no
    job is talking to it, else the last seen; and their history from the event log."""
    device = await _one_device(ctx, endpoint)
    events: list[Any] = []
    if ctx.service is not None:
        newest = await ctx.service.events(
            endpoint=endpoint, limit=HISTORY_EVENTS, newest_first=True
        )
        events = newest[::-1]
    history = _fw_points(events)
    state = history[-1]["state"] if history else None
    result = history[-1]["result"] if history else None
    live = False
    busy = False
    if ctx.service is not None:
        with contextlib.suppress(RuntimeError):
            busy = bool(ctx.service.engine.driver.jobs_of(endpoint))
    if device["online"] and not busy and ctx.need_server().get(endpoint) is not None:
        server = ctx.need_server()
        try:
            content = await asyncio.wait_for(server.read(endpoint, LwPath(5, 0)), LIVE_READ_S)
        except Exception:
            content = {}
        s, r = content.get(LwPath(5, 0, 3)), content.get(LwPath(5, 0, 5))
        if isinstance(s, int) and isinstance(r, int):
            state, result, live = s, r, True
    return {"state": state, "result": result, "live": live, "history": history}


@router.post(
    "/devices/{endpoint}/update",
    status_code=201,
    response_model=models.Job,
    dependencies=[OPERATOR],
)
async def update_device(ctx: Ctx, endpoint: Endpoint, body: models.UpdateBody) -> dict[str, Any]:
    """Start a single-device update job to a stored package (409 while the device has an
    unfinished job)."""
    from fotakit.repository.errors import UnknownPackage

    service = ctx.need_service()
    await _one_device(ctx, endpoint)
    try:
        job_id = await service.start_job(endpoint, body.package_id)
    except UnknownPackage:
        raise ApiProblem(
            422, f"package_id: no package {body.package_id!r}", kind="validation"
        ) from None
    except DeviceBusy as exc:
        # one unfinished job per device (docs/operator-guide.md): never a second one
        other = await service.job(exc.job_id)
        where = (
            ""
            if other is None or other.campaign_id is None
            else (f" of campaign {other.campaign_id!r}")
        )
        state = "" if other is None else f", {other.state}"
        raise ApiProblem(
            409,
            f"device {endpoint!r} has an unfinished update job {exc.job_id!r}{where}"
            f"{state}; wait until it has ended or cancel it (POST {API_PREFIX}/jobs/"
            f"{exc.job_id}/cancel)",
            kind="device-busy",
        ) from None
    record = await service.job(job_id)
    if record is None:  # pragma: no cover - just created
        raise not_found("job", job_id)
    return job_json(record)
