"""Persistence of update jobs and campaigns, shared safely by several server processes.

:class:`UpdateStore` is the synchronous API (each public method is one transaction);
:class:`AsyncUpdateStore` runs it on one worker thread for asyncio code and commits
concurrent :meth:`~UpdateStore.save_job` calls together (group commit).

What makes more than one server process on one PostgreSQL database safe:

* **One driver per job.** :meth:`UpdateStore.claim_jobs` picks unowned (or expired-lease)
  jobs with ``SELECT ... FOR UPDATE SKIP LOCKED`` and marks them with the caller's node ID
  and a lease, in one transaction: two processes never get the same job. SQLite has one
  writer at a time (``BEGIN IMMEDIATE``), so the same statements are enough there.
  :meth:`~UpdateStore.save_job` with ``node_id`` refuses a write from a process whose claim
  was taken over (:class:`StaleJob`).
* **Optimistic concurrency.** Every job and campaign row has a ``rev``; a write names the
  revision it was computed from and fails with :class:`StaleJob` / :class:`StaleCampaign`
  if another write came first (a lost update is impossible).
* **Exact counters.** A job's state/reason change and the campaign counters it moves are
  one transaction (``INSERT ... ON CONFLICT DO UPDATE SET value = value + delta``); counters
  are never recomputed by scanning jobs. Rows are always locked job first, then counters
  in key order, so concurrent writers cannot deadlock.
* **Waves advance once.** :meth:`~UpdateStore.advance_wave` is ``UPDATE campaigns SET
  wave = :to WHERE id = :id AND wave = :from``: of any number of racing callers exactly
  one sees a row changed (PostgreSQL re-checks the WHERE after the row lock is released).
* **Shared rate limit.** :meth:`~UpdateStore.take_tokens` refills and takes from a token
  bucket row under its row lock.
* **One unfinished job per device.** A partial unique index (schema version 3, see
  :mod:`fotakit.updates.tables`) refuses a second unfinished job of an endpoint, whichever
  process inserts it: :meth:`~UpdateStore.create_job` raises :class:`DeviceBusy`, and
  :meth:`~UpdateStore.add_campaign_jobs` skips the device and reports it ``busy``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Select,
    Table,
    and_,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

import fotakit.updates.tables  # noqa: F401  (registers the update tables on Base)
from fotakit.store.engine import WRITE_OPTION, SqliteSynchronous, ensure_schema, make_engine
from fotakit.store.errors import Conflict, StoreClosed, StoreError
from fotakit.store.records import JsonObject
from fotakit.store.schema import Base
from fotakit.store.urls import parse_url, redacted
from fotakit.updates.records import (
    TERMINAL_STATES,
    TOTAL_KEY,
    CampaignRecord,
    EventRecord,
    JobRecord,
    NewEvent,
    WaveRecord,
    new_campaign_id,
    new_job_id,
    reason_key,
    state_key,
)

__all__ = [
    "AddedJobs",
    "AsyncUpdateStore",
    "DeviceBusy",
    "InventoryRecord",
    "JobSave",
    "StaleCampaign",
    "StaleJob",
    "UnknownCampaign",
    "UnknownJob",
    "UpdateStore",
]

log = logging.getLogger("fotakit.updates.store")

T = TypeVar("T")

_CAMPAIGNS: Final[Table] = Base.metadata.tables["campaigns"]
_COUNTERS: Final[Table] = Base.metadata.tables["campaign_counters"]
_WAVES: Final[Table] = Base.metadata.tables["campaign_waves"]
_JOBS: Final[Table] = Base.metadata.tables["jobs"]
_EVENTS: Final[Table] = Base.metadata.tables["job_events"]
_BUCKETS: Final[Table] = Base.metadata.tables["rate_buckets"]
_CANCELS: Final[Table] = Base.metadata.tables["job_cancel_requests"]
_PROFILES: Final[Table] = Base.metadata.tables["device_profiles"]
_INVENTORY: Final[Table] = Base.metadata.tables["device_inventory"]

_CHUNK: Final = 500
"""Rows per multi-row INSERT and values per IN list (well below SQLite's limits)."""
_TERMINAL: Final = tuple(sorted(TERMINAL_STATES))


# -- errors ------------------------------------------------------------------------------


class UnknownJob(StoreError, LookupError):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no update job with ID {job_id!r}")


class UnknownCampaign(StoreError, LookupError):
    def __init__(self, campaign_id: str) -> None:
        self.campaign_id = campaign_id
        super().__init__(f"no campaign with ID {campaign_id!r}")


class DeviceBusy(Conflict):
    """The device already has an unfinished job (``job_id``): a device runs one at a time.

    Raised from the database's own refusal (the partial unique index of schema version 3),
    so it holds for every process sharing the database, not only this one.
    """

    def __init__(self, endpoint: str, job_id: str) -> None:
        self.endpoint = endpoint
        self.job_id = job_id
        super().__init__(f"device {endpoint!r} already has an unfinished update job {job_id!r}")


class StaleJob(StoreError):
    """A job write computed from an old revision, or by a process that lost its claim.

    Nothing was written. Reload the job (:meth:`UpdateStore.get_job`) and decide again.
    """

    def __init__(
        self, job_id: str, *, expected_rev: int, actual_rev: int, owner: str | None = None
    ) -> None:
        self.job_id = job_id
        self.expected_rev = expected_rev
        self.actual_rev = actual_rev
        self.owner = owner
        if expected_rev != actual_rev:
            why = f"expected revision {expected_rev}, the store has {actual_rev}"
        else:
            why = f"the job is now owned by {owner!r}"
        super().__init__(f"stale write to job {job_id!r}: {why}")


class StaleCampaign(StoreError):
    """A campaign write computed from an old revision; nothing was written."""

    def __init__(self, campaign_id: str, *, expected_rev: int, actual_rev: int) -> None:
        self.campaign_id = campaign_id
        self.expected_rev = expected_rev
        self.actual_rev = actual_rev
        super().__init__(
            f"stale write to campaign {campaign_id!r}: expected revision {expected_rev}, "
            f"the store has {actual_rev}"
        )


# -- save_job arguments (also the unit of group commit) ----------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class JobSave:
    """The arguments of one :meth:`UpdateStore.save_job` call."""

    job_id: str
    expected_rev: int
    state: str
    reason: str | None
    snapshot: JsonObject
    attempts: int
    next_timer_at: float | None
    counter_deltas: Mapping[str, int] = field(default_factory=dict)
    events: Sequence[NewEvent] = ()
    node_id: str | None = None
    wave: int | None = None
    now: float | None = None
    reason_detail: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AddedJobs:
    """What :meth:`UpdateStore.add_campaign_jobs` did: the new jobs, and the endpoints it
    left out because they have an unfinished job elsewhere (endpoint -> that job's ID)."""

    jobs: list[JobRecord]
    busy: dict[str, str]


@dataclass(frozen=True, kw_only=True, slots=True)
class InventoryRecord:
    """A row of ``device_inventory``: the last successful /3/0 read of a device.

    ``facts``: the resources read, by path (``"/3/0/3"`` -> value); ``read_at``: when.
    """

    endpoint: str
    class_name: str | None
    model: str | None
    manufacturer: str | None
    firmware_version: str | None
    tz: str | None
    facts: JsonObject
    read_at: float | None
    updated_at: float


# -- rows -> records ---------------------------------------------------------------------


def _campaign(row: Row[Any]) -> CampaignRecord:
    return CampaignRecord(
        id=row.id,
        name=row.name,
        spec=row.spec,
        state=row.state,
        wave=row.wave,
        parent_id=row.parent_id,
        snapshot=row.snapshot,
        rev=row.rev,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _job(row: Row[Any]) -> JobRecord:
    return JobRecord(
        id=row.id,
        campaign_id=row.campaign_id,
        endpoint=row.endpoint,
        package_id=row.package_id,
        state=row.state,
        reason=row.reason,
        attempts=row.attempts,
        snapshot=row.snapshot,
        wave=row.wave,
        owner=row.owner,
        lease_until=row.lease_until,
        next_timer_at=row.next_timer_at,
        rev=row.rev,
        created_at=row.created_at,
        updated_at=row.updated_at,
        reason_detail=row.reason_detail,
    )


def _inventory(row: Row[Any]) -> InventoryRecord:
    return InventoryRecord(
        endpoint=row.endpoint,
        class_name=row.class_name,
        model=row.model,
        manufacturer=row.manufacturer,
        firmware_version=row.firmware_version,
        tz=row.tz,
        facts=row.facts,
        read_at=row.read_at,
        updated_at=row.updated_at,
    )


def _event(row: Row[Any]) -> EventRecord:
    return EventRecord(
        id=row.id,
        endpoint=row.endpoint,
        kind=row.kind,
        at=row.at,
        job_id=row.job_id,
        campaign_id=row.campaign_id,
        details=row.details,
    )


def _wave(row: Row[Any]) -> WaveRecord:
    return WaveRecord(
        campaign_id=row.campaign_id,
        wave=row.wave,
        started_at=row.started_at,
        node_id=row.node_id,
        details=row.details,
    )


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _event_params(
    ev: NewEvent, job: Row[Any, Any, Any, Any, Any, Any] | None = None
) -> dict[str, Any]:
    return {
        "job_id": ev.job_id if ev.job_id is not None or job is None else job.id,
        "endpoint": ev.endpoint,
        "campaign_id": (
            ev.campaign_id if ev.campaign_id is not None or job is None else job.campaign_id
        ),
        "at": ev.at,
        "kind": ev.kind,
        "details": dict(ev.details),
    }


class UpdateStore:
    """Campaigns, jobs, counters, events and rate buckets on SQLite or PostgreSQL.

    Thread-safe: each call uses its own pooled connection and transaction, so several
    threads may call one instance (on SQLite, writers queue for the write lock).
    """

    def __init__(self, engine: Engine) -> None:
        """Use :meth:`open`; this takes an engine whose schema is already checked."""
        self._engine = engine
        self._write_engine = engine.execution_options(**{WRITE_OPTION: True})
        self._dialect: Literal["sqlite", "postgresql"] = (
            "sqlite" if engine.dialect.name == "sqlite" else "postgresql"
        )
        self._closed = False

    @classmethod
    def open(cls, url: str | URL, *, sqlite_synchronous: SqliteSynchronous = "FULL") -> UpdateStore:
        """Connect to ``url``; create the schema, or upgrade a version-1 database in place.

        The database is the server's (:class:`fotakit.store.Store` may have it open too).
        """
        engine = make_engine(parse_url(url), sqlite_synchronous=sqlite_synchronous)
        try:
            ensure_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def url(self) -> str:
        return redacted(self._engine.url)

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        return self._dialect

    def close(self) -> None:
        """Release all connections. Idempotent; later calls raise :class:`StoreClosed`."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> UpdateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"the update store for {self.url} is closed")

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self._check_open()
        with self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        self._check_open()
        try:
            with self._write_engine.begin() as conn:
                yield conn
        except IntegrityError as exc:
            raise Conflict(f"write refused by a database constraint: {exc.orig}") from exc

    def _insert(self, table: Table) -> Any:
        return sqlite.insert(table) if self._dialect == "sqlite" else postgresql.insert(table)

    def _bump_counters(self, conn: Connection, campaign_id: str, deltas: Mapping[str, int]) -> None:
        """Add ``deltas`` to the campaign's counters, keys in sorted order (lock order)."""
        items = sorted((k, v) for k, v in deltas.items() if v != 0)
        if not items:
            return
        stmt = self._insert(_COUNTERS)
        stmt = stmt.on_conflict_do_update(
            index_elements=[_COUNTERS.c.campaign_id, _COUNTERS.c.key],
            set_={"value": _COUNTERS.c.value + stmt.excluded.value},
        )
        for key, value in items:
            conn.execute(stmt, {"campaign_id": campaign_id, "key": key, "value": value})

    # -- campaigns ----------------------------------------------------------------------

    def create_campaign(
        self,
        spec: JsonObject,
        *,
        name: str = "",
        state: str = "draft",
        campaign_id: str | None = None,
        parent_id: str | None = None,
        wave: int = 0,
        snapshot: JsonObject | None = None,
        now: float | None = None,
    ) -> CampaignRecord:
        """Store a new campaign (revision 1) with its ``total`` counter at 0.

        Raises :class:`Conflict` if ``campaign_id`` is taken or ``parent_id`` unknown.
        """
        at = time.time() if now is None else now
        values: dict[str, Any] = {
            "id": campaign_id or new_campaign_id(),
            "name": name,
            "spec": dict(spec),
            "state": state,
            "wave": wave,
            "parent_id": parent_id,
            "snapshot": dict(snapshot or {}),
            "rev": 1,
            "created_at": at,
            "updated_at": at,
        }
        with self._write() as conn:
            row = conn.execute(insert(_CAMPAIGNS).values(values).returning(*_CAMPAIGNS.c)).one()
            conn.execute(insert(_COUNTERS).values(campaign_id=values["id"], key=TOTAL_KEY, value=0))
            return _campaign(row)

    def get_campaign(self, campaign_id: str) -> CampaignRecord | None:
        with self._read() as conn:
            row = conn.execute(
                select(_CAMPAIGNS).where(_CAMPAIGNS.c.id == campaign_id)
            ).one_or_none()
            return None if row is None else _campaign(row)

    def list_campaigns(
        self, *, state: str | None = None, parent_id: str | None = None
    ) -> list[CampaignRecord]:
        """Campaigns, oldest first; optionally only those in ``state`` / of ``parent_id``."""
        query = select(_CAMPAIGNS).order_by(_CAMPAIGNS.c.created_at, _CAMPAIGNS.c.id)
        if state is not None:
            query = query.where(_CAMPAIGNS.c.state == state)
        if parent_id is not None:
            query = query.where(_CAMPAIGNS.c.parent_id == parent_id)
        with self._read() as conn:
            return [_campaign(row) for row in conn.execute(query)]

    def set_campaign_state(
        self,
        campaign_id: str,
        state: str,
        *,
        expected_rev: int,
        snapshot: JsonObject | None = None,
        now: float | None = None,
    ) -> int:
        """Set the campaign's state (and engine ``snapshot`` if given); the new revision.

        Raises :class:`StaleCampaign` if the campaign is no longer at ``expected_rev``
        (another process paused it, a wave advanced...), :class:`UnknownCampaign`.
        """
        values: dict[str, Any] = {
            "state": state,
            "rev": _CAMPAIGNS.c.rev + 1,
            "updated_at": time.time() if now is None else now,
        }
        if snapshot is not None:
            values["snapshot"] = dict(snapshot)
        with self._write() as conn:
            changed = conn.execute(
                update(_CAMPAIGNS)
                .where(_CAMPAIGNS.c.id == campaign_id, _CAMPAIGNS.c.rev == expected_rev)
                .values(values)
                .returning(_CAMPAIGNS.c.rev)
            ).scalar_one_or_none()
            if changed is None:
                actual = conn.execute(
                    select(_CAMPAIGNS.c.rev).where(_CAMPAIGNS.c.id == campaign_id)
                ).scalar_one_or_none()
                if actual is None:
                    raise UnknownCampaign(campaign_id)
                raise StaleCampaign(campaign_id, expected_rev=expected_rev, actual_rev=actual)
            return int(changed)

    def advance_wave(
        self,
        campaign_id: str,
        from_wave: int,
        to_wave: int,
        *,
        node_id: str | None = None,
        details: JsonObject | None = None,
        now: float | None = None,
    ) -> bool:
        """Move the campaign from ``from_wave`` to ``to_wave``; ``True`` for exactly one caller.

        Every process may call this when it sees the gate pass; the ones that lose the race
        (or come late) get ``False`` and change nothing. The winner also writes the
        ``campaign_waves`` row (see :meth:`list_waves`) and bumps the campaign's ``rev``.
        """
        at = time.time() if now is None else now
        with self._write() as conn:
            result = conn.execute(
                update(_CAMPAIGNS)
                .where(_CAMPAIGNS.c.id == campaign_id, _CAMPAIGNS.c.wave == from_wave)
                .values(wave=to_wave, rev=_CAMPAIGNS.c.rev + 1, updated_at=at)
            )
            if result.rowcount != 1:
                return False
            conn.execute(
                insert(_WAVES).values(
                    campaign_id=campaign_id,
                    wave=to_wave,
                    started_at=at,
                    node_id=node_id,
                    details=dict(details or {}),
                )
            )
            return True

    def list_waves(self, campaign_id: str) -> list[WaveRecord]:
        """The waves the campaign advanced into, in order."""
        with self._read() as conn:
            rows = conn.execute(
                select(_WAVES).where(_WAVES.c.campaign_id == campaign_id).order_by(_WAVES.c.wave)
            )
            return [_wave(row) for row in rows]

    def set_counter(self, campaign_id: str, key: str, value: int) -> None:
        """Set a counter the campaign engine computes itself (e.g. ``busy``) to ``value``."""
        with self._write() as conn:
            conn.execute(
                self._insert(_COUNTERS)
                .values(campaign_id=campaign_id, key=key, value=value)
                .on_conflict_do_update(
                    index_elements=[_COUNTERS.c.campaign_id, _COUNTERS.c.key],
                    set_={"value": value},
                )
            )

    def get_counters(self, campaign_id: str) -> dict[str, int]:
        """The campaign's counters (keys in :mod:`fotakit.updates.records`); zeros omitted.

        Read from the counter rows alone: O(number of keys), whatever the fleet size.
        """
        with self._read() as conn:
            rows = conn.execute(
                select(_COUNTERS.c.key, _COUNTERS.c.value).where(
                    _COUNTERS.c.campaign_id == campaign_id
                )
            )
            return {key: int(value) for key, value in rows if value != 0}

    # -- jobs ---------------------------------------------------------------------------

    def add_jobs(
        self,
        campaign_id: str,
        endpoints: Iterable[str],
        package_id: str,
        *,
        state: str = "pending",
        wave: int | None = None,
        cap: int | None = None,
        now: float | None = None,
    ) -> list[JobRecord]:
        """:meth:`add_campaign_jobs`, returning only the new jobs."""
        return self.add_campaign_jobs(
            campaign_id, endpoints, package_id, state=state, wave=wave, cap=cap, now=now
        ).jobs

    def add_campaign_jobs(
        self,
        campaign_id: str,
        endpoints: Iterable[str],
        package_id: str,
        *,
        state: str = "pending",
        wave: int | None = None,
        cap: int | None = None,
        now: float | None = None,
    ) -> AddedJobs:
        """Add one job per endpoint not yet in the campaign; the new jobs, and the busy
        endpoints left out.

        Idempotent: an endpoint already in the campaign (added by this or another process,
        even concurrently) is skipped, never duplicated. An endpoint with an unfinished job
        of another campaign, or a single-device job, is skipped too (one unfinished job per
        device, the database's partial unique index) and reported in ``busy``: call again
        once that job has ended. With ``cap`` (continuous campaigns) the campaign never
        holds more than ``cap`` jobs: concurrent callers queue on the ``total`` counter's
        row lock. The counters ``total`` and ``state:<state>`` grow by the number of jobs
        added, in the same transaction.
        """
        wanted = sorted(set(endpoints))
        at = time.time() if now is None else now
        added: list[JobRecord] = []
        with self._write() as conn:
            if cap is not None:
                total = conn.execute(
                    select(_COUNTERS.c.value)
                    .where(_COUNTERS.c.campaign_id == campaign_id, _COUNTERS.c.key == TOTAL_KEY)
                    .with_for_update()
                ).scalar_one_or_none()
                if total is None:
                    raise UnknownCampaign(campaign_id)
                present: set[str] = set()
                for chunk in _chunks(wanted):
                    present.update(
                        conn.scalars(
                            select(_JOBS.c.endpoint).where(
                                _JOBS.c.campaign_id == campaign_id, _JOBS.c.endpoint.in_(chunk)
                            )
                        )
                    )
                wanted = [ep for ep in wanted if ep not in present][: max(0, cap - int(total))]
            elif not conn.execute(
                select(_CAMPAIGNS.c.id).where(_CAMPAIGNS.c.id == campaign_id)
            ).first():
                raise UnknownCampaign(campaign_id)
            for chunk in _chunks(wanted):
                rows: list[dict[str, Any]] = [
                    {
                        "id": new_job_id(),
                        "campaign_id": campaign_id,
                        "endpoint": ep,
                        "package_id": package_id,
                        "state": state,
                        "reason": None,
                        "attempts": 0,
                        "snapshot": {},
                        "wave": wave,
                        "owner": None,
                        "lease_until": None,
                        "next_timer_at": None,
                        "rev": 1,
                        "created_at": at,
                        "updated_at": at,
                    }
                    for ep in chunk
                ]
                # no conflict target: a row that breaks either unique index (already in
                # this campaign, or the device's unfinished job elsewhere) is skipped
                stmt = self._insert(_JOBS).values(rows).on_conflict_do_nothing().returning(*_JOBS.c)
                added.extend(_job(row) for row in conn.execute(stmt))
            if added:
                self._bump_counters(
                    conn, campaign_id, {TOTAL_KEY: len(added), state_key(state): len(added)}
                )
            busy = self._busy_elsewhere(
                conn, campaign_id, sorted(set(wanted) - {job.endpoint for job in added})
            )
        added.sort(key=lambda job: job.endpoint)
        return AddedJobs(jobs=added, busy=busy)

    def _busy_elsewhere(
        self, conn: Connection, campaign_id: str | None, endpoints: Sequence[str]
    ) -> dict[str, str]:
        """endpoint -> ID of its unfinished job outside ``campaign_id``, for ``endpoints``."""
        busy: dict[str, str] = {}
        for chunk in _chunks(endpoints):
            query = select(_JOBS.c.endpoint, _JOBS.c.id).where(
                _JOBS.c.endpoint.in_(chunk), _JOBS.c.state.not_in(_TERMINAL)
            )
            if campaign_id is not None:
                query = query.where(
                    or_(_JOBS.c.campaign_id.is_(None), _JOBS.c.campaign_id != campaign_id)
                )
            busy.update({row.endpoint: row.id for row in conn.execute(query)})
        return busy

    def unfinished_job(self, endpoint: str) -> JobRecord | None:
        """The device's unfinished job, if it has one (at most one: schema version 3)."""
        with self._read() as conn:
            row = conn.execute(
                select(_JOBS).where(_JOBS.c.endpoint == endpoint, _JOBS.c.state.not_in(_TERMINAL))
            ).first()
            return None if row is None else _job(row)

    def create_job(
        self,
        endpoint: str,
        package_id: str,
        *,
        job_id: str | None = None,
        state: str = "pending",
        snapshot: JsonObject | None = None,
        now: float | None = None,
    ) -> JobRecord:
        """A single-device job outside any campaign (``campaign_id`` is ``None``).

        Raises :class:`DeviceBusy` when the device has an unfinished job (of a campaign or
        not): the database refuses the row, so this holds across processes.
        """
        at = time.time() if now is None else now
        values: dict[str, Any] = {
            "id": job_id or new_job_id(),
            "campaign_id": None,
            "endpoint": endpoint,
            "package_id": package_id,
            "state": state,
            "reason": None,
            "attempts": 0,
            "snapshot": dict(snapshot or {}),
            "wave": None,
            "owner": None,
            "lease_until": None,
            "next_timer_at": None,
            "rev": 1,
            "created_at": at,
            "updated_at": at,
        }
        for _ in range(3):
            try:
                with self._write() as conn:
                    return _job(
                        conn.execute(insert(_JOBS).values(values).returning(*_JOBS.c)).one()
                    )
            except Conflict:
                # Which constraint? The transaction is over (PostgreSQL aborted it): look.
                other = self.unfinished_job(endpoint)
                if other is not None:
                    raise DeviceBusy(endpoint, other.id) from None
                if self.get_job(values["id"]) is not None:
                    raise  # the job ID is taken
                # the blocking job ended in between: try again
        raise Conflict(f"device {endpoint!r}: its unfinished jobs keep changing, try again")

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._read() as conn:
            row = conn.execute(select(_JOBS).where(_JOBS.c.id == job_id)).one_or_none()
            return None if row is None else _job(row)

    def list_jobs(
        self,
        *,
        campaign_id: str | None = None,
        endpoint: str | None = None,
        state: str | None = None,
        active_only: bool = False,
        after_id: str | None = None,
        limit: int | None = None,
    ) -> list[JobRecord]:
        """Jobs ordered by ID, filtered; page with ``after_id`` (the last ID seen)."""
        query = select(_JOBS).order_by(_JOBS.c.id)
        if campaign_id is not None:
            query = query.where(_JOBS.c.campaign_id == campaign_id)
        if endpoint is not None:
            query = query.where(_JOBS.c.endpoint == endpoint)
        if state is not None:
            query = query.where(_JOBS.c.state == state)
        if active_only:
            query = query.where(_JOBS.c.state.not_in(_TERMINAL))
        if after_id is not None:
            query = query.where(_JOBS.c.id > after_id)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [_job(row) for row in conn.execute(query)]

    def save_job(
        self,
        job_id: str,
        *,
        expected_rev: int,
        state: str,
        reason: str | None,
        snapshot: JsonObject,
        attempts: int,
        next_timer_at: float | None,
        counter_deltas: Mapping[str, int] | None = None,
        events: Sequence[NewEvent] = (),
        node_id: str | None = None,
        wave: int | None = None,
        now: float | None = None,
        reason_detail: str | None = None,
    ) -> int:
        """Write the job's new state; return its new revision.

        One transaction: the job row, the campaign counters the change moves
        (``state:<old>`` -1 / ``state:<new>`` +1, the same for ``reason:``, plus
        ``counter_deltas``) and ``events`` (their ``job_id``/``campaign_id`` default to
        the job's). Raises :class:`StaleJob` — writing nothing — if the job is not at
        ``expected_rev`` or, when ``node_id`` is given, is owned by another process;
        :class:`UnknownJob` if there is no such job. ``wave`` (if given) sets the job's wave;
        ``reason_detail`` (if given) its human explanation of the failure (else it is kept).
        """
        save = JobSave(
            job_id=job_id,
            expected_rev=expected_rev,
            state=state,
            reason=reason,
            snapshot=snapshot,
            attempts=attempts,
            next_timer_at=next_timer_at,
            counter_deltas=counter_deltas or {},
            events=events,
            node_id=node_id,
            wave=wave,
            now=now,
            reason_detail=reason_detail,
        )
        with self._write() as conn:
            return self._save_job(conn, save)

    def save_jobs(self, saves: Sequence[JobSave]) -> list[int | StoreError]:
        """Several :meth:`save_job` in one transaction (one commit): group commit.

        Each save's result is what it would have been alone: its new revision, or the
        :class:`StaleJob` / :class:`UnknownJob` it raised (such a save writes nothing, its
        neighbours still commit). Saves of the same job apply in order.
        """
        if len(saves) == 1:
            try:
                return [self.save_job_from(saves[0])]
            except (StaleJob, UnknownJob) as exc:
                return [exc]
        results: list[int | StoreError] = []
        counters: dict[tuple[str, str], int] = {}
        with self._write() as conn:
            # Lock order, as in save_job: every job row of the batch (in ID order), then
            # the counter rows of all its changes together (in key order); so batches of
            # two processes cannot deadlock on each other.
            for chunk in _chunks(sorted({save.job_id for save in saves})):
                conn.execute(
                    select(_JOBS.c.id)
                    .where(_JOBS.c.id.in_(chunk))
                    .order_by(_JOBS.c.id)
                    .with_for_update()
                ).all()
            for save in saves:
                try:
                    results.append(self._save_job(conn, save, counters))
                except (StaleJob, UnknownJob) as exc:  # raised before any write
                    results.append(exc)
            by_campaign: dict[str, dict[str, int]] = {}
            for (campaign_id, key), value in counters.items():
                by_campaign.setdefault(campaign_id, {})[key] = value
            for campaign_id in sorted(by_campaign):
                self._bump_counters(conn, campaign_id, by_campaign[campaign_id])
        return results

    def save_job_from(self, save: JobSave) -> int:
        """:meth:`save_job` with its arguments as a :class:`JobSave`."""
        with self._write() as conn:
            return self._save_job(conn, save)

    def _save_job(
        self,
        conn: Connection,
        save: JobSave,
        counters: dict[tuple[str, str], int] | None = None,
    ) -> int:
        """Apply one save; its counter deltas go to ``counters`` if given (the caller adds
        them later in the same transaction), else to the counter rows at once."""
        # Lock the job row first (PostgreSQL; SQLite holds the write lock already).
        old = conn.execute(
            select(
                _JOBS.c.id,
                _JOBS.c.campaign_id,
                _JOBS.c.state,
                _JOBS.c.reason,
                _JOBS.c.owner,
                _JOBS.c.rev,
            )
            .where(_JOBS.c.id == save.job_id)
            .with_for_update()
        ).one_or_none()
        if old is None:
            raise UnknownJob(save.job_id)
        if old.rev != save.expected_rev or (save.node_id is not None and old.owner != save.node_id):
            raise StaleJob(
                save.job_id, expected_rev=save.expected_rev, actual_rev=old.rev, owner=old.owner
            )
        values: dict[str, Any] = {
            "state": save.state,
            "reason": save.reason,
            "snapshot": dict(save.snapshot),
            "attempts": save.attempts,
            "next_timer_at": save.next_timer_at,
            "rev": old.rev + 1,
            "updated_at": time.time() if save.now is None else save.now,
        }
        if save.wave is not None:
            values["wave"] = save.wave
        if save.reason_detail is not None:
            values["reason_detail"] = save.reason_detail
        conn.execute(update(_JOBS).where(_JOBS.c.id == save.job_id).values(values))
        if old.campaign_id is not None:
            deltas: dict[str, int] = dict(save.counter_deltas)
            if old.state != save.state:
                deltas[state_key(old.state)] = deltas.get(state_key(old.state), 0) - 1
                deltas[state_key(save.state)] = deltas.get(state_key(save.state), 0) + 1
            if old.reason != save.reason:
                if old.reason is not None:
                    deltas[reason_key(old.reason)] = deltas.get(reason_key(old.reason), 0) - 1
                if save.reason is not None:
                    deltas[reason_key(save.reason)] = deltas.get(reason_key(save.reason), 0) + 1
            if counters is None:
                self._bump_counters(conn, old.campaign_id, deltas)
            else:
                for key, value in deltas.items():
                    slot = (old.campaign_id, key)
                    counters[slot] = counters.get(slot, 0) + value
        if save.events:
            conn.execute(insert(_EVENTS), [_event_params(ev, old) for ev in save.events])
        return int(old.rev) + 1

    def set_job_detail(self, job_id: str, detail: str) -> None:
        """Set the job's ``reason_detail`` (e.g. learned after the job ended).

        Not a state change: the revision stays, so the process driving the job is not
        made stale by it. :class:`UnknownJob` if there is no such job.
        """
        with self._write() as conn:
            changed = conn.execute(
                update(_JOBS).where(_JOBS.c.id == job_id).values(reason_detail=detail)
            ).rowcount
            if not changed:
                raise UnknownJob(job_id)

    # -- claims -------------------------------------------------------------------------

    def claim_jobs(
        self,
        node_id: str,
        *,
        lease_s: float,
        now: float,
        endpoints: Sequence[str] | None = None,
        campaign_id: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Take up to ``limit`` active jobs nobody else holds; return them, owned by ``node_id``.

        A job is claimable when it is not terminal and unowned, owned by ``node_id``
        already (a restarted process gets its jobs back at once), or its lease ran out
        (its process died). ``endpoints`` restricts the claim to the devices this process
        serves (e.g. those registered on it). PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so
        processes claiming at once get disjoint jobs and never wait on each other.
        """
        if limit <= 0:
            return []
        claimable = and_(
            _JOBS.c.state.not_in(_TERMINAL),
            or_(
                _JOBS.c.owner.is_(None),
                _JOBS.c.owner == node_id,
                _JOBS.c.lease_until < now,
            ),
        )
        if campaign_id is not None:
            claimable = and_(claimable, _JOBS.c.campaign_id == campaign_id)
        groups: list[Sequence[str] | None] = (
            [None] if endpoints is None else list(_chunks(sorted(set(endpoints))))
        )
        claimed: list[JobRecord] = []
        with self._write() as conn:
            for group in groups:
                want = limit - len(claimed)
                if want <= 0:
                    break
                query = select(_JOBS.c.id).where(claimable)
                if group is not None:
                    query = query.where(_JOBS.c.endpoint.in_(group))
                query = query.order_by(_JOBS.c.id).limit(want).with_for_update(skip_locked=True)
                ids = list(conn.scalars(query))
                if not ids:
                    continue
                rows = conn.execute(
                    update(_JOBS)
                    .where(_JOBS.c.id.in_(ids))
                    .values(owner=node_id, lease_until=now + lease_s)
                    .returning(*_JOBS.c)
                )
                claimed.extend(_job(row) for row in rows)
        claimed.sort(key=lambda job: job.id)
        return claimed

    def renew_leases(
        self, node_id: str, *, lease_s: float, now: float, job_ids: Sequence[str] | None = None
    ) -> int:
        """Extend the leases of the active jobs ``node_id`` owns; return how many.

        Call it well within ``lease_s`` (e.g. every ``lease_s / 3``): a job whose lease
        runs out may be claimed by another process.
        """
        cond = and_(_JOBS.c.owner == node_id, _JOBS.c.state.not_in(_TERMINAL))
        with self._write() as conn:
            if job_ids is None:
                return int(
                    conn.execute(
                        update(_JOBS).where(cond).values(lease_until=now + lease_s)
                    ).rowcount
                )
            count = 0
            for chunk in _chunks(sorted(set(job_ids))):
                count += conn.execute(
                    update(_JOBS)
                    .where(cond, _JOBS.c.id.in_(chunk))
                    .values(lease_until=now + lease_s)
                ).rowcount
            return count

    def request_cancel(self, job_id: str, *, requested_by: str, now: float) -> bool:
        """Ask the process driving ``job_id`` to cancel it; False if the job is unknown or
        finished. Idempotent (a second request keeps the first)."""
        with self._write() as conn:
            state = conn.execute(
                select(_JOBS.c.state).where(_JOBS.c.id == job_id)
            ).scalar_one_or_none()
            if state is None or state in TERMINAL_STATES:
                return False
            conn.execute(
                self._insert(_CANCELS)
                .values(job_id=job_id, requested_by=requested_by, requested_at=now)
                .on_conflict_do_nothing(index_elements=["job_id"])
            )
            return True

    def cancel_requests_for(self, node_id: str) -> list[str]:
        """IDs of the unfinished jobs ``node_id`` owns that another process asked to cancel."""
        query = (
            select(_CANCELS.c.job_id)
            .join(_JOBS, _JOBS.c.id == _CANCELS.c.job_id)
            .where(_JOBS.c.owner == node_id, _JOBS.c.state.not_in(_TERMINAL))
            .order_by(_CANCELS.c.requested_at)
        )
        with self._read() as conn:
            return [str(r) for r in conn.scalars(query)]

    def clear_cancel_request(self, job_id: str) -> None:
        with self._write() as conn:
            conn.execute(delete(_CANCELS).where(_CANCELS.c.job_id == job_id))

    def release_jobs(self, node_id: str, job_ids: Sequence[str] | None = None) -> int:
        """Give up ``node_id``'s claims (all, or on ``job_ids``); return how many.

        For a clean shutdown or a device that moved to another process.
        """
        with self._write() as conn:
            stmt = update(_JOBS).where(_JOBS.c.owner == node_id)
            if job_ids is None:
                return int(conn.execute(stmt.values(owner=None, lease_until=None)).rowcount)
            count = 0
            for chunk in _chunks(sorted(set(job_ids))):
                count += conn.execute(
                    stmt.where(_JOBS.c.id.in_(chunk)).values(owner=None, lease_until=None)
                ).rowcount
            return count

    def jobs_for(self, node_id: str, endpoints: Sequence[str] | None = None) -> list[JobRecord]:
        """The active jobs ``node_id`` owns (optionally only of ``endpoints``), by ID."""
        query: Select[Any] = (
            select(_JOBS)
            .where(_JOBS.c.owner == node_id, _JOBS.c.state.not_in(_TERMINAL))
            .order_by(_JOBS.c.id)
        )
        with self._read() as conn:
            if endpoints is None:
                return [_job(row) for row in conn.execute(query)]
            jobs: list[JobRecord] = []
            for chunk in _chunks(sorted(set(endpoints))):
                jobs.extend(
                    _job(row) for row in conn.execute(query.where(_JOBS.c.endpoint.in_(chunk)))
                )
            jobs.sort(key=lambda job: job.id)
            return jobs

    def orphaned_endpoints(self, node_id: str, now: float, *, limit: int = 10_000) -> list[str]:
        """Devices with an active job another node claimed and stopped renewing (its
        lease ran out before ``now``: that node died or hangs), by endpoint; campaign
        members not started yet are left to the campaign runner. The node a
        device is registered with claims them (docs/operator-guide.md "Several processes
        on PostgreSQL")."""
        with self._read() as conn:
            rows = conn.execute(
                select(_JOBS.c.endpoint)
                .where(
                    _JOBS.c.state.not_in(_TERMINAL),
                    _JOBS.c.owner.is_not(None),
                    _JOBS.c.owner != node_id,
                    _JOBS.c.lease_until < now,
                    # campaign members not started yet are the campaign's to hand out
                    or_(_JOBS.c.state != "pending", _JOBS.c.campaign_id.is_(None)),
                )
                .order_by(_JOBS.c.endpoint)
                .limit(limit)
            )
            return [str(ep) for ep in rows.scalars()]

    def due_jobs(self, node_id: str, now: float, *, limit: int = 1000) -> list[JobRecord]:
        """``node_id``'s active jobs with a due timer (``next_timer_at <= now``), earliest first."""
        with self._read() as conn:
            rows = conn.execute(
                select(_JOBS)
                .where(
                    _JOBS.c.owner == node_id,
                    _JOBS.c.state.not_in(_TERMINAL),
                    _JOBS.c.next_timer_at <= now,
                )
                .order_by(_JOBS.c.next_timer_at, _JOBS.c.id)
                .limit(limit)
            )
            return [_job(row) for row in rows]

    # -- events -------------------------------------------------------------------------

    def append_events(self, events: Sequence[NewEvent]) -> int:
        """Append ``events`` to the per-device log in one transaction; return how many."""
        if not events:
            return 0
        with self._write() as conn:
            for chunk in _chunks(events):
                conn.execute(insert(_EVENTS), [_event_params(ev) for ev in chunk])
        return len(events)

    def list_events(
        self,
        *,
        endpoint: str | None = None,
        job_id: str | None = None,
        campaign_id: str | None = None,
        after_id: int = 0,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[EventRecord]:
        """Events with ``id > after_id`` matching every filter given, oldest first.

        Page by passing the last ``id`` seen as ``after_id``. (On PostgreSQL an event whose
        transaction commits after a page was read can carry a smaller ID than that page's
        last one; read the log of a finished job, or allow for this in live tails.)
        ``newest_first``: the ``limit`` newest events instead, newest first (the tail of a
        long log without reading it all).
        """
        query = select(_EVENTS).where(_EVENTS.c.id > after_id)
        if endpoint is not None:
            query = query.where(_EVENTS.c.endpoint == endpoint)
        if job_id is not None:
            query = query.where(_EVENTS.c.job_id == job_id)
        if campaign_id is not None:
            query = query.where(_EVENTS.c.campaign_id == campaign_id)
        order = _EVENTS.c.id.desc() if newest_first else _EVENTS.c.id
        query = query.order_by(order).limit(limit)
        with self._read() as conn:
            return [_event(row) for row in conn.execute(query)]

    # -- device inventory ---------------------------------------------------------------

    def save_inventory(
        self,
        endpoint: str,
        *,
        class_name: str | None,
        model: str | None,
        manufacturer: str | None,
        firmware_version: str | None,
        tz: str | None,
        facts: JsonObject,
        read_at: float | None,
        now: float | None = None,
    ) -> None:
        """Store (replace) the device's last known view after a successful read."""
        values: dict[str, Any] = {
            "class_name": class_name,
            "model": model,
            "manufacturer": manufacturer,
            "firmware_version": firmware_version,
            "tz": tz,
            "facts": dict(facts),
            "read_at": read_at,
            "updated_at": time.time() if now is None else now,
        }
        with self._write() as conn:
            conn.execute(
                self._insert(_INVENTORY)
                .values(endpoint=endpoint, **values)
                .on_conflict_do_update(index_elements=[_INVENTORY.c.endpoint], set_=values)
            )

    def get_inventory(self, endpoint: str) -> InventoryRecord | None:
        with self._read() as conn:
            row = conn.execute(
                select(_INVENTORY).where(_INVENTORY.c.endpoint == endpoint)
            ).one_or_none()
            return None if row is None else _inventory(row)

    def list_inventory(self) -> list[InventoryRecord]:
        """Every stored device view, by endpoint."""
        with self._read() as conn:
            rows = conn.execute(select(_INVENTORY).order_by(_INVENTORY.c.endpoint))
            return [_inventory(row) for row in rows]

    # -- rate limit ---------------------------------------------------------------------

    def take_tokens(
        self, scope: str, n: int, *, rate_per_s: float, burst: float, now: float
    ) -> int:
        """Take up to ``n`` tokens from the bucket ``scope``; return how many were granted.

        The bucket holds at most ``burst`` tokens (a new one starts full) and refills at
        ``rate_per_s``; it is one row shared by every process (row lock on PostgreSQL,
        the write lock on SQLite), so the rate holds for the fleet, not per process. A
        clock that runs behind the last update refills nothing (never negative time).
        """
        if n <= 0:
            return 0
        with self._write() as conn:
            conn.execute(
                self._insert(_BUCKETS)
                .values(scope=scope, tokens=float(burst), updated_at=now)
                .on_conflict_do_nothing(index_elements=[_BUCKETS.c.scope])
            )
            row = conn.execute(
                select(_BUCKETS.c.tokens, _BUCKETS.c.updated_at)
                .where(_BUCKETS.c.scope == scope)
                .with_for_update()
            ).one()
            elapsed = max(0.0, now - row.updated_at)
            tokens = min(float(burst), row.tokens + elapsed * rate_per_s)
            granted = min(n, math.floor(tokens + 1e-9))
            conn.execute(
                update(_BUCKETS)
                .where(_BUCKETS.c.scope == scope)
                .values(tokens=tokens - granted, updated_at=max(now, row.updated_at))
            )
            return int(granted)

    # -- maintenance --------------------------------------------------------------------

    # -- device profiles (fotakit.updates.profiles) ------------------------------------------

    def list_profiles(self) -> dict[str, JsonObject]:
        """Every stored device profile's JSON, by name."""
        with self._read() as conn:
            rows = conn.execute(select(_PROFILES.c.name, _PROFILES.c.spec)).all()
        return {str(r.name): dict(r.spec) for r in rows}

    def put_profile(self, name: str, spec: JsonObject, *, now: float) -> bool:
        """Store (insert or replace) a profile; True when it was new."""
        with self._write() as conn:
            existed = conn.execute(
                select(_PROFILES.c.name).where(_PROFILES.c.name == name)
            ).scalar_one_or_none()
            if existed is None:
                conn.execute(insert(_PROFILES).values(name=name, spec=spec, updated_at=now))
            else:
                conn.execute(
                    update(_PROFILES)
                    .where(_PROFILES.c.name == name)
                    .values(spec=spec, updated_at=now)
                )
            return existed is None

    def delete_profile(self, name: str) -> bool:
        """Remove a profile; False when there was none."""
        with self._write() as conn:
            return bool(conn.execute(delete(_PROFILES).where(_PROFILES.c.name == name)).rowcount)

    def delete_campaign(self, campaign_id: str) -> bool:
        """Delete a campaign with its jobs, counters, waves and events (tests, cleanup)."""
        with self._write() as conn:
            conn.execute(delete(_EVENTS).where(_EVENTS.c.campaign_id == campaign_id))
            conn.execute(
                update(_CAMPAIGNS)
                .where(_CAMPAIGNS.c.parent_id == campaign_id)
                .values(parent_id=None)
            )
            conn.execute(delete(_JOBS).where(_JOBS.c.campaign_id == campaign_id))
            conn.execute(delete(_COUNTERS).where(_COUNTERS.c.campaign_id == campaign_id))
            conn.execute(delete(_WAVES).where(_WAVES.c.campaign_id == campaign_id))
            return bool(
                conn.execute(delete(_CAMPAIGNS).where(_CAMPAIGNS.c.id == campaign_id)).rowcount
            )


# -- asyncio facade ----------------------------------------------------------------------

MAX_BATCH: Final = 64
"""Most :meth:`AsyncUpdateStore.save_job` calls committed in one transaction."""


@dataclass(slots=True)
class _Call:
    future: asyncio.Future[Any]
    fn: Callable[[UpdateStore], Any] | None = None
    save: JobSave | None = None


_STOP: Final = object()


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _deliver(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    try:
        future.get_loop().call_soon_threadsafe(_settle, future, value, error)
    except RuntimeError:
        pass  # the loop is closed: nobody waits any more


def _save_one(save: JobSave, store: UpdateStore) -> int:
    return store.save_job_from(save)


class _Worker(threading.Thread):
    """Runs every call on one thread, in submission order; batches adjacent saves."""

    def __init__(self, store: UpdateStore) -> None:
        super().__init__(name="fotakit-update-store", daemon=True)
        self.store = store
        self.queue: queue.SimpleQueue[_Call | object] = queue.SimpleQueue()

    def run(self) -> None:
        carried: _Call | object | None = None
        while True:
            item = carried if carried is not None else self.queue.get()
            carried = None
            if item is _STOP:
                return
            assert isinstance(item, _Call)
            if item.save is None:
                self._run_fn(item)
                continue
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(nxt, _Call) and nxt.save is not None:
                    batch.append(nxt)
                else:
                    carried = nxt
                    break
            self._run_saves(batch)

    def _run_fn(self, call: _Call) -> None:
        assert call.fn is not None
        try:
            value = call.fn(self.store)
        except Exception as exc:
            _deliver(call.future, None, exc)
        else:
            _deliver(call.future, value, None)

    def _run_saves(self, batch: list[_Call]) -> None:
        saves = [call.save for call in batch if call.save is not None]
        try:
            results = self.store.save_jobs(saves)
        except Exception as exc:
            if len(batch) == 1:
                _deliver(batch[0].future, None, exc)
                return
            # The batch failed as a whole (database error): each alone, so each gets its
            # own outcome.
            log.debug("batch of %d job saves failed (%r); saving one by one", len(batch), exc)
            for call in batch:
                assert call.save is not None
                self._run_fn(_Call(call.future, fn=functools.partial(_save_one, call.save)))
            return
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, StoreError):
                _deliver(call.future, None, result)
            else:
                _deliver(call.future, result, None)


class AsyncUpdateStore:
    """:class:`UpdateStore` for asyncio: one worker thread runs every call in order.

    Concurrent :meth:`save_job` calls that queue up behind each other are committed in
    one transaction (:meth:`UpdateStore.save_jobs`): one fsync for the lot on SQLite with
    ``synchronous=FULL``; a :class:`StaleJob` still fails only its own call.
    """

    def __init__(self, store: UpdateStore) -> None:
        """Wrap an open store; from now on only the worker thread may use it."""
        self._store = store
        self._worker = _Worker(store)
        self._worker.start()
        self._closed = False

    @classmethod
    async def open(
        cls, url: str | URL, *, sqlite_synchronous: SqliteSynchronous = "FULL"
    ) -> AsyncUpdateStore:
        store = await asyncio.to_thread(
            UpdateStore.open, url, sqlite_synchronous=sqlite_synchronous
        )
        return cls(store)

    @property
    def url(self) -> str:
        return self._store.url

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        return self._store.backend

    async def close(self) -> None:
        """Finish the queued calls, close the store, stop the thread. Idempotent."""
        if self._closed:
            return
        await self.run(lambda s: s.close())
        self._closed = True
        self._worker.queue.put(_STOP)
        await asyncio.to_thread(self._worker.join)

    async def __aenter__(self) -> AsyncUpdateStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def run(self, fn: Callable[[UpdateStore], T]) -> T:
        """Run ``fn(store)`` on the worker thread (any :class:`UpdateStore` method)."""
        if self._closed:
            raise StoreClosed(f"the async update store for {self.url} is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._worker.queue.put(_Call(future, fn=fn))
        return await future

    async def save_job(
        self,
        job_id: str,
        *,
        expected_rev: int,
        state: str,
        reason: str | None,
        snapshot: JsonObject,
        attempts: int,
        next_timer_at: float | None,
        counter_deltas: Mapping[str, int] | None = None,
        events: Sequence[NewEvent] = (),
        node_id: str | None = None,
        wave: int | None = None,
        now: float | None = None,
        reason_detail: str | None = None,
    ) -> int:
        """:meth:`UpdateStore.save_job`, group-committed with concurrent saves."""
        if self._closed:
            raise StoreClosed(f"the async update store for {self.url} is closed")
        save = JobSave(
            job_id=job_id,
            expected_rev=expected_rev,
            state=state,
            reason=reason,
            snapshot=snapshot,
            attempts=attempts,
            next_timer_at=next_timer_at,
            counter_deltas=counter_deltas or {},
            events=events,
            node_id=node_id,
            wave=wave,
            now=now,
            reason_detail=reason_detail,
        )
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._worker.queue.put(_Call(future, save=save))
        return await future

    # Typed shortcuts for the rest of the API (each is one transaction on the worker).

    async def create_campaign(self, spec: JsonObject, **kw: Any) -> CampaignRecord:
        return await self.run(lambda s: s.create_campaign(spec, **kw))

    async def get_campaign(self, campaign_id: str) -> CampaignRecord | None:
        return await self.run(lambda s: s.get_campaign(campaign_id))

    async def list_campaigns(self, **kw: Any) -> list[CampaignRecord]:
        return await self.run(lambda s: s.list_campaigns(**kw))

    async def set_campaign_state(
        self, campaign_id: str, state: str, *, expected_rev: int, **kw: Any
    ) -> int:
        return await self.run(
            lambda s: s.set_campaign_state(campaign_id, state, expected_rev=expected_rev, **kw)
        )

    async def advance_wave(self, campaign_id: str, from_wave: int, to_wave: int, **kw: Any) -> bool:
        return await self.run(lambda s: s.advance_wave(campaign_id, from_wave, to_wave, **kw))

    async def list_waves(self, campaign_id: str) -> list[WaveRecord]:
        return await self.run(lambda s: s.list_waves(campaign_id))

    async def get_counters(self, campaign_id: str) -> dict[str, int]:
        return await self.run(lambda s: s.get_counters(campaign_id))

    async def add_jobs(
        self, campaign_id: str, endpoints: Iterable[str], package_id: str, **kw: Any
    ) -> list[JobRecord]:
        eps = list(endpoints)
        return await self.run(lambda s: s.add_jobs(campaign_id, eps, package_id, **kw))

    async def add_campaign_jobs(
        self, campaign_id: str, endpoints: Iterable[str], package_id: str, **kw: Any
    ) -> AddedJobs:
        eps = list(endpoints)
        return await self.run(lambda s: s.add_campaign_jobs(campaign_id, eps, package_id, **kw))

    async def set_counter(self, campaign_id: str, key: str, value: int) -> None:
        await self.run(lambda s: s.set_counter(campaign_id, key, value))

    async def unfinished_job(self, endpoint: str) -> JobRecord | None:
        return await self.run(lambda s: s.unfinished_job(endpoint))

    async def set_job_detail(self, job_id: str, detail: str) -> None:
        await self.run(lambda s: s.set_job_detail(job_id, detail))

    async def save_inventory(self, endpoint: str, **kw: Any) -> None:
        await self.run(lambda s: s.save_inventory(endpoint, **kw))

    async def get_inventory(self, endpoint: str) -> InventoryRecord | None:
        return await self.run(lambda s: s.get_inventory(endpoint))

    async def list_inventory(self) -> list[InventoryRecord]:
        return await self.run(lambda s: s.list_inventory())

    async def create_job(self, endpoint: str, package_id: str, **kw: Any) -> JobRecord:
        return await self.run(lambda s: s.create_job(endpoint, package_id, **kw))

    async def get_job(self, job_id: str) -> JobRecord | None:
        return await self.run(lambda s: s.get_job(job_id))

    async def list_jobs(self, **kw: Any) -> list[JobRecord]:
        return await self.run(lambda s: s.list_jobs(**kw))

    async def claim_jobs(
        self, node_id: str, *, lease_s: float, now: float, **kw: Any
    ) -> list[JobRecord]:
        return await self.run(lambda s: s.claim_jobs(node_id, lease_s=lease_s, now=now, **kw))

    async def renew_leases(self, node_id: str, *, lease_s: float, now: float, **kw: Any) -> int:
        return await self.run(lambda s: s.renew_leases(node_id, lease_s=lease_s, now=now, **kw))

    async def release_jobs(self, node_id: str, job_ids: Sequence[str] | None = None) -> int:
        return await self.run(lambda s: s.release_jobs(node_id, job_ids))

    async def request_cancel(self, job_id: str, *, requested_by: str, now: float) -> bool:
        return await self.run(
            lambda s: s.request_cancel(job_id, requested_by=requested_by, now=now)
        )

    async def cancel_requests_for(self, node_id: str) -> list[str]:
        return await self.run(lambda s: s.cancel_requests_for(node_id))

    async def clear_cancel_request(self, job_id: str) -> None:
        await self.run(lambda s: s.clear_cancel_request(job_id))

    async def jobs_for(
        self, node_id: str, endpoints: Sequence[str] | None = None
    ) -> list[JobRecord]:
        return await self.run(lambda s: s.jobs_for(node_id, endpoints))

    async def orphaned_endpoints(self, node_id: str, now: float, **kw: Any) -> list[str]:
        return await self.run(lambda s: s.orphaned_endpoints(node_id, now, **kw))

    async def due_jobs(self, node_id: str, now: float, *, limit: int = 1000) -> list[JobRecord]:
        return await self.run(lambda s: s.due_jobs(node_id, now, limit=limit))

    async def append_events(self, events: Sequence[NewEvent]) -> int:
        evs = list(events)
        return await self.run(lambda s: s.append_events(evs))

    async def list_events(self, **kw: Any) -> list[EventRecord]:
        return await self.run(lambda s: s.list_events(**kw))

    async def take_tokens(
        self, scope: str, n: int, *, rate_per_s: float, burst: float, now: float
    ) -> int:
        return await self.run(
            lambda s: s.take_tokens(scope, n, rate_per_s=rate_per_s, burst=burst, now=now)
        )
