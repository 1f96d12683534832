"""Benchmark B1: LwM2M registrations/s and device-management round trips/s on one core.

The server under test runs in this process, pinned to CPU 0. A *device farm* runs in a
second process pinned to CPU 1: many UDP sockets on loopback, each one a device, speaking
CoAP datagrams encoded and decoded by aiocoap's ``Message`` (no aiocoap context on the
farm side: it is only a load source and must not be the bottleneck).

Two servers do the same exchanges:

- **fotakit**: ``LwM2MServer`` with its SQLite store (every registration committed to disk
  before the 2.01 is sent), parsing and validating Register like any device would need;
- **plain aiocoap**: a minimal resource directory — an aiocoap ``Site`` with ``/rd`` that
  keeps registrations in a dict, and a bare ``Context.request`` for device management.
  It is the floor: what aiocoap alone costs for the same datagrams.

Registration: the farm registers N devices (each from its own socket) with W exchanges in
flight, CON with piggy-backed or separate responses, retransmitting after ACK_TIMEOUT.
Device management: the server reads ``/3/0/0`` from the registered devices with W reads
in flight; each farm socket answers 2.05 with a text/plain value.

Usage: ``python bench/bench_lwm2m.py [--devices 2000] [--reads 4000] [--window 64]
[--runs 3] [--write docs/benchmarks.md]``. Bounded: every phase has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path as FsPath
from typing import Any

import aiocoap
import aiocoap.resource as coap_resource
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from _common import cpu_model, pin, revision, write_section

PHASE_DEADLINE = 120.0  # seconds; any phase longer than this aborts the run
ACK_TIMEOUT = 2.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- device farm
class _Device(asyncio.DatagramProtocol):
    """One simulated device: a socket that registers and answers GETs."""

    def __init__(self, farm: _Farm, index: int) -> None:
        self.farm = farm
        self.index = index
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[bytes, asyncio.Future[aiocoap.Message]] = {}
        self.mid = random.randrange(0x10000)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        try:
            msg = aiocoap.Message.decode(data)
        except Exception:
            return
        if msg.code.is_request():
            self.farm.reads_served += 1
            reply = aiocoap.Message(code=Code.CONTENT, payload=b"fotakit-bench", content_format=0)
            reply.mtype = Type.ACK if msg.mtype == Type.CON else Type.NON
            reply.mid = msg.mid if msg.mtype == Type.CON else self._next_mid()
            reply.token = msg.token
            self.transport.sendto(reply.encode(), addr)
            return
        if msg.mtype == Type.CON:  # separate response: acknowledge it
            ack = aiocoap.Message(code=Code.EMPTY)
            ack.mtype = Type.ACK
            ack.mid = msg.mid
            self.transport.sendto(ack.encode(), addr)
        if msg.code == Code.EMPTY:
            return
        fut = self.pending.pop(msg.token, None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def _next_mid(self) -> int:
        self.mid = (self.mid + 1) & 0xFFFF
        return self.mid

    async def register(self, server: tuple[str, int]) -> float:
        assert self.transport is not None
        msg = aiocoap.Message(
            code=Code.POST,
            payload=b"</1/0>,</3/0>,</5>;ver=1.2,</5/0>",
            content_format=40,
            uri_path=("rd",),
            uri_query=(f"ep=bench-{self.index:06d}", "lt=86400", "lwm2m=1.1", "b=U"),
        )
        msg.mtype = Type.CON
        msg.mid = self._next_mid()
        msg.token = os.urandom(4)
        data = msg.encode()
        fut: asyncio.Future[aiocoap.Message] = asyncio.get_running_loop().create_future()
        self.pending[msg.token] = fut
        t0 = time.perf_counter()
        timeout = ACK_TIMEOUT
        for _attempt in range(5):
            self.transport.sendto(data, server)
            done, _ = await asyncio.wait({fut}, timeout=timeout)
            if done:
                break
            self.farm.retransmissions += 1
            timeout *= 2
        response = await asyncio.wait_for(fut, PHASE_DEADLINE)
        if response.code != Code.CREATED:
            raise RuntimeError(f"register answered {response.code}")
        return time.perf_counter() - t0


class _Farm:
    def __init__(self, count: int) -> None:
        self.count = count
        self.devices: list[_Device] = []
        self.retransmissions = 0
        self.reads_served = 0

    async def open(self) -> list[int]:
        loop = asyncio.get_running_loop()
        ports = []
        for i in range(self.count):
            transport, proto = await loop.create_datagram_endpoint(
                lambda i=i: _Device(self, i), local_addr=("127.0.0.1", 0)
            )
            self.devices.append(proto)
            ports.append(transport.get_extra_info("sockname")[1])
        return ports

    async def register_all(self, server: tuple[str, int], window: int) -> dict[str, float]:
        sem = asyncio.Semaphore(window)
        latencies: list[float] = []

        async def one(dev: _Device) -> None:
            async with sem:
                latencies.append(await dev.register(server))

        t0 = time.perf_counter()
        async with asyncio.timeout(PHASE_DEADLINE):
            await asyncio.gather(*(one(d) for d in self.devices))
        wall = time.perf_counter() - t0
        latencies.sort()
        return {
            "wall": wall,
            "rate": len(latencies) / wall,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
            "retransmissions": self.retransmissions,
        }


def _farm_main(conn: Connection, count: int) -> None:
    pin(1)

    async def main() -> None:
        farm = _Farm(count)
        ports = await farm.open()
        conn.send(ports)
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd[0] == "register":
                conn.send(await farm.register_all(cmd[1], cmd[2]))
            elif cmd[0] == "stats":
                conn.send({"reads_served": farm.reads_served})
            elif cmd[0] == "quit":
                return

    asyncio.run(main())


# ------------------------------------------------------------------- servers under test
class _PlainRD(coap_resource.Resource):
    """The baseline: a resource directory with nothing but a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.registrations: dict[str, tuple[str, str]] = {}
        self.counter = 0

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        query = dict(q.split("=", 1) for q in request.opt.uri_query if "=" in q)
        ep = query.get("ep")
        if not ep:
            return aiocoap.Message(code=Code.BAD_REQUEST)
        self.counter += 1
        reg_id = f"{self.counter:x}"
        self.registrations[ep] = (reg_id, request.remote.hostinfo)
        return aiocoap.Message(code=Code.CREATED, location_path=("rd", reg_id))


