"""Two nodes on one PostgreSQL database see one fleet; a campaign made on either covers it.

Two in-process nodes (LwM2M server with ``/fw``, update service, REST API — what
``fotakit server`` runs), each with its own node ID and CoAP port, share one PostgreSQL
database and one repository directory. Half of the agents register with node A, half with
node B (a UDP load balancer keeping each device on one node would split them so). The
operator creates a class-targeted campaign through node B's REST API: it must include
every matching device, whichever node it is registered with; each job is driven by the
node its device is registered with; ``GET /api/v1/fleet`` on either node counts every
device online (docs/operator-guide.md "Several processes on PostgreSQL").

Needs ``FOTAKIT_TEST_PG_URL`` (skipped with that reason otherwise).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from e2e_helpers import (
    Fleet,
    Site,
    make_service,
    payload_of,
    running_site,
    trust_for,
    wait_campaign,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))

from api_helpers import role_tokens

from fotakit.api import ApiContext, TokenStore, create_app, serve_api
from fotakit.packages import PrivateKey, generate_key
from fotakit.updates.job import JobPolicy

N = 16
MODEL = "fotakit-agent"  # /3/0/1 of the test agents: their device class name
POLICY = JobPolicy(backoff_base_s=0.5, backoff_max_s=1.0, transfer_floor_s=5.0)


@dataclass
class Node:
    name: str
    site: Site
    service: Any
    client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def running_node(
    name: str, root: Path, db_url: str, key: PrivateKey, tokens: TokenStore, token: str
) -> AsyncIterator[Node]:
    """One node: server + repository (the shared directory) + update service + REST API."""
    async with running_site(root, db_url, key, node_id=name) as site:
        service = make_service(site, db_url, node_id=name, policy=POLICY)
        await service.start()
        ctx = ApiContext(
            server=site.server, service=service, repository=site.repository, tokens=tokens
        )
        http = await serve_api(create_app(ctx), "127.0.0.1", 0)
        client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{http.port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        try:
            yield Node(name, site, service, client)
        finally:
            await client.aclose()
            ctx.close()
            await http.stop()
            await service.stop()


async def test_a_campaign_created_on_node_b_updates_the_devices_of_both_nodes(
    tmp_path: Path, pg_url: str
) -> None:
    key = generate_key("ed25519")
    tokens = TokenStore.open(pg_url)
    token = role_tokens(tokens)["operator"]
    fleet = Fleet(tmp_path / "agents", trust_for(key))
    eps = [f"two-{i:02d}" for i in range(N)]
    home = {ep: ("node-a" if i % 2 == 0 else "node-b") for i, ep in enumerate(eps)}
    beta = eps[: N * 3 // 4]  # both nodes' devices
    rest = eps[len(beta) :]
    try:
        async with (
            running_node("node-a", tmp_path, pg_url, key, tokens, token) as a,
            running_node("node-b", tmp_path, pg_url, key, tokens, token) as b,
        ):
            nodes = {"node-a": a, "node-b": b}
            package = a.site.publish(payload_of(8_000, 5), version="2.0.0", sequence=2)
            for ep in eps:
                fleet.make(ep, nodes[home[ep]].site.server.port)
            for node in nodes.values():
                mine = [ep for ep in eps if home[ep] == node.name]
                await fleet.start(node.site.server, mine)
            for node in nodes.values():  # each node has read /3/0 of its own devices
                for ep in eps:
                    if home[ep] == node.name:
                        await node.service.inventory.refresh(ep)
            # the operator tags most devices, of both nodes, through node A
            for ep in beta:
                r = await a.client.put(f"/api/v1/devices/{ep}/tags", json={"tags": ["beta"]})
                assert r.status_code == 200, r.text
            before = {
                n: (await node.client.get("/api/v1/fleet")).json() for n, node in nodes.items()
            }
            r = await b.client.post(
                "/api/v1/campaigns",
                json={
                    "name": "whole fleet from node b",
                    "package_id": package.id,
                    "target": {
                        "device_class": {"name": MODEL},
                        "current_version": "1.0.0",
                        "tags": ["beta"],
                    },
                },
            )
            assert r.status_code == 201, r.text
            cid = r.json()["id"]
            done = await wait_campaign(b.service, cid, {"completed", "paused", "aborted"}, 90)
            jobs = await b.service.jobs(cid)
            await fleet.wait(lambda: sum(fleet.confirmed.values()) >= len(beta), 30)
            versions = fleet.versions()
            after = {
                n: (await node.client.get("/api/v1/fleet")).json() for n, node in nodes.items()
            }
            listed = {
                n: (await node.client.get("/api/v1/devices", params={"limit": 100})).json()
                for n, node in nodes.items()
            }
    finally:
        await fleet.stop()
        tokens.close()
    assert done.state == "completed", done
    # every matching device is a member, driven by the node it is registered with
    assert {j.endpoint: j.owner for j in jobs} == {ep: home[ep] for ep in beta}
    assert {home[ep] for ep in beta} == {"node-a", "node-b"}
    assert {j.state for j in jobs} == {"succeeded"}
    assert versions == {ep: "2.0.0" if ep in beta else "1.0.0" for ep in eps}
    assert dict(fleet.installs) == dict.fromkeys(beta, 1)
    for n in ("node-a", "node-b"):
        assert before[n]["total"] == N and before[n]["online"] == N, (n, before[n])
        assert before[n]["by_version"] == {"1.0.0": N}, (n, before[n])
        assert before[n]["by_class"] == {MODEL: N}, (n, before[n])
    for n in ("node-a", "node-b"):
        assert after[n]["online"] == N and after[n]["offline"] == 0, (n, after[n])
        assert after[n]["by_version"] == {"2.0.0": len(beta), "1.0.0": len(rest)}, (n, after[n])
        items = listed[n]["items"]
        assert {d["endpoint"] for d in items if d["online"]} == set(eps), (n, items)
        assert {d["endpoint"] for d in items if d["tags"] == ["beta"]} == set(beta), (n, items)
        # the registration's owner, from the database on the other node
        assert {d["endpoint"]: d["node"] for d in items} == home, (n, items)
