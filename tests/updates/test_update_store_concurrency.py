"""More than one writer: threads of one process and separate OS processes (real
connections) racing on the same jobs, claims, waves and buckets. On SQLite the writers
queue for the database's write lock; on PostgreSQL they meet at row locks."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from update_store_helpers import advance_all, make_campaign, recount, run_together

from fotakit.updates.store import UpdateStore

THREADS = 8
JOBS = 24
STEPS = 3  # pending -> delivering -> installing -> succeeded | failed


def _expected(n: int) -> dict[str, int]:
    failed = n // 2
    return {
        "total": n,
        "state:succeeded": n - failed,
        "state:failed": failed,
        "reason:rolled_back": failed,
        "transitions": n * STEPS,
    }


def test_counters_stay_exact_under_saves_from_8_threads(ustore: UpdateStore) -> None:
    cid, _ids = make_campaign(ustore, JOBS)
    start = threading.Barrier(THREADS)

    def work(worker: int) -> int:
        start.wait(timeout=30)
        return advance_all(ustore, cid, worker=worker)

    with ThreadPoolExecutor(THREADS) as pool:
        stale = sum(pool.map(work, range(THREADS)))

    counters = ustore.get_counters(cid)
    # Each of the 3 steps of each job was saved exactly once, whoever won each race.
    assert counters == _expected(JOBS)
    assert {k: v for k, v in counters.items() if k != "transitions"} == recount(ustore, cid)
    assert all(job.rev == STEPS + 1 for job in ustore.list_jobs(campaign_id=cid))
    assert stale > 0, "the threads never collided: the test proves nothing"


def test_advance_wave_has_one_winner_among_8_threads(ustore: UpdateStore) -> None:
    campaigns = [ustore.create_campaign({}, state="running") for _ in range(5)]
    for campaign in campaigns:
        start = threading.Barrier(THREADS)

        def race(worker: int, cid: str = campaign.id, start: threading.Barrier = start) -> bool:
            start.wait(timeout=30)
            return ustore.advance_wave(cid, 0, 1, node_id=f"t{worker}")

        with ThreadPoolExecutor(THREADS) as pool:
            wins = list(pool.map(race, range(THREADS)))
        assert wins.count(True) == 1
        assert [w.wave for w in ustore.list_waves(campaign.id)] == [1]


def test_token_bucket_never_over_grants_to_8_threads(ustore: UpdateStore) -> None:
    start = threading.Barrier(THREADS)

    def take(_worker: int) -> int:
        start.wait(timeout=30)
        return sum(
            ustore.take_tokens("global", 2, rate_per_s=0.0, burst=37, now=500.0) for _ in range(5)
        )

    with ThreadPoolExecutor(THREADS) as pool:
        assert sum(pool.map(take, range(THREADS))) == 37


def test_add_jobs_from_8_threads_adds_each_endpoint_once(ustore: UpdateStore) -> None:
    campaign = ustore.create_campaign({}, state="running")
    endpoints = [f"urn:dev:{i:03d}" for i in range(60)]
    start = threading.Barrier(THREADS)

    def add(worker: int) -> int:
        start.wait(timeout=30)
        mine = endpoints[worker * 5 :] + endpoints[: worker * 5]
        return sum(len(ustore.add_jobs(campaign.id, [ep], "pkg")) for ep in mine[:30])

    with ThreadPoolExecutor(THREADS) as pool:
        added = sum(pool.map(add, range(THREADS)))
    jobs = ustore.list_jobs(campaign_id=campaign.id)
    assert added == len(jobs) == len({j.endpoint for j in jobs})
    assert ustore.get_counters(campaign.id) == {"total": added, "state:pending": added}


# -- separate OS processes ---------------------------------------------------------------


@pytest.mark.timeout(240)
async def test_counters_stay_exact_under_saves_from_2_processes(db_url: str) -> None:
    with UpdateStore.open(db_url) as store:
        cid, _ids = make_campaign(store, JOBS)

    outputs = await run_together(
        ("transitions", db_url, cid, "0"), ("transitions", db_url, cid, "1")
    )

    with UpdateStore.open(db_url) as store:
        counters = store.get_counters(cid)
        assert counters == _expected(JOBS)
        assert {k: v for k, v in counters.items() if k != "transitions"} == recount(store, cid)
    assert all(out[0].startswith("STALE ") for out in outputs)


@pytest.mark.timeout(240)
async def test_counters_stay_exact_under_group_commits_from_2_processes(db_url: str) -> None:
    with UpdateStore.open(db_url) as store:
        cid, _ids = make_campaign(store, 40)

    await run_together(("batches", db_url, cid, "0"), ("batches", db_url, cid, "1"))

    with UpdateStore.open(db_url) as store:
        counters = store.get_counters(cid)
        assert counters == _expected(40)
        assert {k: v for k, v in counters.items() if k != "transitions"} == recount(store, cid)
        assert all(job.rev == STEPS + 1 for job in store.list_jobs(campaign_id=cid))


@pytest.mark.timeout(240)
async def test_two_processes_never_claim_the_same_job(db_url: str) -> None:
    with UpdateStore.open(db_url) as store:
        cid, ids = make_campaign(store, 60)

    outputs = await run_together(("claim", db_url, "node-a"), ("claim", db_url, "node-b"))

    claimed = [{line.split()[1] for line in out} for out in outputs]
    assert claimed[0].isdisjoint(claimed[1])
    assert claimed[0] | claimed[1] == set(ids)
    assert sum(len(out) for out in outputs) == len(ids)  # nobody claimed a job twice
    with UpdateStore.open(db_url) as store:
        assert store.get_counters(cid) == {"total": 60, "state:succeeded": 60}
        owners = {job.id: job.snapshot["node"] for job in store.list_jobs(campaign_id=cid)}
    assert {jid for jid, node in owners.items() if node == "node-a"} == claimed[0]


@pytest.mark.timeout(240)
async def test_wave_advances_once_when_two_processes_race(db_url: str) -> None:
    with UpdateStore.open(db_url) as store:
        cids = [store.create_campaign({}, state="running").id for _ in range(30)]
    arg = ",".join(cids)

    outputs = await run_together(("advance", db_url, arg), ("advance", db_url, arg))

    won = [line.split()[1] for out in outputs for line in out]
    assert sorted(won) == sorted(cids)  # each campaign: exactly one winner
    with UpdateStore.open(db_url) as store:
        for cid in cids:
            assert [w.wave for w in store.list_waves(cid)] == [1]
            campaign = store.get_campaign(cid)
            assert campaign is not None and (campaign.wave, campaign.rev) == (1, 2)
