"""A job adopted from a dead node is delivered from the adopting node's repository.

Node A claimed a job, wrote its Package URI (built from A's public base URIs) and died
mid-delivery; its lease ran out. The device now registers with node B (a load balancer
moved it). B adopts the job and must send the device to *its* repository: A's URIs lead
nowhere (docs/operator-guide.md "Several processes on PostgreSQL"). Real server, agent,
CoAP and store; node A's part is its job row and snapshot, written as A's JobDriver writes
them (claimed by ``node-a``, a pure :class:`UpdateJob` driven to DELIVERING).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any

from e2e_helpers import (
    Fleet,
    all_events,
    make_service,
    payload_of,
    running_site,
    trust_for,
    wait_job,
)
from job_helpers import Driver

from fotakit.packages import generate_key
from fotakit.updates.delivery import JobTarget
from fotakit.updates.engine import EngineConfig
from fotakit.updates.engine_packages import BaseUris, PackageSource
from fotakit.updates.job import JobPolicy, JobState, UpdateJob, WriteUri
from fotakit.updates.store import UpdateStore

FAST_POLICY = JobPolicy(backoff_base_s=0.5, backoff_max_s=1.0, transfer_floor_s=5.0)


def _dead_udp_port() -> int:
    """A loopback UDP port nothing listens on any more (node A's, after it died)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_job_adopted_from_a_dead_node_is_delivered_from_the_adopting_node(
    tmp_path: Path, sqlite_url: str
) -> None:
    key = generate_key("ed25519")
    async with running_site(tmp_path, sqlite_url, key) as site_b:
        package = site_b.publish(payload_of(16_000, 3), version="2.0.0", sequence=2)
        a_uris = BaseUris(coap=f"coap://127.0.0.1:{_dead_udp_port()}")
        a_target = PackageSource(site_b.repository, a_uris).target(package.id)
        store = UpdateStore.open(sqlite_url)
        fleet = Fleet(tmp_path / "agents", trust_for(key))
        try:
            # node A: claimed the job 60 s ago (lease 9 s: long run out), wrote its URI
            job_id, a_uri = await _a_claimed_job_in_delivering(
                store, package.id, a_target, t0=time.time() - 60, lease_s=9.0
            )
            assert a_uri.startswith(a_uris.coap or "")
            # the device registers with node B, which adopts the job
            fleet.make("m1", site_b.server.port)
            await fleet.start(site_b.server, ["m1"])
            async with make_service(site_b, sqlite_url, policy=FAST_POLICY, node_id="node-b") as b:
                job = await wait_job(b, job_id)
                events = await all_events(b, job_id=job_id)
        finally:
            await fleet.stop()
            store.close()
    assert (job.state, job.reason, job.owner) == ("succeeded", None, "node-b")
    assert fleet.agents["m1"].running_version == "2.0.0" and fleet.installs["m1"] == 1
    rebased = [ev for ev in events if ev.kind == "rebased"]
    assert rebased and rebased[0].details["from"] == {"coap": a_uri}
    b_uri = f"{site_b.coap_base}/fw/{package.id}"
    assert rebased[0].details["to"]["coap"] == b_uri
    written = [
        ev.details["uri"]
        for ev in events
        if ev.kind == "command" and ev.details.get("command") == "write_uri"
    ]
    # every URI B wrote names B's repository; A's is never written again
    assert written and all(u.startswith(site_b.coap_base + "/") for u in written), written
    assert a_uri not in written


async def _a_claimed_job_in_delivering(
    store: UpdateStore, package_id: str, a_target: JobTarget, *, t0: float, lease_s: float
) -> tuple[str, str]:
    """Node A's part: the job claimed at ``t0``, its Package URI written; (job ID, URI)."""
    rec = store.create_job("m1", package_id, now=t0)
    [claimed] = store.claim_jobs("node-a", lease_s=lease_s, now=t0, endpoints=["m1"])
    d = Driver(job=UpdateJob(rec.id, "m1", a_target, FAST_POLICY), now=t0)
    d.start()
    d.facts(endpoint="m1", firmware_version="1.0.0", protocols=(0,))
    d.ok(WriteUri)
    assert d.state is JobState.DELIVERING
    store.save_job(
        rec.id,
        expected_rev=claimed.rev,
        state="delivering",
        reason=None,
        snapshot=d.job.snapshot(),
        attempts=d.job.attempts,
        next_timer_at=d.job.deadline,
        node_id="node-a",
        now=t0,
    )
    return rec.id, next(c.uri for c in d.commands if isinstance(c, WriteUri))


async def test_a_device_that_moved_before_the_lease_ran_out_is_taken_over_at_lease_end(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The device registers with B while A's lease still runs (B cannot claim then); B
    takes the job over once the lease has run out, with no further Register."""
    key = generate_key("ed25519")
    lease_s = 3.0
    async with running_site(tmp_path, sqlite_url, key) as site_b:
        package = site_b.publish(payload_of(16_000, 3), version="2.0.0", sequence=2)
        a_uris = BaseUris(coap=f"coap://127.0.0.1:{_dead_udp_port()}")
        a_target = PackageSource(site_b.repository, a_uris).target(package.id)
        store = UpdateStore.open(sqlite_url)
        fleet = Fleet(tmp_path / "agents", trust_for(key))
        try:
            fleet.make("m1", site_b.server.port)
            await fleet.start(site_b.server, ["m1"])
            async with make_service(
                site_b, sqlite_url, policy=FAST_POLICY, node_id="node-b", lease_s=lease_s
            ) as b:
                t0 = time.time()  # A claimed it just now and died at once
                job_id, _ = await _a_claimed_job_in_delivering(
                    store, package.id, a_target, t0=t0, lease_s=lease_s
                )
                taken = await _until_owner(b, job_id, "node-b", timeout=4 * lease_s)
                took = time.time() - t0
                job = await wait_job(b, job_id)
        finally:
            await fleet.stop()
            store.close()
    assert taken.owner == "node-b"
    # not before A's lease ran out; within the lease and one renewal period after it
    assert lease_s <= took <= lease_s * 4 / 3 + 1.0, took
    assert (job.state, job.owner) == ("succeeded", "node-b")
    assert fleet.agents["m1"].running_version == "2.0.0"


async def _until_owner(service: Any, job_id: str, owner: str, timeout: float) -> Any:  # noqa: ASYNC109
    async with service.subscribe() as queue, asyncio.timeout(timeout):
        while True:
            job = await service.job(job_id)
            if job is not None and job.owner == owner:
                return job
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.get(), 0.2)


def test_a_dead_nodes_jobs_are_taken_over_within_ten_seconds_by_default() -> None:
    """The default lease (renewed every lease/3) bounds takeover after a node dies."""
    config = EngineConfig(node_id="n")
    assert config.lease_s * 4 / 3 <= 10.0
    # a renewal may be missed once (a slow database round) without losing the claim
    assert config.lease_s / 3 * 2 < config.lease_s
