"""Persistence for the LwM2M server: SQLite by default, PostgreSQL for larger fleets.

Registrations (TS Core §6.2), observations (§6.4), the devices ever seen, and requests
queued for queue-mode clients (§8.3) survive a restart or a SIGKILL of the server.
:class:`Store` is the synchronous API; :class:`AsyncStore` runs it on one worker thread
for the asyncio server. Records are frozen dataclasses, never ORM objects.
"""

from fotakit.store.async_store import AsyncStore
from fotakit.store.engine import SqliteSynchronous
from fotakit.store.errors import (
    Conflict,
    InvalidRecord,
    SchemaVersionError,
    StoreClosed,
    StoreError,
    UnknownRegistration,
    UnsupportedDatabase,
)
from fotakit.store.records import (
    DeviceRecord,
    JsonObject,
    JsonValue,
    ObservationRecord,
    PendingRequestRecord,
    RegistrationRecord,
    expiry_for,
    new_observation_id,
    new_registration_id,
    utcnow,
)
from fotakit.store.schema import SCHEMA_VERSION
from fotakit.store.sync_store import RegistrationChanges, Store
from fotakit.store.urls import default_db_url, normalize_url

__all__ = [
    "SCHEMA_VERSION",
    "AsyncStore",
    "Conflict",
    "DeviceRecord",
    "InvalidRecord",
    "JsonObject",
    "JsonValue",
    "ObservationRecord",
    "PendingRequestRecord",
    "RegistrationChanges",
    "RegistrationRecord",
    "SchemaVersionError",
    "SqliteSynchronous",
    "Store",
    "StoreClosed",
    "StoreError",
    "UnknownRegistration",
    "UnsupportedDatabase",
    "default_db_url",
    "expiry_for",
    "new_observation_id",
    "new_registration_id",
    "normalize_url",
    "utcnow",
]
