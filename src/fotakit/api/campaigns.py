"""Campaign routes: create, list, inspect (waves, progress, per-device jobs, failures
grouped by reason, state counts over time, event log) and the operator actions.

A campaign body is :meth:`fotakit.updates.campaign.CampaignSpec.from_json` input plus
``"start"`` (default true: create and start at once). A spec error is a 422 problem naming
the field; an action the campaign's state does not allow is a 409 problem.

The timeline replays the campaign's event log (job ``state`` events) into state counts at
``buckets`` evenly spaced instants between the campaign's creation and its last event (or
now while it runs). Limits: it reads at most :data:`TIMELINE_EVENTS` events; beyond that
the later part of a huge campaign is cut off (the progress counters stay exact).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Query

from fotakit.api import models
from fotakit.api.auth import Principal, Role, require
from fotakit.api.common import API_PREFIX, DEFAULT_LIMIT, Cursor, Limit, iso, page_by_key
from fotakit.api.context import ApiContext, get_ctx
from fotakit.api.devices import AfterId, after_id_of, event_page
from fotakit.api.jobs import job_json
from fotakit.api.problems import ApiProblem, not_found
from fotakit.repository.errors import UnknownPackage
from fotakit.updates.campaign import CampaignSpecError, WaveProgress
from fotakit.updates.engine_campaigns import CampaignError, NoDeviceMatches
from fotakit.updates.job import FAILED_STATES
from fotakit.updates.records import TERMINAL_STATES, CampaignRecord
from fotakit.updates.service import UpdateService
from fotakit.updates.targets import SpecError

router = APIRouter(prefix=API_PREFIX, tags=["campaigns"])
Ctx = Annotated[ApiContext, Depends(get_ctx)]
CampaignId = Annotated[str, Path(min_length=1, max_length=64)]
VIEWER = Depends(require(Role.VIEWER))
OPERATOR = Depends(require(Role.OPERATOR))
Operator = Annotated[Principal, OPERATOR]


def _who(principal: Principal) -> str:
    """The operator as the event log and the pause reason name them."""
    return f"operator {principal.name!r}"


TIMELINE_EVENTS: Final = 50_000
FINISHED_CAMPAIGN: Final = frozenset({"completed", "aborted", "cancelled"})


_PAUSED_BY: Final = {
    "pause": "paused by {detail}",
    "gate_failed_pause": "success gate lost: {detail}",
    "error_threshold_pause": "error threshold crossed: {detail}",
}


def paused_reason(rec: CampaignRecord) -> str | None:
    """Why a paused campaign is paused, from its snapshot (the change that paused it)."""
    paused = rec.snapshot.get("paused") if rec.state == "paused" else None
    if not isinstance(paused, dict):
        return None
    trigger, detail = str(paused.get("trigger")), str(paused.get("detail") or "")
    return _PAUSED_BY.get(trigger, "{trigger}: {detail}").format(trigger=trigger, detail=detail)


def _error_count(rec: CampaignRecord) -> dict[str, int] | None:
    failed, finished = rec.snapshot.get("failures"), rec.snapshot.get("sample")
    if not isinstance(failed, int) or not isinstance(finished, int):
        return None  # a draft
    return {"failed": failed, "finished": finished}


def wave_json(index: int, wave: WaveProgress, started_at: float | None) -> dict[str, Any]:
    """One wave; ``gate`` says met, overridden (by whom, why) or pending apart."""
    out = {"index": index, **wave.to_json(), "started_at": iso(started_at)}
    override = wave.override
    out["override"] = None if override is None else {**override, "at": iso(float(override["at"]))}
    if wave.overridden:
        out["gate"] = "overridden"
        if override is None:  # overridden before the override was recorded
            out["override"] = {"by": "operator", "at": iso(wave.gate_met_at), "why": "unknown"}
    else:
        out["gate"] = "met" if wave.gate_met else "pending"
    return out


async def campaign_json(service: UpdateService, rec: CampaignRecord) -> dict[str, Any]:
    progress = await service.progress(rec.id)
    return {
        "id": rec.id,
        "name": rec.name,
        "state": rec.state,
        "wave": rec.wave,
        "package_id": rec.spec.get("package_id"),
        "parent_id": rec.parent_id,
        "created_at": iso(rec.created_at),
        "updated_at": iso(rec.updated_at),
        "spec": dict(rec.spec),
        "progress": progress.to_json(),
        "paused_reason": paused_reason(rec),
        "error_count": _error_count(rec),
    }


async def _record(service: UpdateService, campaign_id: str) -> CampaignRecord:
    rec = await service.get_campaign(campaign_id)
    if rec is None:
        raise not_found("campaign", campaign_id)
    return rec


@router.get("/campaigns", response_model=models.CampaignPage, dependencies=[VIEWER])
async def list_campaigns(
    ctx: Ctx,
    state: Annotated[str | None, Query(max_length=32)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Campaigns, oldest first."""
    service = ctx.need_service()
    records = await service.campaigns(state=state)
    page, nxt = page_by_key(records, lambda r: [r.created_at, r.id], limit, cursor)
    return {"items": [await campaign_json(service, r) for r in page], "next_cursor": nxt}


