"""The SUIT_Envelope framing: ``#6.107({2: << auth >>, 3: << manifest >>})`` + payload.

draft-ietf-suit-manifest-37 §8.2-8.3. The file is the tagged envelope (one CBOR item)
followed by the raw payload bytes. The framing is read head by head so that the sizes the
envelope *declares* are checked against a cap before any of those bytes are read: a 10 MB
"manifest" fails after reading a few bytes, not after buffering 10 MB.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

import cbor2

from fotakit.packages._cbor import as_array, loads_item
from fotakit.packages.cose import PrivateKey, Sign1, decode_sign1, sign_detached
from fotakit.packages.errors import (
    MalformedPackage,
    ManifestTooLarge,
    TruncatedPackage,
    UnsupportedAlgorithm,
    UnsupportedFormat,
)
from fotakit.packages.manifest import SHA256_ALG, SHA256_LEN

ENVELOPE_TAG: Final = 107
AUTH_KEY: Final = 2
MANIFEST_KEY: Final = 3
#: Largest envelope (authentication wrapper + manifest + framing) a reader accepts.
MAX_ENVELOPE_SIZE: Final = 64 * 1024
MAX_AUTH_BLOCKS: Final = 4
#: tag 107 (0xd8 0x6b), map of 2 (0xa2): every fotakit envelope starts with these bytes.
ENVELOPE_PREFIX: Final = b"\xd8\x6b\xa2"
#: A CBOR head is at most 9 bytes: ask for that much when the prefix ends inside one.
_MAX_HEAD: Final = 9

_MAJOR_UINT: Final = 0
_MAJOR_BSTR: Final = 2
_MAJOR_MAP: Final = 5


@dataclass(frozen=True)
class Extent:
    """What the first bytes say: the envelope length, or how many bytes to look at next."""

    complete: bool
    length: int  # envelope length if complete, else the prefix length needed to go on
    auth: tuple[int, int] = (0, 0)  # [start, end) of member 2's contents (when complete)
    manifest: tuple[int, int] = (0, 0)  # [start, end) of member 3's contents


def _head(buf: bytes, pos: int) -> tuple[int, int, int] | None:
    """(major type, argument, position after the head) or None if ``buf`` ends inside it."""
    if pos >= len(buf):
        return None
    initial = buf[pos]
    major, info = initial >> 5, initial & 0x1F
    if info < 24:
        return major, info, pos + 1
    if info > 27:
        # 28-30 are reserved, 31 is indefinite length: never valid in our framing.
        raise MalformedPackage("envelope framing uses an indefinite or reserved CBOR length")
    n = 1 << (info - 24)
    if pos + 1 + n > len(buf):
        return None
    return major, int.from_bytes(buf[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


def envelope_extent(prefix: bytes, max_size: int = MAX_ENVELOPE_SIZE) -> Extent:
    """How long the envelope at the start of ``prefix`` is, from its first bytes only.

    Raises UnsupportedFormat if the bytes are not a tag-107 envelope, MalformedPackage if
    the framing is wrong, ManifestTooLarge as soon as a declared size exceeds ``max_size``.
    """
    for i, expected in enumerate(ENVELOPE_PREFIX):
        if i >= len(prefix):
            return Extent(False, len(ENVELOPE_PREFIX))
        if prefix[i] != expected:
            if i < 2:
                raise UnsupportedFormat("not a SUIT envelope (does not start with CBOR tag 107)")
            if prefix[i] >> 5 == _MAJOR_MAP:
                # A SUIT envelope, but with delegation, severed members or integrated
                # payloads: valid SUIT that this profile does not implement.
                raise UnsupportedFormat(
                    "SUIT envelope members other than 2 and 3 are not supported"
                )
            raise MalformedPackage("SUIT envelope must be a CBOR map")
    pos = len(ENVELOPE_PREFIX)
    spans: list[tuple[int, int]] = []
    for key in (AUTH_KEY, MANIFEST_KEY):
        head = _head(prefix, pos)
        if head is None:
            return Extent(False, pos + _MAX_HEAD)
        major, value, pos = head
        if major != _MAJOR_UINT or value != key:
            raise MalformedPackage(f"SUIT envelope member {key} expected")
        head = _head(prefix, pos)
        if head is None:
            return Extent(False, pos + _MAX_HEAD)
        major, length, pos = head
        if major != _MAJOR_BSTR:
            raise MalformedPackage(f"SUIT envelope member {key} must be a bstr")
        if pos + length > max_size:
            raise ManifestTooLarge(
                f"envelope declares at least {pos + length} bytes; the limit is {max_size}"
            )
        spans.append((pos, pos + length))
        pos += length
    return Extent(True, pos, spans[0], spans[1])


@dataclass(frozen=True)
class Envelope:
    """A framed envelope: the raw bstr contents, with the authentication wrapper decoded."""

    raw: bytes  # the whole envelope item (payload_offset == len(raw))
    manifest_bytes: bytes
    manifest_digest: bytes  # SUIT_Digest bytes claimed by the authentication wrapper
    digest_item: bytes  # bstr .cbor SUIT_Digest: the detached COSE payload
    blocks: tuple[Sign1, ...]


def parse_envelope(raw: bytes, max_size: int = MAX_ENVELOPE_SIZE) -> Envelope:
    """Split a complete envelope (exactly the bytes ``envelope_extent`` measured)."""
    extent = envelope_extent(raw, max_size=max_size)
    if not extent.complete or extent.length > len(raw):
        raise TruncatedPackage("package ends inside its envelope")
    if extent.length != len(raw):
        raise MalformedPackage("envelope has trailing bytes")
    auth = as_array(loads_item(raw[slice(*extent.auth)], "authentication wrapper"), "auth wrapper")
    if len(auth) < 2:
        raise MalformedPackage("authentication wrapper has no authentication block")
    if len(auth) > 1 + MAX_AUTH_BLOCKS:
        raise MalformedPackage(f"more than {MAX_AUTH_BLOCKS} authentication blocks")
    digest_item = auth[0]
    if not isinstance(digest_item, bytes):
        raise MalformedPackage("manifest digest must be a bstr-wrapped SUIT_Digest")
    digest = as_array(loads_item(digest_item, "manifest digest"), "manifest digest")
    if len(digest) < 2 or type(digest[0]) is not int:
        raise MalformedPackage("manifest digest must be [algorithm, bytes]")
    if digest[0] != SHA256_ALG:
        raise UnsupportedAlgorithm(f"manifest digest algorithm {digest[0]} (SHA-256 = -16 only)")
    digest_bytes = digest[1]
    if not isinstance(digest_bytes, bytes) or len(digest_bytes) != SHA256_LEN:
        raise MalformedPackage("manifest digest must hold 32 bytes")
    blocks = tuple(decode_sign1(loads_item(b, "authentication block")) for b in auth[1:])
    return Envelope(
        raw=raw,
        manifest_bytes=raw[slice(*extent.manifest)],
        manifest_digest=digest_bytes,
        digest_item=digest_item,
        blocks=blocks,
    )


def build_envelope(manifest_bytes: bytes, keys: list[tuple[PrivateKey, bytes]]) -> bytes:
    """The tagged envelope signing ``manifest_bytes`` with each (key, kid)."""
    if not keys:
        raise ValueError("at least one signing key is needed")
    digest_item = cbor2.dumps([SHA256_ALG, hashlib.sha256(manifest_bytes).digest()])
    auth = [digest_item] + [sign_detached(key, kid, digest_item) for key, kid in keys]
    envelope = cbor2.CBORTag(
        ENVELOPE_TAG,
        {AUTH_KEY: cbor2.dumps(auth, canonical=True), MANIFEST_KEY: manifest_bytes},
    )
    return cbor2.dumps(envelope, canonical=True)