class _Baseline:
    name = "plain aiocoap"

    async def start(self) -> int:
        from fotakit.coap import create_endpoint

        site = coap_resource.Site()
        self.rd = _PlainRD()
        site.add_resource(["rd"], self.rd)
        self.ctx, port = await create_endpoint(site, "127.0.0.1", 0)
        return port

    async def read(self, device_port: int) -> None:
        req = aiocoap.Message(code=Code.GET, uri=f"coap://127.0.0.1:{device_port}/3/0/0")
        resp = await self.ctx.request(req).response
        if resp.code != Code.CONTENT:
            raise RuntimeError(resp.code)

    async def stop(self) -> None:
        await self.ctx.shutdown()


class _Fotakit:
    name = "fotakit"

    def __init__(self, tmp: FsPath) -> None:
        self.tmp = tmp

    async def start(self) -> int:
        from fotakit.server import LwM2MServer, ServerConfig
        from fotakit.store import default_db_url

        self.server = LwM2MServer(
            ServerConfig(
                host="127.0.0.1", port=0, db_url=default_db_url(self.tmp), max_register_rate=1e9
            )
        )
        await self.server.start()
        self.endpoints: dict[int, str] = {}
        return int(self.server.port)

    def map_ports(self) -> None:
        self.endpoints = {r.port: r.endpoint for r in self.server.registrations.values()}

    async def read(self, device_port: int) -> None:
        from fotakit.lwm2m.path import Path

        await self.server.read_value(self.endpoints[device_port], Path(3, 0, 0))

    async def stop(self) -> None:
        await self.server.stop()


async def _drive_reads(target: Any, ports: list[int], reads: int, window: int) -> dict[str, float]:
    sem = asyncio.Semaphore(window)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            await target.read(ports[i % len(ports)])
            latencies.append(time.perf_counter() - t0)

    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    async with asyncio.timeout(PHASE_DEADLINE):
        await asyncio.gather(*(one(i) for i in range(reads)))
    wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "wall": wall,
        "rate": reads / wall,
        "cpu": (_cpu_seconds() - cpu0) / wall,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
    }


