"""A small typed client of the REST API (``/api/v1``) for the ``devices`` and ``campaign``
commands, over httpx.

Every failure becomes a :class:`CliError` carrying what the operator must see in one line:
the problem+json ``detail`` (with the status and title) for an HTTP error, the URL for a
connection that could not be made, the bound for a timeout. :func:`fail` prints it in red
and gives the exit status (1 for an API or network error, 2 for bad usage).

:class:`RemoteClient` is synchronous (one request per command); :class:`AsyncRemoteClient`
is for ``campaign watch``, which follows the server-sent event stream
(:meth:`AsyncRemoteClient.stream_events`) while it polls progress. Both speak the same
JSON (see docs/rest-api.md, docs/openapi.json) and return plain dicts: the CLI only shows
what the server says, it keeps no model of its own.

Limits: no retries (a script that wants them loops itself); the SSE parser reads the
``event``/``data`` fields only (no ``id``/``retry``, no reconnection: the watcher falls
back to polling when the stream ends).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.markup import escape

__all__ = [
    "DEFAULT_URL",
    "AsyncRemoteClient",
    "CliError",
    "RemoteClient",
    "ServerEvent",
    "TimeoutOption",
    "TokenOption",
    "UrlOption",
    "fail",
    "lwm2m_path",
    "parse_sse",
    "seg",
]

DEFAULT_URL: Final = "http://127.0.0.1:8080"
API: Final = "/api/v1"
PROBLEM_JSON: Final = "application/problem+json"

err_console = Console(stderr=True)

UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        help="The fotakit server's HTTP address (its REST API).",
        envvar="FOTAKIT_URL",
        show_default=True,
        rich_help_panel="Server",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="API bearer token (fk_…); `fotakit server` prints the admin one at first start.",
        envvar="FOTAKIT_TOKEN",
        show_default=False,
        rich_help_panel="Server",
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout", help="Seconds to wait for each answer.", min=0.1, rich_help_panel="Server"
    ),
]


class CliError(Exception):
    """What went wrong, in one line; ``exit_code`` 1 (API/network) or 2 (usage)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        exit_code: int = 1,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.exit_code = exit_code
        self.problem = dict(problem) if problem is not None else None


def fail(exc: CliError) -> typer.Exit:
    """Print ``exc`` as one red line on stderr; the :class:`typer.Exit` to raise."""
    err_console.print(f"[red]error:[/red] {escape(exc.message)}", highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)


JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]


def open_client(url: str, token: str | None, timeout: float) -> RemoteClient:
    """A :class:`RemoteClient` for a command; a bad URL or token ends the command."""
    try:
        return RemoteClient(url, token, timeout=timeout)
    except CliError as exc:
        raise fail(exc) from None


def print_json(value: Any) -> None:
    """The API's JSON on stdout, for ``--json``."""
    typer.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def _problem_message(response: httpx.Response, body: Any) -> str:
    status = response.status_code
    if isinstance(body, Mapping):
        title = str(body.get("title") or response.reason_phrase)
        detail = body.get("detail")
        text = f"{status} {title}"
        if detail:
            text += f": {detail}"
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            first = errors[0]
            if isinstance(first, Mapping):
                where = first.get("loc") or first.get("field") or first.get("pointer")
                if isinstance(where, list):
                    where = ".".join(str(p) for p in where)
                what = first.get("msg") or first.get("message") or first.get("detail")
                if where or what:
                    text += f" ({where}: {what})" if where else f" ({what})"
        return text
    snippet = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    return f"{status} {response.reason_phrase}" + (f": {snippet}" if snippet else "")


