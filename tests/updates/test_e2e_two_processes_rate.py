"""A campaign's start-rate limit holds across two ``fotakit server`` processes on one
PostgreSQL database.

The campaign's token bucket (``rate_per_minute``/``burst``) is part of its snapshot in the
``campaigns`` row, and every tick of either process moves it by compare-and-set, so the
two processes share one bucket. (``fotakit server`` configures no global bucket: the
``rate_buckets`` row scoped ``"global"`` is not used here, so the campaign's own bucket is
the one that limits.) Half of the agents register with each process; a started member is
driven by the process its device is registered with, whichever process decided the start.

Start times are read from the stored job logs (both processes write them to the same
database): a job's ``state`` event ``-> starting`` is written when its process picks the
started member up. That is after the token was taken, by at most one campaign tick of the
picking process (1 s) plus processing, so the bound on any window of starts allows that
lag as slack: ``burst + rate * (span + slack) / 60``. With a bucket per process (burst 2
each) or none, the ten starts would come within about a second and break the bound.

Needs ``FOTAKIT_TEST_PG_URL`` (skipped with that reason otherwise; CI sets it).
"""

from __future__ import annotations

import re
from pathlib import Path

from e2e_helpers import (
    Fleet,
    first_match,
    first_starts,
    fotakit_server,
    payload_of,
    publish_package,
    start_campaign_in_store,
    trust_for,
    worst_window,
)

from fotakit.packages import generate_key
from fotakit.updates.campaign import CampaignSpec
from fotakit.updates.store import UpdateStore
from fotakit.updates.targets import TargetSpec

N = 10
RATE_PER_MINUTE = 120.0
BURST = 2
#: Token decision -> the job's logged "-> starting": up to one campaign tick (1 s) of
#: the process that picks the member up, plus its processing (margin for a slow CI).
SLACK_S = 1.5


async def test_campaign_start_rate_holds_across_two_server_processes(
    tmp_path: Path, pg_url: str
) -> None:
    key = generate_key("ed25519")
    trust = trust_for(key)
    repo_dir = tmp_path / "repository"
    package = publish_package(
        repo_dir, pg_url, key, payload_of(4_000, 12), version="2.0.0", sequence=2
    )
    store = UpdateStore.open(pg_url)
    eps = [f"rate-{i:02d}" for i in range(N)]
    node_of = {ep: ("node-a" if i % 2 == 0 else "node-b") for i, ep in enumerate(eps)}
    fleet = Fleet(tmp_path / "agents", trust)
    try:
        async with (
            fotakit_server(pg_url, repo_dir, "node-a") as (a, port_a),
            fotakit_server(pg_url, repo_dir, "node-b") as (b, port_b),
        ):
            ports = {"node-a": port_a, "node-b": port_b}
            for ep in eps:
                fleet.make(ep, ports[node_of[ep]])
            for agent in fleet.agents.values():
                await agent.start()
            await fleet.wait(lambda: all(a.client.registered for a in fleet.agents.values()))
            spec = CampaignSpec(
                name="rate over two nodes",
                package_id=package.id,
                target=TargetSpec(endpoints=tuple(eps)),
                rate_per_minute=RATE_PER_MINUTE,
                burst=BURST,
            )
            cid = start_campaign_in_store(store, spec, eps)
            done = re.compile(rf"campaign {cid}: running -> (\w+)")
            finished = await first_match([a.wait_for(done, 25), b.wait_for(done, 25)])
            await fleet.wait(lambda: sum(fleet.confirmed.values()) >= N, 15)
            log_a, log_b = "".join(a.lines), "".join(b.lines)
        jobs = store.list_jobs(campaign_id=cid)
        first_event = first_starts(store, [cid])
        final = store.get_campaign(cid)
    finally:
        await fleet.stop()
        store.close()
    assert finished.group(1) == "completed", log_a[-3000:] + log_b[-3000:]
    assert final is not None and final.state == "completed"
    assert len(jobs) == N
    assert {j.state for j in jobs} == {"succeeded"}
    assert {j.endpoint: j.owner for j in jobs} == node_of
    assert dict(fleet.installs) == dict.fromkeys(eps, 1)
    # both processes started jobs: the starts merged below really span processes
    started_by = {node_of[ep] for ep in first_event}
    assert started_by == {"node-a", "node-b"}
    # no window of starts, merged over both nodes, beats the one shared bucket
    starts = sorted(first_event.values())
    rate_s = RATE_PER_MINUTE / 60.0
    worst = worst_window(starts, RATE_PER_MINUTE, BURST, SLACK_S)
    timeline = [(round(t - starts[0], 3), node_of[ep]) for ep, t in first_event.items()]
    assert worst <= 1e-9, sorted(timeline)
    # the whole campaign could not start faster than the bucket refills
    assert starts[-1] - starts[0] >= (N - BURST) / rate_s - SLACK_S, sorted(timeline)
