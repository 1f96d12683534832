"""AsyncStore: the same API, run on one worker thread so the event loop never blocks."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import threading
from datetime import timedelta

import pytest
from store_helpers import T0, make_observation, make_registration

from fotakit.store import (
    AsyncStore,
    Conflict,
    RegistrationRecord,
    StoreClosed,
    UnknownRegistration,
    UnsupportedDatabase,
)


async def test_async_store_round_trips_every_kind_of_record(db_url: str) -> None:
    async with await AsyncStore.open(db_url) as store:
        reg = make_registration("ep")
        assert await store.upsert_registration(reg) is None
        obs = await store.add_observation(make_observation(reg))
        queued = await store.enqueue_pending_request("ep", "read", "/3/0", created_at=T0)
        later = T0 + timedelta(seconds=30)
        updated = await store.update_registration(reg.registration_id, last_update=later)

        assert await store.get_registration(reg.registration_id) == updated
        assert await store.get_registration_by_endpoint("ep") == updated
        assert await store.list_registrations() == [updated]
        assert await store.list_observations(reg.registration_id) == [obs]
        assert await store.get_observation(obs.observation_id) == obs
        assert await store.list_pending_requests("ep") == [queued]
        assert await store.expired_registrations(later + timedelta(seconds=300)) == [updated]
        device = await store.get_device("ep")
        assert device is not None and device.last_seen == later
        assert await store.set_device_attributes("ep", {"k": 1}) is not None
        assert [d.attributes for d in await store.list_devices()] == [{"k": 1}]
        assert await store.delete_pending_request(queued.id) == queued
        assert await store.clear_pending_requests("ep") == 0
        assert await store.delete_observation(obs.observation_id) == obs
        assert await store.delete_registration(reg.registration_id) == updated


async def test_errors_cross_the_thread_unchanged(db_url: str) -> None:
    async with await AsyncStore.open(db_url) as store:
        a, b = make_registration("a"), make_registration("b")
        await store.upsert_registration(a)
        await store.upsert_registration(b)

        with pytest.raises(Conflict):
            await store.upsert_registration(
                make_registration("a", registration_id=b.registration_id)
            )
        assert await store.get_registration_by_endpoint("a") == a


@pytest.mark.timeout(60)
async def test_many_concurrent_upserts_end_consistent(db_url: str) -> None:
    rng = random.Random(1234)
    endpoints = [f"urn:dev:{i:03d}" for i in range(20)]
    submitted = [make_registration(rng.choice(endpoints)) for _ in range(200)]
    async with await AsyncStore.open(db_url) as store:

        async def register_and_observe(reg: RegistrationRecord) -> None:
            await store.upsert_registration(reg)
            # The registration may already be replaced by a later one; both outcomes are
            # legitimate, a half-done state is not.
            with contextlib.suppress(UnknownRegistration):
                await store.add_observation(make_observation(reg))

        await asyncio.wait_for(
            asyncio.gather(*(register_and_observe(r) for r in submitted)), timeout=50
        )

        # The worker runs calls in submission order, so each endpoint ends with the
        # registration submitted last for it.
        last = {reg.endpoint: reg for reg in submitted}
        stored = await store.list_registrations()
        assert stored == sorted(last.values(), key=lambda r: r.endpoint)
        # Observations of replaced registrations were cascaded away; the last
        # registration of each endpoint was never replaced, so its observation stays.
        observations = await store.list_observations()
        assert sorted(o.registration_id for o in observations) == sorted(
            r.registration_id for r in stored
        )
        devices = await store.list_devices()
        assert [d.endpoint for d in devices] == sorted(last)
        assert all(d.last_registration_id == last[d.endpoint].registration_id for d in devices)


async def test_calls_run_off_the_event_loop_thread(db_url: str) -> None:
    loop_thread = threading.get_ident()
    async with await AsyncStore.open(db_url) as store:
        # The worker thread is the only fotakit-store thread, and it is not ours.
        await store.list_registrations()
        workers = [t for t in threading.enumerate() if t.name.startswith("fotakit-store")]
        assert len(workers) == 1
        assert workers[0].ident != loop_thread


async def test_close_is_idempotent_and_later_calls_raise(db_url: str) -> None:
    store = await AsyncStore.open(db_url)
    await store.close()
    await store.close()

    with pytest.raises(StoreClosed, match="closed"):
        await store.list_registrations()
    assert not [t for t in threading.enumerate() if t.name.startswith("fotakit-store")]


async def test_open_failure_leaves_no_worker_thread() -> None:
    with pytest.raises(UnsupportedDatabase):
        await AsyncStore.open("mysql://nobody@127.0.0.1/x")
    assert not [t for t in threading.enumerate() if t.name.startswith("fotakit-store")]


def _lock_for_writing(sqlite_url: str) -> sqlite3.Connection:
    """Another process's view: hold SQLite's write lock until the connection commits."""
    locker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    return locker


def _release(locker: sqlite3.Connection) -> None:
    locker.execute("COMMIT")
    locker.close()


@pytest.mark.timeout(30)
async def test_a_waiting_database_call_leaves_the_event_loop_free(sqlite_url: str) -> None:
    async with await AsyncStore.open(sqlite_url) as store:
        reg = make_registration("ep")
        locker = _lock_for_writing(sqlite_url)
        try:
            upsert = asyncio.ensure_future(store.upsert_registration(reg))
            # Were the call made on the loop thread, the first yield would block here until
            # SQLite's busy timeout and then fail; instead the loop keeps running.
            for _ in range(50):
                await asyncio.sleep(0)
            assert not upsert.done()
        finally:
            _release(locker)
        assert await asyncio.wait_for(upsert, timeout=20) is None
        assert await store.get_registration_by_endpoint("ep") == reg
