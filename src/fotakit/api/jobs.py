"""Job routes (``GET /jobs/{id}``, ``POST /jobs/{id}/cancel``) and the Job JSON shape.

``reason_detail`` says in words why a job failed when more is known than the reason code:
the job's own findings (e.g. "the device refused the signed fotakit package (Update Result
6); profile 'default' sets payload_form=signed ...") and the device's own words (object
33600, "the device says: health check failed: ...").

``delivery`` is what the job chose for the transfer (``pull`` or ``push``, from its
delivery plan) once it has chosen; ``node_id`` is the server process that drives it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from fotakit.api import models
from fotakit.api.auth import Role, require
from fotakit.api.common import API_PREFIX, iso
from fotakit.api.context import ApiContext, get_ctx
from fotakit.api.problems import ApiProblem, not_found
from fotakit.updates.records import JobRecord

router = APIRouter(prefix=API_PREFIX, tags=["jobs"])
Ctx = Annotated[ApiContext, Depends(get_ctx)]
JobId = Annotated[str, Path(min_length=1, max_length=64)]


def job_json(job: JobRecord) -> dict[str, Any]:
    plan = job.snapshot.get("plan") if isinstance(job.snapshot, dict) else None
    delivery = plan.get("choice") if isinstance(plan, dict) else None
    return {
        "id": job.id,
        "endpoint": job.endpoint,
        "campaign_id": job.campaign_id,
        "package_id": job.package_id,
        "state": job.state,
        "reason": job.reason,
        "reason_detail": job.reason_detail,
        "attempts": job.attempts,
        "delivery": delivery if isinstance(delivery, str) else None,
        "wave": job.wave,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "node_id": job.owner,
    }


@router.get(
    "/jobs/{job_id}", response_model=models.Job, dependencies=[Depends(require(Role.VIEWER))]
)
async def get_job(ctx: Ctx, job_id: JobId) -> dict[str, Any]:
    """One update job."""
    record = await ctx.need_service().job(job_id)
    if record is None:
        raise not_found("job", job_id)
    return job_json(record)


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=models.Job,
    dependencies=[Depends(require(Role.OPERATOR))],
)
async def cancel_job(ctx: Ctx, job_id: JobId) -> dict[str, Any]:
    """Cancel a job (409 when it has finished or another process drives it)."""
    service = ctx.need_service()
    record = await service.job(job_id)
    if record is None:
        raise not_found("job", job_id)
    if record.terminal:
        raise ApiProblem(409, f"job {job_id!r} has finished ({record.state})", kind="conflict")
    if not await service.cancel_job(job_id):
        raise ApiProblem(
            409,
            f"job {job_id!r} cannot be cancelled here (finished, or driven by another "
            "server process)",
            kind="conflict",
        )
    record = await service.job(job_id)
    assert record is not None
    return job_json(record)
