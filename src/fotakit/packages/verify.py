"""Package verification for devices and the repository: envelope first, payload streamed.

Order (docs/package-format.md, "Verification order"): framing and size cap -> decode the
authentication wrapper -> pick the trust anchor by kid -> manifest digest -> COSE_Sign1
signature -> decode the manifest -> kid binding -> vendor/class binding -> sequence number
-> payload SHA-256 and size, streamed in chunks. Everything before the payload needs only
the envelope (at most 64 KiB), so a device can reject a package before downloading the
image. Only ``cryptography`` and ``cbor2`` are needed.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

from fotakit.packages.cose import ALGORITHM_NAMES, verify_detached
from fotakit.packages.envelope import MAX_ENVELOPE_SIZE, Envelope, envelope_extent, parse_envelope
from fotakit.packages.errors import (
    DigestMismatch,
    MalformedPackage,
    ManifestDigestMismatch,
    PackageError,
    RollbackRejected,
    SizeMismatch,
    TruncatedPackage,
    UnknownKey,
    WrongClass,
    WrongVendor,
)
from fotakit.packages.keys import TrustStore
from fotakit.packages.manifest import DeviceIdentity, Manifest, decode_manifest

CHUNK_SIZE: Final = 64 * 1024


@dataclass(frozen=True)
class VerifiedPackage:
    """An authenticated package whose payload matched the signed digest and size."""

    manifest: Manifest
    payload_offset: int  # = envelope length: the payload starts here in the file
    payload_size: int
    kid: bytes
    algorithm: int  # COSE algorithm of the signature that verified
    manifest_digest: bytes


@dataclass(frozen=True)
class PackageInfo:
    """What a package claims (NOT verified): manifest fields and where the bytes are."""

    manifest: Manifest
    payload_offset: int
    payload_size: int  # bytes actually present after the envelope
    total_size: int
    file_digest: bytes  # SHA-256 of the whole file
    manifest_digest: bytes
    signers: tuple[tuple[bytes, int], ...]  # (kid, COSE algorithm) of each signature


class PayloadVerifier:
    """Incremental payload check: ``update(chunk)`` as bytes arrive, then ``finish()``.

    Raises SizeMismatch as soon as more bytes arrive than the manifest signed, and
    TruncatedPackage / DigestMismatch from ``finish()``.
    """

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.received = 0
        self._hash = hashlib.sha256()

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        n = len(chunk)
        if self.received + n > self.manifest.payload_size:
            raise SizeMismatch(
                f"payload is longer than the signed size of {self.manifest.payload_size} bytes"
            )
        self._hash.update(chunk)
        self.received += n

    def finish(self) -> None:
        if self.received < self.manifest.payload_size:
            raise TruncatedPackage(
                f"payload ended after {self.received} of {self.manifest.payload_size} bytes"
            )
        if self._hash.digest() != self.manifest.payload_digest:
            raise DigestMismatch("payload SHA-256 differs from the signed image digest")


def authenticate_envelope(
    envelope: Envelope,
    trust: TrustStore,
    *,
    identity: DeviceIdentity | None = None,
    min_sequence: int | None = None,
) -> tuple[Manifest, bytes, int]:
    """Check signature, bindings and sequence of a parsed envelope.

    Returns (manifest, kid, COSE algorithm) of the first authentication block whose kid is
    trusted and whose signature verifies.
    """
    trusted = [b for b in envelope.blocks if b.kid in trust]
    if not trusted:
        kids = ", ".join(b.kid.hex() for b in envelope.blocks)
        raise UnknownKey(f"no trust anchor for key id {kids}")
    # The signature covers the digest item; the digest must cover the manifest bytes.
    if hashlib.sha256(envelope.manifest_bytes).digest() != envelope.manifest_digest:
        raise ManifestDigestMismatch("manifest bytes differ from the signed manifest digest")
    block = trusted[0]
    key = trust.get(block.kid)
    assert key is not None
    verify_detached(block, key, envelope.digest_item)
    manifest = decode_manifest(envelope.manifest_bytes)
    if manifest.kid != block.kid:
        raise MalformedPackage("kid in the manifest differs from the signature's kid")
    check_manifest(manifest, identity=identity, min_sequence=min_sequence)
    return manifest, block.kid, block.algorithm


def check_manifest(
    manifest: Manifest, *, identity: DeviceIdentity | None, min_sequence: int | None
) -> None:
    """Class binding and anti-rollback of an authenticated manifest."""
    if identity is not None:
        if manifest.vendor_id != identity.vendor_id:
            raise WrongVendor(
                f"package vendor ID {manifest.vendor_id} is not this device's {identity.vendor_id}"
            )
        if identity.class_id is not None and manifest.class_id != identity.class_id:
            raise WrongClass(
                f"package class ID {manifest.class_id} is not this device's {identity.class_id}"
            )
    if min_sequence is not None and manifest.sequence < min_sequence:
        raise RollbackRejected(
            f"sequence number {manifest.sequence} is lower than the current {min_sequence}"
        )


class PackageReader:
    """Reads a package from a binary stream: envelope (capped), then payload in chunks.

    The stream need not be seekable. ``authenticate()`` reads and checks the envelope;
    ``payload_chunks()`` then yields the payload, checking digest and size as it goes
    (the last check happens when the stream ends, before the iterator finishes).
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        max_envelope_size: int = MAX_ENVELOPE_SIZE,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self._stream = stream
        self._max = max_envelope_size
        self._chunk = chunk_size
        self._envelope: Envelope | None = None
        self._leftover = b""
        self.manifest: Manifest | None = None

    def read_envelope(self) -> Envelope:
        if self._envelope is not None:
            return self._envelope
        buf = b""
        eof = False
        while True:
            extent = envelope_extent(buf, self._max)
            if extent.complete and len(buf) >= extent.length:
                break
            if eof:
                raise TruncatedPackage("package ends inside its envelope")
            want = extent.length - len(buf)
            data = _read(self._stream, max(want, 1))
            if len(data) < want:
                eof = True
            buf += data
        self._leftover = buf[extent.length :]
        self._envelope = parse_envelope(buf[: extent.length], self._max)
        return self._envelope

    def inspect(self) -> Manifest:
        """The manifest, decoded but NOT authenticated."""
        return decode_manifest(self.read_envelope().manifest_bytes)

    def authenticate(
        self,
        trust: TrustStore,
        *,
        identity: DeviceIdentity | None = None,
        min_sequence: int | None = None,
    ) -> tuple[Manifest, bytes, int]:
        manifest, kid, alg = authenticate_envelope(
            self.read_envelope(), trust, identity=identity, min_sequence=min_sequence
        )
        self.manifest = manifest
        return manifest, kid, alg

    def raw_payload_chunks(self) -> Iterator[bytes]:
        """The bytes after the envelope, unchecked, in chunks of at most ``chunk_size``."""
        self.read_envelope()
        leftover, self._leftover = self._leftover, b""
        for i in range(0, len(leftover), self._chunk):
            yield leftover[i : i + self._chunk]
        while chunk := _read(self._stream, self._chunk):
            yield chunk

    def payload_chunks(self) -> Iterator[bytes]:
        """The payload, verified on the fly; only call after ``authenticate()``."""
        if self.manifest is None:
            raise RuntimeError("authenticate() the envelope before reading the payload")
        verifier = PayloadVerifier(self.manifest)
        for chunk in self.raw_payload_chunks():
            verifier.update(chunk)
            yield chunk
        verifier.finish()


