"""Schema version 2: a version-1 database (registrations, packages, no update tables) is
upgraded in place on open, with every row kept."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, insert, inspect, select, text
from update_store_helpers import run_together

from fotakit.repository.schema import PackageRow
from fotakit.store import SCHEMA_VERSION, Store, normalize_url
from fotakit.store.schema import FOTAKIT_TABLES, Base, SchemaVersionRow
from fotakit.updates.store import UpdateStore
from fotakit.updates.tables import UPDATE_TABLES

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
V1_TABLES = FOTAKIT_TABLES | {"packages"}


def _create_v1_database(db_url: str) -> None:
    """What fotakit wrote before version 2: the v1 tables, version row 1, some rows."""
    if db_url.startswith("sqlite:///"):
        from pathlib import Path

        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(normalize_url(db_url))
    try:
        with engine.begin() as conn:
            Base.metadata.create_all(
                conn, tables=[Base.metadata.tables[name] for name in sorted(V1_TABLES)]
            )
            conn.execute(insert(SchemaVersionRow).values(id=1, version=1))
            conn.execute(
                insert(Base.metadata.tables["devices"]).values(
                    endpoint="urn:dev:old",
                    first_seen=T0,
                    last_seen=T0,
                    lwm2m_version="1.1",
                    last_registration_id="r1",
                    attributes={"tz": "Europe/Paris"},
                )
            )
            conn.execute(
                insert(Base.metadata.tables["registrations"]).values(
                    registration_id="r1",
                    endpoint="urn:dev:old",
                    address="127.0.0.1",
                    port=5683,
                    lifetime=300,
                    lwm2m_version="1.1",
                    binding="U",
                    queue_mode=False,
                    sms=None,
                    root_path="/",
                    object_links="</5/0>",
                    content_formats=[112],
                    registered_at=T0,
                    last_update=T0,
                    expires_at=None,
                )
            )
            conn.execute(
                insert(PackageRow.__table__).values(
                    id="p1",
                    sha256="a" * 64,
                    size=10,
                    payload_offset=2,
                    payload_size=8,
                    payload_sha256="b" * 64,
                    sequence=3,
                    vendor_id="v",
                    class_id="c",
                    version="1.2.3",
                    component=None,
                    base_digest=None,
                    kid="k",
                    uploaded_at=T0,
                    downloads=4,
                    bytes_served=40,
                )
            )
    finally:
        engine.dispose()


def _tables_and_version(db_url: str) -> tuple[set[str], int]:
    engine = create_engine(normalize_url(db_url))
    try:
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version FROM schema_version")).scalar_one()
            return set(inspect(conn).get_table_names()), int(version)
    finally:
        engine.dispose()


def test_version_1_database_is_upgraded_in_place_keeping_its_rows(db_url: str) -> None:
    _create_v1_database(db_url)
    tables, version = _tables_and_version(db_url)
    assert (version, tables & UPDATE_TABLES) == (1, set())

    with UpdateStore.open(db_url) as ustore:
        campaign = ustore.create_campaign({"package_id": "p1"}, state="running")
        (job,) = ustore.add_jobs(campaign.id, ["urn:dev:old"], "p1")

    tables, version = _tables_and_version(db_url)
    assert version == SCHEMA_VERSION == 2
    assert UPDATE_TABLES | V1_TABLES <= tables
    with Store.open(db_url) as store:
        reg = store.get_registration("r1")
        assert reg is not None and (reg.endpoint, reg.port) == ("urn:dev:old", 5683)
        device = store.get_device("urn:dev:old")
        assert device is not None and device.attributes == {"tz": "Europe/Paris"}
    engine = create_engine(normalize_url(db_url))
    try:
        with engine.connect() as conn:
            pkg = conn.execute(select(PackageRow.__table__)).one()
            assert (pkg.id, pkg.version, pkg.downloads) == ("p1", "1.2.3", 4)
    finally:
        engine.dispose()
    # Opening again is a no-op: same version, data still there.
    with UpdateStore.open(db_url) as ustore:
        assert ustore.get_job(job.id) == job
    assert _tables_and_version(db_url)[1] == 2


def test_server_store_upgrades_a_version_1_database_too(db_url: str) -> None:
    _create_v1_database(db_url)
    with Store.open(db_url) as store:
        assert store.get_registration("r1") is not None
    assert _tables_and_version(db_url)[1] == 2


def test_update_tables_appear_when_a_plain_server_upgraded_first(db_url: str) -> None:
    # A server process that never imports fotakit.updates upgrades the database first...
    _create_v1_database(db_url)
    code = (
        "import sys; from fotakit.store import Store; Store.open(sys.argv[1]).close(); "
        "assert 'fotakit.updates' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code, db_url], check=True, timeout=60)
    tables, version = _tables_and_version(db_url)
    assert (version, tables & UPDATE_TABLES) == (2, set())

    # ...and the update store adds its tables on its own first open.
    with UpdateStore.open(db_url) as ustore:
        campaign = ustore.create_campaign({})
        assert ustore.add_jobs(campaign.id, ["urn:dev:old"], "p1")
    assert UPDATE_TABLES <= _tables_and_version(db_url)[0]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("start", ["new", "version 1"])
async def test_processes_opening_at_once_create_or_upgrade_the_schema_once(
    db_url: str, start: str
) -> None:
    if start == "version 1":
        _create_v1_database(db_url)

    outputs = await run_together(("open", db_url), ("open", db_url), ("open", db_url))

    assert outputs == [["OPENED"]] * 3
    tables, version = _tables_and_version(db_url)
    assert version == 2 and UPDATE_TABLES | FOTAKIT_TABLES <= tables
