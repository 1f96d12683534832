"""Building packages: streaming two-pass build, atomic output, changed payload detection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from package_helpers import IDENTITY, new_key, trust_for

from fotakit.packages import BuildError, MalformedPackage, build_package, verify_package
from fotakit.packages.build import CHUNK_SIZE


def _build(src: Path, out: Path, **kw: object) -> None:
    args: dict[str, object] = {
        "version": "1.0",
        "vendor_domain": "example.com",
        "class_name": "board-x",
        "sequence": 5,
        "key": new_key(),
    }
    args.update(kw)
    build_package(src, out, **args)  # type: ignore[arg-type]


def test_build_reports_progress_for_both_passes_and_output_verifies(tmp_path: Path) -> None:
    src = tmp_path / "fw.bin"
    src.write_bytes(os.urandom(3 * CHUNK_SIZE + 123))
    out = tmp_path / "fw.suit"
    key = new_key("p256")
    seen: list[int] = []
    manifest = build_package(
        src,
        out,
        version="1.0",
        vendor_domain="example.com",
        class_name="board-x",
        sequence=5,
        key=key,
        progress=seen.append,
    )
    assert sum(seen) == 2 * src.stat().st_size
    assert max(seen) <= CHUNK_SIZE
    verified = verify_package(out, trust_for(key), identity=IDENTITY)
    assert verified.manifest == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw.bin", "fw.suit"]


def test_payload_changed_during_build_is_an_error_and_leaves_no_output(tmp_path: Path) -> None:
    src = tmp_path / "fw.bin"
    src.write_bytes(os.urandom(3 * CHUNK_SIZE))
    out = tmp_path / "fw.suit"
    calls = 0

    def tamper(_n: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # after the first chunk of the hashing pass
            with src.open("r+b") as fh:
                fh.write(b"\0" * 16)

    with pytest.raises(BuildError, match="changed"):
        _build(src, out, progress=tamper)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw.bin"]


def test_existing_output_is_replaced_atomically(tmp_path: Path) -> None:
    src = tmp_path / "fw.bin"
    src.write_bytes(b"new image")
    out = tmp_path / "fw.suit"
    out.write_bytes(b"old package")
    _build(src, out)
    assert out.read_bytes().endswith(b"new image")


def test_missing_payload_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="cannot read"):
        _build(tmp_path / "missing.bin", tmp_path / "out.suit")


@pytest.mark.parametrize(
    "version", ["", "x" * 65, "bad\nversion", "1.0 beta", " 1.0.0", "1.0.0\t", "2.0\u00a0rc"]
)
def test_invalid_version_strings_are_refused(tmp_path: Path, version: str) -> None:
    src = tmp_path / "fw.bin"
    src.write_bytes(b"img")
    with pytest.raises(MalformedPackage):
        _build(src, tmp_path / "out.suit", version=version)
    assert not (tmp_path / "out.suit").exists()
