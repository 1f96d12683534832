"""Pull delivery: fetch the Package URI (/5/0/1) over CoAP or HTTP(S), resumably.

LwM2M 1.1 §E.6 (Firmware Update, pull mode): the client downloads the package from the
URI the server wrote, reports State 1 (Downloading) meanwhile, and on failure goes back
to Idle with an Update Result: 2 not enough storage, 4 connection lost, 7 invalid URI,
9 unsupported protocol. This module is the download itself; Object 5 and the runtime
decide what to do with the outcome.

* ``coap://`` — RFC 7959 Block2, one block at a time (NSTART = 1): the downloader picks
  every block number and size itself, so it can resume at any block boundary and give
  every request its own retransmission timers (:mod:`fotakit.agent.cocoa`). aiocoap does
  the messaging — CON, retransmission with the same message ID, deduplication.
  Every response's ETag (RFC 7252 §5.10.6) must match the first one's: a changed ETag
  means the resource changed under us and the download restarts from zero. Size2
  (RFC 7959 §4) is checked against ``max_size`` before anything is stored.
* ``http://``, ``https://`` — httpx, streamed: ``Range: bytes=<offset>-`` with
  ``If-Range: <strong ETag>`` (RFC 9110 §14.2, §13.1.5). 206 continues at the offset;
  200 means the server ignored the range or the representation changed: restart from 0;
  416 means the offset is past the end (a changed, shorter representation): restart.
  Every restart from zero, of either protocol, counts against :data:`MAX_RESTARTS`; past
  it the download fails with result 4 (a Content-Length beyond ``max_size`` gives 2 at
  once).
* ``coaps://`` and CoAP over TCP/TLS: result 9 until fotakit has DTLS/TCP. Any other
  scheme: 9. A URI that does not parse, has no host, or is longer than the resource's
  255 bytes: 7.
* 4.04 Not Found / HTTP 404 (and HTTP 410 Gone): result 7 — the URI names
  nothing, so it is the URI that is wrong, not the link. Anjay's firmware-update module
  maps 4.04 and 404 to Invalid URI the same way (``anjay_fw_update.c``); other error
  responses give 4 without retrying, as there (a 4.xx will not change on a retry).
  Server errors (5.xx, 5xx) and transport failures are retried.

**Retries.** A failed attempt (retransmissions exhausted, connection refused or reset,
5.xx) is retried after an exponential backoff with jitter, from the current offset — not
from zero. The budget counts consecutive failures *without progress*: at most
``retries`` of them and at most :attr:`Backoff.max_stall` seconds since the last byte
arrived; then :class:`DownloadError` with result 4 carries the progress so far, which
the runtime persists for a later resume.

**Progress.** ``on_progress`` is called with a :class:`DownloadProgress` (URI, offset,
ETag, total) after every block / chunk written — or only every
``progress_interval_bytes`` bytes — and once at the end; the runtime persists it so a
restarted agent resumes. The image never sits whole in memory: blocks go to the sink as
they arrive.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import aiocoap
import aiocoap.error
import aiocoap.resource
import httpx
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from fotakit.agent.cocoa import CocoaConfig, CocoaEstimator
from fotakit.coap import TransportParams, create_endpoint
from fotakit.lwm2m.objects import UpdateProtocol, UpdateResult

log = logging.getLogger("fotakit.agent.download")

MAX_URI_BYTES: Final = 255
"""/5/0/1 Package URI is a String of 0..255 bytes (LwM2M 1.1 Appendix E.6)."""
SUPPORTED: Final = (UpdateProtocol.COAP, UpdateProtocol.HTTP, UpdateProtocol.HTTPS)
MAX_ATTEMPTS: Final = 100_000
"""Hard bound on attempts of one download (each failure without progress also counts
against ``retries``; this only guards against a server that answers garbage forever)."""
MAX_RESTARTS: Final = 8
"""Restarts from zero (changed ETag, 200 instead of 206, 416) before giving up with 4."""
HTTP_CHUNK: Final = 1 << 16
_CONTENT_RANGE: Final = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_NOT_FOUND_HTTP: Final = (404, 410)
_NOT_FOUND_COAP: Final = (Code.NOT_FOUND,)


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """Where a download stands: enough to resume it after a restart."""

    uri: str
    offset: int
    """Bytes of the representation written to the sink, from its start."""
    etag: bytes | None
    """The representation's ETag (CoAP: the option's bytes; HTTP: the header value,
    quotes included, as ASCII). None when the server sent none."""
    total: int | None
    """The representation's size (Size2 / Content-Length / Content-Range), if known."""

    def to_json(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "offset": self.offset,
            "etag": None if self.etag is None else self.etag.hex(),
            "total": self.total,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DownloadProgress:
        etag = data.get("etag")
        total = data.get("total")
        return cls(
            uri=str(data["uri"]),
            offset=int(data["offset"]),
            etag=None if etag is None else bytes.fromhex(etag),
            total=None if total is None else int(total),
        )


class DownloadSink(Protocol):
    """Where the image goes (the inactive slot, a file)."""

    def write(self, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset`` (the downloader writes sequentially)."""

    def truncate(self, size: int) -> None:
        """Drop everything from ``size`` on (0: restart from scratch)."""


class DownloadError(Exception):
    """The download failed with an Object 5 Update Result; ``progress`` is where it stood."""

    def __init__(
        self, result: UpdateResult, message: str, progress: DownloadProgress | None = None
    ) -> None:
        super().__init__(message)
        self.result = result
        self.progress = progress


class _Retry(Exception):
    """One attempt failed in a way a later attempt may not (link down, server error)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between attempts: ``initial x factor^(n-1)``, capped, with jitter."""

    initial: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.5
    """Fraction of each delay that is random: the delay is uniform in
    ``[d x (1 - jitter), d]`` so that devices that lost the link together do not all
    come back in the same instant."""
    max_stall: float = 600.0
    """Give up (result 4) when no byte has arrived for this many seconds."""

    def __post_init__(self) -> None:
        if self.initial < 0 or self.factor < 1 or self.max_delay < 0 or self.max_stall < 0:
            raise ValueError("invalid backoff parameters")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be in [0, 1]")

    def delay(self, failures: int, rng: random.Random) -> float:
        """The pause after the ``failures``-th consecutive failure (1-based)."""
        base = min(self.max_delay, self.initial * self.factor ** max(0, failures - 1))
        return base * (1 - self.jitter * rng.random())


@dataclass(slots=True)
class DownloadStats:
    """What the last :meth:`Downloader.download` did (for tests, benchmarks, logs)."""

    resumed_from: int = 0
    """Offset the transfer really started at (after rounding to a block boundary)."""
    bytes_received: int = 0
    """Payload bytes received and written, counting any fetched twice."""
    requests: int = 0
    """CoAP block requests or HTTP requests sent (not counting retransmissions)."""
    retransmissions: int = 0
    """CoAP retransmissions aiocoap sent (inferred from timing, see cocoa.py)."""
    attempts: int = 0
    """Attempts: 1 + retries after failures."""
    restarts: int = 0
    """Restarts from zero: changed ETag, range ignored, range not satisfiable."""
    elapsed: float = 0.0
    rto_trace: list[float] = field(default_factory=list)
    """The RTO of each CoAP request (adaptive mode), for the benchmark."""


class _Restart(Exception):
    """The representation changed or the server ignored the range: start again at 0."""


class Downloader:
    """Downloads Package URIs into a :class:`DownloadSink`; see the module doc.

    ``transport``: the fixed CoAP timers used when ``adaptive`` is False (RFC 7252
    defaults otherwise), and ``request_timeout`` bounds one HTTP request's idle time.
    ``adaptive``: per-request timers from a CoCoA RTT estimator (``cocoa`` configures
    it). ``block_size``: the Block2 size asked for (16..1024, a power of two).
    ``max_size``: the largest image that fits (result 2 beyond). ``retries`` and
    ``backoff``: the retry budget. ``local_host``: the address requests leave from
    (None: any — what a device reaching a remote repository needs; the default keeps
    tests and benchmarks on loopback).
    ``verify``: TLS verification for https (httpx's ``verify``).
    """

    def __init__(
        self,
        *,
        transport: TransportParams | None = None,
        adaptive: bool = True,
        block_size: int = 1024,
        max_size: int | None = None,
        retries: int = 8,
        backoff: Backoff | None = None,
        local_host: str | None = "127.0.0.1",
        on_progress: Callable[[DownloadProgress], None] | None = None,
        progress_interval_bytes: int = 0,
        cocoa: CocoaConfig | None = None,
        verify: ssl.SSLContext | str | bool = True,
        seed: int | None = None,
    ) -> None:
        if block_size not in {1 << (szx + 4) for szx in range(7)}:
            raise ValueError("block_size must be a power of two from 16 to 1024")
        if retries < 0 or progress_interval_bytes < 0:
            raise ValueError("retries and progress_interval_bytes must not be negative")
        self.transport = transport or TransportParams()
        self.adaptive = adaptive
        self.block_size = block_size
        self.max_size = max_size
        self.retries = retries
        self.backoff = backoff or Backoff()
        self.local_host = local_host
        self.on_progress = on_progress
        self.progress_interval_bytes = progress_interval_bytes
        self.verify = verify
        self.estimator = CocoaEstimator(cocoa)
        self.stats = DownloadStats()
        self._rng = random.Random(seed)
        self._ctx: aiocoap.Context | None = None
        self._http: httpx.AsyncClient | None = None
        self._reported = 0

    # -- URIs ------------------------------------------------------------------------------

    @staticmethod
    def check_uri(uri: str) -> UpdateProtocol:
        """The protocol of a Package URI we can download; DownloadError 7 or 9 otherwise."""
        if len(uri.encode("utf-8", "surrogatepass")) > MAX_URI_BYTES:
            raise DownloadError(UpdateResult.INVALID_URI, f"URI longer than {MAX_URI_BYTES} bytes")
        if not uri or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in uri):
            raise DownloadError(UpdateResult.INVALID_URI, f"malformed URI {uri!r}")
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError as exc:
            raise DownloadError(UpdateResult.INVALID_URI, f"malformed URI {uri!r}: {exc}") from None
        if not parts.scheme or "://" not in uri:
            raise DownloadError(UpdateResult.INVALID_URI, f"URI {uri!r} has no scheme")
        protocol = UpdateProtocol.from_scheme(parts.scheme)
        if protocol is None or protocol not in SUPPORTED:
            raise DownloadError(
                UpdateResult.UNSUPPORTED_PROTOCOL, f"scheme {parts.scheme!r} is not supported"
            )
        if not parts.hostname:
            raise DownloadError(UpdateResult.INVALID_URI, f"URI {uri!r} has no host")
        if port == 0:
            raise DownloadError(UpdateResult.INVALID_URI, f"URI {uri!r} has port 0")
        return protocol

    # -- the download ----------------------------------------------------------------------

    async def download(
        self, uri: str, sink: DownloadSink, resume: DownloadProgress | None = None
    ) -> DownloadProgress:
        """Download ``uri`` into ``sink``, resuming ``resume`` if it is for this URI.

        Returns the final progress (offset == total). Raises :class:`DownloadError`.
        """
        protocol = self.check_uri(uri)
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.stats = DownloadStats()
        state = _State(uri=uri)
        if resume is not None and resume.uri == uri and resume.etag is not None:
            state.offset, state.etag, state.total = resume.offset, resume.etag, resume.total
        self._reported = state.offset
        failures = 0
        last_progress_at = loop.time()
        try:
            for _ in range(MAX_ATTEMPTS):
                self.stats.attempts += 1
                offset_before = state.offset
                try:
                    if protocol is UpdateProtocol.COAP:
                        await self._coap(uri, sink, state)
                    else:
                        await self._http_get(uri, sink, state)
                    self._report(state, final=True)
                    return state.progress()
                except _Restart as exc:
                    self._count_restart(state, str(exc))
                    state.offset, state.etag, state.total = 0, None, None
                    sink.truncate(0)
                    self._reported = -1
                    self._report(state, final=True)
                    continue
                except _Retry as exc:
                    now = loop.time()
                    if state.offset != offset_before or state.progressed:
                        failures = 0
                        last_progress_at = state.progressed_at or now
                    state.progressed = False
                    failures += 1
                    pause = self.backoff.delay(failures, self._rng)
                    stalled = now + pause - last_progress_at
                    if failures > self.retries or stalled > self.backoff.max_stall:
                        self._report(state, final=True)
                        raise DownloadError(
                            UpdateResult.CONNECTION_LOST,
                            f"{uri}: gave up after {failures} failed attempts "
                            f"({stalled:.1f} s without progress): {exc}",
                            state.progress(),
                        ) from exc
                    self._report(state, final=True)
                    log.info("%s: %s; retry %d in %.2f s", uri, exc, failures, pause)
                    await asyncio.sleep(pause)
            raise DownloadError(UpdateResult.CONNECTION_LOST, f"{uri}: too many attempts")
        finally:
            self.stats.elapsed = loop.time() - started

    def _count_restart(self, state: _State, why: str) -> None:
        """Count a restart from zero against :data:`MAX_RESTARTS`; past it, result 4.

        Every kind counts, the 200 that answers a ranged request too: re-fetching bytes
        already had is no progress, so a server that claims a long body, ends it early
        and ignores Range would otherwise be downloaded again for ever (each time the
        bytes arrive, the retry budget is reset as if the download moved on)."""
        state.restarts += 1
        self.stats.restarts += 1
        log.info("%s: restarting from zero: %s", state.uri, why)
        if state.restarts > MAX_RESTARTS:
            raise DownloadError(
                UpdateResult.CONNECTION_LOST,
                f"{state.uri}: restarted {state.restarts} times ({why})",
                state.progress(),
            )

    def _report(self, state: _State, *, final: bool = False) -> None:
        if self.on_progress is None:
            return
        if state.offset == self._reported:
            return
        if final or state.offset - self._reported >= self.progress_interval_bytes:
            self._reported = state.offset
            self.on_progress(state.progress())

    def _accept_total(self, state: _State, total: int | None) -> None:
        if total is None:
            return
        if self.max_size is not None and total > self.max_size:
            raise DownloadError(
                UpdateResult.NOT_ENOUGH_FLASH,
                f"{state.uri}: {total} bytes do not fit in {self.max_size}",
                state.progress(),
            )
        state.total = total

    def _store(self, sink: DownloadSink, state: _State, data: bytes) -> None:
        if self.max_size is not None and state.offset + len(data) > self.max_size:
            raise DownloadError(
                UpdateResult.NOT_ENOUGH_FLASH,
                f"{state.uri}: more than {self.max_size} bytes",
                state.progress(),
            )
        sink.write(state.offset, data)
        state.offset += len(data)
        state.progressed = True
        state.progressed_at = asyncio.get_running_loop().time()
        self.stats.bytes_received += len(data)
        self._report(state)

    # -- CoAP ------------------------------------------------------------------------------

    async def _context(self) -> aiocoap.Context:
        if self._ctx is None:
            if self.local_host is None:
                self._ctx = await aiocoap.Context.create_client_context()
            else:
                site = aiocoap.resource.Site()
                self._ctx, _ = await create_endpoint(site, self.local_host, 0)
        return self._ctx

    async def _coap(self, uri: str, sink: DownloadSink, state: _State) -> None:
        ctx = await self._context()
        loop = asyncio.get_running_loop()
        szx = self.block_size.bit_length() - 5
        size = 1 << (szx + 4)
        # Resume at a block boundary at or before the offset; a complete download re-fetches
        # its last block (to confirm the ETag) instead of asking for a block past the end.
        end = state.offset if state.total is None else min(state.offset, state.total - 1)
        state.offset = max(0, end) // size * size
        sink.truncate(state.offset)
        if self.stats.attempts == 1:
            self.stats.resumed_from = state.offset
        template = aiocoap.Message(code=Code.GET, uri=uri)
        remote = None
        for _ in range(MAX_ATTEMPTS * 1024):  # bounded: one iteration per block
            number = state.offset // size
            if remote is None:
                request = template.copy(block2=BlockOption.BlockwiseTuple(number, False, szx))
            else:
                request = aiocoap.Message(
                    code=Code.GET,
                    uri_host=template.opt.uri_host,
                    uri_port=template.opt.uri_port,
                    uri_path=template.opt.uri_path,
                    uri_query=template.opt.uri_query,
                    block2=BlockOption.BlockwiseTuple(number, False, szx),
                )
                request.remote = remote
            if self.adaptive:
                tuning = self.estimator.tuning(loop.time())
                self.stats.rto_trace.append(float(tuning.ACK_TIMEOUT))
            else:
                tuning = self.transport.tuning()
            request.transport_tuning = tuning
            self.stats.requests += 1
            sent = loop.time()
            response = await self._exchange(ctx, request, tuning)
            elapsed = loop.time() - sent
            retransmissions = self.estimator.retransmissions_for(
                elapsed, float(tuning.ACK_TIMEOUT), int(tuning.MAX_RETRANSMIT)
            )
            self.stats.retransmissions += retransmissions
            if self.adaptive:
                self.estimator.observe(elapsed, retransmissions, loop.time())
            remote = response.remote
            if self._coap_block(sink, state, response, number, size):
                return
            block = response.opt.block2
            if block is not None and block.size_exponent < szx:
                szx = block.size_exponent  # RFC 7959 §2.4: the server chose smaller blocks
                size = 1 << (szx + 4)
        raise DownloadError(UpdateResult.CONNECTION_LOST, f"{uri}: too many blocks")

    async def _exchange(
        self, ctx: aiocoap.Context, request: aiocoap.Message, tuning: Any
    ) -> aiocoap.Message:
        guard = float(tuning.MAX_TRANSMIT_WAIT) + 1.0
        try:
            async with asyncio.timeout(guard):
                response: aiocoap.Message = await ctx.request(
                    request, handle_blockwise=False
                ).response
        except aiocoap.error.ResolutionError as exc:
            raise DownloadError(UpdateResult.INVALID_URI, f"cannot resolve host: {exc}") from exc
        except (aiocoap.error.Error, OSError, TimeoutError) as exc:
            raise _Retry(f"CoAP exchange failed: {type(exc).__name__}: {exc}") from exc
        return response

    def _coap_block(
        self,
        sink: DownloadSink,
        state: _State,
        response: aiocoap.Message,
        number: int,
        size: int,
    ) -> bool:
        """Store one Block2 response; True when it was the last block."""
        code = response.code
        uri = state.uri
        if code in _NOT_FOUND_COAP:
            raise DownloadError(UpdateResult.INVALID_URI, f"{uri}: {code}", state.progress())
        if code.class_ == 5:
            raise _Retry(f"server error {code}")
        if code != Code.CONTENT:
            raise DownloadError(
                UpdateResult.CONNECTION_LOST, f"{uri}: unexpected {code}", state.progress()
            )
        etag = response.opt.etag
        if state.etag is not None and etag != state.etag:
            raise _Restart(f"ETag changed from {state.etag.hex()} to {(etag or b'').hex()}")
        state.etag = etag
        self._accept_total(state, response.opt.size2)
        block = response.opt.block2
        payload = response.payload
        if block is None:
            # The server sent the whole representation in one response (no Block2).
            if state.offset != 0:
                raise _Restart("the server answered a block request with the whole resource")
            self._store(sink, state, payload)
            return True
        start = block.block_number * (1 << (block.size_exponent + 4))
        if block.size_exponent > (size.bit_length() - 5) or start != number * size:
            if not start <= state.offset < start + len(payload):
                raise DownloadError(
                    UpdateResult.CONNECTION_LOST,
                    f"{uri}: asked for block {number} and got {block}",
                    state.progress(),
                )
            payload = payload[state.offset - start :]
        if payload:
            self._store(sink, state, payload)
        if block.more:
            if not payload:
                raise DownloadError(
                    UpdateResult.CONNECTION_LOST, f"{uri}: empty block {number}", state.progress()
                )
            return False
        if state.total is not None and state.offset != state.total:
            raise _Restart(f"last block ends at {state.offset}, Size2 says {state.total}")
        if state.total is None:
            state.total = state.offset
        return True

    # -- HTTP ------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            timeout = httpx.Timeout(self.transport.request_timeout)
            self._http = httpx.AsyncClient(
                timeout=timeout,
                verify=self.verify,
                follow_redirects=True,
                max_redirects=5,
                transport=httpx.AsyncHTTPTransport(
                    local_address=self.local_host or None, verify=self.verify
                ),
            )
        return self._http

    async def _http_get(self, uri: str, sink: DownloadSink, state: _State) -> None:
        client = self._client()
        strong = state.etag is not None and not state.etag.startswith(b"W/")
        if state.offset and not strong:
            state.offset, state.etag = 0, None  # cannot validate a resumed range
        sink.truncate(state.offset)
        if self.stats.attempts == 1:
            self.stats.resumed_from = state.offset
        headers = {"Accept-Encoding": "identity"}
        if state.offset and state.etag is not None:
            headers["Range"] = f"bytes={state.offset}-"
            headers["If-Range"] = state.etag.decode("ascii")
        self.stats.requests += 1
        try:
            async with client.stream("GET", uri, headers=headers) as response:
                await self._http_body(sink, state, response)
        except httpx.InvalidURL as exc:
            raise DownloadError(UpdateResult.INVALID_URI, f"{uri}: {exc}") from exc
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise _Retry(f"HTTP transfer failed: {type(exc).__name__}: {exc}") from exc

    async def _http_body(self, sink: DownloadSink, state: _State, response: httpx.Response) -> None:
        status = response.status_code
        uri = state.uri
        if status in _NOT_FOUND_HTTP:
            raise DownloadError(UpdateResult.INVALID_URI, f"{uri}: HTTP {status}", state.progress())
        if status == 416:
            raise _Restart("416 Range Not Satisfiable")
        if status >= 500:
            raise _Retry(f"HTTP {status}")
        if status not in (200, 206):
            raise DownloadError(
                UpdateResult.CONNECTION_LOST, f"{uri}: HTTP {status}", state.progress()
            )
        etag_header = response.headers.get("etag")
        etag = None if etag_header is None else etag_header.encode("ascii", "replace")
        if status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
            if match is None or int(match.group(1)) != state.offset:
                raise _Restart("206 without a Content-Range starting at our offset")
            if state.etag is not None and etag is not None and etag != state.etag:
                raise _Restart("ETag changed")
            total = None if match.group(3) == "*" else int(match.group(3))
        else:
            if state.offset:  # range ignored or representation changed
                self._count_restart(state, f"HTTP 200 to a range from {state.offset}")
                state.offset = 0
                sink.truncate(0)
                self._reported = -1
            length = response.headers.get("content-length")
            total = int(length) if length is not None and length.isdigit() else None
        state.etag = etag
        self._accept_total(state, total)
        async for chunk in response.aiter_raw(HTTP_CHUNK):
            if chunk:
                self._store(sink, state, chunk)
        if state.total is not None and state.offset != state.total:
            raise _Retry(f"body ended at {state.offset} of {state.total} bytes")
        if state.total is None:
            state.total = state.offset

    # -- lifecycle -------------------------------------------------------------------------

    async def close(self) -> None:
        """Release the CoAP endpoint and HTTP connections."""
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            await ctx.shutdown()
        if self._http is not None:
            client, self._http = self._http, None
            await client.aclose()

    async def __aenter__(self) -> Downloader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


@dataclass(slots=True)
class _State:
    uri: str
    offset: int = 0
    etag: bytes | None = None
    total: int | None = None
    progressed: bool = False
    progressed_at: float | None = None
    restarts: int = 0  # from zero, of every kind (see Downloader._count_restart)

    def progress(self) -> DownloadProgress:
        return DownloadProgress(self.uri, self.offset, self.etag, self.total)
