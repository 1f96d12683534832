"""CoAP delivery of stored packages: ``GET /fw/<id>`` and ``/fw/<id>/payload`` with Block2.

Block-wise transfer is served by hand (``needs_blockwise_assembly`` is False) so that each
request reads only the block it asks for from disk: aiocoap's own Block2 support would
render the whole representation into memory for every request. aiocoap still does all the
messaging (CON/ACK, retransmission, deduplication); we only interpret the Block2 option.

Behaviour (RFC 7959 §2.2-§2.4, RFC 7252 §5.10.6):

* Random access: any block number with any block size the client asks for (SZX 0-6; a
  reserved SZX 7, BERT, is answered with 1024-byte blocks, which RFC 7959 §2.4 allows: a
  server may always use a smaller block than requested). The client can resume anywhere.
* Options, chosen for the bytes they cost on every block (docs/repository.md, "Bytes on
  the wire"):

  - ETag on every block (RFC 7959 §2.4): clients compare it block by block — aiocoap's
    client fails a transfer whose later blocks lack the first block's ETag, libcoap's
    ("Not all blocks have ETag option"), and the fotakit agent resumes by offset + ETag.
    It is :data:`COAP_ETAG_LENGTH` bytes of the representation's SHA-256: the URI already
    names the content (the id is the first 8 bytes of the package's SHA-256, and an upload
    whose id exists with other bytes is refused), so a representation never changes under
    its URI and the ETag (RFC 7252 §5.10.6: a resource-local identifier between
    representations over time) needs no more.
  - Content-Format on every block: libcoap's client fails a transfer whose later blocks
    carry another (or no) Content-Format than the first ("Content-Format option mismatch").
  - Size2 only where RFC 7959 §4 gives it a use: in the first block (a size indication
    before the download starts) and in any response to a request carrying Size2 (a size
    request). Not on every block.
  - No Max-Age (the default, 60 s, is what an absent option means: RFC 7252 §5.10.5).
* A block number whose first byte lies past the end answers 4.00 Bad Request (RFC 7959
  names no code for it; 4.02 Bad Option would claim the option is not understood).
  Unknown ids 4.04; methods other than GET 4.05.
* A GET whose ETag option matches answers 2.03 Valid (RFC 7252 §5.10.6.2) without payload.

Package files are immutable, so the resource keeps the most recently served ones open
(at most :data:`MAX_OPEN_FILES`) and reads each block with one ``pread``: no path lookup,
open and close per block. A package that no longer resolves (deleted) has its file closed.

A download counts as completed when its last block is served; every block adds its bytes
to the package's bytes-served counter.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Final

import aiocoap
import aiocoap.error
import aiocoap.resource
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from fotakit.repository.records import Form, PackageRecord
from fotakit.repository.repository import Repository

log = logging.getLogger("fotakit.repository.coap")

MAX_SZX: Final = 6
DEFAULT_SZX: Final = 6
OCTET_STREAM: Final = 42
PAYLOAD_SEGMENT: Final = "payload"
MAX_OPEN_FILES: Final = 64
COAP_ETAG_LENGTH: Final = 2
"""Bytes of the representation's SHA-256 in the CoAP ETag (see the module doc)."""


class BlockOutOfRange(aiocoap.error.ConstructionRenderableError):  # type: ignore[misc]
    code = Code.BAD_REQUEST
    message = "Block2 number past the end of the representation"


