"""B5 — campaign makespan with the server and the fleet in separate processes.

The measurement B4 could not make: here the server runs alone in its process, as an
operator runs it, and the devices in another, as the fleet simulator runs them:

* ``fotakit server`` (LwM2M + CoAP ``/fw`` on UDP, REST API on HTTP, the update service on
  SQLite with synchronous=FULL) — a real subprocess;
* ``fotakit sim --devices N --profile P`` — N real agents (A/B slots, signature check, trial
  boot confirmed by re-registration) on their own 127.0.x.y addresses behind the
  simulator's impairing relays, in a second subprocess;
* this process drives both through the REST API only (upload, single-device job,
  campaign, progress), and measures the server's goodput with C concurrent lock-step
  Block2 downloads of the package (aiocoap clients, this process).

For each row: the registration of N devices (sim start -> the server's inventory knows
all N), ``t1`` (one single-device job alone, through the simulator's link), the campaign
makespan (POST /campaigns -> completed; one wave, at most C transfers at a time), the CPU
seconds each process used during the campaign, and the lower bound
``max(N x S / goodput, ceil(N / C) x t1)``.

Command: ``.venv/bin/python bench/bench_fleet.py --write docs/benchmarks.md``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiocoap
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "updates"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_helpers import ServerProcess, payload_of, sign

from _common import cpu_model, revision, write_section
from bench_campaign import goodput
from fotakit.packages import generate_key
from fotakit.packages.keys import write_key_pair

HEAD = "## B5 — campaign makespan, server and fleet in separate processes"
FOTAKIT = str(Path(sys.executable).with_name("fotakit"))
TOKEN = "fk_bench_fleet_admin_token_0123456789abcdef"
LISTENING = re.compile(r"server listening on 127\.0\.0\.1:(\d+)")
HTTP = re.compile(r"dashboard and REST API: http://127\.0\.0\.1:(\d+)/")
CLASS = "sensor-v2"
TERMINAL_CAMPAIGN = ("completed", "failed", "aborted", "cancelled", "paused")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _poll(api: httpx.AsyncClient, path: str, done: Any, limit_s: float) -> Any:
    """GET ``path`` every 0.1 s until ``done(body)`` (bounded by ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    body: Any = None
    while time.monotonic() < deadline:
        response = await api.get(path)
        response.raise_for_status()
        body = response.json()
        if done(body):
            return body
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{path}: not done within {limit_s} s; last: {body}")


def _known(n: int) -> Any:
    def done(fleet: dict[str, Any]) -> bool:
        rows = fleet.get("by_class_version", [])
        return sum(r["count"] for r in rows if r.get("class") == CLASS) >= n

    return done


async def run(
    n: int, profile: str, size: int, concurrency: int, root: Path, cprofile: Path | None = None
) -> dict[str, Any]:
    key = generate_key("ed25519")
    _private, public = write_key_pair(key, root / "trust", "bench")
    env = {**os.environ, "FOTAKIT_ADMIN_TOKEN": TOKEN}
    command = [FOTAKIT]
    if cprofile is not None:  # the server under cProfile: its main thread only
        command = [sys.executable, "-m", "cProfile", "-o", str(cprofile), "-m", "fotakit.cli"]
    server_proc = await asyncio.create_subprocess_exec(
        *command, "server",
        "--port", "0", "--http-port", "0",
        "--db", f"sqlite:///{root / 'fotakit.db'}",
        "--repository", str(root / "repository"),
        "--trust", str(root / "trust"),
        "--node-id", "bench",
        "--register-rate", "10000", "--register-burst", "10000",
        "--log-level", "INFO",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )  # fmt: skip
    server = ServerProcess(server_proc, "server")
    sim: ServerProcess | None = None
    try:
        coap_port = int((await server.wait_for(LISTENING)).group(1))
        http_port = int((await server.wait_for(HTTP)).group(1))
        t_reg = time.monotonic()
        sim_proc = await asyncio.create_subprocess_exec(
            FOTAKIT, "sim",
            "--devices", str(n), "--profile", profile,
            "--server", f"coap://127.0.0.1:{coap_port}",
            "--trust", str(public),
            "--data-dir", str(root / "sim"),
            "--class", CLASS, "--seed", "2026", "--quiet", "--log-level", "WARNING",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        sim = ServerProcess(sim_proc, "sim")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{http_port}/api/v1", headers=headers, timeout=60
        ) as api:
            await _poll(api, "/fleet", _known(n), 60 + n * 0.5)
            registration = time.monotonic() - t_reg
            package = sign(payload_of(size, 5), key, version="2.0.0", sequence=2, class_name=CLASS)
            up = await api.post(
                "/packages", content=package, headers={"Content-Type": "application/octet-stream"}
            )
            up.raise_for_status()
            pid = up.json()["id"]
            # t1: one device alone, through its link (it is then on 2.0.0: not a member)
            t0 = time.monotonic()
            job = await api.post("/devices/sim-0000/update", json={"package_id": pid})
            job.raise_for_status()
            jid = job.json()["id"]
            single = await _poll(
                api,
                f"/jobs/{jid}",
                lambda j: j["state"] in ("succeeded", "failed", "timed_out", "cancelled"),
                300,
            )
            t1 = time.monotonic() - t0
            assert single["state"] == "succeeded", single
            rate = await goodput(
                f"coap://127.0.0.1:{coap_port}/fw/{pid}", concurrency, max(1, 200 // concurrency)
            )
            spec = {
                "name": f"bench {n} {profile}",
                "package_id": pid,
                "target": {"device_class": {"name": CLASS}, "current_version": "1.0.0"},
                "max_concurrent": concurrency,
            }
            cpu_server, cpu_sim = cpu_seconds(server_proc.pid), cpu_seconds(sim_proc.pid)
            t0 = time.monotonic()
            created = await api.post("/campaigns", json=spec)
            created.raise_for_status()
            cid = created.json()["id"]
            final = await _poll(
                api, f"/campaigns/{cid}", lambda c: c["state"] in TERMINAL_CAMPAIGN, 1800
            )
            makespan = time.monotonic() - t0
            cpu_server = cpu_seconds(server_proc.pid) - cpu_server
            cpu_sim = cpu_seconds(sim_proc.pid) - cpu_sim
    finally:
        if sim is not None and sim.proc.returncode is None:
            sim.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sim.proc.wait(), 60)
            await sim.stop()
        if server.proc.returncode is None:  # a clean stop (cProfile writes its stats then)
            server.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.proc.wait(), 300)
        await server.stop()
    members = final["progress"]["total"]
    bound = max(members * len(package) / rate, math.ceil(members / concurrency) * t1)
    return {
        "profile": profile,
        "n": members,
        "size": len(package),
        "c": concurrency,
        "registration": registration,
        "t1": t1,
        "goodput": rate,
        "makespan": makespan,
        "bound": bound,
        "ratio": makespan / bound,
        "cpu_server": cpu_server,
        "cpu_sim": cpu_sim,
        "state": final["state"],
        "by_state": final["progress"]["by_state"],
    }


