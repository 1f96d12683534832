"""Streaming Block1 request bodies to device code, block by block (RFC 7959 §2.3, §2.9).

By default aiocoap reassembles a Block1 request in RAM before the resource sees it. That
is wrong for a firmware push (PUT /5/0/0 of megabytes): an instance opts in to receiving
a resource's Write block by block by returning a :class:`BlockWriter` from
``ObjectInstance.block_writer(resource_id)``. The runtime then hands it each
:class:`Block1` as it arrives and answers 2.31 Continue (M=1) or 2.04 Changed (last
block), echoing the request's Block1 option.

:class:`StreamedBody` is the byte-range bookkeeping a writer needs, kept separate so it
holds no image data at all, only counters:

- a block lands at byte offset ``num * size`` (RFC 7959 §2.2), so a sender that changes
  the block size mid-transfer (allowed by §2.3) still lands its bytes in the right place;
- re-sending a block already received (block 0 included) rewrites the same bytes: it is
  idempotent and does not restart the body;
- a block starting beyond the bytes received so far is a gap: 4.08 Request Entity
  Incomplete (§2.9.2); the sender may re-send the missing block;
- a body larger than ``capacity`` — announced by Size1 on block 0 or written past — is
  4.13 Request Entity Too Large with a Size1 option carrying the limit (§2.9.3, §4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fotakit.lwm2m.errors import BadRequest, RequestEntityIncomplete, RequestEntityTooLarge

#: SZX 7 is BERT (RFC 8323 §6): reliable transports only, never on UDP.
MAX_UDP_SZX = 6


@dataclass(frozen=True, slots=True)
class Block1:
    """One block of a Block1 request body: NUM, M, SZX (RFC 7959 §2.2) and its bytes."""

    num: int
    more: bool
    szx: int
    payload: bytes
    size1: int | None = None  # the body size the sender announced (RFC 7959 §4)

    @property
    def size(self) -> int:
        """The block size ``2**(SZX+4)`` bytes."""
        return 1 << (self.szx + 4)

    @property
    def offset(self) -> int:
        """Where this block's bytes start in the body."""
        return self.num * self.size

    @property
    def end(self) -> int:
        return self.offset + len(self.payload)

    def check(self) -> None:
        """Reject blocks RFC 7959 §2.3 does not allow: 4.00."""
        if not 0 <= self.szx <= MAX_UDP_SZX:
            raise BadRequest(f"Block1 SZX {self.szx} is not allowed on UDP")
        if len(self.payload) > self.size:
            raise BadRequest(f"Block1 payload of {len(self.payload)} B exceeds SZX size")
        if self.more and len(self.payload) != self.size:
            raise BadRequest("a Block1 block with M=1 must carry exactly the block size")
        if self.size1 is not None and self.size1 < 0:
            raise BadRequest("negative Size1")


class BlockWriter(Protocol):
    """Device code's receiver of one resource's streamed Write.

    ``write_block`` is called once per request block, in arrival order; returning means
    "stored" (the runtime answers 2.31 or 2.04), raising a
    :class:`~fotakit.lwm2m.errors.LwM2MError` answers that error (e.g. 4.08, 4.13).
    ``content_format`` is the request's Content-Format option.
    """

    def write_block(self, block: Block1, content_format: int | None) -> None: ...


class StreamedBody:
    """Counters of one streamed body: contiguous bytes received, total once known.

    ``capacity`` None means no limit here (the sink may still refuse a write).
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.received = 0  # bytes [0, received) have all been written
        self.total: int | None = None  # set by the last block (M=0)

    @property
    def complete(self) -> bool:
        return self.total is not None and self.received >= self.total

    def check(self, block: Block1) -> None:
        """Raise the error ``block`` deserves before anything is written; else return."""
        block.check()
        limit = self.capacity
        if limit is not None:
            if block.num == 0 and block.size1 is not None and block.size1 > limit:
                raise RequestEntityTooLarge(
                    f"body of {block.size1} B exceeds {limit} B", size1=limit
                )
            if block.end > limit:
                raise RequestEntityTooLarge(f"body exceeds {limit} B", size1=limit)
        if block.offset > self.received:
            raise RequestEntityIncomplete(
                f"block {block.num} starts at byte {block.offset}, only {self.received} B received"
            )
        if self.total is not None and block.end > self.total:
            raise BadRequest(f"block {block.num} extends past the end of the body")
        if self.total is not None and not block.more and block.end != self.total:
            raise BadRequest("a second last block with a different body size")

    def accept(self, block: Block1) -> None:
        """Record ``block`` as written (after :meth:`check` passed and the bytes landed)."""
        self.received = max(self.received, block.end)
        if not block.more:
            self.total = block.end
