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
  timeouts; :mod:`fotakit.updates.profiles`), by class name or ``default`` (schema version 3).
* ``device_inventory`` — the last /3/0 read of each device (class, version, zone...), so a
  restarted process, or another process sharing the database, knows a device whose read
  fails (schema version 3).

Schema version 3 (:func:`upgrade_jobs_to_v3`) added ``jobs.reason_detail`` (a sentence
explaining a failure) and the partial unique index ``jobs_one_unfinished``: at most one
job per endpoint that is not in a terminal state, enforced by the database for every
process sharing it.

Times are epoch seconds (double precision), the clock of the pure update cores.
"""

from __future__ import annotations

import time
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from fotakit.store.records import JsonValue
from fotakit.store.schema import ENDPOINT_MAX, SHORT_TEXT_MAX, TAG_MAX, Base
from fotakit.updates.job import TERMINAL_STATES
from fotakit.updates.records import reason_key, state_key

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
    reason_detail: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[dict[str, JsonValue]] = mapped_column(JSON)
    wave: Mapped[int | None] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(ID_MAX))
    lease_until: Mapped[float | None] = mapped_column(Double)
    next_timer_at: Mapped[float | None] = mapped_column(Double)
    rev: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)


TERMINAL_NAMES: Final = tuple(sorted(str(state) for state in TERMINAL_STATES))
"""The terminal job states as stored (``JobState`` values), in a fixed order."""

UNFINISHED_INDEX: Final = "jobs_one_unfinished"

_unfinished = JobRow.__table__.c.state.not_in(TERMINAL_NAMES)
Index(
    UNFINISHED_INDEX,
    JobRow.__table__.c.endpoint,
    unique=True,
    sqlite_where=_unfinished,
    postgresql_where=_unfinished,
)
"""One unfinished job per device, whichever process creates it: a second insert fails
with an integrity error (``UpdateStore.create_job`` turns it into ``DeviceBusy``; a
campaign's ``INSERT ... ON CONFLICT DO NOTHING`` skips the device and queues it)."""


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
    ``default`` (schema version 3)."""

    __tablename__ = "device_profiles"

    name: Mapped[str] = mapped_column(String(KEY_MAX), primary_key=True)
    spec: Mapped[dict[str, JsonValue]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Double)


class DeviceInventoryRow(Base):
    """The last known view of a device: what its last successful /3/0 read said."""

    __tablename__ = "device_inventory"

    endpoint: Mapped[str] = mapped_column(String(ENDPOINT_MAX), primary_key=True)
    class_name: Mapped[str | None] = mapped_column(String(SHORT_TEXT_MAX))
    model: Mapped[str | None] = mapped_column(String(SHORT_TEXT_MAX))
    manufacturer: Mapped[str | None] = mapped_column(String(SHORT_TEXT_MAX))
    firmware_version: Mapped[str | None] = mapped_column(String(SHORT_TEXT_MAX))
    tz: Mapped[str | None] = mapped_column(String(TAG_MAX * 2))
    facts: Mapped[dict[str, JsonValue]] = mapped_column(JSON)
    read_at: Mapped[float | None] = mapped_column(Double)
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
        "device_inventory",
    }
)


# -- schema version 2 -> 3 -------------------------------------------------------------------

SUPERSEDED_DETAIL: Final = (
    "cancelled by the upgrade to schema version 3: job {kept} of the same device was kept "
    "(a device has at most one unfinished job)"
)


def upgrade_jobs_to_v3(conn: Connection) -> None:
    """Version 2 -> 3 on an existing ``jobs`` table (run inside the opening transaction).

    Adds ``reason_detail``; then, since a version-2 database may hold several unfinished
    jobs of one device (two campaigns over it, or a single-device update during a
    campaign), keeps one per device and ends the others ``cancelled`` — with
    ``reason_detail`` and a ``finished`` event saying why, and their campaign counters
    moved as any job change moves them — before creating :data:`UNFINISHED_INDEX`.

    Which one is kept: a job already started (its state is past ``pending``: it may be
    talking to the device, and ending it would leave the device mid-update unwatched)
    before one never started; among equals the newest (latest ``created_at``).
    """
    columns = {c["name"] for c in inspect(conn).get_columns("jobs")}
    if "reason_detail" not in columns:
        conn.execute(text("ALTER TABLE jobs ADD COLUMN reason_detail TEXT"))
    jobs = Base.metadata.tables["jobs"]
    unfinished = jobs.c.state.not_in(TERMINAL_NAMES)
    crowded = (
        select(jobs.c.endpoint).where(unfinished).group_by(jobs.c.endpoint).having(func.count() > 1)
    )
    rows = conn.execute(
        select(
            jobs.c.id,
            jobs.c.endpoint,
            jobs.c.campaign_id,
            jobs.c.state,
            jobs.c.reason,
            jobs.c.created_at,
        )
        .where(unfinished, jobs.c.endpoint.in_(crowded))
        .order_by(jobs.c.endpoint)
    ).all()
    by_endpoint: dict[str, list[Any]] = {}
    for row in rows:
        by_endpoint.setdefault(row.endpoint, []).append(row)
    now = time.time()
    for endpoint, group in by_endpoint.items():
        group.sort(key=lambda r: (r.state != "pending", r.created_at, r.id), reverse=True)
        kept, *others = group
        for row in others:
            _end_superseded(conn, row, kept.id, endpoint, now)
    index = next(i for i in jobs.indexes if i.name == UNFINISHED_INDEX)
    index.create(conn, checkfirst=True)


def _end_superseded(conn: Connection, row: Any, kept: str, endpoint: str, now: float) -> None:
    jobs = Base.metadata.tables["jobs"]
    detail = SUPERSEDED_DETAIL.format(kept=kept)
    conn.execute(
        update(jobs)
        .where(jobs.c.id == row.id)
        .values(
            state="cancelled",
            reason="cancelled",
            reason_detail=detail,
            owner=None,
            lease_until=None,
            next_timer_at=None,
            rev=jobs.c.rev + 1,
            updated_at=now,
        )
    )
    conn.execute(
        insert(Base.metadata.tables["job_events"]).values(
            job_id=row.id,
            endpoint=endpoint,
            campaign_id=row.campaign_id,
            at=now,
            kind="finished",
            details={
                "state": "cancelled",
                "reason": "cancelled",
                "why": "schema upgrade",
                "kept_job": kept,
                "detail": detail,
            },
        )
    )
    if row.campaign_id is None:
        return
    deltas = {state_key(row.state): -1, state_key("cancelled"): 1}
    if row.reason != "cancelled":
        deltas[reason_key("cancelled")] = 1
        if row.reason is not None:
            deltas[reason_key(row.reason)] = -1
    counters = Base.metadata.tables["campaign_counters"]
    for key, delta in sorted(deltas.items()):
        changed = conn.execute(
            update(counters)
            .where(counters.c.campaign_id == row.campaign_id, counters.c.key == key)
            .values(value=counters.c.value + delta)
        ).rowcount
        if not changed:
            conn.execute(insert(counters).values(campaign_id=row.campaign_id, key=key, value=delta))
