"""The store's writes as SQLAlchemy Core statements, ready to run in any transaction.

Each :class:`Write` is one call of a :class:`~fotakit.store.Store` write method whose
arguments are already validated. :meth:`Store.apply` runs one alone, in its own
transaction; :meth:`Store.apply_batch` runs several in one transaction, which is how
:class:`~fotakit.store.AsyncStore` commits concurrent Registers (TS Core §6.2.1) with one
commit, hence one fsync with SQLite ``synchronous=FULL`` (group commit).

Why Core and not the ORM's unit of work: a Register is four statements here (find the
old registration, delete it, upsert the device, insert the new one) and nothing else —
no identity map, no flush ordering, no attribute instrumentation. The statements are
built once at import and reused with parameters, so SQLAlchemy's compiled cache serves
them.

Rules every write function follows:

* It raises its own :class:`StoreError` subclasses only *before* its first modifying
  statement, so what it leaves in a shared transaction is either all or nothing.
* It never commits or rolls back: the caller owns the transaction.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, Literal, TypedDict, TypeVar, Unpack

from sqlalchemy import Connection, Row, Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from fotakit.store import validate
from fotakit.store.errors import InvalidRecord, UnknownRegistration
from fotakit.store.records import (
    DeviceRecord,
    JsonObject,
    ObservationRecord,
    PendingRequestRecord,
    RegistrationRecord,
    utcnow,
)
from fotakit.store.schema import Base

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Together:
    """How a write joins writes of its kind in one set of statements.

    ``run_many(conn, items)`` applies the writes whose ``item`` are given and returns their
    results in order. Writes with disjoint ``keys`` touch disjoint rows, so applying them
    together gives exactly what applying them one after the other gives.
    """

    run_many: Callable[[Connection, list[Any]], list[Any]]
    item: Any
    keys: tuple[Hashable, ...]


@dataclass(frozen=True, slots=True)
class Write(Generic[T]):
    """One validated write: ``run(conn)`` applies it inside the caller's transaction."""

    name: str
    """The :class:`~fotakit.store.Store` method this write stands for."""
    run: Callable[[Connection], T]
    together: Together | None = None
    """Set if :meth:`Store.apply_batch` may merge this write with its neighbours."""


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What one write of :meth:`Store.apply_batch` came to: a value, or an exception."""

    value: T | None = None
    error: Exception | None = None

    def result(self) -> T:
        """The write's return value; raises the write's exception if it failed."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


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


CHANGEABLE: Final = frozenset(RegistrationChanges.__annotations__)

_REG: Final[Table] = Base.metadata.tables["registrations"]
_DEV: Final[Table] = Base.metadata.tables["devices"]
_OBS: Final[Table] = Base.metadata.tables["observations"]
_PENDING: Final[Table] = Base.metadata.tables["pending_requests"]

# Bind names differ from column names: UPDATE reserves column names for its SET clause.
_REG_BY_ID: Final = select(_REG).where(_REG.c.registration_id == bindparam("b_id"))
_DELETE_REG: Final = delete(_REG).where(_REG.c.registration_id == bindparam("b_id"))
_DELETE_REG_RETURNING: Final = _DELETE_REG.returning(*_REG.c)
_REGS_BY_ENDPOINTS: Final = select(_REG).where(
    _REG.c.endpoint.in_(bindparam("b_endpoints", expanding=True))
)
_DELETE_REGS_OF_ENDPOINTS: Final = delete(_REG).where(
    _REG.c.endpoint.in_(bindparam("b_endpoints", expanding=True))
)
_DELETE_REGS_OF_ENDPOINTS_RETURNING: Final = _DELETE_REGS_OF_ENDPOINTS.returning(*_REG.c)
_UPDATE_REG_RETURNING: Final = (
    update(_REG).where(_REG.c.registration_id == bindparam("b_id")).returning(*_REG.c)
)
_INSERT_REG: Final = insert(_REG)
_UPDATE_REG: Final = update(_REG).where(_REG.c.registration_id == bindparam("b_id"))
_REG_ENDPOINT: Final = select(_REG.c.endpoint).where(_REG.c.registration_id == bindparam("b_id"))
_DEV_BY_ENDPOINT: Final = select(_DEV).where(_DEV.c.endpoint == bindparam("b_endpoint"))
_UPDATE_DEV: Final = update(_DEV).where(_DEV.c.endpoint == bindparam("b_endpoint"))
_INSERT_OBS: Final = insert(_OBS)
_OBS_BY_ID: Final = select(_OBS).where(_OBS.c.observation_id == bindparam("b_id"))
_DELETE_OBS: Final = delete(_OBS).where(_OBS.c.observation_id == bindparam("b_id"))
_INSERT_PENDING: Final = insert(_PENDING)
_PENDING_BY_ID: Final = select(_PENDING).where(_PENDING.c.id == bindparam("b_id"))
_DELETE_PENDING: Final = delete(_PENDING).where(_PENDING.c.id == bindparam("b_id"))
_CLEAR_PENDING: Final = delete(_PENDING).where(_PENDING.c.endpoint == bindparam("b_endpoint"))


