"""UpdateStore basics on SQLite and PostgreSQL: campaigns, jobs, counters, events, claims,
waves and the shared token bucket. Times are injected (``now``); nothing waits."""

from __future__ import annotations

import asyncio

import pytest
from update_store_helpers import make_campaign, run_together

from db_helpers import Commits
from fotakit.store import Conflict
from fotakit.updates.records import NewEvent
from fotakit.updates.store import (
    AsyncUpdateStore,
    DeviceBusy,
    StaleCampaign,
    StaleJob,
    UnknownCampaign,
    UnknownJob,
    UpdateStore,
)


def _save(store: UpdateStore, job_id: str, state: str, reason: str | None = None, **kw: object):
    job = store.get_job(job_id)
    assert job is not None
    return store.save_job(
        job_id,
        expected_rev=job.rev,
        state=state,
        reason=reason,
        snapshot={"s": state},
        attempts=job.attempts,
        next_timer_at=None,
        **kw,  # type: ignore[arg-type]
    )


def test_campaign_round_trips_and_lists_children(ustore: UpdateStore) -> None:
    spec = {"package_id": "p1", "waves": [{"percent": 10}], "mode": "snapshot"}
    parent = ustore.create_campaign(spec, name="spring", now=10.0)
    child = ustore.create_campaign(spec, name="retry", parent_id=parent.id, now=11.0)

    got = ustore.get_campaign(parent.id)
    assert got == parent
    assert (got.state, got.wave, got.rev, got.spec) == ("draft", 0, 1, spec)
    assert [c.id for c in ustore.list_campaigns()] == [parent.id, child.id]
    assert [c.id for c in ustore.list_campaigns(parent_id=parent.id)] == [child.id]
    assert ustore.get_campaign("nope") is None


def test_campaign_with_unknown_parent_is_refused(ustore: UpdateStore) -> None:
    with pytest.raises(Conflict):
        ustore.create_campaign({}, parent_id="missing")
    assert ustore.list_campaigns() == []


def test_set_campaign_state_refuses_a_stale_revision(ustore: UpdateStore) -> None:
    c = ustore.create_campaign({}, now=1.0)
    rev = ustore.set_campaign_state(
        c.id, "running", expected_rev=1, snapshot={"soak_from": 5}, now=2.0
    )
    assert rev == 2

    with pytest.raises(StaleCampaign) as info:
        ustore.set_campaign_state(c.id, "paused", expected_rev=1)
    assert (info.value.expected_rev, info.value.actual_rev) == (1, 2)
    got = ustore.get_campaign(c.id)
    assert got is not None
    assert (got.state, got.snapshot, got.updated_at) == ("running", {"soak_from": 5}, 2.0)
    with pytest.raises(UnknownCampaign):
        ustore.set_campaign_state("nope", "paused", expected_rev=1)


def test_add_jobs_is_idempotent_and_counts_only_new_jobs(ustore: UpdateStore) -> None:
    c = ustore.create_campaign({}, now=1.0)
    first = ustore.add_jobs(c.id, ["ep-b", "ep-a", "ep-c", "ep-a"], "pkg", wave=0, now=2.0)
    again = ustore.add_jobs(c.id, ["ep-c", "ep-d", "ep-b"], "pkg", now=3.0)

    assert [j.endpoint for j in first] == ["ep-a", "ep-b", "ep-c"]
    assert [j.endpoint for j in again] == ["ep-d"]
    assert all(j.state == "pending" and j.rev == 1 and j.wave == 0 for j in first)
    assert len(ustore.list_jobs(campaign_id=c.id)) == 4
    assert ustore.get_counters(c.id) == {"total": 4, "state:pending": 4}
    with pytest.raises(UnknownCampaign):
        ustore.add_jobs("nope", ["x"], "pkg")


def test_add_jobs_with_a_cap_never_exceeds_it(ustore: UpdateStore) -> None:
    c = ustore.create_campaign({}, now=1.0)
    assert len(ustore.add_jobs(c.id, ["a", "b"], "pkg", cap=3)) == 2
    assert [j.endpoint for j in ustore.add_jobs(c.id, ["a", "c", "d"], "pkg", cap=3)] == ["c"]
    assert ustore.add_jobs(c.id, ["e"], "pkg", cap=3) == []
    assert ustore.get_counters(c.id)["total"] == 3


