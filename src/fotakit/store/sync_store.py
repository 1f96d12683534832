"""The synchronous store: registrations, observations, devices and queued requests.

Holds what the LwM2M server must not forget across a restart (TS Core §6.2 registration
interface, §6.4 observations, §8.3 queue mode). Each public method is one transaction:
it either commits completely or raises and leaves the database as it was. Records go in
and come out as the frozen dataclasses of :mod:`fotakit.store.records`.

Writes are built by :mod:`fotakit.store.writes` (validated, as Core statements) and run
by :meth:`Store.apply` alone or by :meth:`Store.apply_batch` several to one transaction
(group commit). The server uses :class:`fotakit.store.AsyncStore`, which runs this class
on one worker thread and batches the writes that wait; this class is also usable directly
from scripts, the CLI and tests.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal, TypeVar, Unpack

from sqlalchemy import Connection, Engine, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from fotakit.store import validate, writes
from fotakit.store.engine import WRITE_OPTION, SqliteSynchronous, ensure_schema, make_engine
from fotakit.store.errors import Conflict, StoreClosed
from fotakit.store.records import (
    DeviceRecord,
    JsonObject,
    ObservationRecord,
    PendingRequestRecord,
    RegistrationRecord,
)
from fotakit.store.schema import (
    DeviceRow,
    ObservationRow,
    PendingRequestRow,
    RegistrationRow,
)
from fotakit.store.urls import parse_url, redacted
from fotakit.store.writes import Outcome, RegistrationChanges, Write

__all__ = ["Outcome", "RegistrationChanges", "Store", "Write"]

log = logging.getLogger("fotakit.store")

T = TypeVar("T")


class Store:
    """Persistence for the LwM2M server on SQLite or PostgreSQL (see :meth:`open`)."""

    def __init__(self, engine: Engine) -> None:
        """Use :meth:`open`; this takes an engine whose schema is already checked."""
        self._engine = engine
        self._reads = sessionmaker(bind=engine, expire_on_commit=False)
        self._write_engine = engine.execution_options(**{WRITE_OPTION: True})
        self._closed = False

    @classmethod
    def open(cls, url: str | URL, *, sqlite_synchronous: SqliteSynchronous = "FULL") -> Store:
        """Connect to ``url``, create the schema if the database is new, check its version.

        Raises :class:`UnsupportedDatabase` for other schemes and
        :class:`SchemaVersionError` for a database written by a newer fotakit.
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
        """The database URL with any password masked."""
        return redacted(self._engine.url)

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self._engine.dialect.name == "sqlite" else "postgresql"

    def close(self) -> None:
        """Release all connections. Idempotent; later calls raise :class:`StoreClosed`."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Session]:
        self._check_open()
        with self._reads() as session, session.begin():
            yield session

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        self._check_open()
        try:
            with self._write_engine.begin() as conn:
                yield conn
        except IntegrityError as exc:
            raise Conflict(f"write refused by a database constraint: {exc.orig}") from exc

    def apply(self, op: Write[T]) -> T:
        """Run one write from :mod:`fotakit.store.writes` in a transaction of its own."""
        with self._write() as conn:
            return op.run(conn)

    def apply_batch(self, ops: Sequence[Write[Any]]) -> list[Outcome[Any]]:
        """Run ``ops`` in order in one transaction: one commit (one fsync) for them all.

        Returns one :class:`Outcome` per op, in order. Each op's outcome is what it would
        have been had the ops been applied one after the other with :meth:`apply`:

        * If an op raises, the batch transaction is rolled back and the ops are applied
          again one by one, each in its own transaction, so a bad op fails alone and its
          neighbours still commit.
        * If the database refuses to begin or to commit the batch, no op ran or none is
          kept; every op gets that error (each would have hit it alone too).
        """
        if len(ops) <= 1:
            return [self._apply_alone(op) for op in ops]
        try:
            with self._write() as conn:
                results = _run_together(conn, ops)
        except _OpFailed as failed:
            log.debug(
                "batch of %d writes rolled back (%s failed: %r); applying them one by one",
                len(ops),
                failed.op.name,
                failed.__cause__,
            )
            return [self._apply_alone(op) for op in ops]
        except Exception as exc:
            return [Outcome(error=exc) for _ in ops]
        return [Outcome(value=result) for result in results]

    def _apply_alone(self, op: Write[Any]) -> Outcome[Any]:
        try:
            return Outcome(value=self.apply(op))
        except Exception as exc:
            return Outcome(error=exc)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"the store for {self.url} is closed")

    # -- registrations ------------------------------------------------------------------

    def upsert_registration(self, rec: RegistrationRecord) -> RegistrationRecord | None:
        """Store ``rec``, replacing any registration of the same endpoint.

        The replaced registration and its observations are deleted and the device row is
        created or updated, all in one transaction. Returns the replaced registration, if
        any, so the caller can forget its in-memory state. Raises :class:`Conflict` if
        ``rec.registration_id`` belongs to another endpoint's registration.
        """
        return self.apply(writes.upsert_registration(rec))

    def update_registration(
        self, registration_id: str, /, **changes: Unpack[RegistrationChanges]
    ) -> RegistrationRecord | None:
        """Apply ``changes`` to a registration; ``None`` if there is no such registration.

        A new ``last_update`` also becomes the device's ``last_seen``.
        """
        return self.apply(writes.update_registration(registration_id, **changes))

    def delete_registration(self, registration_id: str) -> RegistrationRecord | None:
        """Delete a registration and its observations; return it, or ``None`` if absent."""
        return self.apply(writes.delete_registration(registration_id))

    def get_registration(self, registration_id: str) -> RegistrationRecord | None:
        with self._read() as session:
            row = session.get(RegistrationRow, registration_id)
            return None if row is None else row.to_record()

    def get_registration_by_endpoint(self, endpoint: str) -> RegistrationRecord | None:
        with self._read() as session:
            row = session.scalars(
                select(RegistrationRow).where(RegistrationRow.endpoint == endpoint)
            ).one_or_none()
            return None if row is None else row.to_record()

    def list_registrations(self) -> list[RegistrationRecord]:
        """All registrations, ordered by endpoint."""
        with self._read() as session:
            rows = session.scalars(select(RegistrationRow).order_by(RegistrationRow.endpoint))
            return [row.to_record() for row in rows]

    def expired_registrations(self, now: datetime) -> list[RegistrationRecord]:
        """Registrations whose lifetime has run out at ``now`` (``expires_at <= now``).

        Registrations with lifetime 0 (``expires_at`` is ``None``) never expire.
        """
        validate.aware("now", now)
        with self._read() as session:
            rows = session.scalars(
                select(RegistrationRow)
                .where(RegistrationRow.expires_at.is_not(None))
                .where(RegistrationRow.expires_at <= now)
                .order_by(RegistrationRow.expires_at, RegistrationRow.endpoint)
            )
            return [row.to_record() for row in rows]

    # -- observations -------------------------------------------------------------------

    def add_observation(self, rec: ObservationRecord) -> ObservationRecord:
        """Store an observation of a live registration.

        Raises :class:`UnknownRegistration` if the registration is gone (e.g. replaced),
        :class:`InvalidRecord` if ``rec.endpoint`` is not that registration's endpoint,
        :class:`Conflict` if the observation ID is taken.
        """
        return self.apply(writes.add_observation(rec))

    def delete_observation(self, observation_id: str) -> ObservationRecord | None:
        """Delete an observation; return it, or ``None`` if there was none."""
        return self.apply(writes.delete_observation(observation_id))

    def get_observation(self, observation_id: str) -> ObservationRecord | None:
        with self._read() as session:
            row = session.get(ObservationRow, observation_id)
            return None if row is None else row.to_record()

    def list_observations(self, registration_id: str | None = None) -> list[ObservationRecord]:
        """Observations of one registration, or of all, oldest first."""
        query = select(ObservationRow).order_by(
            ObservationRow.created_at, ObservationRow.observation_id
        )
        if registration_id is not None:
            query = query.where(ObservationRow.registration_id == registration_id)
        with self._read() as session:
            return [row.to_record() for row in session.scalars(query)]

    # -- devices ------------------------------------------------------------------------

    def get_device(self, endpoint: str) -> DeviceRecord | None:
        with self._read() as session:
            row = session.get(DeviceRow, endpoint)
            return None if row is None else row.to_record()

    def list_devices(self) -> list[DeviceRecord]:
        """Every device ever registered, ordered by endpoint."""
        with self._read() as session:
            rows = session.scalars(select(DeviceRow).order_by(DeviceRow.endpoint))
            return [row.to_record() for row in rows]

    def set_device_attributes(self, endpoint: str, attributes: JsonObject) -> DeviceRecord | None:
        """Replace a device's free-form JSON attributes; ``None`` if the device is unknown."""
        return self.apply(writes.set_device_attributes(endpoint, attributes))

    def enqueue_pending_request(
        self,
        endpoint: str,
        operation: str,
        path: str,
        *,
        payload: bytes = b"",
        content_format: int | None = None,
        options: JsonObject | None = None,
        created_at: datetime | None = None,
    ) -> PendingRequestRecord:
        """Queue a request for a sleeping client; IDs increase in enqueue order."""
        return self.apply(
            writes.enqueue_pending_request(
                endpoint,
                operation,
                path,
                payload=payload,
                content_format=content_format,
                options=options,
                created_at=created_at,
            )
        )

    def list_pending_requests(self, endpoint: str | None = None) -> list[PendingRequestRecord]:
        """Queued requests for one endpoint, or for all, in enqueue (FIFO) order."""
        query = select(PendingRequestRow).order_by(PendingRequestRow.id)
        if endpoint is not None:
            query = query.where(PendingRequestRow.endpoint == endpoint)
        with self._read() as session:
            return [row.to_record() for row in session.scalars(query)]

    def delete_pending_request(self, request_id: int) -> PendingRequestRecord | None:
        """Remove one queued request (sent or abandoned); ``None`` if it was not queued."""
        return self.apply(writes.delete_pending_request(request_id))

    def clear_pending_requests(self, endpoint: str) -> int:
        """Remove every queued request for ``endpoint``; return how many were removed."""
        return self.apply(writes.clear_pending_requests(endpoint))


def _run_together(conn: Connection, ops: Sequence[Write[Any]]) -> list[Any]:
    """Apply ``ops`` in order, merging runs of neighbours that may run together."""
    results: list[Any] = []
    i = 0
    while i < len(ops):
        op, together = ops[i], ops[i].together
        items: list[Any] = []
        if together is not None:
            keys: set[Hashable] = set()
            for nxt in ops[i:]:
                if nxt.together is None or nxt.together.run_many is not together.run_many:
                    break
                if not keys.isdisjoint(nxt.together.keys):
                    break
                keys.update(nxt.together.keys)
                items.append(nxt.together.item)
        try:
            if together is None or len(items) == 1:
                results.append(op.run(conn))
                i += 1
            else:
                results.extend(together.run_many(conn, items))
                i += len(items)
        except Exception as exc:
            raise _OpFailed(op) from exc
    return results


class _OpFailed(Exception):
    """An op of a batch raised (its exception is the ``__cause__``)."""

    def __init__(self, op: Write[Any]) -> None:
        super().__init__(op.name)
        self.op = op
