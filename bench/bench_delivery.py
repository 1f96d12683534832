"""Benchmark B2: firmware delivery — CoAP Block2 efficiency, HTTP throughput, server memory.

The delivery server (``fotakit.repository``: the CoAP ``/fw`` resource and the HTTP app on
uvicorn, one asyncio loop) runs in its own process pinned to CPU 0; the clients and the
impairment relay (:class:`fotakit.sim.UdpRelay`) run in this process pinned to CPU 1.

- **CoAP Block2, lockstep** (RFC 7959; NSTART = 1): an aiocoap client fetches a 1 MiB
  package block by block with SZX 6 (1024 bytes), one request in flight, on loopback and
  through the relay adding 20 ms and 100 ms RTT (half each way, no loss). Efficiency
  ``η = N_blocks x RTT / T`` against the lockstep limit (docs/benchmarks.md, B2).
  libcoap's ``coap-client-notls -b 1024`` does the same download for comparison.
- **HTTP**: ``curl`` downloads a 1 MiB and a 64 MiB package on loopback.
- **Memory**: 50 clients at once against a fresh server per package size, 1 MiB and
  16 MiB: 50 HTTP clients (httpx) each download the whole package, and 50 CoAP clients
  each fetch 256 blocks at random positions spread over the whole package. Peak RSS of
  the server process (VmHWM) must not grow with the package size.

Every received copy is checked against the package's SHA-256.

Usage: ``python bench/bench_delivery.py [--runs 3] [--write docs/benchmarks.md]``.
Bounded: every phase has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path as FsPath
from typing import Any

import aiocoap
import aiocoap.meta
import httpx
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from _common import ServedRepository, cpu_model, pin, revision, serve_repository_coap, write_section

PHASE_DEADLINE = 300.0
MIB = 1 << 20
BLOCK_SZX = 6
BLOCK = 1 << (BLOCK_SZX + 4)
CLIENTS = 50
RANDOM_BLOCKS = 256


# -- the server process --------------------------------------------------------------------


async def _serve(repo_dir: str, db_url: str) -> None:
    from fotakit.repository import Repository
    from fotakit.repository.http import create_http_app, serve_http

    repo = Repository(repo_dir, db_url)
    ctx, coap_port = await serve_repository_coap(repo)
    http = await serve_http(create_http_app(repo), "127.0.0.1", 0)
    print(json.dumps({"coap": coap_port, "http": http.port}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await http.stop()
    await ctx.shutdown()
    repo.close()


class ServerProcess(ServedRepository):
    def __init__(self, repo_dir: FsPath, db_url: str) -> None:
        super().__init__(__file__, repo_dir, db_url)
        self.coap_port = self.ports["coap"]
        self.http_port = self.ports["http"]

    def reset_peak(self) -> None:
        """Reset VmHWM to the current RSS (Linux: ``echo 5 > /proc/<pid>/clear_refs``)."""
        FsPath(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def status(self, field: str) -> float:
        """A VmRSS/VmHWM line of /proc/<pid>/status, in MiB."""
        for line in FsPath(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(field)

    def cpu(self) -> float:
        """CPU seconds (user + system) the server process has used so far."""
        fields = FsPath(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LibcoapServer:
    """libcoap's ``coap-server-notls`` serving the same package bytes, for reference.

    The package is PUT to a dynamic resource (``-d``) with ``coap-client-notls``; the server
    is pinned to CPU 0 like ours. None if the tools are not installed.
    """

    PATH = "/fw"

    def __init__(self, package: bytes, tmp: FsPath) -> None:
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            self.coap_port = int(probe.getsockname()[1])
        self.proc = subprocess.Popen(
            ["coap-server-notls", "-A", "127.0.0.1", "-p", str(self.coap_port), "-d", "4"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: pin(0),
        )
        source = tmp / "libcoap-put.bin"
        source.write_bytes(package)
        uri = f"coap://127.0.0.1:{self.coap_port}{self.PATH}"
        for _ in range(50):  # until it listens: bounded, 50 attempts
            put = subprocess.run(
                [
                    "coap-client-notls",
                    "-m",
                    "put",
                    "-b",
                    "1024",
                    "-B",
                    "10",
                    "-f",
                    str(source),
                    uri,
                ],
                capture_output=True,
                timeout=30,
            )
            if put.returncode == 0:
                break
        else:
            raise RuntimeError("could not upload the package to coap-server-notls")

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("coap-server-notls") and shutil.which("coap-client-notls"))

    def cpu(self) -> float:
        fields = FsPath(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- clients --------------------------------------------------------------------------------


async def _coap_lockstep(ctx: aiocoap.Context, uri: str, size: int) -> bytes:
    """Fetch every block in order, one request in flight (what a constrained device does).

    The URI is resolved once and the server's address reused, as a device does; aiocoap
    would otherwise parse and resolve the URI for every block (0.3 ms each here).
    """
    out = bytearray()
    blocks = (size + BLOCK - 1) // BLOCK
    remote = None
    path = tuple(uri.split("/", 3)[3].split("/"))
    for number in range(blocks):
        block2 = BlockOption.BlockwiseTuple(number, 0, BLOCK_SZX)
        if remote is None:
            request = aiocoap.Message(code=Code.GET, uri=uri, block2=block2)
        else:
            request = aiocoap.Message(code=Code.GET, uri_path=path, block2=block2)
            request.remote = remote
        response = await ctx.request(request, handle_blockwise=False).response
        if response.code != Code.CONTENT:
            raise RuntimeError(f"block {number}: {response.code}")
        remote = response.remote
        out += response.payload
    return bytes(out)


async def _coap_run(uri: str, size: int, sha: str) -> float:
    ctx = await aiocoap.Context.create_client_context()
    try:
        start = time.perf_counter()
        data = await asyncio.wait_for(_coap_lockstep(ctx, uri, size), PHASE_DEADLINE)
        elapsed = time.perf_counter() - start
    finally:
        await ctx.shutdown()
    if hashlib.sha256(data).hexdigest() != sha:
        raise RuntimeError("CoAP download differs from the package")
    return elapsed


async def _libcoap_run(uri: str, sha: str, tmp: FsPath, deadline: float) -> float | None:
    tool = shutil.which("coap-client-notls")
    if tool is None:
        return None
    out = tmp / "libcoap.bin"
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        tool, "-b", "1024", "-B", str(int(PHASE_DEADLINE)), "-o", str(out), uri,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.wait_for(proc.wait(), deadline)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1.0  # did not finish within the deadline
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or hashlib.sha256(out.read_bytes()).hexdigest() != sha:
        raise RuntimeError("coap-client-notls download failed or differs")
    return elapsed


RELAYS: list[dict[str, float]] = []


async def _via_relay(rtt: float, port: int, body: Any) -> Any:
    """Run ``body(relay_port)`` through a relay adding ``rtt``; note what the relay saw."""
    from fotakit.sim import Impairment, UdpRelay

    half = Impairment(delay=rtt / 2)
    async with UdpRelay(("127.0.0.1", port), uplink=half, downlink=half, trace=True) as relay:
        value = await body(relay.address[1])
        RELAYS.append(
            {
                "rtt": relay.upstream.mean_delay + relay.downstream.mean_delay,
                "up": relay.upstream.datagrams_out,
                "down": relay.downstream.datagrams_out,
                "read_lag": relay.upstream.mean_read_lag + relay.downstream.mean_read_lag,
                **_turnarounds(relay.trace or []),
            }
        )
        return value


def _turnarounds(trace: list[tuple[str, float]]) -> dict[str, float]:
    """Split lockstep exchanges seen by the relay: server side, client side (means, s).

    Server turnaround: request forwarded to the server -> its response reached the relay
    (server wake-up + CPU + kernel). Client turnaround: response forwarded to the client ->
    the client's next request reached the relay. Only valid for one request in flight.
    """
    times: dict[str, list[float]] = {"up-in": [], "up-out": [], "down-in": [], "down-out": []}
    for event, at in trace:
        times[event].append(at)
    server = [b - a for a, b in zip(times["up-out"], times["down-in"], strict=False)]
    client = [b - a for a, b in zip(times["down-out"], times["up-in"][1:], strict=False)]
    return {
        "server_turn": statistics.fmean(server) if server else 0.0,
        "client_turn": statistics.fmean(client) if client else 0.0,
    }


def _curl_run(url: str, sha: str, tmp: FsPath) -> float:
    out = tmp / "curl.bin"
    start = time.perf_counter()
    subprocess.run(
        ["curl", "--silent", "--fail", "-o", str(out), url], check=True, timeout=PHASE_DEADLINE
    )
    elapsed = time.perf_counter() - start
    if hashlib.sha256(out.read_bytes()).hexdigest() != sha:
        raise RuntimeError("HTTP download differs from the package")
    return elapsed


async def _memory_load(
    server: ServerProcess, package_id: str, size: int, sha: str
) -> dict[str, float]:
    """50 HTTP clients download the whole package, then 50 CoAP clients fetch random blocks.

    Returns the server's peak RSS (MiB) during each phase.
    """

    async def http_client(client: httpx.AsyncClient) -> None:
        digest = hashlib.sha256()
        url = f"http://127.0.0.1:{server.http_port}/fw/{package_id}"
        async with client.stream("GET", url) as response:
            async for chunk in response.aiter_raw():
                digest.update(chunk)
        if digest.hexdigest() != sha:
            raise RuntimeError("concurrent HTTP download differs")

    async def coap_client(ctx: aiocoap.Context, seed: int) -> None:
        rng = random.Random(seed)
        uri = f"coap://127.0.0.1:{server.coap_port}/fw/{package_id}"
        blocks = (size + BLOCK - 1) // BLOCK
        for _ in range(RANDOM_BLOCKS):
            request = aiocoap.Message(code=Code.GET, uri=uri)
            request.opt.block2 = BlockOption.BlockwiseTuple(rng.randrange(blocks), 0, BLOCK_SZX)
            response = await ctx.request(request, handle_blockwise=False).response
            if response.code != Code.CONTENT:
                raise RuntimeError(f"random block: {response.code}")

    peaks = {"idle": server.status("VmRSS")}
    server.reset_peak()
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=PHASE_DEADLINE, limits=limits) as client:
        await asyncio.wait_for(
            asyncio.gather(*(http_client(client) for _ in range(CLIENTS))), PHASE_DEADLINE
        )
    peaks["http"] = server.status("VmHWM")
    server.reset_peak()
    contexts = [await aiocoap.Context.create_client_context() for _ in range(CLIENTS)]
    try:
        await asyncio.wait_for(
            asyncio.gather(*(coap_client(c, i) for i, c in enumerate(contexts))), PHASE_DEADLINE
        )
    finally:
        for ctx in contexts:
            await ctx.shutdown()
    peaks["coap"] = server.status("VmHWM")
    return peaks


# -- orchestration --------------------------------------------------------------------------


async def _aiocoap_case(
    server: ServerProcess | LibcoapServer, path: str, rec: Any, rtt: float, runs: int
) -> dict[str, Any]:
    """``runs`` lockstep aiocoap downloads of ``rec`` (through the relay if ``rtt``)."""
    blocks = (rec.size + BLOCK - 1) // BLOCK
    times, cpus, relays = [], [], []
    for _ in range(runs):
        cpu = server.cpu()
        if rtt == 0:
            uri = f"coap://127.0.0.1:{server.coap_port}{path}"
            times.append(await _coap_run(uri, rec.size, rec.sha256))
        else:

            async def body(port: int) -> float:
                uri = f"coap://127.0.0.1:{port}{path}"
                return await _coap_run(uri, rec.size, rec.sha256)

            times.append(await _via_relay(rtt, server.coap_port, body))
            relays.append(RELAYS[-1])
        cpus.append((server.cpu() - cpu) / blocks)
        print(f"{type(server).__name__} aiocoap rtt={rtt * 1000:.0f} ms: {times[-1]:.2f} s")
    result: dict[str, Any] = {**_stats(times), "server_cpu": statistics.median(cpus)}
    if relays:
        result["relay"] = {k: statistics.fmean(r[k] for r in relays) for k in relays[0]}
    return result


async def _libcoap_case(
    server: ServerProcess | LibcoapServer, path: str, rec: Any, rtt: float, blocks: int, tmp: FsPath
) -> dict[str, Any] | None:
    """One ``coap-client-notls -b 1024`` download; None if the tool is missing."""
    deadline = 2 * blocks * rtt + 30

    async def lib(port: int) -> float | None:
        return await _libcoap_run(f"coap://127.0.0.1:{port}{path}", rec.sha256, tmp, deadline)

    cpu = server.cpu()
    if rtt == 0:
        seconds = await lib(server.coap_port)
    else:
        seconds = await _via_relay(rtt, server.coap_port, lib)
    if seconds is None:
        return None
    print(f"{type(server).__name__} coap-client-notls rtt={rtt * 1000:.0f} ms: {seconds}")
    result: dict[str, Any] = {"t": seconds, "deadline": deadline}
    if seconds > 0:
        result["server_cpu"] = (server.cpu() - cpu) / blocks
        if rtt:
            result["relay"] = RELAYS[-1]
    return result


def _prepare(tmp: FsPath, sizes: list[int]) -> tuple[FsPath, str, dict[int, Any]]:
    from fotakit.packages import TrustStore, build_package, generate_key
    from fotakit.repository import Repository
    from fotakit.store import default_db_url

    key = generate_key("ed25519")
    trust = TrustStore()
    trust.add(None, key.public_key())
    repo_dir, db_url = tmp / "repository", default_db_url(tmp / "data")
    records = {}
    with Repository(repo_dir, db_url, trust) as repo:
        for size in sizes:
            payload = tmp / f"payload-{size}.bin"
            with open(payload, "wb") as fh:
                for _ in range(size // MIB):
                    fh.write(os.urandom(MIB))
            package = tmp / f"package-{size}.suit"
            build_package(
                payload, package, version=f"{size // MIB}M", vendor_domain="example.com",
                class_name="bench", sequence=1, key=key,
            )  # fmt: skip
            records[size] = repo.add(package)
    return repo_dir, db_url, records


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": statistics.median(ordered),
        "max": ordered[-1],
        "min": ordered[0],
        "n": len(ordered),
    }


async def _bench(args: argparse.Namespace, tmp: FsPath) -> dict[str, Any]:
    sizes = [MIB, 16 * MIB, 64 * MIB]
    repo_dir, db_url, records = _prepare(tmp, sizes)
    one = records[MIB]
    results: dict[str, Any] = {"coap": {}, "libcoap": {}, "http": {}, "memory": {}}
    results["blocks"] = (one.size + BLOCK - 1) // BLOCK  # 1 MiB payload + envelope

    server = ServerProcess(repo_dir, db_url)
    try:
        coap_path = f"/fw/{one.id}"
        for rtt in (0.0, 0.020, 0.100):
            runs = args.runs if rtt < 0.1 else args.slow_runs
            results["coap"][rtt] = await _aiocoap_case(server, coap_path, one, rtt, runs)
            if rtt < 0.1 or args.libcoap_slow:
                lib = await _libcoap_case(server, coap_path, one, rtt, results["blocks"], tmp)
                if lib is not None:
                    results["libcoap"][rtt] = lib
        if shutil.which("curl"):
            for size in (MIB, 64 * MIB):
                rec = records[size]
                url = f"http://127.0.0.1:{server.http_port}/fw/{rec.id}"
                times = [_curl_run(url, rec.sha256, tmp) for _ in range(args.runs)]
                results["http"][size] = _stats(times)
                print(f"http {size // MIB} MiB: {statistics.median(times):.3f} s", flush=True)
    finally:
        server.stop()

    if LibcoapServer.available():
        reference = LibcoapServer((tmp / f"package-{MIB}.suit").read_bytes(), tmp)
        try:
            results["reference"] = {"coap": {}, "libcoap": {}}
            for rtt in (0.0, 0.020):
                results["reference"]["coap"][rtt] = await _aiocoap_case(
                    reference, LibcoapServer.PATH, one, rtt, args.runs
                )
                lib = await _libcoap_case(
                    reference, LibcoapServer.PATH, one, rtt, results["blocks"], tmp
                )
                if lib is not None:
                    results["reference"]["libcoap"][rtt] = lib
        finally:
            reference.stop()

    for size in (MIB, 16 * MIB, 64 * MIB):
        rec = records[size]
        server = ServerProcess(repo_dir, db_url)
        try:
            start = time.perf_counter()
            peaks = await _memory_load(server, rec.id, rec.size, rec.sha256)
            results["memory"][size] = {**peaks, "seconds": time.perf_counter() - start}
            print(f"memory {size // MIB} MiB: {results['memory'][size]}", flush=True)
        finally:
            server.stop()
    return results


def _table(results: dict[str, Any], args: argparse.Namespace) -> str:
    sha = revision()
    blocks = results["blocks"]
    reference = results.get("reference") or {"coap": {}, "libcoap": {}}
    lines = [
        "## B2 — firmware delivery: CoAP Block2 efficiency, HTTP throughput, server memory",
        "",
        f"Command: `.venv/bin/python bench/bench_delivery.py --runs {args.runs} "
        f"--slow-runs {args.slow_runs} --write docs/benchmarks.md`",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} at {sha}; {cpu_model()}; Python "
        f"{platform.python_version()}, aiocoap {aiocoap.meta.version}. The delivery server "
        "(CoAP `/fw` resource mounted in a `fotakit.coap.FastSite` as `fotakit server` "
        "mounts it, so a block of a cached package is answered synchronously, without "
        "aiocoap's per-request render task and `Site` copy; HTTP app on uvicorn; one "
        "asyncio loop) "
        "runs in its own process pinned to CPU 0; clients and the in-process relay "
        "(`fotakit.sim.UdpRelay`, RTT split evenly between the directions, no loss) run in "
        "the benchmark process pinned to CPU 1. For reference the same harness also runs "
        "libcoap 4.3.1's `coap-server-notls` (Debian libcoap3-bin, pinned to CPU 0, the "
        "package PUT to a dynamic resource) as the server. Every copy is checked against "
        "the package's SHA-256.",
        "",
        f"**CoAP Block2, 1 MiB package ({blocks} blocks of 1024 bytes, SZX 6), lockstep "
        "client (one request in flight).** η = N_blocks x RTT / T. The relay's delay counts "
        "from the kernel's receive timestamp of each datagram, so its own wake-up is inside "
        'the configured delay, not added to it; "RTT the relay really added" is measured '
        "the same way (arrival at the relay's socket to forwarding).",
        "",
        "| RTT added | server | client | runs | T p50 | T min / max | N x RTT floor | "
        "η (p50) | RTT the relay really added | datagrams up / down | server CPU per block |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    servers = [("fotakit", results["coap"], results["libcoap"])]
    servers.append(("coap-server-notls", reference["coap"], reference["libcoap"]))
    breakdown = []
    for name, coap, libcoap in servers:
        for rtt in sorted(set(coap) | set(libcoap)):
            floor = blocks * rtt
            st = coap.get(rtt)
            if st is not None:
                eta = f"{floor / st['p50']:.3f}" if rtt else "n/a (RTT ≈ 0)"
                seen, counts = _relay_cells(st.get("relay"))
                lines.append(
                    f"| {rtt * 1000:.0f} ms | {name} | aiocoap, block by block | {st['n']} | "
                    f"{st['p50']:.2f} s | {st['min']:.2f} / {st['max']:.2f} s | "
                    f"{floor:.2f} s | {eta} | {seen} | {counts} | "
                    f"{st['server_cpu'] * 1000:.2f} ms |"
                )
                if rtt:
                    breakdown.append((rtt, name, "aiocoap", st["p50"], st["relay"]))
            lib = libcoap.get(rtt)
            if lib is not None and lib["t"] < 0:
                lines.append(
                    f"| {rtt * 1000:.0f} ms | {name} | coap-client-notls -b 1024 | 1 | did not "
                    f"finish in {lib['deadline']:.0f} s | — | {floor:.2f} s | — | — | — | — |"
                )
            elif lib is not None:
                eta_lib = f"{floor / lib['t']:.3f}" if rtt else "n/a"
                seen, counts = _relay_cells(lib.get("relay"))
                lines.append(
                    f"| {rtt * 1000:.0f} ms | {name} | coap-client-notls -b 1024 | 1 | "
                    f"{lib['t']:.2f} s | — | {floor:.2f} s | {eta_lib} | {seen} | {counts} | "
                    f"{lib['server_cpu'] * 1000:.2f} ms |"
                )
                if rtt:
                    breakdown.append((rtt, name, "coap-client-notls", lib["t"], lib["relay"]))
    lines += [
        "",
        "**Where each block's time beyond the RTT goes** (means over the run(s), from the "
        "relay's timestamps). Server turnaround: request forwarded to the server until its "
        "response reached the relay's socket (the server waking up, its CPU, the kernel). "
        "Client turnaround: response forwarded until the next request reached the relay. "
        "Relay: delay added beyond the configured RTT. Residual: what these do not explain "
        "(client start-up and shut-down, timing noise). Relay read lag: how long datagrams "
        "waited in the relay's sockets before it read them — absorbed into the configured "
        "delay, shown only to explain the fix.",
        "",
        "| RTT | server | client | per block beyond the RTT | server turnaround | server CPU "
        "per block (some of it after the response left) | client turnaround | relay | "
        "residual | relay read lag (absorbed) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rtt, name, client, total, relay in breakdown:
        beyond = total / blocks - rtt
        extra = relay["rtt"] - rtt
        residual = beyond - relay["server_turn"] - relay["client_turn"] - extra
        cpu = (results["coap"] if name == "fotakit" else reference["coap"]).get(rtt, {})
        if client != "aiocoap":
            libs = results["libcoap"] if name == "fotakit" else reference["libcoap"]
            cpu = libs.get(rtt, {})
        lines.append(
            f"| {rtt * 1000:.0f} ms | {name} | {client} | {beyond * 1000:.2f} ms | "
            f"{relay['server_turn'] * 1000:.2f} ms | {cpu['server_cpu'] * 1000:.2f} ms | "
            f"{relay['client_turn'] * 1000:.2f} ms | {extra * 1000:.2f} ms | "
            f"{residual * 1000:.2f} ms | {relay['read_lag'] * 1000:.2f} ms |"
        )
    lines += ["", *_verdict(results, reference, blocks)]
    if 0.1 not in results["libcoap"]:
        lines += [
            "",
            "coap-client-notls at 100 ms is not in the default run: in two attempts (one with "
            "`--libcoap-slow`, one traced with `-v 6`) it stopped after about 90 s of the "
            "transfer (last response received: block 915 of 1025) and did not finish within "
            "235 s; libcoap 4.3.1's client, not investigated further.",
        ]
    if results["http"]:
        lines += [
            "",
            "**HTTP on loopback (curl, whole package).**",
            "",
            "| package | runs | T p50 | throughput (p50) |",
            "|---|---|---|---|",
        ]
        for size, st in results["http"].items():
            lines.append(
                f"| {size // MIB} MiB | {st['n']} | {st['p50'] * 1000:.1f} ms | "
                f"{size / MIB / st['p50']:.0f} MiB/s |"
            )
    lines += [
        "",
        f"**Server memory with {CLIENTS} clients at once** (a fresh server process per "
        f"package): first {CLIENTS} HTTP clients (httpx) each download the whole package "
        f"concurrently, then {CLIENTS} CoAP clients each fetch {RANDOM_BLOCKS} blocks at "
        "random positions over the whole package. Peak = VmHWM of the server during that "
        "phase (reset with /proc/<pid>/clear_refs before it).",
        "",
        "| package | RSS idle | peak RSS, 50 HTTP downloads | peak RSS, 50 CoAP clients | "
        "load duration |",
        "|---|---|---|---|---|",
    ]
    for size, mem in results["memory"].items():
        lines.append(
            f"| {size // MIB} MiB | {mem['idle']:.1f} MiB | {mem['http']:.1f} MiB | "
            f"{mem['coap']:.1f} MiB | {mem['seconds']:.1f} s |"
        )
    lines += [
        "",
        "Memory does not follow the package size: an HTTP download holds one 64 KiB chunk "
        "at a time, a CoAP request reads one block. The CoAP phase's growth over idle is "
        f"the same for every size (the same {CLIENTS * RANDOM_BLOCKS} exchanges each time); "
        "that it is aiocoap's per-exchange state (responses kept for duplicate detection "
        "during EXCHANGE_LIFETIME, RFC 7252 §4.5) is our reading, not measured separately.",
        "",
        "HTTP: the 1 MiB figure is dominated by curl's start-up; 64 MiB shows the streaming "
        "rate (64 KiB reads, each handed to a worker thread).",
    ]
    return "\n".join(lines) + "\n"


def _verdict(results: dict[str, Any], reference: dict[str, Any], blocks: int) -> list[str]:
    """The conclusion paragraph, from the numbers (target η >= 0.95)."""
    rtt = 0.020

    def eta(seconds: float | None) -> float | None:
        return blocks * rtt / seconds if seconds and seconds > 0 else None

    ours = {
        "aiocoap": eta(results["coap"].get(rtt, {}).get("p50")),
        "coap-client-notls": eta(results["libcoap"].get(rtt, {}).get("t")),
    }
    ref = {
        "aiocoap": eta(reference["coap"].get(rtt, {}).get("p50")),
        "coap-client-notls": eta(reference["libcoap"].get(rtt, {}).get("t")),
    }
    best = max((v, k) for k, v in ours.items() if v is not None)
    met = best[0] >= 0.95
    slow = {r: eta_of(results, r, blocks) for r in results["coap"] if r >= 0.1}
    text = (
        f"Target η ≥ 0.95 at 20 ms RTT with fotakit's server: {'met' if met else 'not met'} "
        f"(best η {best[0]:.3f}, {best[1]} client)"
    )
    if slow:
        text += "; at 100 ms: " + ", ".join(
            f"η {v:.3f} ({'met' if v >= 0.95 else 'not met'})" for v in slow.values()
        )
    text += "."
    if ref["coap-client-notls"] is not None:
        fot_cpu = results["coap"][rtt]["server_cpu"] * 1000
        ref_cpu = reference["coap"][rtt]["server_cpu"] * 1000
        text += (
            f" In the same harness libcoap's server reaches η {ref['coap-client-notls']:.3f} "
            f"with coap-client-notls and {ref['aiocoap']:.3f} with the aiocoap client. "
            f"Server CPU: fotakit's server uses {fot_cpu:.2f} ms "
            f"of CPU per block at 20 ms RTT against {ref_cpu:.2f} ms for libcoap's (and "
            f"{results['coap'][0.0]['server_cpu'] * 1000:.2f} ms when busy on loopback, where "
            f"libcoap's uses {reference['coap'][0.0]['server_cpu'] * 1000:.2f} ms: both slow "
            "down by a similar factor; our reading is that between blocks the server sleeps "
            "for the RTT and each request then runs with cold caches). Before the fast path "
            "(commit de67bea) the same harness gave η 0.935 (coap-client-notls) and 0.91 "
            "(aiocoap client): profiles (py-spy, cProfile; not part of this command) put a "
            "third of the server's time per block in aiocoap's render task, named after the "
            "request's repr, and in the `Site` deep-copying each request to dispatch it. "
            "What remains is aiocoap's receive, decode, message and token managers, encode "
            "and send; the `/fw` resource itself is a few percent. The aiocoap client costs "
            "more per block than libcoap's (client turnaround above)."
        )
    return [text]


def eta_of(results: dict[str, Any], rtt: float, blocks: int) -> float:
    return float(blocks * rtt / results["coap"][rtt]["p50"])


def _load(path: FsPath) -> dict[str, Any]:
    """Results saved as JSON (their dict keys became strings: turn numbers back)."""
    raw = json.loads(path.read_text())

    def keys(d: dict[str, Any]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for k, v in d.items():
            try:
                out[float(k) if "." in k else int(k)] = v
            except ValueError:
                out[k] = v
        return out

    for section in ("coap", "libcoap", "http", "memory"):
        raw[section] = keys(raw[section])
    if "reference" in raw:
        raw["reference"] = {k: keys(v) for k, v in raw["reference"].items()}
    return dict(raw)


def _relay_cells(relay: dict[str, float] | None) -> tuple[str, str]:
    if relay is None:
        return "—", "—"
    return f"{relay['rtt'] * 1000:.2f} ms", f"{relay['up']:.0f} / {relay['down']:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per loopback and 20 ms case")
    ap.add_argument("--slow-runs", type=int, default=1, help="runs of the 100 ms RTT case")
    ap.add_argument("--write", type=FsPath, help="update this Markdown file's B2 section")
    ap.add_argument(
        "--libcoap-slow", action="store_true", help="also run coap-client-notls at 100 ms RTT"
    )
    ap.add_argument("--from-json", type=FsPath, help="only rebuild the table from saved results")
    ap.add_argument("--serve", nargs=2, metavar=("REPO_DIR", "DB_URL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    import logging

    logging.disable(logging.WARNING)
    if args.serve:
        pin(0)
        asyncio.run(_serve(*args.serve))
        return
    pin(1)
    if args.from_json:
        results = _load(args.from_json)
    else:
        with tempfile.TemporaryDirectory(prefix="fotakit-b2-") as tmp:
            results = asyncio.run(_bench(args, FsPath(tmp)))
        saved = FsPath(tempfile.gettempdir()) / "fotakit-b2-results.json"
        saved.write_text(json.dumps(results, default=str))
        print(f"results saved to {saved}", flush=True)
    table = _table(results, args)
    print(table)
    if args.write:
        write_section(args.write, "## B2 ", table)


if __name__ == "__main__":
    main()