def test_save_job_moves_state_and_reason_counters_in_one_step(ustore: UpdateStore) -> None:
    cid, (j0, j1, j2) = make_campaign(ustore, 3)

    assert _save(ustore, j0, "delivering") == 2
    _save(ustore, j1, "failed", "rolled_back", counter_deltas={"retries": 2})
    _save(ustore, j2, "failed", "timed_out")
    _save(ustore, j2, "pending", None)  # retried: the reason is cleared

    assert ustore.get_counters(cid) == {
        "total": 3,
        "state:pending": 1,
        "state:delivering": 1,
        "state:failed": 1,
        "reason:rolled_back": 1,
        "retries": 2,
    }
    job = ustore.get_job(j1)
    assert job is not None
    assert (job.state, job.reason, job.rev, job.snapshot) == (
        "failed",
        "rolled_back",
        2,
        {"s": "failed"},
    )


def test_lost_update_is_refused_with_stale_job_and_changes_nothing(ustore: UpdateStore) -> None:
    cid, (jid,) = make_campaign(ustore, 1)
    seen_by_a = ustore.get_job(jid)
    seen_by_b = ustore.get_job(jid)
    assert seen_by_a is not None and seen_by_b is not None

    ustore.save_job(
        jid,
        expected_rev=seen_by_a.rev,
        state="delivering",
        reason=None,
        snapshot={"by": "a"},
        attempts=1,
        next_timer_at=50.0,
    )
    with pytest.raises(StaleJob) as info:
        ustore.save_job(
            jid,
            expected_rev=seen_by_b.rev,
            state="cancelled",
            reason="cancelled",
            snapshot={"by": "b"},
            attempts=1,
            next_timer_at=None,
            events=[NewEvent(endpoint=seen_by_b.endpoint, kind="cancel", at=1.0)],
            counter_deltas={"cancels": 1},
        )

    assert (info.value.expected_rev, info.value.actual_rev) == (1, 2)
    job = ustore.get_job(jid)
    assert job is not None
    assert (job.state, job.snapshot, job.next_timer_at, job.rev) == (
        "delivering",
        {"by": "a"},
        50.0,
        2,
    )
    assert ustore.get_counters(cid) == {"total": 1, "state:delivering": 1}
    assert ustore.list_events(job_id=jid) == []
    with pytest.raises(UnknownJob):
        ustore.save_job(
            "nope",
            expected_rev=1,
            state="x",
            reason=None,
            snapshot={},
            attempts=0,
            next_timer_at=None,
        )


def test_events_saved_with_a_job_change_carry_its_ids(ustore: UpdateStore) -> None:
    cid, (jid,) = make_campaign(ustore, 1)
    ep = "urn:dev:0000"
    _save(
        ustore,
        jid,
        "delivering",
        events=[NewEvent(endpoint=ep, kind="write_uri", at=5.0, details={"code": "2.04"})],
    )

    (ev,) = ustore.list_events(endpoint=ep)
    assert (ev.job_id, ev.campaign_id, ev.kind, ev.at, ev.details) == (
        jid,
        cid,
        "write_uri",
        5.0,
        {"code": "2.04"},
    )


