"""The update tables (schema version 2) on the store's shared :class:`Base`.

Like ``packages`` (:mod:`fotakit.repository.schema`), these live in the store's metadata,
so :func:`fotakit.store.engine.ensure_schema` creates them with the others; a version-1
database gets them on its first open by a fotakit that imports this module (additive
migration 1 -> 2, no data touched).

* ``campaigns`` — spec JSON, state, current wave, engine snapshot, ``rev``.
* ``campaign_counters`` — ``(campaign_id, key) -> value``, changed incrementally in the
  transaction of the job change that causes it (never recomputed with ``COUNT(*)``).
* ``campaign_waves`` — one row per wave entered; its primary key makes a second advance
  to the same wave impossible even if the conditional UPDATE were bypassed.
* ``jobs`` — one device's update job; unique ``(campaign_id, endpoint)``; claimed by one
  server process (``owner``, ``lease_until``).
* ``job_events`` — the per-device event log, paged by its increasing ``id``.
* ``rate_buckets`` — token buckets shared by every server process.
* ``job_cancel_requests`` — a cancel asked of a job another process drives; its owner
  picks it up within a campaign tick and cancels (added after version 2; ``create_all``
  adds it to an existing database, nothing else changes).
* ``device_profiles`` — how each device class is updated (payload form, protocols, push,
  timeouts; :mod:`fotakit.updates.profiles`), by class name or ``default`` (added like
  ``job_cancel_requests``).

Times are epoch seconds (double precision), the clock of the pure update cores.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fotakit.store.records import JsonValue
from fotakit.store.schema import ENDPOINT_MAX, SHORT_TEXT_MAX, Base

ID_MAX: Final = 64
STATE_MAX: Final = 32
KEY_MAX: Final = 128

# BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the auto-increasing rowid.
_EventId = BigInteger().with_variant(Integer(), "sqlite")


class CampaignRow(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    name: Mapped[str] = mapped_column(String(SHORT_TEXT_MAX))
    spec: Mapped[dict[str, JsonValue]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(STATE_MAX), index=True)
    wave: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[str | None] = mapped_column(
        String(ID_MAX), ForeignKey("campaigns.id"), index=True
    )
    snapshot: Mapped[dict[str, JsonValue]] = mapped_column(JSON)
    rev: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)


class CampaignCounterRow(Base):
    __tablename__ = "campaign_counters"

    campaign_id: Mapped[str] = mapped_column(
        String(ID_MAX), ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(KEY_MAX), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class CampaignWaveRow(Base):
    __tablename__ = "campaign_waves"

    campaign_id: Mapped[str] = mapped_column(
        String(ID_MAX), ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    wave: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    started_at: Mapped[float] = mapped_column(Double)
    node_id: Mapped[str | None] = mapped_column(String(ID_MAX))
    details: Mapped[dict[str, JsonValue]] = mapped_column(JSON)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("campaign_id", "endpoint", name="jobs_campaign_endpoint"),
        Index("jobs_campaign_state", "campaign_id", "state"),
        Index("jobs_owner_timer", "owner", "next_timer_at"),
    )

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    campaign_id: Mapped[str | None] = mapped_column(
        String(ID_MAX), ForeignKey("campaigns.id", ondelete="CASCADE")
    )
    endpoint: Mapped[str] = mapped_column(String(ENDPOINT_MAX), index=True)
    package_id: Mapped[str] = mapped_column(String(ID_MAX))
    state: Mapped[str] = mapped_column(String(STATE_MAX))
    reason: Mapped[str | None] = mapped_column(String(KEY_MAX))
    attempts: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[dict[str, JsonValue]] = mapped_column(JSON)
    wave: Mapped[int | None] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(ID_MAX))
    lease_until: Mapped[float | None] = mapped_column(Double)
    next_timer_at: Mapped[float | None] = mapped_column(Double)
    rev: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)


class JobEventRow(Base):
    __tablename__ = "job_events"
    # AUTOINCREMENT: SQLite never reuses an id, so ids give a strict order to page by.
    __table_args__ = (
        Index("job_events_endpoint", "endpoint", "id"),
        Index("job_events_job", "job_id", "id"),
        Index("job_events_campaign", "campaign_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_EventId, primary_key=True, autoincrement=True)
    job_id: Mapped[str | None] = mapped_column(String(ID_MAX))
    endpoint: Mapped[str] = mapped_column(String(ENDPOINT_MAX))
    campaign_id: Mapped[str | None] = mapped_column(String(ID_MAX))
    at: Mapped[float] = mapped_column(Double)
    kind: Mapped[str] = mapped_column(String(KEY_MAX))
    details: Mapped[dict[str, JsonValue]] = mapped_column(JSON)


class RateBucketRow(Base):
    __tablename__ = "rate_buckets"

    scope: Mapped[str] = mapped_column(String(SHORT_TEXT_MAX), primary_key=True)
    tokens: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)


class JobCancelRequestRow(Base):
    __tablename__ = "job_cancel_requests"

    job_id: Mapped[str] = mapped_column(
        String(ID_MAX), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    requested_by: Mapped[str] = mapped_column(String(ID_MAX))
    requested_at: Mapped[float] = mapped_column(Double)


class DeviceProfileRow(Base):
    """A device profile (:mod:`fotakit.updates.profiles`) by name: a device class, or
    ``default``. Added after version 2; ``create_all`` adds it to an existing database."""

    __tablename__ = "device_profiles"

    name: Mapped[str] = mapped_column(String(KEY_MAX), primary_key=True)
    spec: Mapped[dict[str, JsonValue]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Double)


UPDATE_TABLES: Final = frozenset(
    {
        "campaigns",
        "campaign_counters",
        "campaign_waves",
        "jobs",
        "job_events",
        "rate_buckets",
        "job_cancel_requests",
        "device_profiles",
    }
)
