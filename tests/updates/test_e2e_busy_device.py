"""End to end: two campaigns over the same device, real server and fotakit agents.

A device runs one update job at a time (the database's one-unfinished-job-per-device
index, schema version 3). The second campaign meets the device busy with the first one's
job: it queues the member (``device_busy`` event, ``busy`` counter) and updates it after
that job ended, instead of driving it at the same time (before, both drove it and the
first ended ``wrong_version``: the device came back on the second campaign's version).
"""

from __future__ import annotations

from pathlib import Path

from e2e_helpers import (
    Fleet,
    all_events,
    make_service,
    payload_of,
    running_site,
    trust_for,
    wait_campaign,
    wait_job,
)

from fotakit.packages import generate_key
from fotakit.updates.campaign import CampaignSpec
from fotakit.updates.job import JobPolicy
from fotakit.updates.targets import TargetSpec

POLICY = JobPolicy(prefer_pull=False, backoff_base_s=1.0, backoff_max_s=2.0, max_attempts=6)
ENDED = {"completed", "paused", "aborted", "cancelled"}


async def test_second_campaign_waits_for_the_first_on_a_busy_device(
    tmp_path: Path, sqlite_url: str
) -> None:
    key = generate_key("ed25519")
    async with running_site(tmp_path, sqlite_url, key) as site:
        fleet = Fleet(tmp_path / "agents", trust_for(key))
        ep = "dev-shared"
        fleet.make(ep, site.server.port)
        await fleet.start(site.server, [ep])
        two = site.publish(payload_of(8_000, 21), version="2.0.0", sequence=2)
        three = site.publish(payload_of(8_000, 22), version="3.0.0", sequence=3)
        service = make_service(site, sqlite_url, policy=POLICY)
        await service.start()
        try:
            target = TargetSpec(endpoints=(ep,))
            first = await service.create_campaign(
                CampaignSpec(name="to 2", package_id=two.id, target=target)
            )
            second = await service.create_campaign(
                CampaignSpec(name="to 3", package_id=three.id, target=target)
            )
            await service.start_campaign(first)
            await service.start_campaign(second)
            (first_job,) = await service.jobs(first)
            # the second campaign has no job for the device yet: it is queued, counted
            waiting = await service.progress(second)
            assert (waiting.total, waiting.busy) == (0, 1), waiting
            assert await service.jobs(second) == []

            first_done = await wait_campaign(service, first, ENDED, 60)
            second_done = await wait_campaign(service, second, ENDED, 60)
            first_jobs = await service.jobs(first)
            second_jobs = await service.jobs(second)
            second_progress = await service.progress(second)
            device_log = await all_events(service, endpoint=ep)
            second_log = await all_events(service, campaign_id=second)
            versions = fleet.versions()
        finally:
            await service.stop()
            await fleet.stop()
    # the first campaign ends with its true outcome, the second updates afterwards
    assert first_done.state == "completed" and second_done.state == "completed"
    assert [(j.id, j.state, j.reason) for j in first_jobs] == [(first_job.id, "succeeded", None)]
    assert [(j.state, j.reason) for j in second_jobs] == [("succeeded", None)]
    assert versions == {ep: "3.0.0"}
    assert dict(fleet.installs) == {ep: 2}
    # the second job started only after the first had finished
    first_end = next(e.at for e in device_log if e.kind == "finished" and e.job_id == first_job.id)
    second_start = next(
        e.at
        for e in device_log
        if e.kind == "state" and e.job_id == second_jobs[0].id and e.details["to"] == "starting"
    )
    assert first_end <= second_start
    assert (second_progress.busy, second_progress.total) == (0, 1)
    # device_busy names the first job, in the device's log and in the second campaign's
    busy = [e for e in device_log if e.kind == "device_busy"]
    assert [(e.campaign_id, e.details["job_id"]) for e in busy] == [(second, first_job.id)]
    assert [e.id for e in second_log if e.kind == "device_busy"] == [busy[0].id]


async def test_a_campaign_waits_for_a_single_device_update_then_takes_the_device(
    tmp_path: Path, sqlite_url: str
) -> None:
    key = generate_key("ed25519")
    async with running_site(tmp_path, sqlite_url, key) as site:
        fleet = Fleet(tmp_path / "agents", trust_for(key))
        ep = "dev-single"
        fleet.make(ep, site.server.port)
        await fleet.start(site.server, [ep])
        two = site.publish(payload_of(8_000, 23), version="2.0.0", sequence=2)
        three = site.publish(payload_of(8_000, 24), version="3.0.0", sequence=3)
        service = make_service(site, sqlite_url, policy=POLICY)
        await service.start()
        try:
            single = await service.start_job(ep, two.id)
            cid = await service.create_campaign(
                CampaignSpec(name="to 3", package_id=three.id, target=TargetSpec(endpoints=(ep,)))
            )
            await service.start_campaign(cid)
            waiting = await service.progress(cid)
            single_done = await wait_job(service, single, 60)
            done = await wait_campaign(service, cid, ENDED, 60)
            jobs = await service.jobs(cid)
            progress = await service.progress(cid)
            busy = [e for e in await all_events(service, endpoint=ep) if e.kind == "device_busy"]
            versions = fleet.versions()
        finally:
            await service.stop()
            await fleet.stop()
    assert waiting.busy == 1, waiting
    assert (single_done.state, single_done.reason) == ("succeeded", None)
    assert done.state == "completed"
    assert [(j.state, j.reason) for j in jobs] == [("succeeded", None)]
    assert (progress.busy, progress.total) == (0, 1)
    assert [(e.campaign_id, e.details["job_id"]) for e in busy] == [(cid, single)]
    assert versions == {ep: "3.0.0"} and dict(fleet.installs) == {ep: 2}