def test_events_page_by_id_without_gaps_or_repeats(ustore: UpdateStore) -> None:
    cid, (ja, jb) = make_campaign(ustore, 2)
    events = [
        NewEvent(
            endpoint=f"urn:dev:000{i % 2}",
            job_id=ja if i % 2 == 0 else jb,
            campaign_id=cid,
            kind="state",
            at=float(i),
            details={"i": i},
        )
        for i in range(45)
    ]
    assert ustore.append_events(events[:20]) == 20
    ustore.append_events(events[20:])

    pages: list[list[int]] = []
    after = 0
    for _ in range(10):
        page = ustore.list_events(endpoint="urn:dev:0000", after_id=after, limit=7)
        if not page:
            break
        pages.append([int(ev.details["i"]) for ev in page])  # type: ignore[arg-type]
        after = page[-1].id
    assert [len(p) for p in pages] == [7, 7, 7, 2]
    assert [i for page in pages for i in page] == list(range(0, 45, 2))
    assert len(ustore.list_events(job_id=jb, limit=100)) == 22
    assert len(ustore.list_events(campaign_id=cid, limit=100)) == 45
    ids = [ev.id for ev in ustore.list_events(limit=100)]
    assert ids == sorted(ids) and len(set(ids)) == 45
    # the tail of a long log, newest first, without reading the rest
    tail = ustore.list_events(endpoint="urn:dev:0000", limit=3, newest_first=True)
    assert [int(ev.details["i"]) for ev in tail] == [44, 42, 40]  # type: ignore[arg-type]


def test_orphaned_endpoints_are_those_of_started_jobs_whose_owners_lease_ran_out(
    ustore: UpdateStore,
) -> None:
    _cid, ids = make_campaign(ustore, 3)
    ids.sort()
    ustore.claim_jobs("node-a", lease_s=7, now=100.0, limit=3)
    started = ustore.get_job(ids[0])
    assert started is not None
    _save(ustore, ids[0], "delivering", node_id="node-a")
    single = ustore.create_job("urn:dev:single", "p1", now=100.0)
    ustore.claim_jobs("node-a", lease_s=7, now=100.0, endpoints=["urn:dev:single"])
    # still leased: nobody's orphan
    assert ustore.orphaned_endpoints("node-b", 106.0) == []
    # node-a went quiet: its started job and its single-device job are orphans for node-b;
    # its campaign members not started yet are left to the campaign runner
    assert ustore.orphaned_endpoints("node-b", 108.0) == sorted([started.endpoint, single.endpoint])
    # never one's own
    assert ustore.orphaned_endpoints("node-a", 108.0) == []
    # a finished job is no orphan
    _save(ustore, ids[0], "succeeded", node_id="node-a")
    assert ustore.orphaned_endpoints("node-b", 108.0) == [single.endpoint]


def test_claims_are_exclusive_until_the_lease_runs_out(ustore: UpdateStore) -> None:
    _cid, ids = make_campaign(ustore, 5)
    ids.sort()  # claims go in job ID order

    a = ustore.claim_jobs("node-a", lease_s=30, now=100.0, limit=3)
    b = ustore.claim_jobs("node-b", lease_s=30, now=101.0, limit=10)
    assert [j.id for j in a] == ids[:3] and [j.id for j in b] == ids[3:]
    assert all(j.owner == "node-a" and j.lease_until == 130.0 for j in a)
    assert ustore.claim_jobs("node-c", lease_s=30, now=110.0) == []

    # A restarted node-a gets its own jobs back at once; node-b renews its leases.
    assert [j.id for j in ustore.claim_jobs("node-a", lease_s=30, now=120.0)] == ids[:3]
    assert ustore.renew_leases("node-b", lease_s=30, now=125.0) == 2
    # node-a dies: after its lease, node-c takes its jobs, not node-b's.
    taken = ustore.claim_jobs("node-c", lease_s=30, now=151.0)
    assert [j.id for j in taken] == ids[:3]
    assert [j.id for j in ustore.jobs_for("node-b")] == ids[3:]

    # The zombie node-a can no longer write the job it lost.
    job = ustore.get_job(ids[0])
    assert job is not None
    with pytest.raises(StaleJob, match="owned by 'node-c'"):
        ustore.save_job(
            job.id,
            expected_rev=job.rev,
            state="delivering",
            reason=None,
            snapshot={},
            attempts=1,
            next_timer_at=None,
            node_id="node-a",
        )
    assert _save(ustore, ids[0], "succeeded", node_id="node-c") == job.rev + 1


