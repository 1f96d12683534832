"""The update engine end to end, one case per test, over real CoAP on loopback.

Each test runs the server (with the repository on its port), an :class:`UpdateService`
and real :class:`fotakit.agent.Agent` devices in this process; the verdicts come from the
agents (what they run, what they installed) and from the job's event log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    Fleet,
    Site,
    all_events,
    make_service,
    next_event,
    payload_of,
    running_site,
    trust_for,
    wait_campaign,
    wait_job,
)

from fotakit.lwm2m.objects import State, UpdateResult
from fotakit.packages import PrivateKey, generate_key
from fotakit.repository import PackageRecord
from fotakit.server import RequestQueued
from fotakit.updates.campaign import CampaignSpec, WaveSpec
from fotakit.updates.job import JobPolicy
from fotakit.updates.records import NewEvent
from fotakit.updates.targets import TargetSpec

FAST_POLICY = JobPolicy(backoff_base_s=0.5, backoff_max_s=1.0, transfer_floor_s=5.0)


@dataclass
class Env:
    site: Site
    fleet: Fleet
    package: PackageRecord
    key: PrivateKey


@contextlib.asynccontextmanager
async def env(tmp_path: Path, db_url: str, **server: Any) -> AsyncIterator[Env]:
    key = generate_key("ed25519")
    async with running_site(tmp_path, db_url, key, **server) as site:
        fleet = Fleet(tmp_path / "agents", trust_for(key))
        package = site.publish(payload_of(16_000, 3), version="2.0.0", sequence=2)
        try:
            yield Env(site, fleet, package, key)
        finally:
            await fleet.stop()


async def test_single_job_pull_succeeds_only_on_the_exact_version(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with env(tmp_path, sqlite_url) as e:
        e.fleet.make("d1", e.site.server.port)
        await e.fleet.start(e.site.server, ["d1"])
        # a package whose version merely starts like the running one is still installed
        near = e.site.publish(payload_of(9_000, 4), version="1.0.0.1", sequence=2)
        async with make_service(e.site, sqlite_url, policy=FAST_POLICY) as service:
            job = await wait_job(service, await service.start_job("d1", near.id))
            again = await wait_job(service, await service.start_job("d1", near.id))
            events = await all_events(service, job_id=job.id)
    assert (job.state, job.reason) == ("succeeded", None)
    assert e.fleet.installs["d1"] == 1
    assert e.fleet.agents["d1"].running_version == "1.0.0.1"
    # the second job finds the device on the target: nothing delivered again
    assert again.state == "succeeded" and e.fleet.installs["d1"] == 1
    kinds = [ev.kind for ev in events]
    assert "delivery" in kinds and kinds[-1] == "finished"
    judged = next(ev for ev in events if ev.kind == "finished")
    assert judged.details["version"] == "1.0.0.1"


async def test_reregistration_on_the_old_version_fails_as_rolled_back(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with env(tmp_path, sqlite_url) as e:
        e.fleet.make("d1", e.site.server.port, health_command=("false",))
        await e.fleet.start(e.site.server, ["d1"])
        async with make_service(e.site, sqlite_url, policy=FAST_POLICY) as service:
            job = await wait_job(service, await service.start_job("d1", e.package.id))
            events = await all_events(service, job_id=job.id)
            result = await e.site.server.read_value("d1", "/5/0/5")
    assert (job.state, job.reason) == ("failed", "rolled_back")
    assert e.fleet.installs["d1"] == 1 and e.fleet.reverted["d1"] == 1
    assert e.fleet.agents["d1"].running_version == "1.0.0"
    assert result == int(UpdateResult.UPDATE_FAILED)
    finished = next(ev for ev in events if ev.kind == "finished")
    assert finished.details["version"] == "1.0.0"
    # it was judged after the device re-registered
    inputs = [ev.details.get("input") for ev in events if ev.kind == "input"]
    assert "registered" in inputs


async def test_a_failed_job_carries_the_devices_own_words(tmp_path: Path, sqlite_url: str) -> None:
    """The agent knows why its update failed (object 33600, docs/agent-guide.md); the
    server reads it when the job fails and the job's reason detail carries it."""
    async with env(tmp_path, sqlite_url) as e:
        e.fleet.make("d1", e.site.server.port, health_command=("sh", "-c", "exit 3"))
        await e.fleet.start(e.site.server, ["d1"])
        async with make_service(e.site, sqlite_url, policy=FAST_POLICY) as service:
            async with service.subscribe() as queue:
                job_id = await service.start_job("d1", e.package.id)
                said = await next_event(
                    queue, NewEvent, lambda ev: ev.kind == "device_diagnostics", timeout=40
                )
            job = await service.job(job_id)
            events = await all_events(service, job_id=job_id)
    assert job is not None and (job.state, job.reason) == ("failed", "rolled_back")
    text = said.details["text"]
    assert "health check" in text and "status 3" in text, text
    assert job.reason_detail is not None and text in job.reason_detail, job.reason_detail
    assert job.reason_detail.startswith("the device says: ") or "; the device says: " in (
        job.reason_detail
    )
    # read once, after the verdict
    kinds = [ev.kind for ev in events]
    assert kinds.index("finished") < kinds.index("device_diagnostics")


