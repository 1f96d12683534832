"""Start-rate limits hold across two ``fotakit server`` processes on one PostgreSQL database.

Two limits, one test each:

* a campaign's own bucket (``rate_per_minute``/``burst``): part of its snapshot in the
  ``campaigns`` row, moved by compare-and-set at every tick of either process;
* the fleet-wide bucket (``fotakit server --global-rate/--global-burst``): the
  ``rate_buckets`` row scoped ``"global"``, shared by every campaign and process. Its test
  runs two campaigns with no rate of their own, so nothing else limits them.

Half of the agents register with each process; a started member is driven by the process
its device is registered with, whichever process decided the start. Campaigns are started
by writing their rows, as an operator's start in a third process would (that start takes
its first tokens from the same buckets).

Start times are read from the stored job logs (both processes write them to the same
database): a job's ``state`` event ``-> starting`` is written when its process picks the
started member up. That is after the token was taken, by at most one campaign tick of the
picking process (1 s) plus processing, so the bound on any window of starts allows that
lag as slack: ``burst + rate * (span + slack) / 60``. With a bucket per process (burst 2
each) or none, the starts would come within about a second and break the bound (checked
for the global one: without the server option its test fails).

Needs ``FOTAKIT_TEST_PG_URL`` (skipped with that reason otherwise; CI sets it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
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
from fotakit.updates.records import JobRecord
from fotakit.updates.store import UpdateStore
from fotakit.updates.targets import TargetSpec

RATE_PER_MINUTE = 120.0
BURST = 2
#: Token decision -> the job's logged "-> starting": up to one campaign tick (1 s) of
#: the process that picks the member up, plus its processing (margin for a slow CI).
SLACK_S = 1.5
BUCKET = BucketConfig(rate_per_minute=RATE_PER_MINUTE, burst=BURST)


@dataclass
class Outcome:
    jobs: list[JobRecord]
    starts: dict[str, float]  # endpoint -> first logged start
    node_of: dict[str, str]
    installs: dict[str, int]
    final_states: list[str]


async def _two_nodes(
    tmp_path: Path,
    pg_url: str,
    eps: list[str],
    specs: Callable[[str], list[CampaignSpec]],
    server_args: tuple[str, ...] = (),
    global_rate: BucketConfig | None = None,
) -> Outcome:
    """Run the campaigns ``specs(package_id)`` over ``eps`` split between two server
    processes; what the shared database says afterwards."""
    key = generate_key("ed25519")
    trust = trust_for(key)
    repo_dir = tmp_path / "repository"
    package = publish_package(
        repo_dir, pg_url, key, payload_of(4_000, 12), version="2.0.0", sequence=2
    )
    store = UpdateStore.open(pg_url)
    node_of = {ep: ("node-a" if i % 2 == 0 else "node-b") for i, ep in enumerate(eps)}
    fleet = Fleet(tmp_path / "agents", trust)
    try:
        async with (
            fotakit_server(pg_url, repo_dir, "node-a", 0, *server_args) as (a, port_a),
            fotakit_server(pg_url, repo_dir, "node-b", 0, *server_args) as (b, port_b),
        ):
            ports = {"node-a": port_a, "node-b": port_b}
            for ep in eps:
                fleet.make(ep, ports[node_of[ep]])
            for agent in fleet.agents.values():
                await agent.start()
            await fleet.wait(lambda: all(a.client.registered for a in fleet.agents.values()))
            cids = []
            for spec in specs(package.id):
                members = list(spec.target.endpoints or ())
                cids.append(start_campaign_in_store(store, spec, members, global_rate))
            for cid in cids:
                done = re.compile(rf"campaign {cid}: running -> (\w+)")
                finished = await first_match([a.wait_for(done, 30), b.wait_for(done, 30)])
                assert finished.group(1) == "completed", "".join(a.lines + b.lines)[-4000:]
            await fleet.wait(lambda: sum(fleet.confirmed.values()) >= len(eps), 15)
        finals = [store.get_campaign(cid) for cid in cids]
        return Outcome(
            jobs=[j for cid in cids for j in store.list_jobs(campaign_id=cid)],
            starts=first_starts(store, cids),
            node_of=node_of,
            installs=dict(fleet.installs),
            final_states=[f.state if f is not None else "missing" for f in finals],
        )
    finally:
        await fleet.stop()
        store.close()


def _check(out: Outcome, n: int) -> None:
    assert out.final_states and set(out.final_states) == {"completed"}
    assert len(out.jobs) == n
    assert {j.state for j in out.jobs} == {"succeeded"}
    assert {j.endpoint: j.owner for j in out.jobs} == out.node_of
    assert out.installs == dict.fromkeys(out.node_of, 1)
    # both processes started jobs: the starts merged below really span processes
    assert {out.node_of[ep] for ep in out.starts} == {"node-a", "node-b"}
    starts = sorted(out.starts.values())
    timeline = sorted(
        (round(t - starts[0], 3), ep, out.node_of[ep]) for ep, t in out.starts.items()
    )
    # no window of starts, merged over both nodes, beats the one shared bucket
    assert worst_window(starts, RATE_PER_MINUTE, BURST, SLACK_S) <= 1e-9, timeline
    # the whole run could not start faster than the bucket refills
    rate_s = RATE_PER_MINUTE / 60.0
    assert starts[-1] - starts[0] >= (n - BURST) / rate_s - SLACK_S, timeline


async def test_campaign_start_rate_holds_across_two_server_processes(
    tmp_path: Path, pg_url: str
) -> None:
    eps = [f"rate-{i:02d}" for i in range(10)]

    def specs(package_id: str) -> list[CampaignSpec]:
        return [
            CampaignSpec(
                name="rate over two nodes",
                package_id=package_id,
                target=TargetSpec(endpoints=tuple(eps)),
                rate_per_minute=RATE_PER_MINUTE,
                burst=BURST,
            )
        ]

    _check(await _two_nodes(tmp_path, pg_url, eps, specs), len(eps))


async def test_global_start_rate_holds_across_campaigns_and_processes(
    tmp_path: Path, pg_url: str
) -> None:
    eps = [f"glob-{i:02d}" for i in range(12)]
    halves = (eps[: len(eps) // 2], eps[len(eps) // 2 :])

    def specs(package_id: str) -> list[CampaignSpec]:
        return [
            CampaignSpec(
                name=f"global rate, half {n}",
                package_id=package_id,
                target=TargetSpec(endpoints=tuple(members)),
            )
            for n, members in enumerate(halves)
        ]

    args = ("--global-rate", str(RATE_PER_MINUTE), "--global-burst", str(BURST))
    out = await _two_nodes(tmp_path, pg_url, eps, specs, args, BUCKET)
    _check(out, len(eps))