class FirmwareResource(aiocoap.resource.Resource, aiocoap.resource.PathCapable):  # type: ignore[misc]
    """Serves ``<id>`` and ``<id>/payload`` below the path it is mounted at (``/fw``)."""

    def __init__(self, repository: Repository) -> None:
        super().__init__()
        self._repository = repository
        self._flushes: set[asyncio.Task[None]] = set()
        self._files: OrderedDict[str, int] = OrderedDict()
        self._finalizer = weakref.finalize(self, _close_files, self._files)

    def close(self) -> None:
        """Close the package files kept open (the resource still works: it reopens them)."""
        _close_files(self._files)

    async def needs_blockwise_assembly(self, request: aiocoap.Message) -> bool:
        return False

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        record, form = await self._resolve(tuple(request.opt.uri_path))
        return self._respond(request, record, form)

    def render_now(
        self, request: aiocoap.Message, subpath: Sequence[str]
    ) -> aiocoap.Message | None:
        """The fast path (:class:`fotakit.coap.FastSite`): a block of a package whose
        record is in memory, answered without a task. Everything else (other methods,
        unknown ids, errors, Observe) returns None and takes the ordinary route."""
        if request.code != Code.GET or request.opt.observe is not None:
            return None
        form = _form(subpath)
        if form is None:
            return None
        record = self._repository.cached(subpath[0])
        if record is None:
            return None
        try:
            return self._respond(request, record, form)
        except aiocoap.error.Error:
            return None

    def _respond(
        self, request: aiocoap.Message, record: PackageRecord, form: Form
    ) -> aiocoap.Message:
        etag = coap_etag(record, form)
        if etag in request.opt.etags:
            return aiocoap.Message(code=Code.VALID, etag=etag)
        base, length = record.span(form)
        requested = request.opt.block2
        szx = DEFAULT_SZX if requested is None else min(requested.size_exponent, MAX_SZX)
        number = 0 if requested is None else requested.block_number
        block_size = 1 << (szx + 4)
        start = number * block_size
        if start >= length and not (start == 0 and length == 0):
            raise BlockOutOfRange()
        count = min(block_size, length - start)
        data = self._read(record, base + start, count)
        more = start + count < length
        response = aiocoap.Message(
            code=Code.CONTENT, payload=data, etag=etag, content_format=OCTET_STREAM
        )
        blockwise = requested is not None or more
        if blockwise:
            response.opt.block2 = BlockOption.BlockwiseTuple(number, more, szx)
        if (blockwise and number == 0) or request.opt.size2 is not None:
            response.opt.size2 = length
        self._count(record.id, len(data), completed=not more)
        return response

    async def _resolve(self, segments: tuple[str, ...]) -> tuple[PackageRecord, Form]:
        form = _form(segments)
        if form is None:
            raise aiocoap.error.NotFound()
        package_id = segments[0]
        record = self._repository.cached(package_id)
        if record is None:
            record = await asyncio.to_thread(self._repository.lookup, package_id)
        if record is None:
            fd = self._files.pop(package_id, None)
            if fd is not None:  # deleted: let its file go
                os.close(fd)
            raise aiocoap.error.NotFound()
        return record, form

    def _read(self, record: PackageRecord, offset: int, count: int) -> bytes:
        # One block from the page cache takes microseconds: cheaper inline than a thread hop.
        data = os.pread(self._open(record), count, offset)
        if len(data) != count:
            log.error("package file of %s is shorter than its record says", record.id)
            raise aiocoap.error.ConstructionRenderableError()
        return data

    def _open(self, record: PackageRecord) -> int:
        fd = self._files.get(record.id)
        if fd is not None:
            self._files.move_to_end(record.id)
            return fd
        try:
            fd = os.open(self._repository.blob_path(record), os.O_RDONLY)
        except FileNotFoundError:
            raise aiocoap.error.NotFound() from None
        self._files[record.id] = fd
        if len(self._files) > MAX_OPEN_FILES:
            os.close(self._files.popitem(last=False)[1])
        return fd

    def _count(self, package_id: str, nbytes: int, *, completed: bool) -> None:
        self._repository.count(package_id, nbytes=nbytes, completed=completed)
        if completed:
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._repository.flush_counters)
            )
            self._flushes.add(task)
            task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not write download counters: %s", task.exception())


def coap_etag(record: PackageRecord, form: Form) -> bytes:
    """The CoAP ETag of one representation: the first :data:`COAP_ETAG_LENGTH` bytes of
    its SHA-256 (the HTTP ETag, :meth:`PackageRecord.etag`, is longer: it costs once per
    response there, not once per block)."""
    return record.etag(form)[:COAP_ETAG_LENGTH]


def _form(segments: Sequence[str]) -> Form | None:
    """``<id>`` is the whole package, ``<id>/payload`` the bare payload; else None."""
    if len(segments) == 1:
        return Form.PACKAGE
    if len(segments) == 2 and segments[1] == PAYLOAD_SEGMENT:
        return Form.PAYLOAD
    return None


def _close_files(files: OrderedDict[str, int]) -> None:
    while files:
        os.close(files.popitem()[1])


def coap_resources(repository: Repository) -> list[tuple[tuple[str, ...], Any]]:
    """The (path, resource) pairs to add to an aiocoap ``Site``: ``/fw`` for the repository.

    Mounted in a :class:`fotakit.coap.FastSite` (as ``fotakit server`` does), cached blocks
    are answered on the fast path.
    """
    return [(("fw",), FirmwareResource(repository))]
