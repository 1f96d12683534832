"""Building a signed package: stream the payload twice (hash, then copy), never whole.

The first pass computes the SHA-256 and size the manifest signs; the second copies the
payload after the envelope into a temporary file next to the output while hashing it
again, so a payload that changes between the passes is caught instead of shipped. The
output appears atomically (``os.replace``) or not at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final

from fotakit.packages.cose import PrivateKey
from fotakit.packages.envelope import MAX_ENVELOPE_SIZE, build_envelope
from fotakit.packages.errors import MalformedPackage
from fotakit.packages.keys import key_id
from fotakit.packages.manifest import (
    InvalidVersion,
    Manifest,
    check_version,
    class_id,
    encode_manifest,
    vendor_id,
)

CHUNK_SIZE: Final = 1024 * 1024
Progress = Callable[[int], None]


class BuildError(Exception):
    """The payload cannot be read, changed while building, or the output cannot be written."""


def make_manifest(
    *,
    payload_digest: bytes,
    payload_size: int,
    version: str,
    vendor_domain: str,
    class_name: str,
    sequence: int,
    key: PrivateKey,
    component: str | None = None,
    base_digest: bytes | None = None,
) -> Manifest:
    """The manifest for a payload, with IDs derived as SUIT does and the signer's kid.
    Raises :class:`MalformedPackage` for a version that breaks :func:`check_version`."""
    try:
        check_version(version)
    except InvalidVersion as exc:
        raise MalformedPackage(f"version {exc}") from None
    vid = vendor_id(vendor_domain)
    return Manifest(
        sequence=sequence,
        vendor_id=vid,
        class_id=class_id(vid, class_name),
        version=version,
        payload_digest=payload_digest,
        payload_size=payload_size,
        base_digest=base_digest,
        component=component,
        kid=key_id(key),
    )


def sign_manifest(manifest: Manifest, key: PrivateKey) -> bytes:
    """The signed envelope (without payload) for ``manifest``."""
    envelope = build_envelope(encode_manifest(manifest), [(key, key_id(key))])
    if len(envelope) > MAX_ENVELOPE_SIZE:
        raise BuildError("envelope exceeds the 64 KiB readers accept")
    return envelope


def hash_stream(stream: BinaryIO, progress: Progress | None = None) -> tuple[bytes, int]:
    """SHA-256 and length of a stream, read in chunks."""
    h = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK_SIZE):
        h.update(chunk)
        size += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return h.digest(), size


def build_package(
    payload_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    version: str,
    vendor_domain: str,
    class_name: str,
    sequence: int,
    key: PrivateKey,
    component: str | None = None,
    base_digest: bytes | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Write ``envelope || payload`` to ``output_path``; returns the signed manifest.

    ``progress`` is called with the number of bytes processed, over both passes
    (2 x payload size in total).
    """
    src = Path(payload_path)
    out = Path(output_path)
    try:
        with src.open("rb") as fh:
            digest, size = hash_stream(fh, progress)
    except OSError as exc:
        raise BuildError(f"cannot read the payload {src}: {exc.strerror or exc}") from exc
    manifest = make_manifest(
        payload_digest=digest,
        payload_size=size,
        version=version,
        vendor_domain=vendor_domain,
        class_name=class_name,
        sequence=sequence,
        key=key,
        component=component,
        base_digest=base_digest,
    )
    envelope = sign_manifest(manifest, key)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(8)}.part")
    try:
        with src.open("rb") as fin, tmp.open("xb") as fout:
            fout.write(envelope)
            h = hashlib.sha256()
            copied = 0
            while chunk := fin.read(CHUNK_SIZE):
                h.update(chunk)
                fout.write(chunk)
                copied += len(chunk)
                if progress is not None:
                    progress(len(chunk))
            if copied != size or h.digest() != digest:
                raise BuildError(f"the payload {src} changed while the package was built")
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        raise BuildError(f"cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return manifest


def build_package_in_memory(
    payload: bytes,
    *,
    version: str,
    vendor_domain: str,
    class_name: str,
    sequence: int,
    key: PrivateKey,
    component: str | None = None,
    base_digest: bytes | None = None,
) -> bytes:
    """``envelope || payload`` as bytes, for tests and small payloads."""
    manifest = make_manifest(
        payload_digest=hashlib.sha256(payload).digest(),
        payload_size=len(payload),
        version=version,
        vendor_domain=vendor_domain,
        class_name=class_name,
        sequence=sequence,
        key=key,
        component=component,
        base_digest=base_digest,
    )
    return sign_manifest(manifest, key) + payload
