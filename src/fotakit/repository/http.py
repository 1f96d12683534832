"""HTTP delivery of stored packages: ``GET``/``HEAD /fw/<id>`` and ``/fw/<id>/payload``.

Implements the conditional and range requests of RFC 9110 for these immutable files:

* ``ETag`` (strong, quoted: the first 8 bytes of the representation's SHA-256 in hex),
  ``Last-Modified`` (the upload time), ``Accept-Ranges: bytes``.
* ``If-None-Match`` (weak comparison, §13.1.2) answers 304 Not Modified.
* ``Range`` (§14.2): single ranges, suffix ranges (``-500``), open ranges (``100-``) answer
  206 with ``Content-Range``; several ranges answer 206 ``multipart/byteranges``
  (§14.6); a range set none of whose ranges is satisfiable answers 416 with
  ``Content-Range: bytes */<size>`` (§15.5.17). A syntactically invalid Range is ignored
  (§14.2 allows it): 200 with the full body. Positions of any length are accepted; one
  longer than :data:`_MAX_DIGITS` digits lies past the end of any representation.
* Overlapping and adjacent ranges are coalesced (§15.3.7.2 allows it), so a request can
  never make the server send a byte twice; a request of more than :data:`MAX_RANGE_SPECS`
  range-specs, or of more than :data:`MAX_RANGES` ranges after coalescing, is ignored
  (§14.2: a server MAY ignore a range-set of many ranges): 200 with the full body.
* ``If-Range`` (§13.1.5): with an entity tag, strong comparison; with a date, an exact
  match of ``Last-Modified``. A mismatch ignores Range: 200 with the full body.
* Errors are ``application/problem+json`` (RFC 9457).

The payload form is streamed straight from its offset inside the package file, in chunks
of :data:`CHUNK` bytes, so memory per download is one chunk whatever the package size.
A download counts as completed when a response that ends at the representation's last
byte has been sent in full (a whole 200 body, or the last part of a resumed download).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Final

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from fotakit.repository.head_timeout import HEAD_TIMEOUT, head_timeout_protocol
from fotakit.repository.records import Form, PackageRecord
from fotakit.repository.repository import Repository

log = logging.getLogger("fotakit.repository.http")

CHUNK: Final = 1 << 16
MAX_RANGES: Final = 8
"""Most distinct ranges (after coalescing) one response serves; more: the whole body."""
MAX_RANGE_SPECS: Final = 64
"""Most range-specs parsed in one Range value; more: ignored without parsing them."""
_MAX_DIGITS: Final = 18
"""A position longer than this (leading zeros aside) exceeds any file: never int() it."""
# RFC 9110 §14.1.1/§5.6.3: DIGIT and OWS are ASCII (``\d`` and ``\s`` would accept Unicode).
_RANGE_SPEC = re.compile(r"[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*")


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str, **headers: str) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers
        super().__init__(detail)

    def response(self) -> JSONResponse:
        body = {"type": "about:blank", "title": self.title, "status": self.status}
        body["detail"] = self.detail
        return JSONResponse(
            body,
            status_code=self.status,
            headers=self.headers,
            media_type="application/problem+json",
        )


@dataclass(frozen=True, slots=True)
class ByteRange:
    first: int
    last: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def _position(text: str) -> int:
    """A byte position; one too long for any file is 10**18 (past the end of every file)."""
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS


def _coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    """Overlapping or adjacent ranges merged; the merged ranges keep the request's order.

    RFC 9110 §15.3.7.2: a server MAY coalesce ranges that overlap, regardless of their
    order in the request. Each merged range takes the place of its earliest member.
    """
    order = sorted(range(len(ranges)), key=lambda i: (ranges[i].first, ranges[i].last))
    groups: list[tuple[int, ByteRange]] = []  # (earliest request index, merged range)
    for i in order:
        r = ranges[i]
        if groups and r.first <= groups[-1][1].last + 1:
            index, merged = groups[-1]
            groups[-1] = (min(index, i), ByteRange(merged.first, max(merged.last, r.last)))
        else:
            groups.append((i, r))
    return [r for _, r in sorted(groups, key=lambda g: g[0])]


def parse_range(header: str, size: int) -> list[ByteRange] | None:
    """The satisfiable ranges of a ``Range`` value, coalesced; None if it is to be ignored.

    Raises :class:`Problem` 416 when the syntax is valid but no range is satisfiable.
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        return None
    if spec.count(",") >= MAX_RANGE_SPECS:
        return None
    # RFC 9110 §5.6.1: a recipient accepts and ignores empty list elements ("0-9, ,20-29").
    parts = [part for part in spec.split(",") if part.strip(" \t")]
    if not parts:
        return None
    ranges: list[ByteRange] = []
    for part in parts:
        match = _RANGE_SPEC.fullmatch(part)
        if match is None:
            return None
        first_text, last_text = match.groups()
        if first_text:
            first = _position(first_text)
            last = _position(last_text) if last_text else size - 1
            if last_text and last < first:
                return None  # invalid range-spec: the whole header is ignored
            if first < size:
                ranges.append(ByteRange(first, min(last, size - 1)))
        elif last_text:
            suffix = _position(last_text)
            if suffix > 0 and size > 0:
                ranges.append(ByteRange(max(0, size - suffix), size - 1))
        else:
            return None
    if not ranges:
        raise Problem(
            416,
            "Range Not Satisfiable",
            f"no range of {header!r} lies within the {size} bytes of this representation",
            **{"Content-Range": f"bytes */{size}"},
        )
    ranges = _coalesce(ranges)
    if len(ranges) > MAX_RANGES:
        return None
    return ranges


