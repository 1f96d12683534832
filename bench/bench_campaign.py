"""B4 — campaign makespan for a fleet of agents against its lower bound.

Everything runs in this one process on one asyncio loop (the 2-vCPU VM cannot host 200
agent processes): the LwM2M server with the repository's CoAP ``/fw`` on its port, the
:class:`~fotakit.updates.service.UpdateService`, and N real :class:`fotakit.agent.Agent`
devices (A/B slots on disk, signature verification, health check = re-registration).
Optionally an in-process :class:`fotakit.sim.UdpRelay` sits between the agents and the
server, adding RTT and loss to every datagram (registration, device management and the
Block2 download alike).

For each setting it measures

* ``t1``: the per-device time, one single-device update job (start -> succeeded) alone;
* ``goodput``: bytes/s the server delivers to C concurrent lock-step Block2 downloads of
  the package (aiocoap clients in this process, straight to the server: the link's share
  is the other term of the bound);
* the makespan of one campaign over N agents (one wave, at most C transfers at a time):
  ``start_campaign`` -> state completed;

and compares the makespan with the lower bound
``max(N x S / goodput, ceil(N / C) x t1)`` (S = package size).

Command: ``.venv/bin/python bench/bench_campaign.py --agents 200 --write docs/benchmarks.md``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiocoap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "updates"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_helpers import (
    Fleet,
    make_service,
    payload_of,
    running_site,
    trust_for,
    wait_campaign,
    wait_job,
)

from _common import cpu_model, revision, write_section
from fotakit.coap import create_endpoint
from fotakit.packages import generate_key
from fotakit.sim.relay import Impairment, UdpRelay
from fotakit.updates.campaign import CampaignSpec, WaveSpec
from fotakit.updates.engine_packages import BaseUris
from fotakit.updates.job import JobPolicy
from fotakit.updates.targets import TargetSpec

HEAD = "## B4 — campaign makespan"
POLICY = JobPolicy(backoff_base_s=1.0, backoff_max_s=4.0, transfer_floor_s=30.0)


async def goodput(uri: str, clients: int, rounds: int) -> float:
    """Bytes/s of ``clients`` concurrent lock-step Block2 downloads of ``uri``."""
    ctx, _ = await create_endpoint(None, "127.0.0.1", 0)
    try:

        async def one() -> int:
            total = 0
            for _ in range(rounds):
                request = aiocoap.Message(code=aiocoap.GET, uri=uri)
                response = await ctx.request(request).response
                assert response.code.is_successful(), response.code
                total += len(response.payload)
            return total

        start = time.monotonic()
        sizes = await asyncio.gather(*(one() for _ in range(clients)))
        return sum(sizes) / (time.monotonic() - start)
    finally:
        await ctx.shutdown()


async def _report(service: Any, cid: str, t0: float) -> None:
    for _ in range(10_000):
        await asyncio.sleep(10)
        progress = await service.progress(cid)
        print(f"  {time.monotonic() - t0:6.1f} s {dict(progress.by_state)}", flush=True)


async def run(
    n: int, size: int, concurrency: int, rtt: float, loss: float, root: Path
) -> dict[str, Any]:
    key = generate_key("ed25519")
    db_url = f"sqlite:///{root / 'fotakit.db'}"
    async with running_site(root, db_url, key) as site:
        relay: UdpRelay | None = None
        target_port = site.server.port
        if rtt > 0 or loss > 0:
            lane = Impairment(delay=rtt / 2, loss=loss)
            relay = UdpRelay(("127.0.0.1", site.server.port), uplink=lane, downlink=lane, seed=4)
            _, target_port = await relay.start()
        fleet = Fleet(root / "agents", trust_for(key))
        try:
            eps = [f"b{i:04d}" for i in range(n)]
            for ep in [*eps, "probe"]:
                fleet.make(ep, target_port, lifetime=600, registration_deadline=60)
            t0 = time.monotonic()
            await fleet.start(site.server, [*eps, "probe"])
            registered_s = time.monotonic() - t0
            print(f"  {n + 1} agents registered in {registered_s:.1f} s", flush=True)
            record = site.publish(payload_of(size, 9), version="2.0.0", sequence=2)
            base = BaseUris(coap=f"coap://127.0.0.1:{target_port}")
            service = make_service(site, db_url, policy=POLICY, base_uris=base, tick_s=0.2)
            async with service:
                t0 = time.monotonic()
                job = await wait_job(service, await service.start_job("probe", record.id), 120)
                t1 = time.monotonic() - t0
                assert job.state == "succeeded", job
                print(f"  t1 = {t1:.2f} s", flush=True)
                # the server's goodput: direct, the link is the other term of the bound
                uri = f"coap://127.0.0.1:{site.server.port}{record.path()}"
                rate = await goodput(uri, min(concurrency, n), 2)
                spec = CampaignSpec(
                    name="bench",
                    package_id=record.id,
                    target=TargetSpec(endpoints=tuple(eps)),
                    waves=(WaveSpec(),),
                    max_concurrent=concurrency,
                )
                cid = await service.create_campaign(spec)
                t0 = time.monotonic()
                await service.start_campaign(cid)
                reporter = asyncio.ensure_future(_report(service, cid, t0))
                try:
                    done = await wait_campaign(
                        service, cid, {"completed", "paused", "aborted"}, 600
                    )
                finally:
                    reporter.cancel()
                makespan = time.monotonic() - t0
                progress = await service.progress(cid)
            installs = sum(fleet.installs[ep] for ep in eps)
        finally:
            await fleet.stop()
            if relay is not None:
                await relay.stop()
    bound = max(n * record.size / rate, math.ceil(n / concurrency) * t1)
    return {
        "n": n,
        "size": record.size,
        "c": concurrency,
        "rtt_ms": rtt * 1000,
        "loss": loss,
        "registered_s": registered_s,
        "t1": t1,
        "goodput": rate,
        "makespan": makespan,
        "bound": bound,
        "ratio": makespan / bound,
        "state": done.state,
        "succeeded": progress.by_state.get("succeeded", 0),
        "installs": installs,
    }


def render(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        f"{HEAD} for a fleet of agents against its lower bound",
        "",
        f"Command: `{command}`",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} at {revision()}; {cpu_model()}; Python "
        f"{platform.python_version()}, aiocoap {aiocoap.meta.version}. One process, one "
        "asyncio loop: LwM2M server + repository (`/fw` on the LwM2M port), the update "
        "service (SQLite, synchronous=FULL) and the N agents (real `fotakit.agent.Agent`s: "
        "A/B slots on disk, signature check, trial boot confirmed by re-registration). The "
        "relay rows put an in-process `fotakit.sim.UdpRelay` between agents and server "
        "(half the RTT each way, i.i.d. loss in both directions) for every datagram, "
        "downloads included. A campaign is one wave with at most C transfers at a time; "
        "every device pulls the signed package over CoAP Block2 (1024-byte blocks).",
        "",
        "Lower bound = max(N x S / goodput, ceil(N / C) x t1): goodput = bytes/s the server "
        "delivered to C concurrent lock-step Block2 downloads of the package (straight to "
        "the server, clients in the same process); t1 = one single-device update job "
        "alone (write URI, download, verify, execute, reboot, re-register, version read "
        "back).",
        "",
        "| path | N | S | C | t1 | goodput | N x S / goodput | ceil(N/C) x t1 | makespan | "
        "makespan / bound | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        path = (
            "loopback"
            if r["rtt_ms"] == 0 and r["loss"] == 0
            else (f"relay {r['rtt_ms']:.0f} ms RTT, {r['loss'] * 100:.0f} % loss")
        )
        lines.append(
            f"| {path} | {r['n']} | {r['size']} B | {r['c']} | {r['t1']:.2f} s | "
            f"{r['goodput'] / 1024:.0f} KiB/s | {r['n'] * r['size'] / r['goodput']:.1f} s | "
            f"{math.ceil(r['n'] / r['c']) * r['t1']:.1f} s | {r['makespan']:.1f} s | "
            f"{r['ratio']:.2f} | {r['state']}, {r['succeeded']}/{r['n']} succeeded, "
            f"{r['installs']} installs |"
        )
    lines.append("")
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--size", type=int, default=16 * 1024, help="payload bytes")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--loss", type=float, default=0.02)
    parser.add_argument("--only", choices=["loopback", "relay"], default=None)
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args()
    settings = [("loopback", 0.0, 0.0), ("relay", args.rtt_ms / 1000, args.loss)]
    rows = []
    for name, rtt, loss in settings:
        if args.only and args.only != name:
            continue
        with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp:
            row = await asyncio.wait_for(
                run(args.agents, args.size, args.concurrency, rtt, loss, Path(tmp)), 900
            )
        print(row, flush=True)
        rows.append(row)
    command = "python bench/bench_campaign.py " + " ".join(sys.argv[1:])
    text = render(rows, command.replace("--write docs/benchmarks.md", "").strip())
    print(text)
    if args.write is not None:
        write_section(args.write, HEAD, text)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