async def test_a_device_stuck_updating_times_out(tmp_path: Path, sqlite_url: str) -> None:
    policy = JobPolicy(
        backoff_base_s=0.5,
        transfer_floor_s=5.0,
        reregistration_timeout_s=1.5,
        updating_timeout_s=1.5,
    )
    async with env(tmp_path, sqlite_url) as e:
        # the self-test of the new image hangs: /5/0/3 stays Updating
        e.fleet.make("d1", e.site.server.port, health_command=("sleep", "8"))
        await e.fleet.start(e.site.server, ["d1"])
        async with make_service(e.site, sqlite_url, policy=policy) as service:
            job = await wait_job(service, await service.start_job("d1", e.package.id))
            events = await all_events(service, job_id=job.id)
            state = await e.site.server.read_value("d1", "/5/0/3")
    assert (job.state, job.reason) == ("timed_out", "timed_out")
    assert state == int(State.UPDATING)  # the device had not finished: no false success
    timed_out = next(ev for ev in events if ev.kind == "finished").details
    assert timed_out["timed_out"] in ("installing", "rebooting")


async def test_queue_mode_device_is_updated_through_queued_requests(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with env(tmp_path, sqlite_url, queue_awake_time=0.5) as e:
        e.fleet.make("q1", e.site.server.port, queue_mode=True, lifetime=4)
        await e.fleet.start(e.site.server, ["q1"])
        assert e.site.server.get("q1").queue_mode  # type: ignore[union-attr]
        async with (
            make_service(e.site, sqlite_url, policy=FAST_POLICY) as service,
            e.site.server.subscribe() as events,
        ):
            for _ in range(200):  # until the device is asleep (its awake window passed)
                if not e.site.server.is_awake("q1"):
                    break
                await asyncio.sleep(0.05)
            job_id = await service.start_job("q1", e.package.id)
            queued = await next_event(events, RequestQueued, lambda ev: ev.endpoint == "q1")
            job = await wait_job(service, job_id, 60)
    assert queued.operation == "read"
    assert (job.state, job.reason) == ("succeeded", None)
    assert e.fleet.installs["q1"] == 1
    assert e.fleet.agents["q1"].running_version == "2.0.0"


async def test_cancel_while_downloaded_resets_the_device(tmp_path: Path, sqlite_url: str) -> None:
    calls = {"n": 0}

    def window(now: float) -> float | None:
        calls["n"] += 1  # open for the delivery, closed when it is time to Execute
        return None if calls["n"] == 1 else now + 3600

    policy = JobPolicy(backoff_base_s=0.5, transfer_floor_s=5.0, window=window)
    async with env(tmp_path, sqlite_url) as e:
        e.fleet.make("d1", e.site.server.port)
        await e.fleet.start(e.site.server, ["d1"])
        async with make_service(e.site, sqlite_url, policy=policy) as service:
            job_id = await service.start_job("d1", e.package.id)
            await e.fleet.wait(lambda: e.fleet.downloaded["d1"] == 1)
            await _until(service, job_id, lambda j: j.state == "waiting")
            assert await service.cancel_job(job_id)
            job = await wait_job(service, job_id)
            events = await all_events(service, job_id=job_id)
            state = await e.site.server.read_value("d1", "/5/0/3")
    assert (job.state, job.reason) == ("cancelled", "cancelled")
    assert state == int(State.IDLE)
    assert e.fleet.installs["d1"] == 0
    assert e.fleet.agents["d1"].running_version == "1.0.0"
    cancels = [ev for ev in events if ev.kind == "command" and ev.details["command"] == "cancel"]
    assert cancels and cancels[0].details["method"] == "execute"


async def _until(service: Any, job_id: str, pred: Any, timeout: float = 20) -> Any:  # noqa: ASYNC109
    async with service.subscribe() as queue, asyncio.timeout(timeout):
        while True:
            job = await service.job(job_id)
            if job is not None and pred(job):
                return job
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.get(), 0.5)


