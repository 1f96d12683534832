"""SIGKILL of a ``fotakit server`` process mid-campaign, and a restart on the same SQLite
file and port: every job continues from where it was, no device is updated twice, none is
forgotten.

The agents are real :class:`fotakit.agent.Agent` devices in this test process; the server
(with the update service) is a real process, killed with SIGKILL while jobs are in every
state, then started again with the same node ID.
"""

from __future__ import annotations

import re
from pathlib import Path

from e2e_helpers import (
    Fleet,
    explain_store,
    fotakit_server,
    kill,
    payload_of,
    publish_package,
    start_campaign_in_store,
    trust_for,
)

from fotakit.packages import generate_key
from fotakit.updates.campaign import CampaignSpec, WaveSpec
from fotakit.updates.store import UpdateStore
from fotakit.updates.targets import TargetSpec

N = 12


async def test_sigkill_mid_campaign_and_restart_update_every_device_once(
    tmp_path: Path, sqlite_url: str
) -> None:
    key = generate_key("ed25519")
    trust = trust_for(key)
    repo_dir = tmp_path / "repository"
    package = publish_package(
        repo_dir, sqlite_url, key, payload_of(20_000, 12), version="2.0.0", sequence=2
    )
    store = UpdateStore.open(sqlite_url)
    eps = [f"k{i:02d}" for i in range(N)]
    fleet = Fleet(tmp_path / "agents", trust)
    try:
        async with fotakit_server(sqlite_url, repo_dir, "node-a") as (first, port):
            for ep in eps:
                fleet.make(ep, port)
            for agent in fleet.agents.values():
                await agent.start()
            await fleet.wait(lambda: all(a.client.registered for a in fleet.agents.values()))
            spec = CampaignSpec(
                name="sigkill",
                package_id=package.id,
                target=TargetSpec(endpoints=tuple(eps)),
                canary=2,
                waves=(WaveSpec(percent=50), WaveSpec()),
                rate_per_minute=300,  # 5 starts a second: jobs in every state at the kill
                burst=1,
            )
            cid = start_campaign_in_store(store, spec, eps)
            await fleet.wait(lambda: sum(fleet.confirmed.values()) >= 4, 60)
            await kill(first)
        before = store.get_counters(cid)
        assert before.get("state:succeeded", 0) < N  # really mid-campaign
        async with fotakit_server(sqlite_url, repo_dir, "node-a", port) as (second, _):
            done = re.compile(rf"campaign {cid}: running -> (\w+)")
            try:
                finished = await second.wait_for(done, 90)
            except (TimeoutError, AssertionError):
                print(explain_store(store, cid))
                print("".join(second.lines[-60:]))
                raise
            await fleet.wait(lambda: sum(fleet.confirmed.values()) >= N, 30)
            versions = fleet.versions()
        counters = store.get_counters(cid)
        jobs = store.list_jobs(campaign_id=cid)
    finally:
        await fleet.stop()
        store.close()
    assert finished.group(1) == "completed", "".join(second.lines[-40:])
    assert counters == {"total": N, "state:succeeded": N}
    assert {j.state for j in jobs} == {"succeeded"}
    assert versions == dict.fromkeys(eps, "2.0.0")
    assert dict(fleet.installs) == dict.fromkeys(eps, 1)  # nobody installed twice
    assert dict(fleet.downloaded) == dict.fromkeys(eps, 1)  # nor downloaded twice