def render(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        HEAD,
        "",
        f"Command: `{command}`",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} at {revision()}; {cpu_model()} (2 cores); "
        f"Python {platform.python_version()}, aiocoap {aiocoap.meta.version}. Three processes: "
        "`fotakit server` (LwM2M, CoAP `/fw`, REST API, update service on SQLite with "
        "synchronous=FULL), `fotakit sim` (the N agents behind the simulator's relays, each "
        "device on its own 127.0.x.y) and the driver (REST calls only, plus the goodput "
        "probe). Link profiles are the simulator's (docs/simulator.md): `lan` 1 ms RTT, no "
        "loss; `cellular` 100 ms RTT, 2 % loss. The campaign is one wave with at most C "
        "transfers at a time; N counts its members (device sim-0000 updated alone first "
        "for t1 is not one).",
        "",
        "Lower bound = max(N x S / goodput, ceil(N / C) x t1): goodput = bytes/s the server "
        "delivered to C concurrent lock-step Block2 downloads from the driver; t1 = one "
        "single-device job alone through the device's link.",
        "",
        "| profile | N | S | C | register N | t1 | goodput | bound | makespan | "
        "makespan / bound | server CPU | sim CPU | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        states = ", ".join(f"{v} {k}" for k, v in sorted(r["by_state"].items()))
        lines.append(
            f"| {r['profile']} | {r['n']} | {r['size']} B | {r['c']} | "
            f"{r['registration']:.1f} s | {r['t1']:.2f} s | {r['goodput'] / 1024:.0f} KiB/s | "
            f"{r['bound']:.1f} s | {r['makespan']:.1f} s | {r['ratio']:.2f} | "
            f"{r['cpu_server']:.1f} s | {r['cpu_sim']:.1f} s | {r['state']}: {states} |"
        )
    lines.append("")
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rows",
        default="lan:200:50,lan:500:100,cellular:200:50",
        help="comma-separated PROFILE:N:C",
    )
    parser.add_argument("--size", type=int, default=16 * 1024, help="payload bytes")
    parser.add_argument("--write", type=Path, default=None)
    parser.add_argument(
        "--cprofile",
        type=Path,
        default=None,
        help="run the server under cProfile (main thread only); its stats are written here",
    )
    args = parser.parse_args()
    rows = []
    for item in args.rows.split(","):
        profile, n, c = item.split(":")
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
            row = await asyncio.wait_for(
                run(int(n), profile, args.size, int(c), Path(tmp), args.cprofile), 2400
            )
        print(row, flush=True)
        rows.append(row)
    command = "python bench/bench_fleet.py " + " ".join(sys.argv[1:])
    text = render(rows, command.replace("--write docs/benchmarks.md", "").strip())
    print(text)
    if args.write is not None:
        write_section(args.write, HEAD, text)


if __name__ == "__main__":
    asyncio.run(main())
