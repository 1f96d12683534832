"""The synchronous store: registrations, observations, devices and queued requests.

Holds what the LwM2M server must not forget across a restart (TS Core §6.2 registration
interface, §6.4 observations, §8.3 queue mode). Each public method is one transaction:
it either commits completely or raises and leaves the database as it was. Records go in
and come out as the frozen dataclasses of :mod:`fotakit.store.records`.

The server uses :class:`fotakit.store.AsyncStore`, which runs these methods on one worker
thread; this class is also usable directly from scripts, the CLI and tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final, Literal, TypedDict, Unpack

from sqlalchemy import Engine, delete, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from fotakit.store import validate
from fotakit.store.engine import WRITE_OPTION, SqliteSynchronous, ensure_schema, make_engine
from fotakit.store.errors import Conflict, InvalidRecord, StoreClosed, UnknownRegistration
from fotakit.store.records import (
    DeviceRecord,
    JsonObject,
    ObservationRecord,
    PendingRequestRecord,
    RegistrationRecord,
    utcnow,
)
from fotakit.store.schema import (
    DeviceRow,
    ObservationRow,
    PendingRequestRow,
    RegistrationRow,
)
from fotakit.store.urls import parse_url, redacted


class RegistrationChanges(TypedDict, total=False):
    """What a registration Update (TS Core §6.2.2) or a new source address may change."""

    address: str
    port: int
    lifetime: int
    binding: str
    queue_mode: bool
    sms: str | None
    root_path: str
    object_links: str
    content_formats: tuple[int, ...]
    last_update: datetime
    expires_at: datetime | None


_CHANGEABLE: Final = frozenset(RegistrationChanges.__annotations__)


class Store:
    """Persistence for the LwM2M server on SQLite or PostgreSQL (see :meth:`open`)."""

    def __init__(self, engine: Engine) -> None:
        """Use :meth:`open`; this takes an engine whose schema is already checked."""
        self._engine = engine
        self._reads = sessionmaker(bind=engine, expire_on_commit=False)
        self._writes = sessionmaker(
            bind=engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )
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
    def _write(self) -> Iterator[Session]:
        self._check_open()
        try:
            with self._writes.begin() as session:
                yield session
        except IntegrityError as exc:
            raise Conflict(f"write refused by a database constraint: {exc.orig}") from exc

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
        validate.registration(rec)
        with self._write() as session:
            old = session.scalars(
                select(RegistrationRow).where(RegistrationRow.endpoint == rec.endpoint)
            ).one_or_none()
            replaced = None if old is None else old.to_record()
            if old is not None:
                # A bulk DELETE, so the database's ON DELETE CASCADE drops the observations.
                session.execute(
                    delete(RegistrationRow).where(
                        RegistrationRow.registration_id == old.registration_id
                    ),
                    execution_options={"synchronize_session": False},
                )
                session.expunge(old)
            device = session.get(DeviceRow, rec.endpoint)
            if device is None:
                session.add(
                    DeviceRow(
                        endpoint=rec.endpoint,
                        first_seen=rec.registered_at,
                        last_seen=rec.registered_at,
                        lwm2m_version=rec.lwm2m_version,
                        last_registration_id=rec.registration_id,
                        attributes={},
                    )
                )
            else:
                device.last_seen = rec.registered_at
                device.lwm2m_version = rec.lwm2m_version
                device.last_registration_id = rec.registration_id
            session.flush()
            session.add(RegistrationRow.from_record(rec))
            session.flush()
        return replaced

    def update_registration(
        self, registration_id: str, /, **changes: Unpack[RegistrationChanges]
    ) -> RegistrationRecord | None:
        """Apply ``changes`` to a registration; ``None`` if there is no such registration.

        A new ``last_update`` also becomes the device's ``last_seen``.
        """
        unknown = set(changes) - _CHANGEABLE
        if unknown:
            raise InvalidRecord(
                f"cannot change {sorted(unknown)} of a registration; changeable fields are "
                f"{sorted(_CHANGEABLE)}"
            )
        with self._write() as session:
            row = session.get(RegistrationRow, registration_id)
            if row is None:
                return None
            updated = dataclasses.replace(row.to_record(), **changes)
            validate.registration(updated)
            new_row = RegistrationRow.from_record(updated)
            for name in changes:
                setattr(row, name, getattr(new_row, name))
            if "last_update" in changes:
                device = session.get(DeviceRow, row.endpoint)
                if device is not None:
                    device.last_seen = updated.last_update
            session.flush()
            return updated

    def delete_registration(self, registration_id: str) -> RegistrationRecord | None:
        """Delete a registration and its observations; return it, or ``None`` if absent."""
        with self._write() as session:
            row = session.get(RegistrationRow, registration_id)
            if row is None:
                return None
            record = row.to_record()
            session.execute(
                delete(RegistrationRow).where(RegistrationRow.registration_id == registration_id),
                execution_options={"synchronize_session": False},
            )
            session.expunge(row)
            return record

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
        validate.observation(rec)
        with self._write() as session:
            registration = session.get(RegistrationRow, rec.registration_id)
            if registration is None:
                raise UnknownRegistration(rec.registration_id)
            if registration.endpoint != rec.endpoint:
                raise InvalidRecord(
                    f"observation endpoint {rec.endpoint!r} differs from the endpoint "
                    f"{registration.endpoint!r} of registration {rec.registration_id!r}"
                )
            session.add(ObservationRow.from_record(rec))
            session.flush()
        return rec

    def delete_observation(self, observation_id: str) -> ObservationRecord | None:
        """Delete an observation; return it, or ``None`` if there was none."""
        with self._write() as session:
            row = session.get(ObservationRow, observation_id)
            if row is None:
                return None
            record = row.to_record()
            session.delete(row)
            return record

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
        validate.json_object("attributes", attributes)
        with self._write() as session:
            row = session.get(DeviceRow, endpoint)
            if row is None:
                return None
            row.attributes = dict(attributes)
            session.flush()
            return row.to_record()

    # -- queue mode: pending requests ---------------------------------------------------

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
        opts: JsonObject = {} if options is None else options
        when = utcnow() if created_at is None else created_at
        validate.pending_request(endpoint, operation, path, payload, content_format, opts, when)
        with self._write() as session:
            row = PendingRequestRow(
                endpoint=endpoint,
                created_at=when,
                operation=operation,
                path=path,
                payload=payload,
                content_format=content_format,
                options=dict(opts),
            )
            session.add(row)
            session.flush()
            return row.to_record()

    def list_pending_requests(self, endpoint: str | None = None) -> list[PendingRequestRecord]:
        """Queued requests for one endpoint, or for all, in enqueue (FIFO) order."""
        query = select(PendingRequestRow).order_by(PendingRequestRow.id)
        if endpoint is not None:
            query = query.where(PendingRequestRow.endpoint == endpoint)
        with self._read() as session:
            return [row.to_record() for row in session.scalars(query)]

    def delete_pending_request(self, request_id: int) -> PendingRequestRecord | None:
        """Remove one queued request (sent or abandoned); ``None`` if it was not queued."""
        with self._write() as session:
            row = session.get(PendingRequestRow, request_id)
            if row is None:
                return None
            record = row.to_record()
            session.delete(row)
            return record

    def clear_pending_requests(self, endpoint: str) -> int:
        """Remove every queued request for ``endpoint``; return how many were removed."""
        with self._write() as session:
            result = session.execute(
                delete(PendingRequestRow).where(PendingRequestRow.endpoint == endpoint),
                execution_options={"synchronize_session": False},
            )
            count: Any = getattr(result, "rowcount", 0)
            return int(count)
