"""End to end: campaigns over real fotakit agents, real CoAP on loopback, one process.

The server runs the firmware repository on its port (CoAP ``/fw``) plus HTTP delivery;
an :class:`UpdateService` drives the campaign; every device is a real
:class:`fotakit.agent.Agent` with A/B slots, a health check and a simulated radio.
Assertions come from the agents themselves (what they installed, what they run) and from
the per-device event log the engine wrote.
"""

from __future__ import annotations

from pathlib import Path

from e2e_helpers import (
    Fleet,
    all_events,
    delivery_methods,
    make_service,
    payload_of,
    running_site,
    trust_for,
    wait_campaign,
)

from fotakit.packages import generate_key
from fotakit.updates.campaign import CampaignSpec, ErrorThreshold, GateAction, WaveSpec
from fotakit.updates.job import JobPolicy
from fotakit.updates.targets import TargetSpec

N = 50
# A few more attempts than the default 3: under load aiocoap sometimes fails a burst of
# requests to one peer at once (see the session notes); each attempt is a real retry.
POLICY = JobPolicy(prefer_pull=False, backoff_base_s=1.0, backoff_max_s=2.0, max_attempts=6)


async def test_canary_and_two_waves_over_50_agents_poor_radio_pulled(
    tmp_path: Path, sqlite_url: str
) -> None:
    key = generate_key("ed25519")
    async with running_site(tmp_path, sqlite_url, key) as site:
        fleet = Fleet(tmp_path / "agents", trust_for(key))
        eps = [f"dev-{i:03d}" for i in range(N)]
        poor = set(eps[::3])  # every third device has a poor radio
        for ep in eps:
            fleet.make(ep, site.server.port, rssi=-121 if ep in poor else -70)
        await fleet.start(site.server, eps)
        record = site.publish(payload_of(12_000, 7), version="2.0.0", sequence=2)
        service = make_service(site, sqlite_url, policy=POLICY)
        await service.start()
        try:
            spec = CampaignSpec(
                name="fleet 2.0.0",
                package_id=record.id,
                target=TargetSpec(endpoints=tuple(eps)),
                canary=5,
                waves=(WaveSpec(percent=40, success_gate=0.9), WaveSpec(success_gate=0.9)),
                error_threshold=ErrorThreshold(percent=20, min_sample=5),
            )
            cid = await service.create_campaign(spec)
            await service.start_campaign(cid)
            try:
                done = await wait_campaign(service, cid, {"completed", "paused", "aborted"}, 80)
            except TimeoutError:
                await _explain(service, cid)
                raise
            progress = await service.progress(cid)
            events = await all_events(service, campaign_id=cid)
            waves = await service.engine.store.list_waves(cid)
            versions = fleet.versions()
            jobs = await service.jobs(cid)
        finally:
            await service.stop()
            await fleet.stop()
    failed = [j for j in jobs if j.state != "succeeded"]
    story = {
        j.endpoint: [(e.kind, e.details) for e in events if e.endpoint == j.endpoint][-15:]
        for j in failed
    }
    assert done.state == "completed", (progress, story)
    assert progress.total == N
    assert progress.by_state == {"succeeded": N}, (progress.by_reason, story)
    assert versions == dict.fromkeys(eps, "2.0.0")
    # every device installed exactly once
    assert dict(fleet.installs) == dict.fromkeys(eps, 1)
    # waves: canary (0) -> 1 -> 2, each entered exactly once
    assert [w.wave for w in waves] == [1, 2]
    assert done.wave == 2
    canary = {e.endpoint for e in events if e.kind == "state" and e.details["to"] == "starting"}
    assert len(canary) == N
    # the canary's jobs all finished before any job of wave 1 started
    wave_of = {j.id: j.wave for j in jobs}
    assert sorted(wave_of.values()).count(0) == 5
    first_wave_start = min(
        e.at
        for e in events
        if e.kind == "state" and e.details["to"] == "starting" and wave_of[e.job_id] == 1
    )
    canary_done = [e.at for e in events if e.kind == "finished" and wave_of[e.job_id] == 0]
    assert len(canary_done) == 5 and max(canary_done) <= first_wave_start
    # each start decision is in its device's log once, with the member's wave, and
    # before that device's job left "pending"
    decided = [e for e in events if e.kind == "start_decided"]
    assert sorted(e.endpoint for e in decided) == sorted(eps)
    wave_of_ep = {j.endpoint: j.wave for j in jobs}
    assert all(e.details["wave"] == wave_of_ep[e.endpoint] for e in decided)
    started_at = {
        e.endpoint: e.at for e in events if e.kind == "state" and e.details["to"] == "starting"
    }
    assert all(e.at <= started_at[e.endpoint] for e in decided)
    # delivery: poor radio pulled, good radio pushed (from the event log)
    methods = delivery_methods(events)
    assert set(methods) == set(eps)
    assert {ep for ep, m in methods.items() if m == "pull"} == poor
    assert {ep for ep, m in methods.items() if m == "push"} == set(eps) - poor


