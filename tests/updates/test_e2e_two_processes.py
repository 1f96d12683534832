"""Two ``fotakit server`` processes on one PostgreSQL database run one campaign together.

Each process has its own CoAP port and node ID; half of the agents (real
:class:`fotakit.agent.Agent` devices in this test process) register with one, half with
the other, as a UDP load balancer that keeps a device on one node would split them. The
test, as the operator, starts the campaign in the database; the processes do the rest.
Verdicts: every job owned by the process its device is registered with, every device
installed exactly once, each wave entered exactly once, counters equal to a recount.

Needs ``FOTAKIT_TEST_PG_URL`` (skipped with that reason otherwise; CI sets it).
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

from e2e_helpers import (
    Fleet,
    first_match,
    fotakit_server,
    payload_of,
    publish_package,
    start_campaign_in_store,
    trust_for,
)

from fotakit.packages import generate_key
from fotakit.store import Store
from fotakit.updates.campaign import CampaignSpec, WaveSpec
from fotakit.updates.records import reason_key, state_key
from fotakit.updates.store import UpdateStore
from fotakit.updates.targets import TargetSpec

N = 20


async def test_two_server_processes_run_one_campaign_on_postgresql(
    tmp_path: Path, pg_url: str
) -> None:
    key = generate_key("ed25519")
    trust = trust_for(key)
    repo_dir = tmp_path / "repository"
    package = publish_package(
        repo_dir, pg_url, key, payload_of(12_000, 11), version="2.0.0", sequence=2
    )
    store = UpdateStore.open(pg_url)
    eps = [f"pg-{i:02d}" for i in range(N)]
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
            # the operator starts the campaign (what the REST layer will do)
            spec = CampaignSpec(
                name="two nodes",
                package_id=package.id,
                target=TargetSpec(endpoints=tuple(eps)),
                canary=2,
                waves=(WaveSpec(percent=50), WaveSpec()),
            )
            cid = start_campaign_in_store(store, spec, eps)
            done = re.compile(rf"campaign {cid}: running -> (\w+)")
            finished = await first_match([a.wait_for(done, 90), b.wait_for(done, 90)])
            await fleet.wait(lambda: sum(fleet.confirmed.values()) >= N, 30)
            versions = fleet.versions()
            log_a, log_b = "".join(a.lines), "".join(b.lines)
            with Store.open(pg_url) as server_store:  # each registration names its node
                holders = {r.endpoint: r.node_id for r in server_store.list_registrations()}
        jobs = store.list_jobs(campaign_id=cid)
        counters = store.get_counters(cid)
        waves = store.list_waves(cid)
        wave_events = [
            e for e in store.list_events(campaign_id=cid, limit=100_000) if e.kind == "wave"
        ]
        final = store.get_campaign(cid)
    finally:
        await fleet.stop()
        store.close()
    assert finished.group(1) == "completed", log_a[-3000:] + log_b[-3000:]
    assert final is not None and final.state == "completed" and final.wave == 2
    # each device driven by exactly one process: the one it is registered with
    assert len(jobs) == N
    assert {j.endpoint: j.owner for j in jobs} == node_of
    assert {j.state for j in jobs} == {"succeeded"}
    assert versions == dict.fromkeys(eps, "2.0.0")
    assert dict(fleet.installs) == dict.fromkeys(eps, 1)
    assert holders == node_of
    # both processes drove devices
    assert "node-a" in {j.owner for j in jobs} and "node-b" in {j.owner for j in jobs}
    # waves advanced once each
    assert [w.wave for w in waves] == [1, 2]
    assert sorted(e.details["to"] for e in wave_events) == [1, 2]
    # counters exact: equal to a recount of the job rows
    recount: collections.Counter[str] = collections.Counter()
    for j in jobs:
        recount[state_key(j.state)] += 1
        if j.reason is not None:
            recount[reason_key(j.reason)] += 1
    recount["total"] = len(jobs)
    assert counters == dict(recount)