@router.post("/campaigns", status_code=201, response_model=models.Campaign, dependencies=[OPERATOR])
async def create_campaign(ctx: Ctx, body: models.CampaignCreate) -> dict[str, Any]:
    """Create a campaign from its spec and (unless ``start`` is false) start it."""
    service = ctx.need_service()
    spec = body.model_dump(exclude={"start"})
    spec.update(body.model_extra or {})
    try:
        cid = await service.create_campaign(spec, require_match=body.start)
    except NoDeviceMatches as exc:
        raise ApiProblem(422, f"target: {exc}", kind="validation") from None
    except UnknownPackage:
        raise ApiProblem(
            422, f"package_id: no package {body.package_id!r}", kind="validation"
        ) from None
    except (CampaignSpecError, SpecError) as exc:
        raise ApiProblem(
            422,
            str(exc),
            kind="validation",
        ) from None
    if body.start:
        try:
            await service.start_campaign(cid)
        except NoDeviceMatches as exc:  # the devices went away since the check: a draft stays
            raise ApiProblem(
                422, f"target: campaign {cid} was created but not started: {exc}", kind="validation"
            ) from None
        except CampaignError as exc:
            raise ApiProblem(
                409, f"campaign {cid} was created but not started: {exc}", kind="conflict"
            ) from None
    return await campaign_json(service, await _record(service, cid))


@router.get("/campaigns/{campaign_id}", response_model=models.CampaignDetail, dependencies=[VIEWER])
async def get_campaign(ctx: Ctx, campaign_id: CampaignId) -> dict[str, Any]:
    """A campaign with its waves (plan and progress of each)."""
    service = ctx.need_service()
    rec = await _record(service, campaign_id)
    out = await campaign_json(service, rec)
    state = await service.campaign_state(campaign_id)
    started = {w.wave: w.started_at for w in await service.engine.store.list_waves(campaign_id)}
    waves = []
    if state is not None:
        for i, wave in enumerate(state.waves):
            waves.append(wave_json(i, wave, started.get(i)))
    out["waves"] = waves
    return out


@router.get(
    "/campaigns/{campaign_id}/progress", response_model=models.Progress, dependencies=[VIEWER]
)
async def progress(ctx: Ctx, campaign_id: CampaignId) -> dict[str, Any]:
    """Jobs by state and failure reason (from counters)."""
    service = ctx.need_service()
    await _record(service, campaign_id)
    return (await service.progress(campaign_id)).to_json()


