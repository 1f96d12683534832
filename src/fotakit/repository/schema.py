"""The ``packages`` table: one row per stored package (metadata and download counters).

The table lives in the store's SQLAlchemy metadata (:class:`fotakit.store.schema.Base`), so
:func:`fotakit.store.engine.ensure_schema` creates it with the others and it shares the
store's schema version: it is part of version 1, as no fotakit with a version-1 database
without it has shipped. The file is the truth about the bytes; the row is what makes a
package visible — a file without a row is an invisible orphan, never the reverse.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from fotakit.repository.records import PackageRecord
from fotakit.store.schema import SHORT_TEXT_MAX, Base


class PackageRow(Base):
    __tablename__ = "packages"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    payload_offset: Mapped[int] = mapped_column(BigInteger)
    payload_size: Mapped[int] = mapped_column(BigInteger)
    payload_sha256: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(BigInteger)
    vendor_id: Mapped[str] = mapped_column(String(36))
    class_id: Mapped[str] = mapped_column(String(36))
    version: Mapped[str] = mapped_column(String(SHORT_TEXT_MAX))
    component: Mapped[str | None] = mapped_column(String(SHORT_TEXT_MAX))
    base_digest: Mapped[str | None] = mapped_column(String(128))
    kid: Mapped[str] = mapped_column(String(SHORT_TEXT_MAX))
    uploaded_at: Mapped[datetime]
    downloads: Mapped[int] = mapped_column(Integer, default=0)
    bytes_served: Mapped[int] = mapped_column(BigInteger, default=0)

    @classmethod
    def from_record(cls, rec: PackageRecord) -> PackageRow:
        return cls(
            id=rec.id,
            sha256=rec.sha256,
            size=rec.size,
            payload_offset=rec.payload_offset,
            payload_size=rec.payload_size,
            payload_sha256=rec.payload_sha256,
            sequence=rec.sequence,
            vendor_id=rec.vendor_id,
            class_id=rec.class_id,
            version=rec.version,
            component=rec.component,
            base_digest=rec.base_digest,
            kid=rec.kid,
            uploaded_at=rec.uploaded_at,
            downloads=rec.downloads,
            bytes_served=rec.bytes_served,
        )

    def to_record(self) -> PackageRecord:
        return PackageRecord(
            id=self.id,
            sha256=self.sha256,
            size=self.size,
            payload_offset=self.payload_offset,
            payload_size=self.payload_size,
            payload_sha256=self.payload_sha256,
            sequence=self.sequence,
            vendor_id=self.vendor_id,
            class_id=self.class_id,
            version=self.version,
            component=self.component,
            base_digest=self.base_digest,
            kid=self.kid,
            uploaded_at=self.uploaded_at,
            downloads=self.downloads,
            bytes_served=self.bytes_served,
        )