@pytest.mark.parametrize("n", [10])
async def test_restart_mid_campaign_continues_every_job_once(
    tmp_path: Path, sqlite_url: str, n: int
) -> None:
    """Stop the service and the server mid-campaign, start new ones on the same SQLite
    file and port: every job continues, no device is updated twice, none is forgotten."""
    key = generate_key("ed25519")
    eps = [f"r{i:02d}" for i in range(n)]
    fleet: Fleet | None = None
    port = 0
    try:
        async with running_site(tmp_path, sqlite_url, key) as site:
            port = site.server.port
            fleet = Fleet(tmp_path / "agents", trust_for(key))
            for ep in eps:
                fleet.make(ep, port)
            await fleet.start(site.server, eps)
            package = site.publish(payload_of(24_000, 5), version="2.0.0", sequence=2)
            service = make_service(site, sqlite_url, policy=FAST_POLICY)
            await service.start()
            spec = CampaignSpec(
                name="restart",
                package_id=package.id,
                target=TargetSpec(endpoints=tuple(eps)),
                canary=2,
                waves=(WaveSpec(percent=50), WaveSpec()),
                rate_per_minute=240,  # 4 starts a second: the campaign is mid-way for a while
                burst=1,
            )
            cid = await service.create_campaign(spec)
            await service.start_campaign(cid)
            await fleet.wait(lambda: sum(fleet.confirmed.values()) >= 3, 30)
            before = await service.progress(cid)
            await service.stop()
        assert before.by_state.get("succeeded", 0) < n  # really mid-campaign
        async with running_site(tmp_path, sqlite_url, key, port=port) as site:
            async with make_service(site, sqlite_url, policy=FAST_POLICY) as service:
                done = await wait_campaign(service, cid, {"completed", "paused", "aborted"}, 60)
                progress = await service.progress(cid)
                versions = fleet.versions()
    finally:
        if fleet is not None:
            await fleet.stop()
    assert done.state == "completed", progress
    assert progress.by_state == {"succeeded": n}
    assert versions == dict.fromkeys(eps, "2.0.0")
    assert dict(fleet.installs) == dict.fromkeys(eps, 1)  # nobody installed twice


async def test_retry_failed_runs_a_child_campaign_over_the_failed_members(
    tmp_path: Path, sqlite_url: str
) -> None:
    flag = tmp_path / "broken"
    flag.write_text("the self-test fails while this file exists")
    check = ("sh", "-c", f"test ! -e {flag}")
    async with env(tmp_path, sqlite_url) as e:
        eps = ["ok-1", "ok-2", "bad-1", "bad-2"]
        for ep in eps:
            e.fleet.make(ep, e.site.server.port, health_command=check if "bad" in ep else None)
        await e.fleet.start(e.site.server, eps)
        async with make_service(e.site, sqlite_url, policy=FAST_POLICY) as service:
            spec = CampaignSpec(
                name="first",
                package_id=e.package.id,
                target=TargetSpec(endpoints=tuple(eps)),
                waves=(WaveSpec(success_gate=0.0),),
            )
            cid = await service.create_campaign(spec)
            await service.start_campaign(cid)
            parent = await wait_campaign(service, cid, {"completed", "paused", "aborted"}, 40)
            first = await service.progress(cid)
            flag.unlink()  # fixed in the field: the retry may now pass
            child_id = await service.retry_failed(cid)
            child = await wait_campaign(service, child_id, {"completed", "paused", "aborted"}, 40)
            second = await service.progress(child_id)
            child_jobs = await service.jobs(child_id)
            parent_jobs = await service.jobs(cid)
    assert parent.state == "completed"
    assert first.by_state == {"succeeded": 2, "failed": 2}
    assert first.by_reason == {"rolled_back": 2}
    assert child.parent_id == cid and child.state == "completed"
    assert sorted(j.endpoint for j in child_jobs) == ["bad-1", "bad-2"]
    assert second.by_state == {"succeeded": 2}
    # the parent keeps its history: its failed jobs stay failed
    assert {j.endpoint: j.state for j in parent_jobs if "bad" in j.endpoint} == {
        "bad-1": "failed",
        "bad-2": "failed",
    }
    assert {ep: e.fleet.agents[ep].running_version for ep in eps} == dict.fromkeys(eps, "2.0.0")


