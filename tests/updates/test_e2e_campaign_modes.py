"""End to end: continuous campaigns, rate limits and maintenance windows.

Real :class:`LwM2MServer` with the repository on loopback, an :class:`UpdateService` with
its default :class:`DeviceInventory` (which reads /3/0 of each registering device: model
number = class name, firmware version, time zone), and real fotakit agents. Assertions come
from the agents (what they installed) and from the campaign's jobs and event log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from e2e_helpers import (
    Fleet,
    all_events,
    make_service,
    payload_of,
    running_site,
    trust_for,
    wait_campaign,
)

from fotakit.packages import generate_key
from fotakit.updates.campaign import CampaignSpec
from fotakit.updates.job import JobPolicy
from fotakit.updates.targets import DeviceClass, SelectionMode, TargetSpec
from fotakit.updates.windows import MaintenanceWindow

#: the agents' /3/0/1 Model Number (Fleet.make keeps the DeviceConfig default)
MODEL = "fotakit-agent"
POLICY = JobPolicy(prefer_pull=False, backoff_base_s=1.0, backoff_max_s=2.0, max_attempts=6)
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


async def _wait_jobs(service: Any, cid: str, done: Any, timeout: float = 20.0) -> list[Any]:  # noqa: ASYNC109
    """Until ``done(jobs)`` holds (re-checked after each logged event); the jobs."""
    async with service.subscribe() as queue, asyncio.timeout(timeout):
        while True:
            jobs = await service.jobs(cid)
            if done(jobs):
                return list(jobs)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.get(), 0.5)


def _succeeded(jobs: list[Any]) -> set[str]:
    return {j.endpoint for j in jobs if j.state == "succeeded"}


async def test_continuous_campaign_takes_in_devices_that_register_later_up_to_its_cap(
    tmp_path: Path, sqlite_url: str
) -> None:
    key = generate_key("ed25519")
    cap = 5
    async with running_site(tmp_path, sqlite_url, key) as site:
        fleet = Fleet(tmp_path / "agents", trust_for(key))
        early = [f"early-{i}" for i in range(3)]
        late = [f"late-{i}" for i in range(4)]
        for ep in early + late:
            fleet.make(ep, site.server.port)
        fleet.make("other", site.server.port, version="0.9.0")  # not the targeted version
        await fleet.start(site.server, early)
        record = site.publish(payload_of(6_000, 11), version="2.0.0", sequence=2)
        service = make_service(site, sqlite_url, policy=POLICY)
        await service.start()
        try:
            spec = CampaignSpec(
                name="continuous 2.0.0",
                package_id=record.id,
                target=TargetSpec(device_class=DeviceClass(name=MODEL), current_version="1.0.0"),
                mode=SelectionMode.CONTINUOUS,
                cap=cap,
            )
            cid = await service.create_campaign(spec)
            await service.start_campaign(cid)
            first = await _wait_jobs(service, cid, lambda js: _succeeded(js) >= set(early))
            assert {j.endpoint for j in first} == set(early)
            running = await service.get_campaign(cid)
            assert running is not None and running.state == "running"  # below its cap
            # more matching devices come up and register after the campaign started
            joined_after = time.time()
            await fleet.start(site.server, ["other", *late])
            done = await wait_campaign(service, cid, {"completed", "paused", "aborted"}, 20)
            jobs = await _wait_jobs(
                service, cid, lambda js: len(js) == cap and all(j.state in TERMINAL for j in js)
            )
            await fleet.wait(lambda: sum(fleet.confirmed.values()) >= cap)
            jobs = await service.jobs(cid)
            versions = fleet.versions()
            progress = await service.progress(cid)
        finally:
            await service.stop()
            await fleet.stop()
    assert done.state == "completed", progress
    members = {j.endpoint for j in jobs}
    assert len(jobs) == cap
    assert set(early) <= members
    joined = members - set(early)
    assert len(joined) == cap - len(early) and joined <= set(late)
    # the late members' jobs were made when they registered, not at the start
    assert all(j.created_at >= joined_after for j in jobs if j.endpoint in joined)
    assert {j.state for j in jobs} == {"succeeded"}
    left_out = set(late) - joined
    assert len(left_out) == len(late) - len(joined) == 2
    for ep in members:
        assert fleet.installs[ep] == 1 and versions[ep] == "2.0.0"
    for ep in left_out:
        assert fleet.installs[ep] == 0 and fleet.downloaded[ep] == 0
        assert versions[ep] == "1.0.0"
    assert fleet.installs["other"] == 0 and versions["other"] == "0.9.0"


async def test_rate_limit_spaces_device_starts(tmp_path: Path, sqlite_url: str) -> None:
    key = generate_key("ed25519")
    rate, burst, n = 120.0, 2, 6
    async with running_site(tmp_path, sqlite_url, key) as site:
        fleet = Fleet(tmp_path / "agents", trust_for(key))
        eps = [f"rl-{i}" for i in range(n)]
        for ep in eps:
            fleet.make(ep, site.server.port)
        await fleet.start(site.server, eps)
        record = site.publish(payload_of(4_000, 12), version="2.0.0", sequence=2)
        service = make_service(site, sqlite_url, policy=POLICY, tick_s=0.05)
        await service.start()
        try:
            spec = CampaignSpec(
                name="rate limited",
                package_id=record.id,
                target=TargetSpec(endpoints=tuple(eps)),
                rate_per_minute=rate,
                burst=burst,
            )
            cid = await service.create_campaign(spec)
            await service.start_campaign(cid)
            done = await wait_campaign(service, cid, {"completed", "paused", "aborted"}, 20)
            events = await all_events(service, campaign_id=cid)
            jobs = await service.jobs(cid)
        finally:
            await service.stop()
            await fleet.stop()
    assert done.state == "completed"
    assert {j.state for j in jobs} == {"succeeded"} and len(jobs) == n
    starts: dict[str, float] = {}
    for e in events:
        if e.kind == "state" and e.details.get("to") == "starting":
            starts.setdefault(e.endpoint, e.at)
    assert set(starts) == set(eps)
    times = sorted(starts.values())
    slack = 0.05  # clock reads between the grant and the logged event
    for i, t0 in enumerate(times):
        for j in range(i, len(times)):
            span = times[j] - t0
            count = j - i + 1
            assert count <= burst + rate * (span + slack) / 60.0, (i, j, span, times)
    # and it was limited at all: 6 devices at 2/s after a burst of 2 take >= ~2 s
    assert times[-1] - times[0] >= (n - burst) * 60.0 / rate - 0.2, times


def _zones_open_and_closed(now: float) -> tuple[str, str, MaintenanceWindow]:
    """A window open now (current local hour +-1) in one zone and closed in another."""
    open_zone, closed_zone = "UTC", "Asia/Tokyo"  # 9 h apart, no DST in either
    local = datetime.fromtimestamp(now, ZoneInfo(open_zone))
    start = (local - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=3)
    window = MaintenanceWindow.parse(f"{start:%H:%M}-{end:%H:%M}")
    assert window.is_open(now, open_zone) and window.is_open(now + 60, open_zone)
    assert not window.is_open(now, closed_zone) and not window.is_open(now + 60, closed_zone)
    return open_zone, closed_zone, window


async def test_devices_outside_their_maintenance_window_are_deferred_not_failed(
    tmp_path: Path, sqlite_url: str
) -> None:
    key = generate_key("ed25519")
    open_zone, closed_zone, window = _zones_open_and_closed(time.time())
    async with running_site(tmp_path, sqlite_url, key) as site:
        fleet = Fleet(tmp_path / "agents", trust_for(key))
        inside = [f"in-{i}" for i in range(3)]
        outside = [f"out-{i}" for i in range(3)]
        for ep in inside + outside:
            fleet.make(ep, site.server.port)
        await fleet.start(site.server, inside + outside)
        # each device reports its zone in /3/0/15 (the agent config has no key for it)
        for ep in inside + outside:
            device = fleet.agents[ep].device
            assert device is not None
            device.info.timezone = open_zone if ep in inside else closed_zone
        record = site.publish(payload_of(5_000, 13), version="2.0.0", sequence=2)
        service = make_service(site, sqlite_url, policy=POLICY)
        await service.start()  # reads /3/0 of every registered device
        try:
            assert service.inventory is not None
            for ep in inside + outside:
                view = await service.inventory.refresh(ep)
                assert view.tz == (open_zone if ep in inside else closed_zone)
            spec = CampaignSpec(
                name="windowed",
                package_id=record.id,
                target=TargetSpec(endpoints=tuple(inside + outside)),
                window=window,
                default_tz=closed_zone,
            )
            cid = await service.create_campaign(spec)
            await service.start_campaign(cid)
            await fleet.wait(lambda: all(fleet.confirmed[ep] >= 1 for ep in inside))
            await _wait_jobs(service, cid, lambda js: _succeeded(js) >= set(inside))
            # a few more engine ticks: the closed-window devices still are not started
            async with service.subscribe() as queue:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        while True:
                            await queue.get()
            jobs = await service.jobs(cid)
            progress = await service.progress(cid)
            state = await service.get_campaign(cid)
            events = await all_events(service, campaign_id=cid)
        finally:
            await service.stop()
            await fleet.stop()
    by_ep = {j.endpoint: j for j in jobs}
    assert {by_ep[ep].state for ep in inside} == {"succeeded"}
    for ep in outside:
        # members whose window is closed: pending (deferred), never started, not failed
        assert by_ep[ep].state == "pending" and by_ep[ep].reason is None, by_ep[ep]
        assert by_ep[ep].attempts == 0
        assert fleet.installs[ep] == 0 and fleet.downloaded[ep] == 0
        assert fleet.agents[ep].running_version == "1.0.0"
    started = {
        e.endpoint for e in events if e.kind == "state" and e.details.get("to") == "starting"
    }
    assert started == set(inside)
    assert state is not None and state.state == "running"  # not completed, not paused
    assert progress.by_state == {"succeeded": len(inside), "pending": len(outside)}
    assert not progress.by_reason
