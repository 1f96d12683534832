"""Crash-safe small-file persistence for the device agent: write to a temp file, rename.

Every piece of agent state that must survive a power cut or a SIGKILL (the A/B boot state,
each slot's description, the Object 5 snapshot, download progress) is written with
:func:`atomic_write_bytes` / :func:`atomic_write_json`:

1. write the new content to a temporary file *in the same directory* (a rename is only
   atomic within one file system);
2. ``flush`` and ``os.fsync`` the temporary file, so its data is on disk before its name;
3. ``os.replace`` it over the target (POSIX rename(2): readers see the old file or the
   new one, never a mix);
4. ``os.fsync`` the directory, so the rename itself is durable.

A crash at any point leaves either the old content or the new content under the target
name, plus at worst a stray temporary file (``.<name>.<random>.tmp``) that
:func:`remove_stale_temp_files` deletes on the next start. This is the same discipline
MCUboot applies to its image trailer and SQLite to its journal.

Reading is strict: a missing file is ``None`` (never written yet), but a file that exists
and does not decode raises :class:`CorruptStateError`. State is never silently reset to a
default, because a reset boot state could boot an unverified slot or forget the
anti-rollback counter.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Final

TEMP_PREFIX: Final = "."
TEMP_SUFFIX: Final = ".tmp"


class PersistError(Exception):
    """Base of persistence failures."""


class CorruptStateError(PersistError):
    """A state file exists but is not what was written (bad UTF-8, bad JSON, bad shape).

    ``path`` names the file; ``detail`` says what is wrong. The agent refuses to start
    rather than guess: an operator must look at the file.
    """

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"corrupt state file {path}: {detail}")
        self.path = path
        self.detail = detail


def fsync_dir(directory: Path) -> None:
    """Make a rename or create in ``directory`` durable (fsync on the directory itself)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (temp file, fsync, rename)."""
    target = Path(path)
    directory = target.parent
    fd, tmp_name = tempfile.mkstemp(
        dir=directory, prefix=f"{TEMP_PREFIX}{target.name}.", suffix=TEMP_SUFFIX
    )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        # Includes KeyboardInterrupt/CancelledError: never leave a half-named temp behind.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)


def encode_json(obj: Any) -> bytes:
    """The canonical on-disk JSON form: sorted keys, indented, UTF-8, no NaN, newline."""
    text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Serialise ``obj`` (JSON types only) and replace ``path`` with it atomically."""
    atomic_write_bytes(path, encode_json(obj))


def read_bytes(path: Path | str) -> bytes | None:
    """The content of ``path``, or ``None`` when it does not exist."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


def read_json(path: Path | str) -> Any | None:
    """Decode ``path`` as JSON; ``None`` if missing; :class:`CorruptStateError` if undecodable."""
    raw = read_bytes(path)
    if raw is None:
        return None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptStateError(Path(path), str(exc)) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def remove_stale_temp_files(directory: Path | str) -> list[Path]:
    """Delete temporaries left by a crash inside :func:`atomic_write_bytes`; return them."""
    removed: list[Path] = []
    d = Path(directory)
    if not d.is_dir():
        return removed
    for entry in d.iterdir():
        name = entry.name
        if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    if removed:
        fsync_dir(d)
    return removed
