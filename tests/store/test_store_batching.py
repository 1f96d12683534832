"""Group commit: concurrent writes share one transaction, yet each keeps its own outcome.

Transactions are counted with a SQLAlchemy ``commit`` event listener (no timing): a batch
is one commit however many writes it holds.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError
from store_helpers import make_observation, make_registration

from db_helpers import Commits, refuse_endpoint
from fotakit.store import (
    AsyncStore,
    Conflict,
    RegistrationRecord,
    Store,
    StoreClosed,
    UnknownRegistration,
    writes,
)

WAIT = 20.0


async def _all(*coros: Any) -> list[Any]:
    return await asyncio.wait_for(asyncio.gather(*coros, return_exceptions=True), WAIT)


# -- AsyncStore --------------------------------------------------------------------------


async def test_concurrent_upserts_commit_in_fewer_transactions_than_calls(
    db_url: str, commits: Commits
) -> None:
    regs = [make_registration(f"urn:dev:{i:03d}") for i in range(60)]
    async with await AsyncStore.open(db_url) as store:
        commits.count = 0
        results = await _all(*(store.upsert_registration(r) for r in regs))
        written = commits.count

        assert results == [None] * len(regs)
        assert 1 <= written < len(regs)
        assert await store.list_registrations() == sorted(regs, key=lambda r: r.endpoint)
        devices = await store.list_devices()
        assert [d.last_registration_id for d in devices] == [
            r.registration_id for r in sorted(regs, key=lambda r: r.endpoint)
        ]


async def test_a_failing_write_in_a_batch_fails_only_its_own_caller(db_url: str) -> None:
    async with await AsyncStore.open(db_url) as store:
        taken = make_registration("owner")
        await store.upsert_registration(taken)
        good = [make_registration(f"good-{i}") for i in range(20)]
        # Reuses the ID of "owner"'s registration: the database refuses it.
        clash = make_registration("thief", registration_id=taken.registration_id)
        calls = [store.upsert_registration(r) for r in good[:10]]
        calls.append(store.upsert_registration(clash))
        calls += [store.upsert_registration(r) for r in good[10:]]

        results = await _all(*calls)

        assert isinstance(results[10], Conflict)
        assert results[:10] + results[11:] == [None] * 20
        stored = await store.list_registrations()
        assert stored == sorted([taken, *good], key=lambda r: r.endpoint)
        assert await store.get_device("thief") is None


async def test_a_write_the_database_refuses_fails_alone_and_changes_nothing(
    db_url: str,
) -> None:
    async with await AsyncStore.open(db_url) as store:
        before = make_registration("bad")
        await store.upsert_registration(before)
        refuse_endpoint(db_url, "bad")
        good = [make_registration(f"good-{i}") for i in range(10)]
        again = make_registration("bad")

        results = await _all(
            *(store.upsert_registration(r) for r in good[:5]),
            store.upsert_registration(again),
            *(store.upsert_registration(r) for r in good[5:]),
        )

        assert isinstance(results[5], Conflict | DBAPIError)
        assert "refused by the test trigger" in str(results[5])
        assert results[:5] + results[6:] == [None] * 10
        # The failed replacement left the old registration and its device as they were.
        assert await store.get_registration_by_endpoint("bad") == before
        device = await store.get_device("bad")
        assert device is not None and device.last_registration_id == before.registration_id
        assert len(await store.list_registrations()) == 11


async def test_writes_of_one_endpoint_apply_in_submission_order(db_url: str) -> None:
    # Each upsert of the same endpoint replaces the previous one: the replaced records
    # form a chain only if the batch applied them exactly in submission order.
    chain = [make_registration("same", port=1000 + i) for i in range(30)]
    async with await AsyncStore.open(db_url) as store:
        replaced = await _all(*(store.upsert_registration(r) for r in chain))

        assert replaced == [None, *chain[:-1]]
        assert await store.list_registrations() == [chain[-1]]


async def test_mixed_writes_keep_their_order_and_reads_see_earlier_writes(db_url: str) -> None:
    async with await AsyncStore.open(db_url) as store:
        a = make_registration("a")
        a2 = make_registration("a")
        b = make_registration("b")
        obs = make_observation(a)
        results = await _all(
            store.upsert_registration(a),
            store.add_observation(obs),
            store.upsert_registration(b),
            store.get_registration_by_endpoint("a"),
            store.upsert_registration(a2),  # drops a and, by cascade, its observation
            store.add_observation(make_observation(a)),  # a is gone by now
            store.list_observations(),
            store.delete_registration(b.registration_id),
        )

        assert results[:5] == [None, obs, None, a, a]
        assert isinstance(results[5], UnknownRegistration)
        assert results[6:] == [[], b]
        assert await store.list_registrations() == [a2]


@pytest.mark.timeout(30)
async def test_a_write_cancelled_before_it_started_never_runs(sqlite_url: str) -> None:
    async with await AsyncStore.open(sqlite_url) as store:
        began = threading.Event()
        listener = lambda _conn: began.set()  # noqa: E731
        event.listen(Engine, "begin", listener)
        locker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")  # the worker's transaction now waits
            first = asyncio.ensure_future(store.upsert_registration(make_registration("a")))
            assert await asyncio.to_thread(began.wait, WAIT)
            second = asyncio.ensure_future(store.upsert_registration(make_registration("b")))
            await asyncio.sleep(0)  # second is queued behind the blocked first
            second.cancel()
        finally:
            locker.execute("COMMIT")
            locker.close()
            event.remove(Engine, "begin", listener)
        assert await asyncio.wait_for(first, WAIT) is None
        with pytest.raises(asyncio.CancelledError):
            await second
        assert [r.endpoint for r in await store.list_registrations()] == ["a"]


# -- Store.apply_batch -------------------------------------------------------------------


def test_apply_batch_is_one_transaction_when_every_write_succeeds(
    store: Store, commits: Commits
) -> None:
    regs = [make_registration(f"ep-{i}") for i in range(5)]
    ops = [writes.upsert_registration(r) for r in regs]
    ops.append(writes.update_registration(regs[0].registration_id, port=4242))
    ops.append(writes.delete_registration(regs[1].registration_id))

    outcomes = store.apply_batch(ops)

    assert commits.count == 1
    results = [o.result() for o in outcomes]
    assert results[:5] == [None] * 5
    updated = results[5]
    assert isinstance(updated, RegistrationRecord) and updated.port == 4242
    assert results[6] == regs[1]
    assert [r.endpoint for r in store.list_registrations()] == ["ep-0", "ep-2", "ep-3", "ep-4"]


def test_apply_batch_retries_one_by_one_after_a_failing_write(
    store: Store, commits: Commits
) -> None:
    owner = make_registration("owner")
    store.upsert_registration(owner)
    regs = [make_registration(f"ep-{i}") for i in range(4)]
    clash = make_registration("thief", registration_id=owner.registration_id)
    ops = [writes.upsert_registration(r) for r in [regs[0], regs[1], clash, regs[2], regs[3]]]
    commits.count = 0

    outcomes = store.apply_batch(ops)

    # The batch rolled back, then each write ran alone: four commits, one refusal.
    assert commits.count == 4
    assert [o.error is None for o in outcomes] == [True, True, False, True, True]
    with pytest.raises(Conflict):
        outcomes[2].result()
    assert [r.endpoint for r in store.list_registrations()] == [
        "ep-0",
        "ep-1",
        "ep-2",
        "ep-3",
        "owner",
    ]


def test_apply_batch_on_a_closed_store_fails_every_write(db_url: str) -> None:
    store = Store.open(db_url)
    store.close()
    outcomes = store.apply_batch([writes.upsert_registration(make_registration()) for _ in "ab"])
    assert all(isinstance(o.error, StoreClosed) for o in outcomes)


def test_apply_batch_with_nothing_to_do_commits_nothing(store: Store, commits: Commits) -> None:
    assert store.apply_batch([]) == []
    assert commits.count == 0


def test_writes_without_returning_support_give_the_same_results(store: Store) -> None:
    # SQLite before 3.35 has no RETURNING; the store then selects before it writes.
    dialect = store._engine.dialect
    dialect.delete_returning = dialect.update_returning = False
    a = make_registration("a")
    a2 = make_registration("a")
    store.upsert_registration(a)
    store.add_observation(make_observation(a))
    assert store.apply_batch([writes.upsert_registration(a2)])[0].result() == a
    assert store.get_registration_by_endpoint("a") == a2
    assert store.list_observations() == []
    updated = store.update_registration(a2.registration_id, port=9)
    assert updated is not None and updated.port == 9
    assert store.get_registration(a2.registration_id) == updated
    assert store.update_registration("nosuchid", port=9) is None
    assert store.delete_registration(a2.registration_id) == updated
    assert store.delete_registration(a2.registration_id) is None
    assert store.list_registrations() == []