def _device_upsert(dialect: Literal["sqlite", "postgresql"]) -> Insert:
    """INSERT a device, or refresh the one already there (``first_seen`` is kept)."""
    stmt = sqlite.insert(_DEV) if dialect == "sqlite" else postgresql.insert(_DEV)
    return stmt.on_conflict_do_update(
        index_elements=[_DEV.c.endpoint],
        set_={
            "last_seen": stmt.excluded.last_seen,
            "lwm2m_version": stmt.excluded.lwm2m_version,
            "last_registration_id": stmt.excluded.last_registration_id,
        },
    )


_UPSERT_DEV: Final = {name: _device_upsert(name) for name in ("sqlite", "postgresql")}


# -- rows and records --------------------------------------------------------------------


def registration_record(row: Row[Any]) -> RegistrationRecord:
    return RegistrationRecord(
        registration_id=row.registration_id,
        endpoint=row.endpoint,
        address=row.address,
        port=row.port,
        lifetime=row.lifetime,
        lwm2m_version=row.lwm2m_version,
        binding=row.binding,
        queue_mode=row.queue_mode,
        sms=row.sms,
        root_path=row.root_path,
        object_links=row.object_links,
        content_formats=tuple(row.content_formats),
        registered_at=row.registered_at,
        last_update=row.last_update,
        expires_at=row.expires_at,
        node_id=row.node_id,
    )


def _registration_params(rec: RegistrationRecord) -> dict[str, Any]:
    return {
        "registration_id": rec.registration_id,
        "endpoint": rec.endpoint,
        "address": rec.address,
        "port": rec.port,
        "lifetime": rec.lifetime,
        "lwm2m_version": rec.lwm2m_version,
        "binding": rec.binding,
        "queue_mode": rec.queue_mode,
        "sms": rec.sms,
        "root_path": rec.root_path,
        "object_links": rec.object_links,
        "content_formats": list(rec.content_formats),
        "registered_at": rec.registered_at,
        "last_update": rec.last_update,
        "expires_at": rec.expires_at,
        "node_id": rec.node_id,
    }


def _device_record(row: Row[Any]) -> DeviceRecord:
    return DeviceRecord(
        endpoint=row.endpoint,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        lwm2m_version=row.lwm2m_version,
        last_registration_id=row.last_registration_id,
        attributes=row.attributes,
    )


def _observation_record(row: Row[Any]) -> ObservationRecord:
    return ObservationRecord(
        observation_id=row.observation_id,
        registration_id=row.registration_id,
        endpoint=row.endpoint,
        path=row.path,
        token=bytes(row.token),
        content_format=row.content_format,
        attributes=row.attributes,
        created_at=row.created_at,
    )


def _pending_record(row: Row[Any]) -> PendingRequestRecord:
    return PendingRequestRecord(
        id=row.id,
        endpoint=row.endpoint,
        created_at=row.created_at,
        operation=row.operation,
        path=row.path,
        payload=bytes(row.payload),
        content_format=row.content_format,
        options=row.options,
    )


def _write(name: str, fn: Callable[..., T], *args: Any) -> Write[T]:
    return Write(name, functools.partial(fn, *args))


# -- registrations -----------------------------------------------------------------------


def upsert_registration(rec: RegistrationRecord) -> Write[RegistrationRecord | None]:
    """See :meth:`Store.upsert_registration`.

    Upserts of distinct endpoints and registration IDs merge in a batch: a burst of
    Registers is then three statements, whatever its size.
    """
    validate.registration(rec)
    return Write(
        "upsert_registration",
        functools.partial(_upsert_one, rec),
        Together(
            _upsert_registrations,
            rec,
            (("endpoint", rec.endpoint), ("registration_id", rec.registration_id)),
        ),
    )


