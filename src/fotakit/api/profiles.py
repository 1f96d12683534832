"""Device profile routes: how each device class is updated (``/profiles``); which profile
a device gets is ``/devices/{endpoint}/profile`` (:mod:`fotakit.api.devices`).

A profile is named by the device class it applies to (/3/0/1 Model Number) or
``default``; see :mod:`fotakit.updates.profiles` for the fields and how a device's profile
is chosen. Changes apply to jobs started afterwards (a running job keeps the form and
protocols it started with). Reading needs a viewer token, writing an operator token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from fotakit.api import models
from fotakit.api.auth import Role, require
from fotakit.api.common import API_PREFIX
from fotakit.api.context import ApiContext, get_ctx
from fotakit.api.problems import ApiProblem, not_found
from fotakit.updates.profiles import DEFAULT_PROFILE, DeviceProfile, ProfileError

router = APIRouter(prefix=API_PREFIX, tags=["profiles"])
Ctx = Annotated[ApiContext, Depends(get_ctx)]
ProfileName = Annotated[
    str, Path(min_length=1, max_length=128, description="a device class, or 'default'")
]
VIEWER = Depends(require(Role.VIEWER))
OPERATOR = Depends(require(Role.OPERATOR))


def profile_json(profile: DeviceProfile, *, stored: bool = True) -> dict[str, Any]:
    return {**profile.to_json(), "stored": stored}


@router.get("/profiles", response_model=models.ProfileList, dependencies=[VIEWER])
async def list_profiles(ctx: Ctx) -> dict[str, Any]:
    """Every stored profile, and the built-in default while no ``default`` is stored."""
    service = ctx.need_service()
    profiles = await service.profiles()
    items = [profile_json(p) for _, p in sorted(profiles.items())]
    if DEFAULT_PROFILE not in profiles:
        items.insert(0, profile_json(service.builtin_profile(), stored=False))
    return {"items": items}


@router.get("/profiles/{name}", response_model=models.Profile, dependencies=[VIEWER])
async def get_profile(ctx: Ctx, name: ProfileName) -> dict[str, Any]:
    """One profile (``default`` is always there: stored or built in)."""
    service = ctx.need_service()
    profiles = await service.profiles()
    if name in profiles:
        return profile_json(profiles[name])
    if name == DEFAULT_PROFILE:
        return profile_json(service.builtin_profile(), stored=False)
    raise not_found("profile", name)


@router.put(
    "/profiles/{name}",
    response_model=models.Profile,
    responses={201: {"model": models.Profile, "description": "Created"}},
    dependencies=[OPERATOR],
)
async def put_profile(
    ctx: Ctx, name: ProfileName, body: models.ProfileBody, response: Response
) -> dict[str, Any]:
    """Create or replace the profile of a device class (or ``default``): 201 when new."""
    raw = body.model_dump()
    raw["timeouts"] = {k: v for k, v in raw["timeouts"].items() if v is not None}
    try:
        profile = DeviceProfile.from_json(raw, name=name)
    except ProfileError as exc:
        raise ApiProblem(422, str(exc), kind="invalid-profile") from exc
    if await ctx.need_service().put_profile(profile):
        response.status_code = 201
    return profile_json(profile)


@router.delete("/profiles/{name}", status_code=204, dependencies=[OPERATOR])
async def delete_profile(ctx: Ctx, name: ProfileName) -> Response:
    """Remove a profile; its devices fall back to ``default`` (the built-in one when the
    stored ``default`` is removed)."""
    if not await ctx.need_service().delete_profile(name):
        raise not_found("profile", name)
    return Response(status_code=204)