def test_terminal_and_foreign_endpoint_jobs_are_not_claimed(ustore: UpdateStore) -> None:
    _cid, ids = make_campaign(ustore, 4)
    _save(ustore, ids[0], "succeeded")
    _save(ustore, ids[1], "cancelled", "cancelled")

    got = ustore.claim_jobs(
        "n1", lease_s=10, now=1.0, endpoints=["urn:dev:0000", "urn:dev:0002", "urn:dev:9999"]
    )
    assert [j.id for j in got] == [ids[2]]
    assert ustore.release_jobs("n1") == 1
    assert ustore.get_job(ids[2]).owner is None  # type: ignore[union-attr]
    assert {j.id for j in ustore.claim_jobs("n2", lease_s=10, now=2.0)} == set(ids[2:])


def test_cancel_requests_reach_only_the_owner_of_an_unfinished_job(ustore: UpdateStore) -> None:
    _cid, ids = make_campaign(ustore, 3)
    ustore.claim_jobs("n1", lease_s=100, now=0.0, endpoints=["urn:dev:0000", "urn:dev:0001"])
    _save(ustore, ids[1], "succeeded")
    assert ustore.request_cancel(ids[0], requested_by="n2", now=1.0)
    assert ustore.request_cancel(ids[0], requested_by="n3", now=2.0)  # idempotent
    assert not ustore.request_cancel(ids[1], requested_by="n2", now=1.0)  # finished
    assert not ustore.request_cancel("no-such-job", requested_by="n2", now=1.0)
    assert ustore.request_cancel(ids[2], requested_by="n2", now=3.0)  # owned by nobody yet
    assert ustore.cancel_requests_for("n1") == [ids[0]]
    assert ustore.cancel_requests_for("n2") == []
    ustore.clear_cancel_request(ids[0])
    assert ustore.cancel_requests_for("n1") == []
    # whoever claims the unowned job later sees the request
    ustore.claim_jobs("n4", lease_s=100, now=4.0)
    assert ustore.cancel_requests_for("n4") == [ids[2]]


def test_due_jobs_are_the_owned_ones_with_a_past_timer(ustore: UpdateStore) -> None:
    _cid, ids = make_campaign(ustore, 3)
    ustore.claim_jobs("n1", lease_s=100, now=0.0)
    for jid, at in zip(ids, (50.0, 10.0, None), strict=True):
        job = ustore.get_job(jid)
        assert job is not None
        ustore.save_job(
            jid,
            expected_rev=job.rev,
            state="delivering",
            reason=None,
            snapshot={},
            attempts=0,
            next_timer_at=at,
        )
    assert [j.id for j in ustore.due_jobs("n1", 60.0)] == [ids[1], ids[0]]
    assert [j.id for j in ustore.due_jobs("n1", 20.0)] == [ids[1]]
    assert ustore.due_jobs("n2", 60.0) == []


def test_single_device_jobs_have_no_campaign_and_no_counters(ustore: UpdateStore) -> None:
    a = ustore.create_job("urn:dev:x", "pkg", now=1.0)
    _save(ustore, a.id, "succeeded")
    b = ustore.create_job("urn:dev:x", "pkg2", now=2.0)
    assert a.campaign_id is None and b.campaign_id is None
    assert [j.id for j in ustore.list_jobs(endpoint="urn:dev:x", active_only=True)] == [b.id]


def test_advance_wave_succeeds_once_and_is_logged(ustore: UpdateStore) -> None:
    c = ustore.create_campaign({}, state="running", now=1.0)

    assert ustore.advance_wave(c.id, 0, 1, node_id="n1", details={"ok": 9}, now=5.0)
    assert not ustore.advance_wave(c.id, 0, 1, node_id="n2", now=6.0)
    assert not ustore.advance_wave(c.id, 2, 3, now=6.0)
    got = ustore.get_campaign(c.id)
    assert got is not None and (got.wave, got.rev) == (1, 2)
    (w,) = ustore.list_waves(c.id)
    assert (w.wave, w.started_at, w.node_id, w.details) == (1, 5.0, "n1", {"ok": 9})
    # A state change computed before the wave moved is stale now.
    with pytest.raises(StaleCampaign):
        ustore.set_campaign_state(c.id, "paused", expected_rev=1)