def _upsert_one(rec: RegistrationRecord, conn: Connection) -> RegistrationRecord | None:
    result: RegistrationRecord | None = _upsert_registrations(conn, [rec])[0]
    return result


def _upsert_registrations(
    conn: Connection, recs: list[RegistrationRecord]
) -> list[RegistrationRecord | None]:
    """Upsert registrations of distinct endpoints; the replaced ones, in order."""
    endpoints = {"b_endpoints": [rec.endpoint for rec in recs]}
    # The database's ON DELETE CASCADE drops the old registrations' observations.
    if conn.dialect.delete_returning:
        old_rows = conn.execute(_DELETE_REGS_OF_ENDPOINTS_RETURNING, endpoints).all()
    else:  # SQLite before 3.35
        old_rows = conn.execute(_REGS_BY_ENDPOINTS, endpoints).all()
        if old_rows:
            conn.execute(_DELETE_REGS_OF_ENDPOINTS, endpoints)
    replaced = {row.endpoint: registration_record(row) for row in old_rows}
    conn.execute(
        _UPSERT_DEV[conn.dialect.name],
        [
            {
                "endpoint": rec.endpoint,
                "first_seen": rec.registered_at,
                "last_seen": rec.registered_at,
                "lwm2m_version": rec.lwm2m_version,
                "last_registration_id": rec.registration_id,
                "attributes": {},
            }
            for rec in recs
        ],
    )
    conn.execute(_INSERT_REG, [_registration_params(rec) for rec in recs])
    return [replaced.get(rec.endpoint) for rec in recs]


def update_registration(
    registration_id: str, /, **changes: Unpack[RegistrationChanges]
) -> Write[RegistrationRecord | None]:
    """See :meth:`Store.update_registration`."""
    unknown = set(changes) - CHANGEABLE
    if unknown:
        raise InvalidRecord(
            f"cannot change {sorted(unknown)} of a registration; changeable fields are "
            f"{sorted(CHANGEABLE)}"
        )
    # Every rule concerns one field, so checking the new values checks the updated row.
    validate.registration_changes(changes)
    values: dict[str, Any] = dict(changes)
    if "content_formats" in values:
        values["content_formats"] = list(values["content_formats"])
    return _write("update_registration", _update_registration, registration_id, values)


def _update_registration(
    registration_id: str, values: dict[str, Any], conn: Connection
) -> RegistrationRecord | None:
    params = {"b_id": registration_id, **values}
    if not values:
        row = conn.execute(_REG_BY_ID, params).one_or_none()
    elif conn.dialect.update_returning:
        row = conn.execute(_UPDATE_REG_RETURNING, params).one_or_none()
    else:  # SQLite before 3.35
        row = conn.execute(_REG_BY_ID, params).one_or_none()
        if row is not None:
            conn.execute(_UPDATE_REG, params)
            row = conn.execute(_REG_BY_ID, params).one()
    if row is None:
        return None
    updated = registration_record(row)
    if "last_update" in values:
        conn.execute(
            _UPDATE_DEV, {"b_endpoint": updated.endpoint, "last_seen": updated.last_update}
        )
    return updated


def delete_registration(registration_id: str) -> Write[RegistrationRecord | None]:
    """See :meth:`Store.delete_registration`."""
    return _write("delete_registration", _delete_registration, registration_id)


def _delete_registration(registration_id: str, conn: Connection) -> RegistrationRecord | None:
    params = {"b_id": registration_id}
    if conn.dialect.delete_returning:
        row = conn.execute(_DELETE_REG_RETURNING, params).one_or_none()
    else:  # SQLite before 3.35
        row = conn.execute(_REG_BY_ID, params).one_or_none()
        if row is not None:
            conn.execute(_DELETE_REG, params)
    return None if row is None else registration_record(row)


# -- observations ------------------------------------------------------------------------


def add_observation(rec: ObservationRecord) -> Write[ObservationRecord]:
    """See :meth:`Store.add_observation`."""
    validate.observation(rec)
    return _write("add_observation", _add_observation, rec)