async def test_failing_health_check_stops_the_campaign_at_the_canary(
    tmp_path: Path, sqlite_url: str
) -> None:
    key = generate_key("ed25519")
    async with running_site(tmp_path, sqlite_url, key) as site:
        fleet = Fleet(tmp_path / "agents", trust_for(key))
        eps = [f"bad-{i:02d}" for i in range(12)]
        for ep in eps:
            # the new image never passes its self-test: the agent reverts to the old slot
            fleet.make(ep, site.server.port, health_command=("false",))
        await fleet.start(site.server, eps)
        record = site.publish(payload_of(10_000, 8), version="2.0.0", sequence=2)
        service = make_service(site, sqlite_url, policy=POLICY)
        await service.start()
        try:
            spec = CampaignSpec(
                name="bad build",
                package_id=record.id,
                target=TargetSpec(endpoints=tuple(eps)),
                canary=3,
                waves=(WaveSpec(percent=50), WaveSpec()),
                error_threshold=ErrorThreshold(count=1, min_sample=1, action=GateAction.ABORT),
                gate_action=GateAction.ABORT,
            )
            cid = await service.create_campaign(spec)
            await service.start_campaign(cid)
            done = await wait_campaign(service, cid, {"aborted", "paused", "completed"}, 60)
            await fleet.wait(lambda: sum(fleet.reverted.values()) >= 1, 30)
            # let every canary job reach its verdict
            jobs = await _wait_terminal(service, cid, 3)
            progress = await service.progress(cid)
            stopped = [
                e
                for e in await all_events(service, campaign_id=cid)
                if e.kind == "campaign_state" and e.details["to"] == "aborted"
            ]
        finally:
            await service.stop()
            await fleet.stop()
    assert done.state == "aborted"
    assert done.wave == 0  # never left the canary
    assert len(stopped) == 1 and stopped[0].details["trigger"] == "error_threshold_abort"
    canary = [j for j in jobs if j.wave == 0]
    assert len(canary) == 3
    assert {j.state for j in canary} == {"failed"}
    assert {j.reason for j in canary} == {"rolled_back"}
    canary_eps = {j.endpoint for j in canary}
    for ep in eps:
        assert fleet.agents[ep].running_version == "1.0.0"
        assert fleet.installs[ep] == (1 if ep in canary_eps else 0)
    # the rest never started: cancelled with the campaign, not failed
    assert {j.state for j in jobs if j.wave != 0} == {"cancelled"}
    assert progress.by_reason.get("rolled_back") == 3
    assert progress.by_state.get("failed") == 3


async def _wait_terminal(service, cid: str, n_failed: int) -> list:  # type: ignore[no-untyped-def,type-arg]
    import asyncio
    import contextlib

    async with service.subscribe() as queue, asyncio.timeout(40):
        while True:
            jobs = await service.jobs(cid)
            if all(j.terminal for j in jobs) and sum(j.state == "failed" for j in jobs) >= n_failed:
                return jobs
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.get(), 0.5)


async def _explain(service: object, cid: str) -> None:
    """On a failure: progress and the tail of the event log of each unfinished job."""
    print("progress", await service.progress(cid))  # type: ignore[attr-defined]
    for job in await service.jobs(cid):  # type: ignore[attr-defined]
        if job.terminal:
            continue
        print("JOB", job.endpoint, job.state, job.reason)
        for e in (await all_events(service, job_id=job.id))[-40:-4]:
            details = {k: v for k, v in e.details.items() if k != "facts"}
            f = e.details.get("facts") or {}
            print("   ", round(e.at % 1000, 2), e.kind, str(details)[:150], f.get("fw_state"))