def _decode(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer (None for an empty one); CliError for anything else."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    body: Any = None
    if response.content and content_type in ("application/json", PROBLEM_JSON):
        try:
            body = response.json()
        except ValueError:
            raise CliError(
                f"{response.url}: answered {response.status_code} with invalid JSON",
                status=response.status_code,
            ) from None
    if response.is_success:
        if response.content and body is None:
            raise CliError(
                f"{response.url}: expected JSON, got {content_type or 'no content type'} "
                "(is --url a fotakit server?)",
                status=response.status_code,
            )
        return body
    message = _problem_message(response, body)
    if response.status_code == 401:
        message += " (give a valid token: --token or FOTAKIT_TOKEN)"
    problem = body if isinstance(body, Mapping) else None
    raise CliError(message, status=response.status_code, problem=problem)


def _transport_error(base: str, exc: httpx.HTTPError, timeout: float) -> CliError:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        reason = str(exc) or type(exc).__name__
        return CliError(f"cannot connect to {base}: {reason} (is `fotakit server` running?)")
    if isinstance(exc, httpx.TimeoutException):
        return CliError(f"{base} did not answer within {timeout:g} s")
    return CliError(f"{base}: {type(exc).__name__}: {exc}")


def _base(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise CliError(f"--url must start with http:// or https://, got {url!r}", exit_code=2)
    return url


def _headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": f"application/json, {PROBLEM_JSON}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def seg(value: str) -> str:
    """One path segment, percent-encoded (endpoints may hold any character)."""
    return quote(value, safe="")


_LWM2M_PATH: Final = re.compile(r"/?([0-9]{1,5}(?:/[0-9]{1,5}){0,3})/?")


def lwm2m_path(path: str) -> str:
    """An LwM2M path as the routes take it (``3/0/3``), checked: 1-4 decimal segments of
    0..65535, one optional leading and trailing slash (``/5/0/``)."""
    match = _LWM2M_PATH.fullmatch(path.strip())
    if match is None:
        raise CliError(f"{path!r} is not an LwM2M path (like 3/0/3, /5/0 or 4)", exit_code=2)
    parts = [int(p) for p in match.group(1).split("/")]
    if any(p > 65535 for p in parts):
        raise CliError(f"{path!r}: each segment must be 0..65535", exit_code=2)
    return "/".join(str(p) for p in parts)


class RemoteClient:
    """Blocking calls to one server's REST API; use as a context manager."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = _base(url)
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.url + API,
            headers=_headers(token),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        clean = None
        if params is not None:
            clean = {k: v for k, v in params.items() if v is not None}
        try:
            response = self._http.request(
                method, path, params=clean, json=body if body is not None else None
            )
        except httpx.HTTPError as exc:
            raise _transport_error(self.url, exc, self.timeout) from None
        return _decode(response)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def paged(self, path: str, *, limit: int | None, **params: Any) -> Iterator[dict[str, Any]]:
        """Items of a paged list, following ``next_cursor`` until ``limit`` items (None:
        all of them)."""
        cursor: str | None = None
        cursors: set[str] = set()
        seen = 0
        for _ in range(100_000):  # bounded
            page_size = 1000 if limit is None else max(1, min(1000, limit - seen))
            page = self.get(path, limit=page_size, cursor=cursor, **params)
            items = page.get("items", []) if isinstance(page, Mapping) else []
            for item in items:
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            cursor = page.get("next_cursor") if isinstance(page, Mapping) else None
            if not cursor or not items:
                return
            if cursor in cursors:
                raise CliError(f"{self.url}{API}{path}: the server repeated a paging cursor")
            cursors.add(cursor)

    # -- the routes the CLI uses -----------------------------------------------------------

    def me(self) -> dict[str, Any]:
        out: dict[str, Any] = self.get("/me")
        return out

    def fleet(self) -> dict[str, Any]:
        out: dict[str, Any] = self.get("/fleet")
        return out

    def device(self, endpoint: str) -> dict[str, Any]:
        out: dict[str, Any] = self.get(f"/devices/{seg(endpoint)}")
        return out

    def firmware(self, endpoint: str) -> dict[str, Any]:
        out: dict[str, Any] = self.get(f"/devices/{seg(endpoint)}/firmware")
        return out

    def read(self, endpoint: str, path: str) -> dict[str, Any]:
        out: dict[str, Any] = self.get(f"/devices/{seg(endpoint)}/resources/{lwm2m_path(path)}")
        return out

    def write(self, endpoint: str, path: str, value: Any) -> None:
        self.request(
            "PUT", f"/devices/{seg(endpoint)}/resources/{lwm2m_path(path)}", body={"value": value}
        )

    def execute(self, endpoint: str, path: str, args: str | None) -> None:
        self.request(
            "POST", f"/devices/{seg(endpoint)}/execute/{lwm2m_path(path)}", body={"args": args}
        )

    def campaign(self, campaign_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self.get(f"/campaigns/{seg(campaign_id)}")
        return out

    def create_campaign(self, spec: Mapping[str, Any], *, start: bool) -> dict[str, Any]:
        out: dict[str, Any] = self.request("POST", "/campaigns", body={**spec, "start": start})
        return out

    def campaign_action(
        self, campaign_id: str, action: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        out: dict[str, Any] = self.request(
            "POST", f"/campaigns/{seg(campaign_id)}/{action}", params=params
        )
        return out

    def failures(self, campaign_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self.get(f"/campaigns/{seg(campaign_id)}/failures")
        return out


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One server-sent event: its ``event`` name and its ``data`` parsed as JSON."""

    event: str
    data: Any


def parse_sse(lines: Iterator[str]) -> Iterator[ServerEvent]:
    """Server-sent events from text lines (comments and pings skipped; a ``data`` that is
    not JSON is kept as the raw string)."""
    event = "message"
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                text = "\n".join(data)
                try:
                    value: Any = json.loads(text)
                except ValueError:
                    value = text
                yield ServerEvent(event, value)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value_text = line.partition(":")
        value_text = value_text.removeprefix(" ")
        if name == "event":
            event = value_text or "message"
        elif name == "data":
            data.append(value_text)


class AsyncRemoteClient:
    """The calls ``campaign watch`` makes, without blocking its display loop."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = _base(url)
        self.timeout = timeout
        self._token = token
        self._http = httpx.AsyncClient(
            base_url=self.url + API,
            headers=_headers(token),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncRemoteClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._http.aclose()

    async def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        try:
            response = await self._http.get(path, params=clean)
        except httpx.HTTPError as exc:
            raise _transport_error(self.url, exc, self.timeout) from None
        return _decode(response)

    async def stream_events(self, **filters: str) -> AsyncIterator[ServerEvent]:
        """The SSE stream ``/events/stream`` (filters: ``campaign_id``, ``endpoint``).

        Ends when the server closes it; raises :class:`CliError` when it cannot be opened.
        No read timeout: the server pings every 15 s, and the caller cancels.
        """
        timeout = httpx.Timeout(self.timeout, read=None)
        params = {k: v for k, v in filters.items() if v}
        try:
            async with self._http.stream(
                "GET",
                "/events/stream",
                params=params,
                headers={"Accept": "text/event-stream"},
                timeout=timeout,
            ) as response:
                if not response.is_success:
                    await response.aread()
                    _decode(response)
                buffered: list[str] = []
                async for line in response.aiter_lines():
                    buffered.append(line)
                    if line == "":
                        for ev in parse_sse(iter(buffered)):
                            yield ev
                        buffered.clear()
        except httpx.HTTPError as exc:
            raise _transport_error(self.url, exc, self.timeout) from None