def _add_observation(rec: ObservationRecord, conn: Connection) -> ObservationRecord:
    endpoint = conn.execute(_REG_ENDPOINT, {"b_id": rec.registration_id}).scalar_one_or_none()
    if endpoint is None:
        raise UnknownRegistration(rec.registration_id)
    if endpoint != rec.endpoint:
        raise InvalidRecord(
            f"observation endpoint {rec.endpoint!r} differs from the endpoint "
            f"{endpoint!r} of registration {rec.registration_id!r}"
        )
    conn.execute(
        _INSERT_OBS,
        {
            "observation_id": rec.observation_id,
            "registration_id": rec.registration_id,
            "endpoint": rec.endpoint,
            "path": rec.path,
            "token": rec.token,
            "content_format": rec.content_format,
            "attributes": dict(rec.attributes),
            "created_at": rec.created_at,
        },
    )
    return rec


def delete_observation(observation_id: str) -> Write[ObservationRecord | None]:
    """See :meth:`Store.delete_observation`."""
    return _write("delete_observation", _delete_observation, observation_id)


def _delete_observation(observation_id: str, conn: Connection) -> ObservationRecord | None:
    row = conn.execute(_OBS_BY_ID, {"b_id": observation_id}).one_or_none()
    if row is None:
        return None
    conn.execute(_DELETE_OBS, {"b_id": observation_id})
    return _observation_record(row)


# -- devices -----------------------------------------------------------------------------


def set_device_attributes(endpoint: str, attributes: JsonObject) -> Write[DeviceRecord | None]:
    """See :meth:`Store.set_device_attributes`."""
    validate.json_object("attributes", attributes)
    return _write("set_device_attributes", _set_device_attributes, endpoint, dict(attributes))


def _set_device_attributes(
    endpoint: str, attributes: dict[str, Any], conn: Connection
) -> DeviceRecord | None:
    row = conn.execute(_DEV_BY_ENDPOINT, {"b_endpoint": endpoint}).one_or_none()
    if row is None:
        return None
    conn.execute(_UPDATE_DEV, {"b_endpoint": endpoint, "attributes": attributes})
    return dataclasses.replace(_device_record(row), attributes=attributes)


# -- queue mode: pending requests --------------------------------------------------------


class PendingRequestArgs(TypedDict, total=False):
    payload: bytes
    content_format: int | None
    options: JsonObject | None
    created_at: datetime | None


def enqueue_pending_request(
    endpoint: str, operation: str, path: str, **kwargs: Unpack[PendingRequestArgs]
) -> Write[PendingRequestRecord]:
    """See :meth:`Store.enqueue_pending_request`."""
    payload = kwargs.get("payload", b"")
    content_format = kwargs.get("content_format")
    options = kwargs.get("options")
    created_at = kwargs.get("created_at")
    opts: JsonObject = {} if options is None else options
    when = utcnow() if created_at is None else created_at
    validate.pending_request(endpoint, operation, path, payload, content_format, opts, when)
    params = {
        "endpoint": endpoint,
        "created_at": when,
        "operation": operation,
        "path": path,
        "payload": payload,
        "content_format": content_format,
        "options": dict(opts),
    }
    return _write("enqueue_pending_request", _enqueue_pending_request, params)


def _enqueue_pending_request(params: dict[str, Any], conn: Connection) -> PendingRequestRecord:
    result = conn.execute(_INSERT_PENDING, params)
    (request_id,) = result.inserted_primary_key or (None,)
    if request_id is None:  # pragma: no cover - both backends report the new key
        raise RuntimeError("the database did not report the new pending request's ID")
    return PendingRequestRecord(id=int(request_id), **params)


def delete_pending_request(request_id: int) -> Write[PendingRequestRecord | None]:
    """See :meth:`Store.delete_pending_request`."""
    return _write("delete_pending_request", _delete_pending_request, request_id)


def _delete_pending_request(request_id: int, conn: Connection) -> PendingRequestRecord | None:
    row = conn.execute(_PENDING_BY_ID, {"b_id": request_id}).one_or_none()
    if row is None:
        return None
    conn.execute(_DELETE_PENDING, {"b_id": request_id})
    return _pending_record(row)


def clear_pending_requests(endpoint: str) -> Write[int]:
    """See :meth:`Store.clear_pending_requests`."""
    return _write("clear_pending_requests", _clear_pending_requests, endpoint)


def _clear_pending_requests(endpoint: str, conn: Connection) -> int:
    result = conn.execute(_CLEAR_PENDING, {"b_endpoint": endpoint})
    return int(result.rowcount)
