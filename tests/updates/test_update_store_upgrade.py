"""Schema upgrades on open: a version-1 database (registrations, packages, no update
tables) gets the update tables with every row kept; a version-2 one gets version 3 (one
unfinished job per device, ``jobs.reason_detail``, ``device_inventory``)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, insert, inspect, select, text
from update_store_helpers import recount, run_together

from fotakit.repository.schema import PackageRow
from fotakit.store import SCHEMA_VERSION, Store, normalize_url
from fotakit.store.schema import FOTAKIT_TABLES, Base, SchemaVersionRow
from fotakit.updates.store import DeviceBusy, UpdateStore
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
    assert version == SCHEMA_VERSION == 4
    assert UPDATE_TABLES | V1_TABLES <= tables
    with Store.open(db_url) as store:
        reg = store.get_registration("r1")
        assert reg is not None and (reg.endpoint, reg.port) == ("urn:dev:old", 5683)
        # version 4: the node holding a registration (not said for the rows already there)
        assert reg.node_id is None
        store.upsert_registration(dataclasses.replace(reg, node_id="fota-2"))
        again = store.get_registration("r1")
        assert again is not None and again.node_id == "fota-2"
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
    assert _tables_and_version(db_url)[1] == 4


def test_server_store_upgrades_a_version_1_database_too(db_url: str) -> None:
    _create_v1_database(db_url)
    with Store.open(db_url) as store:
        assert store.get_registration("r1") is not None
    assert _tables_and_version(db_url)[1] == 4


def test_update_tables_appear_when_a_plain_server_upgraded_first(db_url: str) -> None:
    # A server process that never imports fotakit.updates upgrades the database first...
    _create_v1_database(db_url)
    code = (
        "import sys; from fotakit.store import Store; Store.open(sys.argv[1]).close(); "
        "assert 'fotakit.updates' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code, db_url], check=True, timeout=60)
    tables, version = _tables_and_version(db_url)
    assert (version, tables & UPDATE_TABLES) == (4, set())

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
    assert version == 4 and UPDATE_TABLES | FOTAKIT_TABLES <= tables


# -- version 2 -> 3 ------------------------------------------------------------------------


def _sql(db_url: str, *statements: str) -> None:
    engine = create_engine(normalize_url(db_url))
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def _create_v2_database_with_crowded_devices(db_url: str) -> dict[str, str]:
    """A version-2 database (no ``jobs.reason_detail``, no one-unfinished-job index, no
    ``device_inventory``) holding what version 2 allowed: several unfinished jobs of one
    device. Built with today's store API on the version-3 schema with its additions taken
    away first. Returns job IDs by name."""
    with UpdateStore.open(db_url) as ustore:
        _sql(db_url, "DROP INDEX jobs_one_unfinished", "DROP TABLE device_inventory")
        old = ustore.create_campaign({"package_id": "p1"}, state="running", now=1.0)
        new = ustore.create_campaign({"package_id": "p2"}, state="running", now=2.0)
        eps = ["urn:dev:a", "urn:dev:b", "urn:dev:c"]
        a_old, b_old, c_old = ustore.add_jobs(old.id, eps, "p1", now=1.0)
        a_new, b_new, c_new = ustore.add_jobs(new.id, eps, "p2", now=2.0)
        b_single = ustore.create_job("urn:dev:b", "p3", now=3.0)
        # a: the older campaign's job is installing; b: three pending, the newest single;
        # c: the older one finished already (nothing to do)
        for job_id, state in ((a_old.id, "installing"), (c_old.id, "succeeded")):
            job = ustore.get_job(job_id)
            assert job is not None
            ustore.save_job(
                job_id,
                expected_rev=job.rev,
                state=state,
                reason=None,
                snapshot={"s": state},
                attempts=1,
                next_timer_at=None,
            )
    _sql(
        db_url,
        "ALTER TABLE jobs DROP COLUMN reason_detail",
        "UPDATE schema_version SET version = 2",
    )
    return {
        "old": old.id,
        "new": new.id,
        "a_old": a_old.id,
        "a_new": a_new.id,
        "b_old": b_old.id,
        "b_new": b_new.id,
        "b_single": b_single.id,
        "c_old": c_old.id,
        "c_new": c_new.id,
    }


def _open_with_plain_server_store(db_url: str) -> None:
    """What a ``fotakit server`` process does first: the server's own store opens it."""
    code = "import sys; from fotakit.store import Store; Store.open(sys.argv[1]).close()"
    subprocess.run([sys.executable, "-c", code, db_url], check=True, timeout=60)


@pytest.mark.parametrize("opener", ["update store", "plain server store"])
def test_version_2_database_keeps_one_unfinished_job_per_device(db_url: str, opener: str) -> None:
    ids = _create_v2_database_with_crowded_devices(db_url)
    assert _tables_and_version(db_url)[1] == 2

    if opener == "plain server store":
        _open_with_plain_server_store(db_url)
    with UpdateStore.open(db_url) as ustore:
        assert _tables_and_version(db_url)[1] == 4
        jobs = {name: ustore.get_job(job_id) for name, job_id in ids.items() if "_" in name}
        states = {name: job.state for name, job in jobs.items() if job is not None}
        # a: the started job is kept although older; b: the newest of the pending ones
        assert states == {
            "a_old": "installing",
            "a_new": "cancelled",
            "b_old": "cancelled",
            "b_new": "cancelled",
            "b_single": "pending",
            "c_old": "succeeded",
            "c_new": "pending",
        }
        a_new = jobs["a_new"]
        assert a_new is not None and a_new.reason == "cancelled"
        assert a_new.reason_detail is not None and ids["a_old"] in a_new.reason_detail
        assert "schema version 3" in a_new.reason_detail
        (event,) = ustore.list_events(job_id=ids["a_new"])
        assert (event.kind, event.endpoint, event.campaign_id) == (
            "finished",
            "urn:dev:a",
            ids["new"],
        )
        assert event.details["kept_job"] == ids["a_old"]
        # the counters moved with the jobs, as recounting the rows says
        for campaign in ("old", "new"):
            assert ustore.get_counters(ids[campaign]) == recount(ustore, ids[campaign])
        assert ustore.get_counters(ids["new"]) == {
            "total": 3,
            "state:cancelled": 2,
            "state:pending": 1,
            "reason:cancelled": 2,
        }
        # from now on the database itself keeps it so
        with pytest.raises(DeviceBusy) as info:
            ustore.create_job("urn:dev:b", "p4")
        assert info.value.job_id == ids["b_single"]
        assert ustore.list_inventory() == []
    # a second open changes nothing
    with UpdateStore.open(db_url) as ustore:
        job = ustore.get_job(ids["b_single"])
        assert job is not None and job.state == "pending"