async def _one_run(kind: str, devices: int, reads: int, window: int) -> dict[str, Any]:
    parent, child = mp.Pipe()
    farm = mp.get_context("spawn").Process(target=_farm_main, args=(child, devices))
    farm.start()
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="fotakit-bench-") as tmp:
        target: Any = _Fotakit(FsPath(tmp)) if kind == "fotakit" else _Baseline()
        try:
            ports = await loop.run_in_executor(None, parent.recv)
            port = await target.start()
            cpu0 = _cpu_seconds()
            parent.send(("register", ("127.0.0.1", port), window))
            reg = await loop.run_in_executor(None, parent.recv)
            reg["cpu"] = (_cpu_seconds() - cpu0) / reg["wall"]
            if kind == "fotakit":
                target.map_ports()
                assert len(target.endpoints) == devices, "not every device registered"
            dm = await _drive_reads(target, ports, reads, window)
            parent.send(("stats",))
            served = (await loop.run_in_executor(None, parent.recv))["reads_served"]
            assert served >= reads, f"farm served {served} < {reads} reads"
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            return {"register": reg, "dm": dm, "rss_mib": rss}
        finally:
            await target.stop()
            parent.send(("quit",))
            farm.join(10)
            if farm.is_alive():
                farm.kill()


def _median(runs: list[dict[str, Any]], phase: str, key: str) -> float:
    return statistics.median(r[phase][key] for r in runs)


def _run_kind_subprocess(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Each server kind runs in a fresh interpreter, so RSS and caches don't mix."""
    cmd = [
        sys.executable,
        __file__,
        "--one",
        kind,
        "--devices",
        str(args.devices),
        "--reads",
        str(args.reads),
        "--window",
        str(args.window),
    ]
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, timeout=PHASE_DEADLINE * 4
    )
    import json

    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--reads", type=int, default=4000)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write", type=FsPath, help="update this Markdown file's B1 section")
    ap.add_argument("--one", choices=["fotakit", "baseline"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        import json
        import logging

        logging.disable(logging.WARNING)
        pin(0)
        print(json.dumps(asyncio.run(_one_run(args.one, args.devices, args.reads, args.window))))
        return
    results: dict[str, list[dict[str, Any]]] = {"fotakit": [], "baseline": []}
    for run in range(args.runs):
        for kind in ("baseline", "fotakit"):
            r = _run_kind_subprocess(kind, args)
            results[kind].append(r)
            print(
                f"run {run + 1}/{args.runs} {kind:9s} register {r['register']['rate']:7.0f}/s "
                f"p99 {r['register']['p99_ms']:6.1f} ms cpu {r['register']['cpu']:.0%} | "
                f"read {r['dm']['rate']:7.0f}/s p99 {r['dm']['p99_ms']:6.1f} ms "
                f"cpu {r['dm']['cpu']:.0%} | rss {r['rss_mib']:.0f} MiB",
                flush=True,
            )
    table = _table(results, args)
    print(table)
    if args.write:
        write_section(args.write, "## B1 ", table)


def _table(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    sha = revision()
    cpu = cpu_model()
    lines = [
        "## B1 — registrations/s and device-management round trips/s on one core",
        "",
        f"Command: `.venv/bin/python bench/bench_lwm2m.py --devices {args.devices} "
        f"--reads {args.reads} --window {args.window} --runs {args.runs} "
        "--write docs/benchmarks.md` (or `make bench`).",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} at {sha}; {cpu}; Python "
        f"{platform.python_version()}, aiocoap {aiocoap.meta.version}, asyncio default loop. "
        f"Server pinned to CPU 0, device farm (its own process, {args.devices} UDP sockets "
        f"on 127.0.0.1) pinned to CPU 1; {args.window} exchanges in flight; median of "
        f"{args.runs} runs (each in a fresh process).",
        "",
        "| server | Register/s | Register p50 / p99 | server CPU | Read /3/0/0 per s | "
        "Read p50 / p99 | server CPU | peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, label in (
        ("fotakit", "fotakit (SQLite, durable)"),
        ("baseline", "plain aiocoap (dict RD, bare request)"),
    ):
        runs = results[kind]
        lines.append(
            f"| {label} | {_median(runs, 'register', 'rate'):.0f} | "
            f"{_median(runs, 'register', 'p50_ms'):.1f} / "
            f"{_median(runs, 'register', 'p99_ms'):.1f} ms | "
            f"{_median(runs, 'register', 'cpu'):.0%} | {_median(runs, 'dm', 'rate'):.0f} | "
            f"{_median(runs, 'dm', 'p50_ms'):.1f} / {_median(runs, 'dm', 'p99_ms'):.1f} ms | "
            f"{_median(runs, 'dm', 'cpu'):.0%} | "
            f"{statistics.median(r['rss_mib'] for r in runs):.0f} MiB |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
