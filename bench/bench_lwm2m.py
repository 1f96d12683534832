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
import contextlib
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


# --------------------------------------------------------- the shipped process under load
#: RFC 7252 section 4.8 transmission parameters of every simulated client
RFC7252_ACK_TIMEOUT = 2.0
RFC7252_ACK_RANDOM_FACTOR = 1.5
RFC7252_MAX_RETRANSMIT = 4

#: a realistic answer to the inventory's Read of /3/0 (SenML JSON, RFC 8428; TS Core E.4)
_DEVICE_OBJECT = (
    b'[{"bn":"/3/0/","n":"0","vs":"fotakit-bench"},{"n":"1","vs":"bench-1"},{"n":"3","vs":"1.0.0"}]'
)


class _Client(asyncio.DatagramProtocol):
    """One LwM2M client: its own UDP socket on its own 127.x.y.z source address."""

    def __init__(self, gen: _LoadGen, index: int) -> None:
        self.gen = gen
        self.index = index
        self.transport: asyncio.DatagramTransport | None = None
        self.future: asyncio.Future[aiocoap.Message] | None = None
        self.token = b""
        self.mid = random.randrange(0x10000)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        try:
            msg = aiocoap.Message.decode(data)
        except Exception:
            return
        if msg.code.is_request():  # the server reads this device (inventory, jobs)
            self.gen.requests_served += 1
            if msg.opt.uri_path[:2] == ("3", "0"):
                reply = aiocoap.Message(
                    code=Code.CONTENT, payload=_DEVICE_OBJECT, content_format=110
                )
            else:
                reply = aiocoap.Message(code=Code.NOT_FOUND)
            reply.mtype = Type.ACK if msg.mtype == Type.CON else Type.NON
            reply.mid = msg.mid if msg.mtype == Type.CON else self._next_mid()
            reply.token = msg.token
            self.transport.sendto(reply.encode(), addr)
            return
        if msg.mtype == Type.CON:  # separate response: acknowledge it (RFC 7252 5.2.2)
            ack = aiocoap.Message(code=Code.EMPTY)
            ack.mtype = Type.ACK
            ack.mid = msg.mid
            self.transport.sendto(ack.encode(), addr)
        if msg.code == Code.EMPTY:
            if msg.mtype == Type.ACK:
                self.gen.empty_acks += 1
            return
        if msg.token == self.token and self.future is not None and not self.future.done():
            self.future.set_result(msg)

    def _next_mid(self) -> int:
        self.mid = (self.mid + 1) & 0xFFFF
        return self.mid

    async def register(self, server: tuple[str, int]) -> float | None:
        """Register as a device would (CON, RFC 7252 timers); the latency, None if never
        answered within the retransmissions."""
        assert self.transport is not None
        msg = aiocoap.Message(
            code=Code.POST,
            payload=b"</1/0>,</3/0>,</5>;ver=1.2,</5/0>",
            content_format=40,
            uri_path=("rd",),
            uri_query=(f"ep=load-{self.index:06d}", "lt=86400", "lwm2m=1.1", "b=U"),
        )
        msg.mtype = Type.CON
        msg.mid = self._next_mid()
        self.token = msg.token = os.urandom(4)
        data = msg.encode()
        self.future = asyncio.get_running_loop().create_future()
        t0 = time.perf_counter()
        timeout = RFC7252_ACK_TIMEOUT * random.uniform(1.0, RFC7252_ACK_RANDOM_FACTOR)
        for attempt in range(RFC7252_MAX_RETRANSMIT + 1):
            if attempt:
                self.gen.retransmissions += 1
            self.transport.sendto(data, server)
            done, _ = await asyncio.wait({self.future}, timeout=timeout)
            if done:
                break
            timeout *= 2
        else:
            return None
        response = self.future.result()
        if response.code != Code.CREATED:
            self.gen.errors[str(response.code)] = self.gen.errors.get(str(response.code), 0) + 1
            return None
        return time.perf_counter() - t0


def _source_address(index: int) -> str:
    """127.0.x.y for client ``index`` (y in 1..250): one source address per client, so a
    per-source Register rate limit sees each client alone, as on a real network."""
    return f"127.{1 + index // 62500}.{(index // 250) % 250}.{1 + index % 250}"


