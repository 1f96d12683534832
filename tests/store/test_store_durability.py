"""What is committed stays committed: across close/reopen and across SIGKILL of the process."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from store_helpers import T0, make_observation, make_registration

from fotakit.store import (
    SCHEMA_VERSION,
    SchemaVersionError,
    Store,
    StoreClosed,
    StoreError,
    normalize_url,
)


def _sql(db_url: str, *statements: str) -> list[list[tuple[object, ...]]]:
    """Run raw SQL outside the store, as an operator or another program would.

    Returns the rows of each statement that returns rows.
    """
    engine = create_engine(normalize_url(db_url))
    results: list[list[tuple[object, ...]]] = []
    try:
        with engine.begin() as conn:
            for statement in statements:
                result = conn.execute(text(statement))
                if result.returns_rows:
                    results.append([tuple(row) for row in result])
        return results
    finally:
        engine.dispose()


def _tables(db_url: str) -> set[str]:
    engine = create_engine(normalize_url(db_url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_everything_survives_close_and_reopen(db_url: str) -> None:
    reg = make_registration("ep")
    with Store.open(db_url) as store:
        store.upsert_registration(reg)
        obs = store.add_observation(make_observation(reg))
        queued = store.enqueue_pending_request("ep", "write", "/5/0/1", created_at=T0)
        device = store.get_device("ep")

    with Store.open(db_url) as store:
        assert store.list_registrations() == [reg]
        assert store.list_observations() == [obs]
        assert store.list_pending_requests() == [queued]
        assert store.list_devices() == [device]


_CHILD = """
import sys
from datetime import UTC, datetime
from fotakit.store import RegistrationRecord, Store

store = Store.open(sys.argv[1])
now = datetime.now(UTC)
store.upsert_registration(RegistrationRecord(
    registration_id="killed1", endpoint="urn:dev:survivor", address="127.0.0.1", port=5683,
    lifetime=0, registered_at=now, last_update=now, expires_at=None,
))
print("committed", flush=True)
sys.stdin.read()  # Block until the parent kills us; never close the store cleanly.
"""


@pytest.mark.timeout(60)
async def test_committed_registration_survives_sigkill_of_the_writer(db_url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        db_url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)  # type: ignore[union-attr]
        if line != b"committed\n":
            stderr = await asyncio.wait_for(proc.stderr.read(), timeout=30)  # type: ignore[union-attr]
            pytest.fail(f"child did not commit: {line!r} {stderr.decode(errors='replace')}")
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        returncode = await asyncio.wait_for(proc.wait(), timeout=30)
    assert returncode == -signal.SIGKILL

    _assert_survivor_is_stored(db_url)


def _assert_survivor_is_stored(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        # The commit must still sit in the write-ahead log: recovery is what is tested.
        wal = db_url.removeprefix("sqlite:///") + "-wal"
        assert os.path.getsize(wal) > 0

    with Store.open(db_url) as store:
        reg = store.get_registration("killed1")
        assert reg is not None
        assert reg.endpoint == "urn:dev:survivor"
        assert store.get_device("urn:dev:survivor") is not None


def test_new_database_records_schema_version_4(db_url: str) -> None:
    Store.open(db_url).close()

    assert SCHEMA_VERSION == 4
    assert _sql(db_url, "SELECT id, version FROM schema_version") == [[(1, 4)]]


def test_database_from_a_newer_fotakit_is_refused_untouched(db_url: str) -> None:
    with Store.open(db_url) as store:
        store.upsert_registration(make_registration("ep"))
    _sql(db_url, "UPDATE schema_version SET version = 5", "DROP TABLE pending_requests")

    with pytest.raises(
        SchemaVersionError,
        match="schema version 5, but this fotakit supports only version 4: upgrade fotakit",
    ) as info:
        Store.open(db_url)

    assert (info.value.found, info.value.supported) == (5, 4)
    assert "pending_requests" not in _tables(db_url)
    assert _sql(db_url, "SELECT version FROM schema_version") == [[(5,)]]


def test_database_with_fotakit_tables_but_no_version_is_refused(db_url: str) -> None:
    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    _sql(db_url, "CREATE TABLE devices (endpoint VARCHAR(10) PRIMARY KEY)")

    with pytest.raises(StoreError, match="no schema_version table; it was not created by fotakit"):
        Store.open(db_url)

    assert _tables(db_url) == {"devices"}


def test_calls_after_close_raise_store_closed(db_url: str) -> None:
    store = Store.open(db_url)
    store.close()
    store.close()

    with pytest.raises(StoreClosed, match="closed"):
        store.list_registrations()
    with pytest.raises(StoreClosed):
        store.upsert_registration(make_registration())


def test_sqlite_database_is_in_wal_mode_in_a_created_directory(tmp_path: Path) -> None:
    db = tmp_path / "new" / "dir" / "fotakit.db"

    Store.open(f"sqlite:///{db}").close()

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert os.path.isfile(db)


def test_sqlite_synchronous_other_than_full_or_normal_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="sqlite_synchronous must be FULL or NORMAL, not 'OFF'"):
        Store.open(f"sqlite:///{tmp_path}/x.db", sqlite_synchronous="OFF")  # type: ignore[arg-type]


def test_in_memory_sqlite_works_for_throwaway_use() -> None:
    with Store.open("sqlite://") as store:
        reg = make_registration()
        store.upsert_registration(reg)
        assert store.list_registrations() == [reg]
