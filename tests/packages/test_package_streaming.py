"""Streaming verification: chunked payload hashing, incremental feeding, bounded memory."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from pathlib import Path

import pytest
from package_helpers import IDENTITY, build, new_key, trust_for

from fotakit.packages import (
    DigestMismatch,
    PackageReader,
    PayloadVerifier,
    RollbackRejected,
    SizeMismatch,
    StreamingPackageVerifier,
    TruncatedPackage,
    UnknownKey,
    build_package,
    inspect_package,
    verify_package,
)

PAYLOAD = os.urandom(200_000)


class NonSeekable(io.RawIOBase):
    """A pipe-like stream that returns at most ``step`` bytes per read."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self._step, len(self._data) - self._pos)
        buf[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


@pytest.mark.parametrize("step", [1, 7, 4096, 1 << 20])
def test_reader_verifies_from_a_non_seekable_stream_read_piecewise(step: int) -> None:
    key = new_key()
    pkg = build(PAYLOAD, key)
    stream = io.BufferedReader(NonSeekable(pkg, step), buffer_size=max(step, 1))
    reader = PackageReader(stream, chunk_size=10_000)
    manifest, _kid, _alg = reader.authenticate(trust_for(key), identity=IDENTITY)
    chunks = list(reader.payload_chunks())
    assert b"".join(chunks) == PAYLOAD
    assert max(len(c) for c in chunks) <= 10_000
    assert manifest.payload_size == len(PAYLOAD)


def test_reader_raises_digest_mismatch_at_the_end_of_a_tampered_payload() -> None:
    key = new_key()
    pkg = bytearray(build(PAYLOAD, key))
    pkg[-1] ^= 1
    reader = PackageReader(io.BytesIO(bytes(pkg)))
    reader.authenticate(trust_for(key))
    with pytest.raises(DigestMismatch):
        for _ in reader.payload_chunks():
            pass


def test_reader_refuses_payload_before_authentication() -> None:
    reader = PackageReader(io.BytesIO(build(PAYLOAD, new_key())))
    with pytest.raises(RuntimeError):
        next(reader.payload_chunks())


def test_payload_verifier_accepts_the_payload_in_any_split() -> None:
    key = new_key()
    reader = PackageReader(io.BytesIO(build(PAYLOAD, key)))
    manifest, _, _ = reader.authenticate(trust_for(key))
    for sizes in ([len(PAYLOAD)], [1, 2, 3, len(PAYLOAD) - 6], [1000] * 200):
        verifier = PayloadVerifier(manifest)
        pos = 0
        for n in sizes:
            verifier.update(PAYLOAD[pos : pos + n])
            pos += n
        verifier.finish()
        assert verifier.received == len(PAYLOAD)


def test_payload_verifier_rejects_excess_bytes_immediately_and_short_input_at_finish() -> None:
    key = new_key()
    reader = PackageReader(io.BytesIO(build(PAYLOAD, key)))
    manifest, _, _ = reader.authenticate(trust_for(key))
    verifier = PayloadVerifier(manifest)
    verifier.update(PAYLOAD)
    with pytest.raises(SizeMismatch):
        verifier.update(b"!")
    short = PayloadVerifier(manifest)
    short.update(PAYLOAD[:-1])
    with pytest.raises(TruncatedPackage):
        short.finish()
    wrong = PayloadVerifier(manifest)
    wrong.update(bytes(len(PAYLOAD)))
    with pytest.raises(DigestMismatch):
        wrong.finish()


@pytest.mark.parametrize("block", [1, 16, 64, 1024])
def test_streaming_verifier_separates_envelope_and_payload_for_any_block_size(
    block: int,
) -> None:
    key = new_key("p256")
    pkg = build(PAYLOAD[:20_000], key)
    sv = StreamingPackageVerifier(trust_for(key), identity=IDENTITY, min_sequence=1)
    out = bytearray()
    for i in range(0, len(pkg), block):
        out += sv.feed(pkg[i : i + block])
    v = sv.finish()
    assert bytes(out) == PAYLOAD[:20_000]
    assert pkg[v.payload_offset :] == bytes(out)
    assert sv.manifest == v.manifest


def test_streaming_verifier_rejects_rollback_before_any_payload_arrives() -> None:
    key = new_key()
    pkg = build(PAYLOAD, key, sequence=3)
    sv = StreamingPackageVerifier(trust_for(key), min_sequence=4)
    envelope_len = inspect_package(io.BytesIO(pkg)).payload_offset
    with pytest.raises(RollbackRejected):
        sv.feed(pkg[:envelope_len])


def test_streaming_verifier_rejects_unknown_key_and_truncation() -> None:
    key = new_key()
    pkg = build(PAYLOAD, key)
    with pytest.raises(UnknownKey):
        StreamingPackageVerifier(trust_for(new_key())).feed(pkg[:4096])
    sv = StreamingPackageVerifier(trust_for(key))
    sv.feed(pkg[:50])
    with pytest.raises(TruncatedPackage):
        sv.finish()
    sv = StreamingPackageVerifier(trust_for(key))
    sv.feed(pkg[:-10])
    with pytest.raises(TruncatedPackage):
        sv.finish()


def test_inspect_reports_layout_and_whole_file_digest_without_verifying(tmp_path: Path) -> None:
    key = new_key()
    pkg = build(PAYLOAD, key, version="3.0", component="app")
    path = tmp_path / "p.suit"
    path.write_bytes(pkg)
    info = inspect_package(path)
    assert info.total_size == len(pkg)
    assert info.file_digest == hashlib.sha256(pkg).digest()
    assert info.payload_offset + info.payload_size == len(pkg)
    assert pkg[info.payload_offset :] == PAYLOAD
    assert info.manifest.version == "3.0"
    assert info.manifest.component == "app"
    # inspect does not need (or check) a trust anchor, and does not check the payload
    tampered = path.with_name("t.suit")
    tampered.write_bytes(pkg[:-1] + b"\0")
    assert inspect_package(tampered).manifest == info.manifest


@pytest.mark.timeout(120)
def test_verifying_a_64_mib_payload_keeps_memory_small(tmp_path: Path) -> None:
    key = new_key()
    payload = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with payload.open("wb") as fh:
        for _ in range(64):
            fh.write(block)
    package = tmp_path / "big.suit"
    tracemalloc.start()
    try:
        build_package(
            payload,
            package,
            version="1",
            vendor_domain="example.com",
            class_name="board-x",
            sequence=1,
            key=key,
        )
        _, build_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        verified = verify_package(package, trust_for(key), identity=IDENTITY)
        _, verify_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert verified.payload_size == 64 << 20
    # Chunks are 1 MiB (build) and 64 KiB (verify); the image itself is 64 MiB.
    assert build_peak < 4 << 20
    assert verify_peak < 2 << 20
