"""The fleet-wide start-rate limit (``fotakit server --global-rate``) holds over two
campaigns and two ``fotakit server`` processes on one PostgreSQL database.

Neither campaign has a rate of its own; both processes run with ``--global-rate 120
--global-burst 2``, so the only thing between the twelve devices and an immediate start
is the ``rate_buckets`` row scoped ``"global"``, shared through the database by
compare-and-set. (The campaigns are started by writing their rows, as an operator's
start in a third process would: that start takes its first tokens from the same row.)
Half of each campaign's devices register with each process. Starts are read from the
stored job logs as in ``test_e2e_two_processes_rate.py`` (same slack: a start is logged
up to one tick after its token was taken). Without the servers' bucket the twelve starts
come within a second and break the bound (checked: the test fails without the option).

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
from fotakit.updates.ratelimit import BucketConfig
from fotakit.updates.store import UpdateStore
from fotakit.updates.targets import TargetSpec

N = 12
RATE_PER_MINUTE = 120.0
BURST = 2
SLACK_S = 1.5
BUCKET = BucketConfig(rate_per_minute=RATE_PER_MINUTE, burst=BURST)
GLOBAL = ("--global-rate", str(RATE_PER_MINUTE), "--global-burst", str(BURST))


async def test_global_start_rate_holds_across_campaigns_and_processes(
    tmp_path: Path, pg_url: str
) -> None:
    key = generate_key("ed25519")
    trust = trust_for(key)
    repo_dir = tmp_path / "repository"
    package = publish_package(
        repo_dir, pg_url, key, payload_of(4_000, 13), version="2.0.0", sequence=2
    )
    store = UpdateStore.open(pg_url)
    eps = [f"glob-{i:02d}" for i in range(N)]
    node_of = {ep: ("node-a" if i % 2 == 0 else "node-b") for i, ep in enumerate(eps)}
    halves = {"first": eps[: N // 2], "second": eps[N // 2 :]}
    fleet = Fleet(tmp_path / "agents", trust)
    try:
        async with (
            fotakit_server(pg_url, repo_dir, "node-a", 0, *GLOBAL) as (a, port_a),
            fotakit_server(pg_url, repo_dir, "node-b", 0, *GLOBAL) as (b, port_b),
        ):
            ports = {"node-a": port_a, "node-b": port_b}
            for ep in eps:
                fleet.make(ep, ports[node_of[ep]])
            for agent in fleet.agents.values():
                await agent.start()
            await fleet.wait(lambda: all(a.client.registered for a in fleet.agents.values()))
            cids = []
            for name, members in halves.items():
                spec = CampaignSpec(
                    name=f"global rate, {name} half",
                    package_id=package.id,
                    target=TargetSpec(endpoints=tuple(members)),
                )
                cids.append(start_campaign_in_store(store, spec, members, BUCKET))
            for cid in cids:
                done = re.compile(rf"campaign {cid}: running -> (\w+)")
                finished = await first_match([a.wait_for(done, 30), b.wait_for(done, 30)])
                assert finished.group(1) == "completed", "".join(a.lines + b.lines)[-4000:]
            await fleet.wait(lambda: sum(fleet.confirmed.values()) >= N, 15)
        starts_by_ep = first_starts(store, cids)
        jobs = [j for cid in cids for j in store.list_jobs(campaign_id=cid)]
    finally:
        await fleet.stop()
        store.close()
    assert len(jobs) == N
    assert {j.state for j in jobs} == {"succeeded"}
    assert dict(fleet.installs) == dict.fromkeys(eps, 1)
    # both campaigns and both processes took part in the merged timeline
    assert {node_of[ep] for ep in starts_by_ep} == {"node-a", "node-b"}
    starts = sorted(starts_by_ep.values())
    timeline = sorted((round(t - starts[0], 3), ep, node_of[ep]) for ep, t in starts_by_ep.items())
    assert worst_window(starts, RATE_PER_MINUTE, BURST, SLACK_S) <= 1e-9, timeline
    rate_s = RATE_PER_MINUTE / 60.0
    assert starts[-1] - starts[0] >= (N - BURST) / rate_s - SLACK_S, timeline