class _LoadGen:
    def __init__(self, first: int, count: int) -> None:
        self.first = first
        self.count = count
        self.clients: list[_Client] = []
        self.retransmissions = 0
        self.requests_served = 0
        self.empty_acks = 0
        self.errors: dict[str, int] = {}

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self.first, self.first + self.count):
            _, proto = await loop.create_datagram_endpoint(
                lambda i=i: _Client(self, i), local_addr=(_source_address(i), 0)
            )
            self.clients.append(proto)

    async def run(self, server: tuple[str, int], rate: float, start_at: float) -> dict[str, Any]:
        """Client k starts its Register at ``start_at + k / rate`` (an open-loop arrival
        schedule: a slow server does not slow the offered load down)."""
        latencies: list[float] = []
        lost = 0

        async def one(k: int, client: _Client) -> None:
            nonlocal lost
            delay = start_at + k / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            latency = await client.register(server)
            if latency is None:
                lost += 1
            else:
                latencies.append(latency)

        await asyncio.gather(*(one(k, c) for k, c in enumerate(self.clients)))
        return {
            "latencies": latencies,
            "end": time.time(),
            "lost": lost,
            "retransmissions": self.retransmissions,
            "requests_served": self.requests_served,
            "empty_acks": self.empty_acks,
            "errors": self.errors,
        }


def _loadgen_main(conn: Connection, first: int, count: int, cpu: int | None) -> None:
    if cpu is not None:
        pin(cpu)

    async def main() -> None:
        gen = _LoadGen(first, count)
        await gen.open()
        conn.send("ready")
        server, rate, start_at = conn.recv()
        conn.send(await gen.run(server, rate, start_at))
        # keep answering the server's reads until told to stop
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)

    asyncio.run(main())