@router.get(
    "/campaigns/{campaign_id}/timeline", response_model=models.Timeline, dependencies=[VIEWER]
)
async def timeline(
    ctx: Ctx,
    campaign_id: CampaignId,
    buckets: Annotated[int, Query(ge=1, le=500)] = 60,
) -> dict[str, Any]:
    """Job state counts at ``buckets`` instants over the campaign's life (for a chart)."""
    service = ctx.need_service()
    rec = await _record(service, campaign_id)
    jobs = await service.jobs(campaign_id)
    changes: list[tuple[float, str, str]] = [(j.created_at, j.id, "pending") for j in jobs]
    after = 0
    for _ in range(TIMELINE_EVENTS // 1000):
        page = await service.events(campaign_id=campaign_id, after_id=after, limit=1000)
        for ev in page:
            to = ev.details.get("to")
            if ev.kind == "state" and ev.job_id and isinstance(to, str):
                changes.append((ev.at, ev.job_id, to))
        if len(page) < 1000:
            break
        after = page[-1].id
    changes.sort(key=lambda c: c[0])
    start = rec.created_at
    end = max([c[0] for c in changes] + [start])
    if rec.state not in FINISHED_CAMPAIGN:
        end = max(end, time.time())
    step = (end - start) / buckets if end > start else 0.0
    state_of: dict[str, str] = {}
    points = []
    i = 0
    for b in range(1, buckets + 1):
        at = start + step * b if step else end
        while i < len(changes) and changes[i][0] <= at + 1e-9:
            _, job_id, to = changes[i]
            state_of[job_id] = to
            i += 1
        counts = Counter(state_of.values())
        points.append({"at": iso(at), "by_state": dict(sorted(counts.items()))})
        if not step:
            break
    return {"points": points}


@router.get(
    "/campaigns/{campaign_id}/devices", response_model=models.JobPage, dependencies=[VIEWER]
)
async def campaign_devices(
    ctx: Ctx,
    campaign_id: CampaignId,
    state: Annotated[str | None, Query(max_length=32)] = None,
    reason: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The campaign's jobs (one per device), by job id, filtered by state and reason."""
    service = ctx.need_service()
    await _record(service, campaign_id)
    jobs = [
        j
        for j in await service.jobs(campaign_id, state=state)
        if reason is None or j.reason == reason
    ]
    page, nxt = page_by_key(jobs, lambda j: [j.id], limit, cursor)
    return {"items": [job_json(j) for j in page], "next_cursor": nxt}


@router.get(
    "/campaigns/{campaign_id}/failures", response_model=models.Failures, dependencies=[VIEWER]
)
async def failures(ctx: Ctx, campaign_id: CampaignId) -> dict[str, Any]:
    """Failed and timed-out devices grouped by failure reason, largest group first, with
    each device's reason detail where one is known (the job's findings, the device's
    own words)."""
    service = ctx.need_service()
    await _record(service, campaign_id)
    groups: dict[str, list[str]] = defaultdict(list)
    details: dict[str, dict[str, str]] = defaultdict(dict)
    for j in await service.jobs(campaign_id):
        if j.state in FAILED_STATES:
            key = j.reason or j.state
            groups[key].append(j.endpoint)
            if j.reason_detail:
                details[key][j.endpoint] = j.reason_detail
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return {
        "groups": [
            {"reason": r, "count": len(eps), "endpoints": sorted(eps), "details": details[r]}
            for r, eps in ordered
        ]
    }


@router.get(
    "/campaigns/{campaign_id}/events", response_model=models.EventPage, dependencies=[VIEWER]
)
async def campaign_events(
    ctx: Ctx,
    campaign_id: CampaignId,
    after_id: AfterId = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The campaign's event log (its jobs' events and its own), oldest first."""
    service = ctx.need_service()
    await _record(service, campaign_id)
    events = await service.events(
        campaign_id=campaign_id, after_id=after_id_of(after_id, cursor), limit=limit
    )
    return event_page(events, limit)


async def _act(ctx: ApiContext, campaign_id: str, action: str) -> dict[str, Any]:
    service = ctx.need_service()
    await _record(service, campaign_id)
    call = {
        "start": service.start_campaign,
        "cancel": service.cancel,
    }[action]
    try:
        await call(campaign_id)
    except NoDeviceMatches as exc:
        raise ApiProblem(422, f"target: {exc}", kind="validation") from None
    except CampaignError as exc:
        raise ApiProblem(409, str(exc), kind="conflict") from None
    return await campaign_json(service, await _record(service, campaign_id))


@router.post(
    "/campaigns/{campaign_id}/start", response_model=models.Campaign, dependencies=[OPERATOR]
)
async def start(ctx: Ctx, campaign_id: CampaignId) -> dict[str, Any]:
    """Start a draft campaign."""
    return await _act(ctx, campaign_id, "start")


@router.post(
    "/campaigns/{campaign_id}/pause", response_model=models.Campaign, dependencies=[OPERATOR]
)
async def pause(ctx: Ctx, campaign_id: CampaignId, principal: Operator) -> dict[str, Any]:
    """Pause a running campaign (no new starts; running jobs continue)."""
    service = ctx.need_service()
    await _record(service, campaign_id)
    try:
        await service.pause(campaign_id, by=_who(principal))
    except CampaignError as exc:
        raise ApiProblem(409, str(exc), kind="conflict") from None
    return await campaign_json(service, await _record(service, campaign_id))


@router.post(
    "/campaigns/{campaign_id}/resume", response_model=models.Campaign, dependencies=[OPERATOR]
)
async def resume(
    ctx: Ctx,
    campaign_id: CampaignId,
    principal: Operator,
    reset_errors: Annotated[
        bool,
        Query(description="Restart the error threshold's count (recorded in the event log)."),
    ] = False,
) -> dict[str, Any]:
    """Resume a paused campaign (409 while its error threshold is still crossed, unless
    ``reset_errors`` restarts the count; the event log records the reset)."""
    service = ctx.need_service()
    await _record(service, campaign_id)
    try:
        await service.resume(campaign_id, reset_errors=reset_errors, by=_who(principal))
    except CampaignError as exc:
        raise ApiProblem(409, str(exc), kind="conflict") from None
    return await campaign_json(service, await _record(service, campaign_id))


@router.post(
    "/campaigns/{campaign_id}/cancel", response_model=models.Campaign, dependencies=[OPERATOR]
)
async def cancel(ctx: Ctx, campaign_id: CampaignId) -> dict[str, Any]:
    """Cancel a campaign and its running jobs."""
    return await _act(ctx, campaign_id, "cancel")


@router.post(
    "/campaigns/{campaign_id}/retry",
    status_code=201,
    response_model=models.Campaign,
    dependencies=[OPERATOR],
)
async def retry(ctx: Ctx, campaign_id: CampaignId) -> dict[str, Any]:
    """Start a child campaign over the failed and timed-out devices; the child."""
    service = ctx.need_service()
    await _record(service, campaign_id)
    try:
        child = await service.retry_failed(campaign_id)
    except CampaignError as exc:
        raise ApiProblem(409, str(exc), kind="conflict") from None
    return await campaign_json(service, await _record(service, child))


def in_use_packages(records: list[CampaignRecord], active_jobs: list[Any]) -> set[str]:
    """Packages of unfinished campaigns and of jobs still running."""
    used = {str(r.spec.get("package_id")) for r in records if r.state not in FINISHED_CAMPAIGN}
    used.update(j.package_id for j in active_jobs if j.state not in TERMINAL_STATES)
    return used
