"""Helpers for the update store tests: setup factories, a worker run as a separate OS
process, and the asyncio side that drives those processes by marker lines.

(Named ``update_store_helpers`` — not ``store_helpers`` — because tests/store already has
a ``store_helpers`` module and the suite imports helpers by bare name.)

Worker protocol: the process prints ``READY`` once its store is open, waits for ``GO`` on
stdin (so racing processes start together), does its work printing one line per result,
and ends with ``DONE``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fotakit.updates.records import TERMINAL_STATES, JobRecord
from fotakit.updates.store import DeviceBusy, StaleJob, UpdateStore

HELPER = Path(__file__).resolve()
PATH: Sequence[str] = ("pending", "delivering", "installing", "succeeded")
"""The state path a contended job is moved along, one save per step."""
LINE_TIMEOUT = 60.0


def make_campaign(store: UpdateStore, n: int, *, now: float = 1000.0) -> tuple[str, list[str]]:
    """A running campaign with ``n`` pending jobs; returns (campaign ID, job IDs by endpoint)."""
    campaign = store.create_campaign({"package_id": "pkg1"}, name="t", state="running", now=now)
    jobs = store.add_jobs(campaign.id, [f"urn:dev:{i:04d}" for i in range(n)], "pkg1", now=now)
    return campaign.id, [job.id for job in jobs]


def next_state(job: JobRecord) -> tuple[str, str | None] | None:
    """The next step of ``job`` along :data:`PATH`; even endpoints succeed, odd ones fail."""
    if job.state in TERMINAL_STATES:
        return None
    i = PATH.index(job.state)
    if PATH[i + 1] == "succeeded" and int(job.endpoint[-4:]) % 2:
        return "failed", "rolled_back"
    return PATH[i + 1], None


def advance_all(store: UpdateStore, campaign_id: str, *, worker: int, max_rounds: int = 500) -> int:
    """Move every job of the campaign to a terminal state, racing other writers.

    Each step is a read and a ``save_job`` with the read revision; a :class:`StaleJob`
    (another writer came first) is counted and the job re-read. Returns the stale count.
    """
    stale = 0
    for _ in range(max_rounds):
        jobs = store.list_jobs(campaign_id=campaign_id, active_only=True)
        if not jobs:
            return stale
        # Different workers walk the jobs in different orders, to collide in the middle.
        for job in jobs if worker % 2 == 0 else reversed(jobs):
            step = next_state(job)
            if step is None:
                continue
            try:
                store.save_job(
                    job.id,
                    expected_rev=job.rev,
                    state=step[0],
                    reason=step[1],
                    snapshot={"by": worker, "step": step[0]},
                    attempts=job.attempts + 1,
                    next_timer_at=None,
                    counter_deltas={"transitions": 1},
                )
            except StaleJob:
                stale += 1
    raise AssertionError(f"jobs still active after {max_rounds} rounds")


async def advance_all_batched(url: str, campaign_id: str, *, worker: int) -> int:
    """:func:`advance_all` through :class:`AsyncUpdateStore`: every round saves all active
    jobs concurrently, so the saves are group-committed in batches. Returns the stale count.
    """
    from fotakit.updates.store import AsyncUpdateStore

    stale = 0
    async with await AsyncUpdateStore.open(url) as store:
        for _ in range(500):
            jobs = await store.list_jobs(campaign_id=campaign_id, active_only=True)
            if not jobs:
                return stale
            saves = []
            for job in jobs if worker % 2 == 0 else reversed(jobs):
                step = next_state(job)
                assert step is not None
                saves.append(
                    store.save_job(
                        job.id,
                        expected_rev=job.rev,
                        state=step[0],
                        reason=step[1],
                        snapshot={"by": worker},
                        attempts=job.attempts + 1,
                        next_timer_at=None,
                        counter_deltas={"transitions": 1},
                    )
                )
            results = await asyncio.gather(*saves, return_exceptions=True)
            for result in results:
                if isinstance(result, StaleJob):
                    stale += 1
                elif isinstance(result, BaseException):
                    raise result
    raise AssertionError("jobs still active after 500 rounds")


def recount(store: UpdateStore, campaign_id: str) -> dict[str, int]:
    """The counters as a full scan computes them (the test's independent check)."""
    counts: dict[str, int] = {}
    jobs = store.list_jobs(campaign_id=campaign_id)
    for job in jobs:
        counts[f"state:{job.state}"] = counts.get(f"state:{job.state}", 0) + 1
        if job.reason is not None:
            counts[f"reason:{job.reason}"] = counts.get(f"reason:{job.reason}", 0) + 1
    counts["total"] = len(jobs)
    return counts


# -- the worker process ------------------------------------------------------------------


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _await_go() -> None:
    _say("READY")
    if sys.stdin.readline().strip() != "GO":
        raise SystemExit("expected GO")


def _worker(argv: list[str]) -> None:
    mode, url, *args = argv
    if mode == "open":  # race to create / upgrade the schema
        _await_go()
        UpdateStore.open(url).close()
        _say("OPENED")
        _say("DONE")
        return
    store = UpdateStore.open(url)
    if mode == "transitions":
        _await_go()
        stale = advance_all(store, args[0], worker=int(args[1]))
        _say(f"STALE {stale}")
    elif mode == "batches":
        _await_go()
        stale = asyncio.run(advance_all_batched(url, args[0], worker=int(args[1])))
        _say(f"STALE {stale}")
    elif mode == "claim":
        node = args[0]
        _await_go()
        for _ in range(10_000):
            jobs = store.claim_jobs(node, lease_s=600, now=time.time(), limit=3)
            if not jobs:
                break
            for job in jobs:
                _say(f"CLAIM {job.id}")
                store.save_job(
                    job.id,
                    expected_rev=job.rev,
                    state="succeeded",
                    reason=None,
                    snapshot={"node": node},
                    attempts=1,
                    next_timer_at=None,
                    node_id=node,
                )
    elif mode == "advance":
        _await_go()
        for campaign_id in args[0].split(","):
            if store.advance_wave(campaign_id, 0, 1, node_id=f"pid{os.getpid()}"):
                _say(f"WON {campaign_id}")
    elif mode == "create_job":  # race for a device's one unfinished job
        _await_go()
        try:
            _say(f"CREATED {store.create_job(args[0], 'pkg1').id}")
        except DeviceBusy as exc:
            _say(f"BUSY {exc.job_id}")
    elif mode == "add_member":  # the same race, as a campaign adding the device
        _await_go()
        added = store.add_campaign_jobs(args[0], [args[1]], "pkg1")
        if added.jobs:
            _say(f"CREATED {added.jobs[0].id}")
        else:
            _say(f"BUSY {added.busy[args[1]]}")
    elif mode == "kill_mid_save":
        _kill_mid_save(store, args[0], int(args[1]))
    elif mode == "save_loop":
        _await_go()
        for job in store.list_jobs(campaign_id=args[0]):
            store.save_job(
                job.id,
                expected_rev=job.rev,
                state="succeeded",
                reason=None,
                snapshot={},
                attempts=1,
                next_timer_at=None,
            )
            _say(f"SAVED {job.id}")
    else:
        raise SystemExit(f"unknown mode {mode}")
    _say("DONE")
    store.close()


def _kill_mid_save(store: UpdateStore, job_id: str, rev: int) -> None:
    """Start a save of ``job_id`` and stop inside its transaction, after the job row's
    UPDATE and before the counters move: print MID and block until killed."""
    from sqlalchemy import Engine, event

    def hold(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CAMPAIGN_COUNTERS"):
            _say("MID")
            sys.stdin.readline()  # the parent never answers: it sends SIGKILL
            raise SystemExit("not killed")

    event.listen(Engine, "before_cursor_execute", hold)
    store.save_job(
        job_id,
        expected_rev=rev,
        state="failed",
        reason="rolled_back",
        snapshot={"killed": True},
        attempts=1,
        next_timer_at=None,
        events=[],
    )


# -- the test side -----------------------------------------------------------------------


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(HELPER),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def expect(proc: asyncio.subprocess.Process, prefix: str) -> str:
    """The next line of ``proc``; fails unless it starts with ``prefix``."""
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), LINE_TIMEOUT)).decode().strip()
    assert line.startswith(prefix), f"expected {prefix!r} from the worker, got {line!r}"
    return line


async def run_together(*argvs: Sequence[str]) -> list[list[str]]:
    """Start one worker per argv, release them at once, return each one's result lines."""
    procs = [await spawn(*argv) for argv in argvs]
    try:
        for proc in procs:
            await expect(proc, "READY")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"GO\n")
            await proc.stdin.drain()
        outputs: list[list[str]] = []
        for proc in procs:
            assert proc.stdout is not None
            data = await asyncio.wait_for(proc.stdout.read(), LINE_TIMEOUT * 2)
            code = await asyncio.wait_for(proc.wait(), LINE_TIMEOUT)
            assert code == 0, f"worker exited with {code}"
            outputs.append(data.decode().splitlines())
        for out in outputs:
            assert out[-1] == "DONE"
        return [out[:-1] for out in outputs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


if __name__ == "__main__":
    _worker(sys.argv[1:])
