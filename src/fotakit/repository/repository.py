"""The firmware repository: verified uploads, content-addressed storage, metadata, counters.

:meth:`Repository.add` streams an upload to a temporary file while hashing it, verifies
the signed package (:func:`fotakit.packages.verify_package`) *before* anything becomes
visible, then publishes the file under its SHA-256 and inserts its row (see
:mod:`fotakit.repository.storage` for the on-disk rules). A failure at any step leaves no
row, no file and no temporary file. Adding the same bytes again returns the stored record.

Delivery (:mod:`fotakit.repository.coap`, :mod:`fotakit.repository.http`) looks packages
up through :meth:`Repository.lookup` (an in-memory cache: stored packages never change) and
reports what it served with :meth:`Repository.count`; counts are kept in memory and
written by :meth:`Repository.flush_counters`, which the delivery layers call off the event
loop after each completed download. :meth:`get` and :meth:`list` include unflushed counts.

The repository opens its own SQLAlchemy engine on the store's database: uploads hold a
write transaction only for one INSERT, and never occupy the LwM2M server's store thread.
All methods are blocking and thread-safe; asyncio code calls them with ``to_thread``.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from sqlalchemy import Connection, Engine, Table, delete, insert, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fotakit.packages import PackageError, verify_package
from fotakit.packages.manifest import InvalidVersion, check_version
from fotakit.repository import names
from fotakit.repository.errors import (
    RepositoryClosed,
    RepositoryError,
    UnknownPackage,
    UploadRejected,
)
from fotakit.repository.records import PackageRecord, is_package_id, package_id
from fotakit.repository.schema import PackageRow
from fotakit.repository.storage import BlobStore, TempBlob, TooLarge
from fotakit.store.engine import WRITE_OPTION, ensure_schema, make_engine
from fotakit.store.records import utcnow
from fotakit.store.schema import Base
from fotakit.store.urls import parse_url

if TYPE_CHECKING:
    from fotakit.packages import TrustStore, VerifiedPackage

log = logging.getLogger("fotakit.repository")

MAX_PACKAGE_SIZE: Final = 1 << 30
_TABLE: Final[Table] = Base.metadata.tables[PackageRow.__tablename__]


class Repository:
    """Stored, verified firmware packages under ``root`` with metadata in database ``db``."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        db: str | URL,
        trust: TrustStore | None = None,
        *,
        max_package_size: int = MAX_PACKAGE_SIZE,
    ) -> None:
        """``trust`` None makes a read-only repository (delivery only, :meth:`add` refuses)."""
        self.root = Path(root)
        self._blobs = BlobStore(self.root)
        self._blobs.sweep_stale_temps()
        self._engine: Engine = make_engine(parse_url(db))
        self._write_engine = self._engine.execution_options(**{WRITE_OPTION: True})
        try:
            ensure_schema(self._engine)
            with self._write_engine.begin() as conn:
                names.create_table(conn)
        except BaseException:
            self._engine.dispose()
            raise
        self._trust = trust
        self._max_size = max_package_size
        self._cache: dict[str, PackageRecord] = {}
        self._pending: dict[str, tuple[int, int]] = {}
        # count() only takes _pending_lock (it runs on the event loop); a flush holds
        # _flush_lock across its transaction, and get()/list() take it so they never see a
        # count both in the database and in memory, or in neither.
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._closed = False

    @property
    def trust(self) -> TrustStore | None:
        """The trust store uploads are verified against (None: read-only)."""
        return self._trust

    def close(self) -> None:
        """Write pending counters and release the database. Idempotent."""
        if self._closed:
            return
        try:
            self.flush_counters()
        finally:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- uploads --------------------------------------------------------------------------

    def add(
        self,
        source: str | os.PathLike[str] | BinaryIO | bytes,
        *,
        vendor_name: str | None = None,
        class_name: str | None = None,
    ) -> PackageRecord:
        """Verify and store a signed package; return its record (the stored one if known).

        Raises :class:`UploadRejected` (with the verifier's error as ``cause``) for a
        package that does not verify against the trust store. ``vendor_name`` and
        ``class_name`` (both or neither): the vendor domain and class name the package was
        built for; kept (:meth:`class_names`) when they hash to its IDs, else the upload is
        rejected (:mod:`fotakit.repository.names`).
        """
        if (vendor_name is None) != (class_name is None):
            raise UploadRejected("give both the vendor and the class name, or neither")
        self._check_open()
        if self._trust is None:
            raise UploadRejected("this repository has no trust store: uploads are refused")
        with _opened(source) as stream:
            try:
                blob = self._blobs.receive(stream, self._max_size)
            except TooLarge as exc:
                raise UploadRejected(str(exc)) from None
        try:
            return self._verify_and_publish(blob, vendor_name, class_name)
        finally:
            # Gone already if it was published; otherwise this removes the temporary file.
            self._blobs.discard(blob.path)

    def _verify_and_publish(
        self, blob: TempBlob, vendor_name: str | None, class_name: str | None
    ) -> PackageRecord:
        assert self._trust is not None
        try:
            verified = verify_package(blob.path, self._trust)
        except PackageError as exc:
            raise UploadRejected(f"{exc.code}: {exc}", exc) from exc
        record = _record_for(blob, verified)
        try:
            check_version(record.version)
        except InvalidVersion as exc:
            raise UploadRejected(f"version {exc} (see docs/package-format.md)") from None
        if vendor_name is not None and class_name is not None:
            try:
                named = names.check_names(
                    vendor_name, class_name, record.vendor_id, record.class_id
                )
            except names.NameMismatch as exc:
                raise UploadRejected(f"names: {exc}") from None
            with self._write() as conn:
                names.remember(conn, record.vendor_id, record.class_id, named)
        with self._blobs.locked():
            existing = self._select(record.id)
            if existing is not None:
                if existing.sha256 != record.sha256:
                    raise RepositoryError(
                        f"package id {record.id} is taken by different bytes "
                        f"({existing.sha256}); refusing the upload"
                    )
                if not self._blobs.path_for(record.sha256).exists():
                    log.warning("package %s had lost its file; restored", record.id)
                    self._blobs.publish(blob)
                return self._with_pending(existing)
            try:
                self._blobs.publish(blob)
                with self._write() as conn:
                    conn.execute(insert(_TABLE).values(**_row_values(record)))
            except BaseException:
                self._blobs.remove(record.sha256)
                raise
        self._cache[record.id] = record
        log.info("stored package %s (version %s, %d bytes)", record.id, record.version, blob.size)
        return record

    # -- queries --------------------------------------------------------------------------

    def get(self, package_id: str) -> PackageRecord:
        """The record of ``package_id`` with current counters; :class:`UnknownPackage`."""
        self._check_open()
        if not is_package_id(package_id):
            raise UnknownPackage(package_id)
        with self._flush_lock:  # no flush between reading the row and the pending counts
            record = self._select(package_id)
            if record is None:
                raise UnknownPackage(package_id)
            return self._with_pending(record)

    def list(self) -> list[PackageRecord]:
        """Every stored package, oldest upload first."""
        self._check_open()
        with self._flush_lock, self._read() as session:
            rows = session.scalars(select(PackageRow).order_by(PackageRow.uploaded_at))
            return [self._with_pending(row.to_record()) for row in rows]

    def class_names(self) -> dict[str, names.ClassName]:
        """Class ID -> the vendor domain and class name given at an upload (checked)."""
        self._check_open()
        with self._engine.connect() as conn:
            return names.all_names(conn)

    def cached(self, package_id: str) -> PackageRecord | None:
        """For delivery on the event loop: the record if it is in memory (no I/O)."""
        return self._cache.get(package_id)

    def lookup(self, package_id: str) -> PackageRecord | None:
        """For delivery: the record (counters not current), from memory when possible."""
        cached = self._cache.get(package_id)
        if cached is not None:
            return cached
        if self._closed or not is_package_id(package_id):
            return None
        record = self._select(package_id)
        if record is not None:
            self._cache[package_id] = record
        return record

    def blob_path(self, record: PackageRecord) -> Path:
        """Where the package file of ``record`` is stored (read-only)."""
        return self._blobs.path_for(record.sha256)

    def delete(self, package_id: str) -> PackageRecord:
        """Remove a package's row and file together; return the removed record."""
        self._check_open()
        if not is_package_id(package_id):
            raise UnknownPackage(package_id)
        with self._blobs.locked():
            aside: Path | None = None
            record: PackageRecord | None = None
            try:
                with self._write() as conn:
                    row = conn.execute(select(_TABLE).where(_TABLE.c.id == package_id)).first()
                    if row is None:
                        raise UnknownPackage(package_id)
                    record = PackageRow(**row._asdict()).to_record()
                    conn.execute(delete(_TABLE).where(_TABLE.c.id == package_id))
                    aside = self._blobs.unpublish(record.sha256)
            except BaseException:
                if aside is not None and record is not None:
                    self._blobs.restore(aside, record.sha256)
                raise
            self._blobs.discard(aside)
        assert record is not None
        self._cache.pop(package_id, None)
        with self._pending_lock:
            self._pending.pop(package_id, None)
        return record

    # -- download counters ----------------------------------------------------------------

    def count(self, package_id: str, *, nbytes: int, completed: bool) -> None:
        """Note ``nbytes`` served and, if ``completed``, one completed download (no I/O)."""
        with self._pending_lock:
            downloads, served = self._pending.get(package_id, (0, 0))
            self._pending[package_id] = (downloads + int(completed), served + nbytes)

    def flush_counters(self) -> None:
        """Add the counts noted since the last flush to the database rows."""
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        if not pending or self._closed:
            return
        try:
            with self._write() as conn:
                for pid, (downloads, served) in pending.items():
                    conn.execute(
                        update(_TABLE)
                        .where(_TABLE.c.id == pid)
                        .values(
                            downloads=_TABLE.c.downloads + downloads,
                            bytes_served=_TABLE.c.bytes_served + served,
                        )
                    )
        except BaseException:
            with self._pending_lock:  # keep them for the next flush
                for pid, (downloads, served) in pending.items():
                    old_downloads, old_served = self._pending.get(pid, (0, 0))
                    self._pending[pid] = (old_downloads + downloads, old_served + served)
            raise

    # -- internals ------------------------------------------------------------------------

    def _with_pending(self, record: PackageRecord) -> PackageRecord:
        with self._pending_lock:
            downloads, served = self._pending.get(record.id, (0, 0))
        if not downloads and not served:
            return record
        return dataclasses.replace(
            record,
            downloads=record.downloads + downloads,
            bytes_served=record.bytes_served + served,
        )

    def _select(self, package_id: str) -> PackageRecord | None:
        with self._read() as session:
            row = session.get(PackageRow, package_id)
            return None if row is None else row.to_record()

    def _check_open(self) -> None:
        if self._closed:
            raise RepositoryClosed("the repository is closed")

    @contextmanager
    def _read(self) -> Iterator[Session]:
        self._check_open()
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        self._check_open()
        try:
            with self._write_engine.begin() as conn:
                yield conn
        except IntegrityError as exc:
            raise RepositoryError(f"write refused by a database constraint: {exc.orig}") from exc


@contextmanager
def _opened(source: str | os.PathLike[str] | BinaryIO | bytes) -> Iterator[BinaryIO]:
    if isinstance(source, bytes):
        yield io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            yield handle
    else:
        yield source


def _record_for(blob: TempBlob, verified: VerifiedPackage) -> PackageRecord:
    manifest = verified.manifest
    base = manifest.base_digest
    return PackageRecord(
        id=package_id(blob.sha256),
        sha256=blob.sha256,
        size=blob.size,
        payload_offset=int(verified.payload_offset),
        payload_size=int(verified.payload_size),
        payload_sha256=manifest.payload_digest.hex(),
        sequence=int(manifest.sequence),
        vendor_id=str(manifest.vendor_id),
        class_id=str(manifest.class_id),
        version=str(manifest.version),
        component=manifest.component,
        base_digest=None if base is None else base.hex(),
        kid=verified.kid.hex(),
        uploaded_at=utcnow(),
    )


def _row_values(record: PackageRecord) -> dict[str, Any]:
    return {column.name: getattr(record, column.name) for column in _TABLE.columns}
