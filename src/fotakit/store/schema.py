"""The database schema (version 4): devices, registrations, observations, pending requests.

Version 4: ``registrations.node_id``, the server process holding each registration.

These ORM classes never leave :mod:`fotakit.store`; the store converts them to the frozen
records of :mod:`fotakit.store.records` before returning. Observations reference their
registration with ``ON DELETE CASCADE`` so that deleting or replacing a registration
(TS Core §6.2.1: a second Register with the same endpoint name replaces the first) drops
its observations inside the same transaction.

Any change to these tables needs a new :data:`SCHEMA_VERSION` and a migration.

Other modules add their tables to the same :class:`Base`: ``packages``
(:mod:`fotakit.repository.schema`, version 1) and the update tables
(:mod:`fotakit.updates.tables`, version 2: campaigns, jobs, job events...; version 3:
``jobs.reason_detail``, one unfinished job per device, the device inventory).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Connection,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    inspect,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from fotakit.store.records import (
    DeviceRecord,
    JsonValue,
    ObservationRecord,
    PendingRequestRecord,
    RegistrationRecord,
)

SCHEMA_VERSION: Final = 4


def _add_tables_only(_conn: Connection) -> None:
    """A migration that only adds tables: ``create_all`` (run before it) has done it."""


def _jobs_v3(conn: Connection) -> None:
    """2 -> 3: ``jobs.reason_detail`` and at most one unfinished job per device (the
    partial unique index; see :func:`fotakit.updates.tables.upgrade_jobs_to_v3`), plus the
    ``device_inventory`` table (added by ``create_all``).

    A database without a ``jobs`` table (opened so far only by a process that never
    imported the update tables) has nothing to change: the table is created with the new
    column and index whenever the update tables are first created.
    """
    if "jobs" not in inspect(conn).get_table_names():
        return
    # imported here: the store does not otherwise depend on the update service
    from fotakit.updates.tables import upgrade_jobs_to_v3

    upgrade_jobs_to_v3(conn)


def _registrations_v4(conn: Connection) -> None:
    """3 -> 4: ``registrations.node_id`` (NULL for the rows already there: not said)."""
    columns = {c["name"] for c in inspect(conn).get_columns("registrations")}
    if "node_id" not in columns:
        conn.execute(
            text(f"ALTER TABLE registrations ADD COLUMN node_id VARCHAR({SHORT_TEXT_MAX})")
        )


MIGRATIONS: Final[dict[int, Callable[[Connection], None]]] = {
    # 1 -> 2: the update tables (campaigns, campaign_counters, campaign_waves, jobs,
    # job_events, rate_buckets). They are created by whichever fotakit opens the database
    # with fotakit.updates.tables imported; a version-2 database opened without them gets
    # them on a later open (create_all only ever adds what is missing).
    1: _add_tables_only,
    2: _jobs_v3,
    3: _registrations_v4,
}
"""Steps from version ``v`` to ``v + 1``, run in order inside the opening transaction
after ``create_all`` has added any missing table."""

ENDPOINT_MAX: Final = 255
REGISTRATION_ID_MAX: Final = 64
SHORT_TEXT_MAX: Final = 255
TAG_MAX: Final = 32


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend.

    SQLite has no time zones, so values are stored there as naive UTC (SQLAlchemy's
    fixed-width ISO text, which sorts and compares correctly); PostgreSQL gets
    ``timestamptz``. Reads always return aware UTC values.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store needs aware UTC times")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {
        datetime: UTCDateTime(),
        bytes: LargeBinary(),
    }


class SchemaVersionRow(Base):
    """Exactly one row: the schema version the database was created with."""

    __tablename__ = "schema_version"
    __table_args__ = (CheckConstraint("id = 1", name="schema_version_single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer)


class DeviceRow(Base):
    __tablename__ = "devices"

    endpoint: Mapped[str] = mapped_column(String(ENDPOINT_MAX), primary_key=True)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    lwm2m_version: Mapped[str] = mapped_column(String(TAG_MAX))
    last_registration_id: Mapped[str | None] = mapped_column(String(REGISTRATION_ID_MAX))
    attributes: Mapped[dict[str, JsonValue]] = mapped_column(JSON)

    def to_record(self) -> DeviceRecord:
        return DeviceRecord(
            endpoint=self.endpoint,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            lwm2m_version=self.lwm2m_version,
            last_registration_id=self.last_registration_id,
            attributes=self.attributes,
        )


class RegistrationRow(Base):
    __tablename__ = "registrations"

    registration_id: Mapped[str] = mapped_column(String(REGISTRATION_ID_MAX), primary_key=True)
    endpoint: Mapped[str] = mapped_column(
        String(ENDPOINT_MAX), ForeignKey("devices.endpoint"), unique=True
    )
    address: Mapped[str] = mapped_column(String(SHORT_TEXT_MAX))
    port: Mapped[int] = mapped_column(Integer)
    lifetime: Mapped[int] = mapped_column(BigInteger)
    lwm2m_version: Mapped[str] = mapped_column(String(TAG_MAX))
    binding: Mapped[str] = mapped_column(String(TAG_MAX))
    queue_mode: Mapped[bool] = mapped_column(Boolean)
    sms: Mapped[str | None] = mapped_column(String(SHORT_TEXT_MAX))
    root_path: Mapped[str] = mapped_column(String(SHORT_TEXT_MAX))
    object_links: Mapped[str] = mapped_column(Text)
    content_formats: Mapped[list[int]] = mapped_column(JSON)
    registered_at: Mapped[datetime]
    last_update: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    node_id: Mapped[str | None] = mapped_column(String(SHORT_TEXT_MAX))

    @classmethod
    def from_record(cls, rec: RegistrationRecord) -> RegistrationRow:
        return cls(
            registration_id=rec.registration_id,
            endpoint=rec.endpoint,
            address=rec.address,
            port=rec.port,
            lifetime=rec.lifetime,
            lwm2m_version=rec.lwm2m_version,
            binding=rec.binding,
            queue_mode=rec.queue_mode,
            sms=rec.sms,
            root_path=rec.root_path,
            object_links=rec.object_links,
            content_formats=list(rec.content_formats),
            registered_at=rec.registered_at,
            last_update=rec.last_update,
            expires_at=rec.expires_at,
            node_id=rec.node_id,
        )

    def to_record(self) -> RegistrationRecord:
        return RegistrationRecord(
            registration_id=self.registration_id,
            endpoint=self.endpoint,
            address=self.address,
            port=self.port,
            lifetime=self.lifetime,
            lwm2m_version=self.lwm2m_version,
            binding=self.binding,
            queue_mode=self.queue_mode,
            sms=self.sms,
            root_path=self.root_path,
            object_links=self.object_links,
            content_formats=tuple(self.content_formats),
            registered_at=self.registered_at,
            last_update=self.last_update,
            expires_at=self.expires_at,
            node_id=self.node_id,
        )


class ObservationRow(Base):
    __tablename__ = "observations"

    observation_id: Mapped[str] = mapped_column(String(REGISTRATION_ID_MAX), primary_key=True)
    registration_id: Mapped[str] = mapped_column(
        String(REGISTRATION_ID_MAX),
        ForeignKey("registrations.registration_id", ondelete="CASCADE"),
        index=True,
    )
    endpoint: Mapped[str] = mapped_column(String(ENDPOINT_MAX))
    path: Mapped[str] = mapped_column(String(SHORT_TEXT_MAX))
    token: Mapped[bytes]
    content_format: Mapped[int | None] = mapped_column(Integer)
    attributes: Mapped[dict[str, JsonValue]] = mapped_column(JSON)
    created_at: Mapped[datetime]

    @classmethod
    def from_record(cls, rec: ObservationRecord) -> ObservationRow:
        return cls(
            observation_id=rec.observation_id,
            registration_id=rec.registration_id,
            endpoint=rec.endpoint,
            path=rec.path,
            token=rec.token,
            content_format=rec.content_format,
            attributes=dict(rec.attributes),
            created_at=rec.created_at,
        )

    def to_record(self) -> ObservationRecord:
        return ObservationRecord(
            observation_id=self.observation_id,
            registration_id=self.registration_id,
            endpoint=self.endpoint,
            path=self.path,
            token=bytes(self.token),
            content_format=self.content_format,
            attributes=self.attributes,
            created_at=self.created_at,
        )


class PendingRequestRow(Base):
    __tablename__ = "pending_requests"
    # AUTOINCREMENT: ids are never reused in SQLite, so they give a strict FIFO order and
    # a stale id can never delete a newer request.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint: Mapped[str] = mapped_column(String(ENDPOINT_MAX), index=True)
    created_at: Mapped[datetime]
    operation: Mapped[str] = mapped_column(String(TAG_MAX))
    path: Mapped[str] = mapped_column(String(SHORT_TEXT_MAX))
    payload: Mapped[bytes]
    content_format: Mapped[int | None] = mapped_column(Integer)
    options: Mapped[dict[str, JsonValue]] = mapped_column(JSON)

    def to_record(self) -> PendingRequestRecord:
        return PendingRequestRecord(
            id=self.id,
            endpoint=self.endpoint,
            created_at=self.created_at,
            operation=self.operation,
            path=self.path,
            payload=bytes(self.payload),
            content_format=self.content_format,
            options=self.options,
        )


FOTAKIT_TABLES: Final = frozenset(Base.metadata.tables)
