"""persist.py: atomic, durable small-file writes and strict reads of agent state."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fotakit.agent.persist import (
    CorruptStateError,
    atomic_write_bytes,
    atomic_write_json,
    read_bytes,
    read_json,
    remove_stale_temp_files,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


def _same(a: Any, b: Any) -> bool:
    """Equality that treats -0.0 and 0.0 the way JSON does (both round trip as numbers)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@FIXTURE_OK
@given(value=json_values)
def test_json_written_atomically_reads_back_equal(tmp_path: Path, value: Any) -> None:
    path = tmp_path / "state.json"
    atomic_write_json(path, value)
    assert _same(read_json(path), value)
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


@FIXTURE_OK
@given(data=st.binary(max_size=4096))
def test_bytes_written_atomically_read_back_equal(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "blob"
    atomic_write_bytes(path, data)
    assert read_bytes(path) == data
    assert [p.name for p in tmp_path.iterdir()] == ["blob"]


def test_missing_file_reads_as_none(tmp_path: Path) -> None:
    assert read_json(tmp_path / "nothing.json") is None
    assert read_bytes(tmp_path / "nothing") is None


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b'{"a": 1', b"\xff\xfe{}", b"NaN", b'{"x": Infinity}', b"garbage"],
    ids=["empty", "open-brace", "truncated", "bad-utf8", "nan", "infinity", "garbage"],
)
def test_corrupt_file_raises_typed_error_naming_the_file(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "boot.json"
    path.write_bytes(raw)
    with pytest.raises(CorruptStateError) as info:
        read_json(path)
    assert info.value.path == path
    assert path.read_bytes() == raw  # never reset behind the operator's back


def test_overwrite_replaces_whole_content(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    atomic_write_json(path, {"long": "x" * 10_000})
    atomic_write_json(path, {"short": 1})
    assert read_json(path) == {"short": 1}
    assert json.loads(path.read_text()) == {"short": 1}


def test_failed_serialisation_keeps_old_content_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    atomic_write_json(path, {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"v": object()})
    with pytest.raises(ValueError):
        atomic_write_json(path, {"v": float("nan")})
    assert read_json(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_write_into_missing_directory_fails_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write_json(tmp_path / "no" / "s.json", {})
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_from_a_crash_are_removed_and_others_kept(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "boot.json", {"ok": True})
    stale = tmp_path / ".boot.json.k2j4h.tmp"
    stale.write_bytes(b'{"half')
    (tmp_path / "image").write_bytes(b"fw")
    (tmp_path / ".hidden").write_bytes(b"keep")
    removed = remove_stale_temp_files(tmp_path)
    assert removed == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "boot.json", "image"]
    assert read_json(tmp_path / "boot.json") == {"ok": True}


def test_on_disk_form_is_sorted_utf8_json(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    atomic_write_json(path, {"b": "é", "a": [1, 2]})
    text = path.read_text(encoding="utf-8")
    assert text.index('"a"') < text.index('"b"')
    assert "é" in text and text.endswith("\n")
