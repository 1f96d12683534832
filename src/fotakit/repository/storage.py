"""Content-addressed, immutable package files: ``<root>/sha256/<hex[:2]>/<hex>``.

An upload is streamed into ``<root>/tmp/`` (same file system, so the final rename is
atomic) while it is hashed, fsynced, made read-only and renamed into place; the directory
is fsynced so the name survives a power cut too. A file under ``sha256/`` without a
database row is an invisible orphan (a crash between rename and commit): harmless, and
replaced by the next upload of the same bytes. Publishing and deleting run under an
exclusive lock (``flock`` on ``<root>/.lock`` plus a thread lock), so a CLI upload and a
running server can share one repository directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

CHUNK: Final = 1 << 16
STALE_TEMP_AGE: Final = 3600.0
"""Seconds after which a temporary file is taken for a crashed upload's leftover."""


class TooLarge(Exception):
    """The upload exceeded the size limit; nothing was kept."""


@dataclass(slots=True)
class TempBlob:
    """A received upload in ``tmp/``: its path, SHA-256 (hex) and size."""

    path: Path
    sha256: str
    size: int


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "sha256"
        self.tmp = root / "tmp"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._lock_path = root / ".lock"
        self._thread_lock = threading.Lock()

    def path_for(self, sha256: str) -> Path:
        return self.objects / sha256[:2] / sha256

    def receive(self, source: BinaryIO, max_size: int) -> TempBlob:
        """Copy ``source`` to a new temporary file, hashing it; fsync; return it.

        On any failure the temporary file is removed before the exception propagates.
        """
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="upload-", suffix=".part")
        path = Path(name)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                for _ in range(max_size // CHUNK + 2):  # bounded: the size cap ends it
                    chunk = source.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_size:
                        raise TooLarge(f"upload larger than {max_size} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            return TempBlob(path, digest.hexdigest(), size)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across threads of this process and across processes."""
        with self._thread_lock, open(self._lock_path, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def publish(self, blob: TempBlob) -> Path:
        """Make ``blob`` read-only and rename it to its content address (call under lock)."""
        final = self.path_for(blob.sha256)
        final.parent.mkdir(exist_ok=True)
        os.chmod(blob.path, 0o444)
        os.replace(blob.path, final)
        _fsync_dir(final.parent)
        return final

    def unpublish(self, sha256: str) -> Path | None:
        """Move a stored file aside (to ``tmp/``), so that :meth:`restore` can undo it."""
        final = self.path_for(sha256)
        aside = self.tmp / f"{sha256}.deleting"
        try:
            os.replace(final, aside)
        except FileNotFoundError:
            return None
        return aside

    def restore(self, aside: Path, sha256: str) -> None:
        os.replace(aside, self.path_for(sha256))

    def remove(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)

    @staticmethod
    def discard(path: Path | None) -> None:
        if path is not None:
            path.unlink(missing_ok=True)

    def sweep_stale_temps(self, now: float | None = None) -> int:
        """Remove temporary files older than :data:`STALE_TEMP_AGE` (crashed uploads)."""
        limit = (time.time() if now is None else now) - STALE_TEMP_AGE
        removed = 0
        for entry in os.scandir(self.tmp):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < limit:
                    os.unlink(entry.path)
                    removed += 1
        return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
