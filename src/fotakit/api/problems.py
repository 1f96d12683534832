"""Errors of the REST API as ``application/problem+json`` (RFC 9457), and the limits
middleware that answers oversized headers.

Every 4xx/5xx answer of the API is a problem document ``{type, title, status, detail,
instance}`` (plus ``errors`` for validation failures), whoever produced it: a route
(:class:`ApiProblem`), FastAPI's request validation (422; malformed JSON is 400), Starlette's
routing (404 unknown route, 405 with ``Allow``), an unexpected exception (500, logged, with
no internals in the body), or :class:`LimitsMiddleware` (431 for headers beyond
:data:`MAX_HEADER_BYTES`). The ``type`` URIs are relative references under
``/problems/`` naming the kind of problem; they are stable identifiers, not pages.

Limits: the HTTP server must accept the header in the first place: uvicorn's h11 parser
refuses a request head above its ``h11_max_incomplete_event_size`` with a plain-text 400,
so :mod:`fotakit.api.server` raises that limit above :data:`MAX_HEADER_BYTES`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("fotakit.api")

PROBLEM_JSON: Final = "application/problem+json"
MAX_HEADER_BYTES: Final = 32 * 1024
"""Total size of the request head's header lines (names and values) the API accepts."""


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The problem document (a dict) for ``status``."""
    body: dict[str, Any] = {
        "type": f"/problems/{kind}" if kind else "about:blank",
        "title": title or _title(status),
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = list(errors)
    return body


def problem_response(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = problem_body(status, detail, kind=kind, title=title, instance=instance, errors=errors)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


class ApiProblem(Exception):
    """Raised by a route: answered as a problem document with ``status``."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.title = title
        self.headers = dict(headers or {})


def not_found(what: str, ident: str) -> ApiProblem:
    return ApiProblem(404, f"no {what} {ident!r}", kind="not-found")


def _json_safe(value: Any) -> Any:
    """Validation error details as JSON (FastAPI puts raw inputs and exceptions there)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _validation_errors(exc: RequestValidationError) -> tuple[int, str, list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    malformed = False
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            malformed = True
        loc = [str(part) for part in err.get("loc", ())]
        errors.append(
            {
                "field": ".".join(p for p in loc if p not in ("body", "query", "path", "header"))
                or ".".join(loc),
                "location": loc[0] if loc else None,
                "message": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    if malformed:
        ctx = exc.errors()[0].get("ctx") or {}
        reason = _json_safe(ctx.get("error", "malformed JSON"))
        return 400, f"the request body is not valid JSON: {reason}", errors
    first = errors[0] if errors else {"field": "", "message": "invalid request"}
    where = f"{first['field']}: " if first["field"] else ""
    return 422, f"{where}{first['message']}", errors


def install_handlers(app: FastAPI) -> None:
    """Make every error the app answers a problem document."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return problem_response(
            exc.status,
            exc.detail,
            kind=exc.kind,
            title=exc.title,
            instance=request.url.path,
            headers=exc.headers,
        )

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path}"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            if detail == "Method Not Allowed":
                detail = f"{request.method} is not allowed on {request.url.path}"
            allowed = _allowed_methods(request)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
        return problem_response(exc.status_code, detail, instance=request.url.path, headers=headers)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        status, detail, errors = _validation_errors(exc)
        kind = "malformed-json" if status == 400 else "validation"
        return problem_response(status, detail, kind=kind, instance=request.url.path, errors=errors)

    async def on_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(
            500, "internal error; see the server log", instance=request.url.path
        )

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_error)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path (Starlette names only the first
    matching route's, and GET and POST of one path are separate routes here)."""
    allowed: set[str] = set()
    for route in request.app.router.routes:
        methods = getattr(route, "methods", None)
        if not methods:
            continue
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            allowed.update(methods)
    return sorted(allowed)


class LimitsMiddleware:
    """Pure ASGI: 431 problem for a request whose headers exceed :data:`MAX_HEADER_BYTES`.

    (A pure ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``, which would
    buffer streamed bodies of uploads and SSE.)
    """

    def __init__(self, app: ASGIApp, max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ()))
            if size > self.max_header_bytes:
                response = problem_response(
                    431,
                    f"the request headers are {size} bytes; at most "
                    f"{self.max_header_bytes} are accepted",
                    kind="headers-too-large",
                    instance=str(scope.get("path", "")),
                    headers={"Connection": "close"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