def _etag_header(record: PackageRecord, form: Form) -> str:
    return f'"{record.etag(form).hex()}"'


def _tags(header: str) -> list[tuple[bool, str]]:
    """(weak, opaque-tag) pairs of an If-None-Match / If-Range list."""
    tags = []
    for item in header.split(","):
        item = item.strip()
        weak = item.startswith("W/")
        tags.append((weak, item[2:] if weak else item))
    return tags


def _none_match(header: str, etag: str) -> bool:
    """RFC 9110 §13.1.2: true when the condition *fails* (a tag matches, weakly)."""
    if header.strip() == "*":
        return True
    return any(tag == etag for _, tag in _tags(header))


def _if_range_holds(header: str, etag: str, last_modified: str) -> bool:
    value = header.strip()
    if value.startswith('"') or value.startswith("W/"):
        weak, tag = _tags(value)[0]
        return not weak and tag == etag
    try:
        return bool(parsedate_to_datetime(value) == parsedate_to_datetime(last_modified))
    except (TypeError, ValueError):
        return False


class _Delivery:
    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self._flushes: set[asyncio.Task[None]] = set()

    async def resolve(self, package_id: str, form: Form) -> PackageRecord:
        record = self.repository.cached(package_id)
        if record is None:
            record = await asyncio.to_thread(self.repository.lookup, package_id)
        if record is None:
            raise Problem(404, "Not Found", f"no package with id {package_id!r}")
        return record

    async def endpoint(self, request: Request) -> Response:
        try:
            return await self._serve(request)
        except Problem as problem:
            return problem.response()

    async def _serve(self, request: Request) -> Response:
        package_id = request.path_params["package_id"]
        form = Form.PAYLOAD if request.url.path.endswith("/payload") else Form.PACKAGE
        if request.method not in ("GET", "HEAD"):
            raise Problem(
                405, "Method Not Allowed", f"{request.method} is not allowed", Allow="GET, HEAD"
            )
        record = await self.resolve(package_id, form)
        base, size = record.span(form)
        etag = _etag_header(record, form)
        last_modified = format_datetime(record.uploaded_at, usegmt=True)
        headers = {
            "ETag": etag,
            "Last-Modified": last_modified,
            "Accept-Ranges": "bytes",
            "Cache-Control": "public, max-age=31536000, immutable",
        }
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None and _none_match(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        ranges: list[ByteRange] | None = None
        range_header = request.headers.get("range")
        if range_header is not None:
            if_range = request.headers.get("if-range")
            if if_range is None or _if_range_holds(if_range, etag, last_modified):
                ranges = parse_range(range_header, size)
        head = request.method == "HEAD"
        path = self.repository.blob_path(record)
        if not path.exists():
            raise Problem(404, "Not Found", f"package {package_id!r} was deleted")
        if ranges is None:
            headers["Content-Length"] = str(size)
            body = None if head else self._stream(record, path, [(base, size)], size, size - 1)
            return self._response(200, headers, "application/octet-stream", body)
        if len(ranges) == 1:
            (only,) = ranges
            headers["Content-Range"] = f"bytes {only.first}-{only.last}/{size}"
            headers["Content-Length"] = str(only.length)
            pieces: list[Any] = [(base + only.first, only.length)]
            body = None if head else self._stream(record, path, pieces, size, only.last)
            return self._response(206, headers, "application/octet-stream", body)
        return self._multipart(record, path, base, size, ranges, headers, head)

    def _multipart(
        self,
        record: PackageRecord,
        path: os.PathLike[str],
        base: int,
        size: int,
        ranges: list[ByteRange],
        headers: dict[str, str],
        head: bool,
    ) -> Response:
        boundary = secrets.token_hex(12)
        pieces: list[bytes | tuple[int, int]] = []
        for r in ranges:
            pieces.append(
                (
                    f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                    f"Content-Range: bytes {r.first}-{r.last}/{size}\r\n\r\n"
                ).encode()
            )
            pieces.append((base + r.first, r.length))
        pieces.append(f"\r\n--{boundary}--\r\n".encode())
        length = sum(len(p) if isinstance(p, bytes) else p[1] for p in pieces)
        headers["Content-Length"] = str(length)
        media = f"multipart/byteranges; boundary={boundary}"
        last = max(r.last for r in ranges)
        body = None if head else self._stream(record, path, pieces, size, last)
        return self._response(206, headers, media, body)

    def _response(
        self,
        status: int,
        headers: dict[str, str],
        media_type: str,
        body: AsyncIterator[bytes] | None,
    ) -> Response:
        if body is None:  # HEAD: the headers a GET would get (RFC 9110 §9.3.2)
            return Response(status_code=status, headers=headers, media_type=media_type)
        return StreamingResponse(body, status_code=status, headers=headers, media_type=media_type)

    async def _stream(
        self,
        record: PackageRecord,
        path: os.PathLike[str],
        pieces: list[Any],
        size: int,
        last_byte: int,
    ) -> AsyncIterator[bytes]:
        served = 0
        fd = os.open(path, os.O_RDONLY)
        try:
            for piece in pieces:
                if isinstance(piece, bytes):
                    yield piece
                    continue
                offset, remaining = piece
                for _ in range(remaining // CHUNK + 1):
                    if remaining <= 0:
                        break
                    data = await asyncio.to_thread(os.pread, fd, min(CHUNK, remaining), offset)
                    if not data:
                        raise OSError(f"package file of {record.id} is shorter than recorded")
                    offset += len(data)
                    remaining -= len(data)
                    served += len(data)
                    yield data
        finally:
            os.close(fd)
            # A client that hangs up mid-body still had these bytes sent.
            completed = served > 0 and last_byte == size - 1 and _all_sent(pieces, served)
            self._count(record.id, served, completed)

    def _count(self, package_id: str, served: int, completed: bool) -> None:
        if not served:
            return
        self.repository.count(package_id, nbytes=served, completed=completed)
        if completed:
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self.repository.flush_counters)
            )
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)