async def test_cancel_of_a_job_driven_by_another_process_is_carried_out_by_its_owner(
    tmp_path: Path, sqlite_url: str
) -> None:
    """Two servers (node-a, node-b) on one database: the device and its job are node-a's;
    a cancel asked of node-b's service is written as a request, and node-a cancels."""
    calls = {"n": 0}

    def window(now: float) -> float | None:
        calls["n"] += 1  # open for the delivery, closed when it is time to Execute
        return None if calls["n"] == 1 else now + 3600

    policy = JobPolicy(backoff_base_s=0.5, transfer_floor_s=5.0, window=window)
    async with (
        env(tmp_path, sqlite_url) as e,
        running_site(tmp_path / "node-b", sqlite_url, e.key) as site_b,
    ):
        e.fleet.make("x1", e.site.server.port)
        await e.fleet.start(e.site.server, ["x1"])
        async with (
            make_service(e.site, sqlite_url, policy=policy, node_id="node-a") as service_a,
            make_service(site_b, sqlite_url, node_id="node-b") as service_b,
        ):
            job_id = await service_a.start_job("x1", e.package.id)
            await _until(service_a, job_id, lambda j: j.state == "waiting")
            assert await service_b.cancel_job(job_id)  # asked of the process not driving it
            job = await wait_job(service_a, job_id)
            assert not await service_b.cancel_job(job_id)  # finished: nothing to cancel
            state = await e.site.server.read_value("x1", "/5/0/3")
            events = await all_events(service_a, job_id=job_id)
    assert job.owner == "node-a"
    assert (job.state, job.reason) == ("cancelled", "cancelled")
    assert state == int(State.IDLE)
    assert e.fleet.installs["x1"] == 0
    cancels = [ev for ev in events if ev.kind == "command" and ev.details["command"] == "cancel"]
    assert cancels and cancels[0].details["method"] == "execute"


async def test_a_register_storm_claims_in_batches_and_still_takes_a_waiting_job(
    tmp_path: Path, sqlite_url: str
) -> None:
    """Each Register claims the device's waiting jobs, after its answer and coalesced:
    devices registering together cost a few claim transactions, not one each
    (docs/benchmarks.md, B1); a job created before its device registered still runs."""
    n = 12
    async with env(tmp_path, sqlite_url) as e:
        async with make_service(e.site, sqlite_url, policy=FAST_POLICY) as service:
            claims: list[int] = []
            store = service.engine.store
            real_claim = store.claim_jobs

            async def counting_claim(*args: Any, **kw: Any) -> Any:
                claims.append(len(kw.get("endpoints") or ()))
                return await real_claim(*args, **kw)

            store.claim_jobs = counting_claim
            # the job waits in the database for a device not registered yet
            job_id = await service.start_job("storm-0", e.package.id)
            eps = [f"storm-{i}" for i in range(n)]
            for ep in eps:
                e.fleet.make(ep, e.site.server.port)
            await e.fleet.start(e.site.server, eps)
            job = await wait_job(service, job_id)
    assert job.state == "succeeded"
    assert e.fleet.installs["storm-0"] == 1
    # one claim per Register would be n transactions of one endpoint each
    assert 1 <= len(claims) <= n // 2, claims
    assert sum(claims) >= n - 1  # every device was looked at (storm-0 maybe via its job)
