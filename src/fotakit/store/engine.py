"""Opening a database: engine settings per backend and the schema version check.

SQLite runs in WAL mode with ``synchronous=FULL`` by default. In WAL mode a commit is
written to the log before ``COMMIT`` returns, so NORMAL would already survive a SIGKILL of
the server; FULL additionally fsyncs the log on every commit, so a registration the
server has acknowledged with 2.01 also survives a power cut or kernel crash. That costs one
fsync per commit; :class:`~fotakit.store.AsyncStore` commits the writes that wait together
(group commit), so a Register flood costs one fsync per batch, not per Register. Fleets
that prefer still more throughput can pass ``sqlite_synchronous="NORMAL"`` and accept that
the last few commits before a power loss may be rolled back (the clients then re-register
after a 4.04 on their next Update, TS Core §6.2.2).

Python 3.11's ``sqlite3`` only begins transactions before DML, so the store takes over
transaction control: every transaction starts with an explicit ``BEGIN`` (``BEGIN
IMMEDIATE`` for writes, which takes the write lock up front instead of failing with
"database is locked" when a read-then-write transaction races another process).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Final, Literal

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from fotakit.store.errors import SchemaVersionError, StoreError
from fotakit.store.schema import (
    FOTAKIT_TABLES,
    MIGRATIONS,
    SCHEMA_VERSION,
    Base,
    SchemaVersionRow,
)
from fotakit.store.urls import redacted

SqliteSynchronous = Literal["FULL", "NORMAL"]

WRITE_OPTION: Final = "fotakit_write"
_BUSY_TIMEOUT_MS: Final = 10_000
_SCHEMA_LOCK_KEY: Final = 0x66_6F_74_61  # "fota"

log = logging.getLogger("fotakit.store")


def make_engine(url: URL, *, sqlite_synchronous: SqliteSynchronous = "FULL") -> Engine:
    """An engine for the normalised ``url`` with fotakit's connection settings applied."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, sqlite_synchronous)
    return create_engine(url, pool_pre_ping=True)


def _enable_wal(cursor: Any) -> Any:
    """``PRAGMA journal_mode = WAL``, retried while another connection holds the lock.

    Switching a database file to WAL needs it exclusively and SQLite does not run the busy
    handler for it: several processes opening a new (or pre-WAL) database at once got
    "database is locked" at once. Bounded by the busy timeout.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            return cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _sqlite_engine(url: URL, synchronous: SqliteSynchronous) -> Engine:
    if synchronous not in ("FULL", "NORMAL"):
        raise StoreError(f"sqlite_synchronous must be FULL or NORMAL, not {synchronous!r}")
    database = url.database or ""
    in_memory = database in ("", ":memory:")
    if in_memory:
        # One shared connection, or every connection would see its own empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Autocommit at the driver level; _on_begin issues BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not in_memory:
                mode = _enable_wal(cursor)
                if str(mode).lower() != "wal":
                    raise StoreError(f"SQLite refused WAL mode for {database} (got {mode})")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = bool(conn.get_execution_options().get(WRITE_OPTION, False))
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def ensure_schema(engine: Engine) -> None:
    """Create the tables of a new database, check the version of an existing one, or
    upgrade it in place from an older version.

    A database with a newer (or unknown) version is refused before anything is written.
    An older one gets the missing tables, then the steps of
    :data:`~fotakit.store.schema.MIGRATIONS` from its version on (new columns, indexes and
    the data they need), and its version row raised, all in the same transaction. On
    PostgreSQL a transaction-scoped advisory lock serialises processes that
    open the same database at once (SQLite's ``BEGIN IMMEDIATE`` already does).
    """
    url = redacted(engine.url)
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        existing = set(inspect(conn).get_table_names())
        found: int | None = None
        if SchemaVersionRow.__tablename__ in existing:
            versions = list(conn.scalars(select(SchemaVersionRow.version)))
            if len(versions) != 1:
                raise StoreError(
                    f"database {url} has {len(versions)} rows in schema_version, expected "
                    "exactly 1; it was not written by fotakit or is damaged"
                )
            found = versions[0]
            if not 1 <= found <= SCHEMA_VERSION:
                raise SchemaVersionError(found, SCHEMA_VERSION, url)
        elif existing & FOTAKIT_TABLES:
            raise StoreError(
                f"database {url} has tables {sorted(existing & FOTAKIT_TABLES)} but no "
                "schema_version table; it was not created by fotakit"
            )
        Base.metadata.create_all(conn)
        if found is None:
            conn.execute(insert(SchemaVersionRow).values(id=1, version=SCHEMA_VERSION))
        elif found < SCHEMA_VERSION:
            for version in range(found, SCHEMA_VERSION):
                MIGRATIONS[version](conn)
            conn.execute(update(SchemaVersionRow).values(version=SCHEMA_VERSION))
            log.info(
                "database %s upgraded from schema version %d to %d", url, found, SCHEMA_VERSION
            )