def _free_port(kind: int) -> int:
    import socket

    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds (proc(5))."""
    fields = FsPath(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a process (by thread ID: the names are all alike)."""
    out: dict[str, float] = {}
    for task in FsPath(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out[task.name] = _proc_cpu_path(task / "stat")
    return out


def _proc_cpu_path(stat: FsPath) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fotakit_command() -> list[str]:
    """``.venv/bin/fotakit`` next to this interpreter, as the README starts it."""
    script = FsPath(sys.executable).with_name("fotakit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fotakit"]


async def _wait_ready(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Until the server answers a CoAP ping on its LwM2M port (RFC 7252 4.3)."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.2)
    ping = aiocoap.Message(code=Code.EMPTY)
    ping.mtype = Type.CON
    ping.mid = 1
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"fotakit server exited with {proc.returncode}")
            sock.sendto(ping.encode(), ("127.0.0.1", port))
            try:
                sock.recvfrom(64)
                return
            except OSError:
                await asyncio.sleep(0.2)
        raise RuntimeError("fotakit server did not answer within the deadline")
    finally:
        sock.close()


async def _shipped_run(
    clients: int, rate: float, generators: int, extra: list[str]
) -> dict[str, Any]:
    """One run against a fresh ``fotakit server --data-dir <tmp>`` (README quick start)."""
    with tempfile.TemporaryDirectory(prefix="fotakit-bench-") as tmp:
        port, http_port = _free_port(2), _free_port(1)  # SOCK_DGRAM, SOCK_STREAM
        cmd = [
            *_fotakit_command(),
            "server",
            "--data-dir",
            tmp,
            "--port",
            str(port),
            "--http-port",
            str(http_port),
            *extra,
        ]
        log = open(FsPath(tmp) / "server.log", "wb")  # noqa: ASYNC230 - set-up, not timed
        proc = subprocess.Popen(  # noqa: ASYNC220 - set-up, not timed
            cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=lambda: pin(0)
        )
        ctx = mp.get_context("spawn")
        conns: list[Connection] = []
        gens: list[Any] = []
        try:
            await _wait_ready(port, proc, time.monotonic() + 60)
            share = -(-clients // generators)
            for g in range(generators):
                parent, child = ctx.Pipe()
                first, count = g * share, min(share, clients - g * share)
                p = ctx.Process(target=_loadgen_main, args=(child, first, count, 1))
                p.start()
                conns.append(parent)
                gens.append(p)
            for c in conns:
                assert await asyncio.to_thread(c.recv) == "ready"
            start_at = time.time() + 0.5
            cpu0 = _proc_cpu(proc.pid)
            threads0 = _thread_cpu(proc.pid)
            for c in conns:
                # each generator owns every generators-th arrival slot's worth of rate
                c.send((("127.0.0.1", port), rate / generators, start_at))
            results = [await asyncio.to_thread(c.recv) for c in conns]
            end = max(r["end"] for r in results)
            cpu = (_proc_cpu(proc.pid) - cpu0) / (end - start_at)
            threads = _thread_cpu(proc.pid)
        finally:
            for c in conns:
                with contextlib.suppress(OSError):
                    c.send("quit")
            for p in gens:
                p.join(10)
                if p.is_alive():
                    p.kill()
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    latencies = sorted(x for r in results for x in r["latencies"])
    wall = end - start_at
    return {
        "offered": rate,
        "clients": clients,
        "registered": len(latencies),
        "lost": sum(r["lost"] for r in results),
        "wall": wall,
        "rate": len(latencies) / wall,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": 1000 * latencies[max(0, int(len(latencies) * 0.99) - 1)]
        if latencies
        else float("nan"),
        "max_ms": 1000 * latencies[-1] if latencies else float("nan"),
        "retransmissions": sum(r["retransmissions"] for r in results),
        "requests_served": sum(r["requests_served"] for r in results),
        "cpu": cpu,
        "thread_cpu": {k: round(v - threads0.get(k, 0.0), 2) for k, v in threads.items()},
    }


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
    ap.add_argument(
        "--rates", default="1000,3000", help="offered Register/s against the shipped process"
    )
    ap.add_argument(
        "--duration",
        type=float,
        default=2.0,
        help="seconds of offered load (clients = rate x this)",
    )
    ap.add_argument("--generators", type=int, default=1, help="load generator processes")
    ap.add_argument(
        "--only", choices=["shipped", "bare"], help="run only the shipped or the bare rows"
    )
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
    shipped: dict[float, list[dict[str, Any]]] = {}
    results: dict[str, list[dict[str, Any]]] = {"fotakit": [], "baseline": []}
    for run in range(args.runs):
        if args.only != "bare":
            for rate in (float(r) for r in args.rates.split(",")):
                clients = round(rate * args.duration)
                r = asyncio.run(_shipped_run(clients, rate, args.generators, []))
                shipped.setdefault(rate, []).append(r)
                print(
                    f"run {run + 1}/{args.runs} shipped {rate:5.0f}/s offered: "
                    f"{r['rate']:6.0f}/s achieved ({r['registered']}/{clients}, "
                    f"{r['lost']} lost) p50 {r['p50_ms']:7.1f} ms p99 {r['p99_ms']:7.1f} ms "
                    f"max {r['max_ms']:7.1f} ms retx {r['retransmissions']} "
                    f"server reads {r['requests_served']} cpu {r['cpu']:.0%} "
                    f"(CPU s by thread {r['thread_cpu']})",
                    flush=True,
                )
        if args.only != "shipped":
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
    table = _table(shipped, results, args)
    print(table)
    if args.write:
        write_section(args.write, "## B1 ", table)


def _table(
    shipped: dict[float, list[dict[str, Any]]],
    results: dict[str, list[dict[str, Any]]],
    args: argparse.Namespace,
) -> str:
    sha = revision()
    cpu = cpu_model()
    lines = [
        "## B1 — registrations/s: the shipped process, the bare server, plain aiocoap",
        "",
        f"Command: `.venv/bin/python bench/bench_lwm2m.py --rates {args.rates} "
        f"--duration {args.duration:g} --devices {args.devices} --reads {args.reads} "
        f"--window {args.window} --runs {args.runs} --write docs/benchmarks.md` (or `make bench`).",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} at {sha}; {cpu} ({os.cpu_count()} cores); "
        f"Python {platform.python_version()}, aiocoap {aiocoap.meta.version}, asyncio "
        f"default loop; load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())} at "
        "the end (other work shared the machine: numbers are noisy).",
        "",
    ]
    if shipped:
        lines += [
            "**The shipped process.** `fotakit server --data-dir <tmp> --port <p> --http-port "
            "<p'>` started as the README starts it (SQLite, update service on, HTTP on, "
            "log level INFO: a line per registration, to a file; default `--register-rate` "
            "20/s per source; every registration "
            "committed before its 2.01), pinned to CPU 0. The load generator "
            f"({args.generators} process(es), pinned to CPU 1) runs rate x "
            f"{args.duration:g} s clients, each its own UDP socket bound to its own "
            "127.x.y.z source address (so the per-source limit sees one device per "
            "address, as on a real network), each sending one CON Register at its slot of an "
            "open-loop schedule (client k at k / rate) with RFC 7252 timers (ACK_TIMEOUT 2 s, "
            "ACK_RANDOM_FACTOR 1.5, MAX_RETRANSMIT 4), and answering the server's Read of "
            "/3/0 with SenML JSON. Achieved = answered Registers / (last answer - first "
            "slot); latency from first transmission to the 2.01; server CPU = the process's "
            f"user+system time over the run (all threads; 100 % = one core). Median of "
            f"{args.runs} runs.",
            "",
            "| offered Register/s | clients | achieved Register/s | p50 / p99 / max latency | "
            "retransmissions | unanswered | server CPU |",
            "|---|---|---|---|---|---|---|",
        ]
        for rate, runs in shipped.items():

            def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
                return float(statistics.median(r[key] for r in runs))

            lines.append(
                f"| {rate:.0f} | {runs[0]['clients']} | {med('rate'):.0f} | "
                f"{med('p50_ms'):.1f} / {med('p99_ms'):.1f} / {med('max_ms'):.1f} ms | "
                f"{med('retransmissions'):.0f} | {med('lost'):.0f} | {med('cpu'):.0%} |"
            )
        lines += [
            "",
            "What held Register back (profiled with cProfile per thread and per-thread CPU "
            "from /proc): at 1000/s offered the process first achieved about 200 Register/s "
            "(p50 0.8 s, p99 8.7 s, ~750 retransmissions, 65-77 % CPU). (1) The LwM2M "
            "socket's default receive buffer (~200 KB, a few hundred datagrams) overflowed "
            "whenever the loop was busy for a fraction of a second; every dropped Register "
            "came back 2-3 s later (RFC 7252 timers) and was processed again — the "
            "server now asks for 4 MiB (`fotakit.server.server.RECEIVE_BUFFER`, capped by "
            "`net.core.rmem_max`). (2) Each Register triggered an inventory Read of /3/0 "
            "at once (about 2.5 ms of loop CPU with its SenML decoding and database "
            "write, plus a read that split the registration writer's group commit) and a "
            "synchronous database lookup on the loop; reads are now paced (100/s, 5/s "
            "while Registers arrive faster). (3) Each Register claimed jobs in its own "
            "write transaction and offered the device to campaigns with a synchronous "
            "lookup; claims are now batched (one transaction per batch) and the lookup is "
            "made only for a continuous campaign that may take the device. What remains "
            "at 3000/s offered is the Register path itself (aiocoap, parsing, the durable "
            "write): one core does about 1000-1400 of them per second. Its largest single "
            "items in a profile are aiocoap's `Site` routing (it evaluates "
            "`get_request_uri()`, a getsockname system call, and deep-copies every "
            "request) and the per-registration ID's getrandom call: the next candidates.",
            "",
        ]
    if results["fotakit"]:
        lines += [
            "**The bare server** (`LwM2MServer` alone in the benchmark process: no update "
            "service, no HTTP, no inventory; per-source limit off) against plain aiocoap. "
            f"Server pinned to CPU 0, device farm (its own process, {args.devices} UDP sockets "
            f"on 127.0.0.1) pinned to CPU 1; {args.window} exchanges in flight (closed loop); "
            f"median of {args.runs} runs (each in a fresh process).",
            "",
            "| server | Register/s | Register p50 / p99 | server CPU | Read /3/0/0 per s | "
            "Read p50 / p99 | server CPU | peak RSS |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for kind, label in (
            ("fotakit", "fotakit `LwM2MServer` (SQLite, durable)"),
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
    return "\n".join(lines) + "\n\n"  # a blank line before the next section


if __name__ == "__main__":
    main()