def test_token_bucket_grants_burst_then_the_rate(ustore: UpdateStore) -> None:
    take = ustore.take_tokens
    assert take("global", 10, rate_per_s=2.0, burst=5, now=100.0) == 5
    assert take("global", 10, rate_per_s=2.0, burst=5, now=100.0) == 0
    assert take("global", 10, rate_per_s=2.0, burst=5, now=101.0) == 2
    assert take("global", 1, rate_per_s=2.0, burst=5, now=101.25) == 0
    assert take("global", 1, rate_per_s=2.0, burst=5, now=101.5) == 1
    # A process whose clock lags refills nothing; buckets are independent.
    assert take("global", 3, rate_per_s=2.0, burst=5, now=90.0) == 0
    assert take("campaign:c1", 3, rate_per_s=2.0, burst=5, now=90.0) == 3
    assert take("global", 50, rate_per_s=2.0, burst=5, now=1000.0) == 5


def test_save_jobs_in_one_transaction_fail_only_the_stale_ones(ustore: UpdateStore) -> None:
    from fotakit.updates.store import JobSave

    cid, (j0, j1) = make_campaign(ustore, 2)

    def save(job_id: str, rev: int, state: str, reason: str | None = None) -> JobSave:
        return JobSave(
            job_id=job_id,
            expected_rev=rev,
            state=state,
            reason=reason,
            snapshot={},
            attempts=1,
            next_timer_at=None,
            events=[NewEvent(endpoint="e", kind=state, at=1.0)],
        )

    results = ustore.save_jobs(
        [
            save(j0, 1, "delivering"),
            save(j1, 5, "cancelled"),  # stale
            save(j0, 2, "failed", "rolled_back"),  # same job, next revision, in order
            save("nope", 1, "failed"),
        ]
    )

    assert results[0] == 2 and results[2] == 3
    assert isinstance(results[1], StaleJob) and isinstance(results[3], UnknownJob)
    assert ustore.get_counters(cid) == {
        "total": 2,
        "state:pending": 1,
        "state:failed": 1,
        "reason:rolled_back": 1,
    }
    assert [ev.kind for ev in ustore.list_events(campaign_id=cid)] == ["delivering", "failed"]


async def test_async_store_commits_concurrent_saves_together(db_url: str, commits: Commits) -> None:
    async with await AsyncUpdateStore.open(db_url) as store:
        campaign = await store.create_campaign({}, state="running", now=1.0)
        jobs = await store.add_jobs(campaign.id, [f"e{i:03d}" for i in range(40)], "pkg")
        before = commits.count

        async def save(job_rev: int, job_id: str) -> int:
            return await store.save_job(
                job_id,
                expected_rev=job_rev,
                state="delivering",
                reason=None,
                snapshot={},
                attempts=1,
                next_timer_at=None,
            )

        results = await asyncio.gather(
            *(save(j.rev, j.id) for j in jobs),
            save(7, jobs[0].id),  # stale: fails alone
            return_exceptions=True,
        )
        assert results[:40] == [2] * 40
        assert isinstance(results[40], StaleJob)
        assert commits.count - before < 40
        assert await store.get_counters(campaign.id) == {"total": 40, "state:delivering": 40}


# -- one unfinished job per device (schema version 3) -------------------------------------


def test_a_second_unfinished_job_of_a_device_is_refused_naming_the_first(
    ustore: UpdateStore,
) -> None:
    first = ustore.create_job("urn:dev:x", "pkg1", now=1.0)

    with pytest.raises(DeviceBusy) as info:
        ustore.create_job("urn:dev:x", "pkg2", now=2.0)

    assert (info.value.endpoint, info.value.job_id) == ("urn:dev:x", first.id)
    assert isinstance(info.value, Conflict)
    assert [j.id for j in ustore.list_jobs(endpoint="urn:dev:x")] == [first.id]
    # every state short of terminal holds the device; a terminal one frees it
    for state in ("starting", "delivering", "installing", "rebooting", "cancelling"):
        _save(ustore, first.id, state)
        with pytest.raises(DeviceBusy):
            ustore.create_job("urn:dev:x", "pkg2")
    _save(ustore, first.id, "failed", "rolled_back")
    second = ustore.create_job("urn:dev:x", "pkg2", now=3.0)
    assert ustore.unfinished_job("urn:dev:x") == second
    # another device is not affected
    assert ustore.create_job("urn:dev:y", "pkg1").endpoint == "urn:dev:y"