def _read(stream: BinaryIO, n: int) -> bytes:
    try:
        data = stream.read(n)
    except OSError as exc:
        raise TruncatedPackage(f"cannot read the package: {exc}") from exc
    if not isinstance(data, bytes):  # e.g. a text stream by mistake
        raise MalformedPackage("package stream must yield bytes")
    return data


def _open(source: str | os.PathLike[str] | BinaryIO) -> tuple[BinaryIO, bool]:
    if isinstance(source, str | os.PathLike):
        try:
            return open(source, "rb"), True
        except OSError as exc:
            raise TruncatedPackage(f"cannot open {os.fspath(source)}: {exc.strerror}") from exc
    return source, False


def verify_package(
    source: str | os.PathLike[str] | BinaryIO,
    trust: TrustStore,
    *,
    identity: DeviceIdentity | None = None,
    min_sequence: int | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> VerifiedPackage:
    """Verify a whole package from a path or binary stream; raise a PackageError subclass."""
    stream, owned = _open(source)
    try:
        reader = PackageReader(stream, chunk_size=chunk_size)
        manifest, kid, alg = reader.authenticate(
            trust, identity=identity, min_sequence=min_sequence
        )
        for _ in reader.payload_chunks():
            pass
        envelope = reader.read_envelope()
        return VerifiedPackage(
            manifest=manifest,
            payload_offset=len(envelope.raw),
            payload_size=manifest.payload_size,
            kid=kid,
            algorithm=alg,
            manifest_digest=envelope.manifest_digest,
        )
    finally:
        if owned:
            stream.close()


def verify_bytes(
    data: bytes,
    trust: TrustStore,
    *,
    identity: DeviceIdentity | None = None,
    min_sequence: int | None = None,
) -> VerifiedPackage:
    """``verify_package`` over an in-memory package (tests, small packages)."""
    return verify_package(io.BytesIO(data), trust, identity=identity, min_sequence=min_sequence)


def inspect_package(source: str | os.PathLike[str] | BinaryIO) -> PackageInfo:
    """Decode a package's envelope and hash the whole file WITHOUT verifying the signature."""
    stream, owned = _open(source)
    try:
        reader = PackageReader(stream)
        envelope = reader.read_envelope()
        manifest = decode_manifest(envelope.manifest_bytes)
        file_hash = hashlib.sha256(envelope.raw)
        payload_size = 0
        for chunk in reader.raw_payload_chunks():
            file_hash.update(chunk)
            payload_size += len(chunk)
        return PackageInfo(
            manifest=manifest,
            payload_offset=len(envelope.raw),
            payload_size=payload_size,
            total_size=len(envelope.raw) + payload_size,
            file_digest=file_hash.digest(),
            manifest_digest=envelope.manifest_digest,
            signers=tuple((b.kid, b.algorithm) for b in envelope.blocks),
        )
    finally:
        if owned:
            stream.close()


class StreamingPackageVerifier:
    """Incremental verification of a whole package received in pieces (e.g. CoAP blocks).

    ``feed(chunk)`` returns the payload bytes contained in ``chunk`` (empty while the
    envelope is still arriving); the envelope is authenticated as soon as it is complete,
    so a wrong, unknown or rolled-back package fails before its payload is downloaded.
    ``finish()`` checks digest and size and returns the VerifiedPackage.
    """

    def __init__(
        self,
        trust: TrustStore,
        *,
        identity: DeviceIdentity | None = None,
        min_sequence: int | None = None,
        max_envelope_size: int = MAX_ENVELOPE_SIZE,
    ) -> None:
        self._trust = trust
        self._identity = identity
        self._min_sequence = min_sequence
        self._max = max_envelope_size
        self._buf = bytearray()
        self._envelope: Envelope | None = None
        self._payload: PayloadVerifier | None = None
        self._kid = b""
        self._alg = 0

    @property
    def manifest(self) -> Manifest | None:
        """The authenticated manifest once the envelope has arrived."""
        return self._payload.manifest if self._payload is not None else None

    def feed(self, chunk: bytes) -> bytes:
        if self._payload is not None:
            self._payload.update(chunk)
            return chunk
        self._buf += chunk
        extent = envelope_extent(bytes(self._buf[: _probe_len(self._buf, self._max)]), self._max)
        if not extent.complete or len(self._buf) < extent.length:
            return b""
        self._envelope = parse_envelope(bytes(self._buf[: extent.length]), self._max)
        manifest, self._kid, self._alg = authenticate_envelope(
            self._envelope, self._trust, identity=self._identity, min_sequence=self._min_sequence
        )
        self._payload = PayloadVerifier(manifest)
        rest = bytes(self._buf[extent.length :])
        self._buf = bytearray()
        self._payload.update(rest)
        return rest

    def finish(self) -> VerifiedPackage:
        if self._payload is None or self._envelope is None:
            if self._buf:
                envelope_extent(bytes(self._buf[: self._max]), self._max)
            raise TruncatedPackage("package ends inside its envelope")
        self._payload.finish()
        manifest = self._payload.manifest
        return VerifiedPackage(
            manifest=manifest,
            payload_offset=len(self._envelope.raw),
            payload_size=manifest.payload_size,
            kid=self._kid,
            algorithm=self._alg,
            manifest_digest=self._envelope.manifest_digest,
        )


def _probe_len(buf: bytearray, max_size: int) -> int:
    # The extent never needs more than the cap (plus a head) to decide.
    return min(len(buf), max_size + 32)


def describe_algorithm(alg: int) -> str:
    return ALGORITHM_NAMES.get(alg, str(alg))


__all__ = [
    "CHUNK_SIZE",
    "PackageError",
    "PackageInfo",
    "PackageReader",
    "PayloadVerifier",
    "StreamingPackageVerifier",
    "VerifiedPackage",
    "authenticate_envelope",
    "check_manifest",
    "inspect_package",
    "verify_bytes",
    "verify_package",
]
