"""SIGKILL of a process in the middle of writing: every transaction happened completely
or not at all, so the counters always agree with the jobs. The worker announces where it
is with a marker line; the test kills it then (no sleeps)."""

from __future__ import annotations

import asyncio
import signal

import pytest
from update_store_helpers import expect, make_campaign, recount, spawn

from fotakit.updates.store import UpdateStore


async def _kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL


@pytest.mark.timeout(120)
async def test_kill_between_job_update_and_counters_rolls_both_back(db_url: str) -> None:
    with UpdateStore.open(db_url) as store:
        cid, (jid, other) = make_campaign(store, 2)
        before = store.get_counters(cid)

    proc = await spawn("kill_mid_save", db_url, jid, "1")
    try:
        # The job row is already updated inside the open transaction when MID comes.
        await expect(proc, "MID")
    finally:
        await _kill(proc)

    with UpdateStore.open(db_url) as store:
        job = store.get_job(jid)
        assert job is not None
        assert (job.state, job.reason, job.rev, job.snapshot) == ("pending", None, 1, {})
        assert store.get_counters(cid) == before == recount(store, cid)
        # Nothing is left locked: the next writer goes straight through.
        for job_id in (jid, other):
            store.save_job(
                job_id,
                expected_rev=1,
                state="failed",
                reason="rolled_back",
                snapshot={},
                attempts=1,
                next_timer_at=None,
            )
        assert store.get_counters(cid) == {
            "total": 2,
            "state:failed": 2,
            "reason:rolled_back": 2,
        }


@pytest.mark.timeout(120)
async def test_kill_of_a_busy_writer_leaves_counters_matching_the_jobs(db_url: str) -> None:
    with UpdateStore.open(db_url) as store:
        cid, _ids = make_campaign(store, 1000)

    proc = await spawn("save_loop", db_url, cid)
    saved = []
    try:
        await expect(proc, "READY")
        assert proc.stdin is not None
        proc.stdin.write(b"GO\n")
        await proc.stdin.drain()
        for _ in range(25):
            saved.append((await expect(proc, "SAVED ")).split()[1])
    finally:
        await _kill(proc)  # while it keeps saving: mid-transaction or between two

    with UpdateStore.open(db_url) as store:
        counters = store.get_counters(cid)
        assert counters == recount(store, cid)
        done = counters["state:succeeded"]
        assert 25 <= done < 1000  # killed before the end, and every reported save is kept
        for jid in saved:
            job = store.get_job(jid)
            assert job is not None and job.state == "succeeded"