def test_a_campaign_skips_a_busy_device_and_reports_the_job_it_waits_for(
    ustore: UpdateStore,
) -> None:
    single = ustore.create_job("urn:dev:b", "pkg0", now=1.0)
    other = ustore.create_campaign({}, state="running", now=1.0)
    (theirs,) = ustore.add_jobs(other.id, ["urn:dev:c"], "pkg0", now=1.0)
    c = ustore.create_campaign({}, state="running", now=2.0)

    added = ustore.add_campaign_jobs(c.id, ["urn:dev:a", "urn:dev:b", "urn:dev:c"], "pkg1")

    assert [j.endpoint for j in added.jobs] == ["urn:dev:a"]
    assert added.busy == {"urn:dev:b": single.id, "urn:dev:c": theirs.id}
    assert ustore.get_counters(c.id) == {"total": 1, "state:pending": 1}
    # its own jobs do not make a device busy: adding again changes nothing
    again = ustore.add_campaign_jobs(c.id, ["urn:dev:a", "urn:dev:b"], "pkg1")
    assert (again.jobs, again.busy) == ([], {"urn:dev:b": single.id})
    # once the other job ended the device is added
    _save(ustore, single.id, "succeeded")
    later = ustore.add_campaign_jobs(c.id, ["urn:dev:a", "urn:dev:b", "urn:dev:c"], "pkg1")
    assert ([j.endpoint for j in later.jobs], later.busy) == (
        ["urn:dev:b"],
        {"urn:dev:c": theirs.id},
    )
    assert ustore.get_counters(c.id) == {"total": 2, "state:pending": 2}


@pytest.mark.timeout(120)
async def test_processes_racing_for_one_device_create_exactly_one_job(db_url: str) -> None:
    with UpdateStore.open(db_url) as store:
        one = store.create_campaign({}, state="running")
        two = store.create_campaign({}, state="running")

    outputs = await run_together(
        ("create_job", db_url, "urn:dev:race"),
        ("add_member", db_url, one.id, "urn:dev:race"),
        ("create_job", db_url, "urn:dev:race"),
        ("add_member", db_url, two.id, "urn:dev:race"),
    )

    lines = [line for out in outputs for line in out]
    created = [line.split()[1] for line in lines if line.startswith("CREATED")]
    busy = [line.split()[1] for line in lines if line.startswith("BUSY")]
    assert len(created) == 1 and len(busy) == 3, lines
    assert set(busy) == set(created)
    with UpdateStore.open(db_url) as store:
        assert [j.id for j in store.list_jobs(endpoint="urn:dev:race")] == created


def test_reason_detail_is_saved_with_the_state_and_set_later(ustore: UpdateStore) -> None:
    job = ustore.create_job("urn:dev:d", "pkg1")
    assert job.reason_detail is None
    rev = ustore.save_job(
        job.id,
        expected_rev=job.rev,
        state="failed",
        reason="rolled_back",
        snapshot={},
        attempts=1,
        next_timer_at=None,
        reason_detail="the device came back on 1.0.0 after installing 1.1.0",
    )
    got = ustore.get_job(job.id)
    assert got is not None and got.reason_detail == (
        "the device came back on 1.0.0 after installing 1.1.0"
    )
    # a save without a detail keeps it; set_job_detail replaces it without a new revision
    _save(ustore, job.id, "failed", "rolled_back")
    ustore.set_job_detail(job.id, "its boot log says the image signature was rejected")
    got = ustore.get_job(job.id)
    assert got is not None and got.rev == rev + 1
    assert got.reason_detail == "its boot log says the image signature was rejected"
    with pytest.raises(UnknownJob):
        ustore.set_job_detail("j-nope", "x")
