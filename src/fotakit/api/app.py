"""The FastAPI application: ``create_app(ctx)`` with the REST API under ``/api/v1``, the
firmware delivery routes ``/fw/*`` (no auth: devices fetch there), and the dashboard (``/``
and ``/ui/*``, static files, no auth for the files: the page asks for a token).

Also here: ``/api/v1/health`` (public), ``/api/v1/me`` and the token routes (admin).
The OpenAPI document is served at ``/api/v1/openapi.json`` (Swagger UI at ``/api/docs``);
each operation carries ``x-min-role`` (viewer, operator, admin) and the bearer security
requirement, and every error response is documented as a problem document. Committed as
docs/openapi.json (``python -m fotakit.api.openapi``; a test keeps them equal).
"""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Final

import fastapi_offline
from fastapi import APIRouter, Depends, FastAPI, Response
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.routing import APIRoute
from starlette.staticfiles import StaticFiles

from fotakit.api import campaigns, devices, events, jobs, models, packages, profiles
from fotakit.api.auth import Principal, Role, TokenStore, require, route_role
from fotakit.api.common import API_PREFIX
from fotakit.api.context import ApiContext, get_ctx
from fotakit.api.problems import (
    PROBLEM_JSON,
    ApiProblem,
    LimitsMiddleware,
    install_handlers,
    not_found,
)
from fotakit.api.security import DASHBOARD_POLICY, SecurityHeadersMiddleware, docs_policy

DEFAULT_DASHBOARD: Final = Path(__file__).resolve().parent.parent / "dashboard" / "static"
SWAGGER_DIR: Final = Path(fastapi_offline.__file__).resolve().parent / "static"
"""swagger-ui-dist's files as ``fastapi-offline`` ships them (pinned in pyproject.toml)."""
SWAGGER_ASSETS: Final = "/api/docs/assets"

Ctx = Annotated[ApiContext, Depends(get_ctx)]
core = APIRouter(prefix=API_PREFIX, tags=["server"])


def _tokens(ctx: ApiContext) -> TokenStore:
    if ctx.tokens is None:
        raise ApiProblem(503, "no token store configured", kind="unavailable")
    return ctx.tokens


@core.get("/health", response_model=models.Health)
async def health(ctx: Ctx) -> dict[str, Any]:
    """Liveness (no authentication)."""
    node_id = ctx.node_id
    if node_id is None and ctx.service is not None:
        try:
            node_id = ctx.service.node_id
        except RuntimeError:
            node_id = None
    return {"status": "ok", "node_id": node_id, "version": ctx.version}


@core.get("/me", response_model=models.Me)
async def me(principal: Annotated[Principal, Depends(require(Role.VIEWER))]) -> dict[str, Any]:
    """Who the token belongs to, and its role."""
    return {"name": principal.name, "role": principal.role.label}


@core.get("/tokens", response_model=models.TokenList, dependencies=[Depends(require(Role.ADMIN))])
async def list_tokens(ctx: Ctx) -> dict[str, Any]:
    """Every API token (never their secrets)."""
    infos = await asyncio.to_thread(_tokens(ctx).list)
    return {"items": [i.to_json() for i in infos]}


@core.post(
    "/tokens",
    status_code=201,
    response_model=models.TokenCreated,
    dependencies=[Depends(require(Role.ADMIN))],
)
async def create_token(ctx: Ctx, body: models.TokenCreate) -> dict[str, Any]:
    """Create a token; its secret is in this answer only."""
    try:
        info, plaintext = await asyncio.to_thread(
            functools.partial(
                _tokens(ctx).create,
                body.name,
                Role.parse(body.role),
                expires_at=body.expires_at,
                expires_in=None if body.expires_in is None else timedelta(seconds=body.expires_in),
            )
        )
    except ValueError as exc:
        raise ApiProblem(422, str(exc), kind="validation") from None
    return {**info.to_json(), "token": plaintext}


@core.delete("/tokens/{token_id}", status_code=204, dependencies=[Depends(require(Role.ADMIN))])
async def revoke_token(
    ctx: Ctx, token_id: Annotated[str, PathParam(min_length=1, max_length=64)]
) -> Response:
    """Revoke a token (at once: tokens are checked on every request)."""
    if not await asyncio.to_thread(_tokens(ctx).revoke, token_id):
        raise not_found("token", token_id)
    return Response(status_code=204)


def _dashboard(app: FastAPI, directory: Path) -> None:
    if directory.is_dir():
        app.mount("/ui", StaticFiles(directory=directory, html=True), name="ui")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        page = directory / "index.html"
        if not await asyncio.to_thread(page.is_file):
            raise ApiProblem(404, "the dashboard is not installed", kind="not-found")
        return FileResponse(page, media_type="text/html")


def _swagger_ui(app: FastAPI) -> str:
    """Swagger UI at ``/api/docs`` with its script, style sheet and icon served by this app
    (from the pinned ``fastapi-offline`` package, which ships swagger-ui-dist 5): FastAPI's
    default page loads them from a CDN, and shows nothing on a server without internet.
    Returns the page: it never changes, and its CSP allows its inline script by hash."""
    app.mount(SWAGGER_ASSETS, StaticFiles(directory=SWAGGER_DIR, check_dir=False), name="swagger")
    page = bytes(
        get_swagger_ui_html(
            openapi_url=f"{API_PREFIX}/openapi.json",
            title=f"{app.title} REST API",
            swagger_js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_ASSETS}/favicon.png",
        ).body
    ).decode()

    @app.get("/api/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page)

    return page


def create_app(ctx: ApiContext) -> FastAPI:
    """The API (and ``/fw`` delivery, and the dashboard) over ``ctx``."""
    app = FastAPI(
        title="fotakit",
        version=ctx.version,
        description="REST API of the fotakit LwM2M firmware-over-the-air server. "
        "See docs/rest-api.md.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served by _swagger_ui, from local files
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.tokens = ctx.tokens
    install_handlers(app)
    for router in (
        core,
        devices.router,
        packages.router,
        campaigns.router,
        jobs.router,
        profiles.router,
        events.router,
    ):
        # the routes themselves (not include_router's wrapper): route_role() and the
        # route-table tests inspect app.routes
        app.router.routes.extend(router.routes)
    if ctx.repository is not None:
        from fotakit.repository.http import create_http_app

        for route in create_http_app(ctx.repository).routes:
            app.router.routes.append(route)
    _dashboard(app, ctx.dashboard_dir or DEFAULT_DASHBOARD)
    docs_page = _swagger_ui(app)
    app.add_middleware(LimitsMiddleware)
    app.add_middleware(
        SecurityHeadersMiddleware,
        pages=[
            ("/", DASHBOARD_POLICY),
            ("/ui", DASHBOARD_POLICY),
            ("/ui/*", DASHBOARD_POLICY),
            ("/api/docs", docs_policy(docs_page)),
        ],
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus roles, the bearer scheme and problem responses."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = doc.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A fotakit API token (fk_...). The event stream also accepts "
        "?access_token=.",
    }
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = models.Problem.model_json_schema()
    problem = {
        "description": "A problem (RFC 9457)",
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        role = route_role(route)
        for method in route.methods or ():
            op = doc["paths"].get(route.path_format, {}).get(method.lower())
            if op is None:
                continue
            op["x-min-role"] = role.label if role is not None else None
            if role is not None:
                op["security"] = [{"bearer": []}]
            responses = op.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = problem
            responses["default"] = problem
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return doc