def _all_sent(pieces: list[Any], served: int) -> bool:
    expected: int = sum(p[1] for p in pieces if not isinstance(p, bytes))
    return served == expected


def create_http_app(repository: Repository) -> Starlette:
    """The Starlette app serving ``/fw/<id>`` and ``/fw/<id>/payload`` from ``repository``."""
    delivery = _Delivery(repository)
    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
    routes = [
        Route("/fw/{package_id}", delivery.endpoint, methods=methods),
        Route("/fw/{package_id}/payload", delivery.endpoint, methods=methods),
    ]
    return Starlette(routes=routes)


class HttpServer:
    """A uvicorn server running on the current event loop (no signal handlers of its own).

    A client has ``head_timeout`` seconds to send each request head, else its connection
    is closed (:mod:`fotakit.repository.head_timeout`).
    """

    def __init__(
        self, app: Any, host: str, port: int, *, head_timeout: float = HEAD_TIMEOUT
    ) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=head_timeout_protocol(head_timeout),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        config.load()
        self._server = uvicorn.Server(config)
        self._main: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> None:
        server = self._server
        server.lifespan = server.config.lifespan_class(server.config)
        try:
            await server.startup()
        except SystemExit:  # uvicorn's answer to a failed bind; it has logged the cause
            server.started = False
        if not server.started:
            raise OSError(f"cannot serve HTTP on {server.config.host}:{server.config.port}")
        sockname = server.servers[0].sockets[0].getsockname()
        self.port = int(sockname[1])
        self._main = asyncio.get_running_loop().create_task(server.main_loop())

    async def stop(self) -> None:
        if self._main is None:
            return
        self._server.should_exit = True
        await self._main
        self._main = None
        await self._server.shutdown()


async def serve_http(
    app: Any, host: str, port: int, *, head_timeout: float = HEAD_TIMEOUT
) -> HttpServer:
    """Start serving ``app`` over HTTP on ``host:port`` (0: any free port); ``await stop()``.

    ``head_timeout``: seconds a client has to send a request head before it is closed."""
    server = HttpServer(app, host, port, head_timeout=head_timeout)
    await server.start()
    log.info("HTTP delivery listening on %s:%d", host, server.port)
    return server
