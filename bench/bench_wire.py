"""Benchmark B6: bytes on the wire per firmware byte for a CoAP Block2 download (RFC 7959).

A 1 MiB package is downloaded through a counting relay (:class:`fotakit.sim.UdpRelay`, no
impairment: it only counts the UDP payload bytes of every datagram either way) by

- aiocoap's client (``Context.request``, block-wise assembly by aiocoap),
- libcoap's ``coap-client-notls -b 1024`` (Debian libcoap3-bin),
- the fotakit agent's own downloader (``fotakit.agent.download.Downloader``, 1024-byte
  blocks, as a device pulls a Package URI; RFC 7252 timers),

from the repository's ``/fw/<id>`` resource mounted in a :class:`fotakit.coap.FastSite` the
way ``fotakit server`` mounts it, and — for reference, at the same URI path so the requests
are the same size — from libcoap's ``coap-server-notls`` (the package PUT to a dynamic
resource) and aiocoap's ``aiocoap-fileserver``.

The ratio is (UDP payload bytes of all requests + all responses) / package size; byte
counts are deterministic (no loss, no retransmission: the relay would count those too, and
the datagram counts in the table show there were none). Every copy is checked against the
package's SHA-256.

Usage: ``python bench/bench_wire.py [--json out.json] [--before earlier.json]
[--write docs/benchmarks.md]``; ``--before`` adds an earlier run's ratios (e.g. of the
code before a change) to the table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiocoap
import aiocoap.meta

from _common import cpu_model, revision, serve_repository_coap, write_section
from fotakit.sim import UdpRelay

MIB = 1 << 20
BLOCK = 1024
DEADLINE = 60.0
MIDDLE = 500
"""The block whose request and response the table breaks down."""
HEAD = "## B6 "
TITLE = "## B6 — Wire bytes per firmware byte (CoAP Block2)"


def _prepare(tmp: Path) -> tuple[Any, Any]:
    """A repository holding one signed package with a 1 MiB random payload."""
    from fotakit.packages import TrustStore, build_package, generate_key
    from fotakit.repository import Repository
    from fotakit.store import default_db_url

    key = generate_key("ed25519")
    trust = TrustStore()
    trust.add(None, key.public_key())
    payload = tmp / "payload.bin"
    payload.write_bytes(os.urandom(MIB))
    package = tmp / "package.suit"
    build_package(
        payload, package, version="1.0.0", vendor_domain="example.com",
        class_name="bench", sequence=1, key=key,
    )  # fmt: skip
    repo = Repository(tmp / "repository", default_db_url(tmp / "data"), trust)
    return repo, repo.add(package)


async def _aiocoap_client(port: int, path: str, tmp: Path) -> bytes:
    ctx = await aiocoap.Context.create_client_context()
    try:
        request = aiocoap.Message(code=aiocoap.GET, uri=f"coap://127.0.0.1:{port}{path}")
        response = await asyncio.wait_for(ctx.request(request).response, DEADLINE)
        return bytes(response.payload)
    finally:
        await ctx.shutdown()


async def _libcoap_client(port: int, path: str, tmp: Path) -> bytes:
    out = tmp / "libcoap-out.bin"
    out.unlink(missing_ok=True)
    proc = await asyncio.create_subprocess_exec(
        "coap-client-notls", "-b", str(BLOCK), "-B", str(int(DEADLINE)), "-o", str(out),
        f"coap://127.0.0.1:{port}{path}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.wait_for(proc.wait(), DEADLINE + 5)
    return out.read_bytes() if out.exists() else b""


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, offset: int, data: bytes) -> None:
        self.data[offset : offset + len(data)] = data

    def truncate(self, size: int) -> None:
        del self.data[size:]


async def _agent_client(port: int, path: str, tmp: Path) -> bytes:
    from fotakit.agent.download import Downloader

    sink = _Sink()
    # RFC 7252 timers (ACK_TIMEOUT 2 s): the adaptive estimator's RTO falls to 100 ms on
    # loopback, and one slow turnaround would then add a retransmission to the count.
    async with Downloader(block_size=BLOCK, adaptive=False) as downloader:
        await asyncio.wait_for(
            downloader.download(f"coap://127.0.0.1:{port}{path}", sink), DEADLINE
        )
    return bytes(sink.data)


CLIENTS = {
    "aiocoap": _aiocoap_client,
    "coap-client-notls -b 1024": _libcoap_client,
    "fotakit agent (Downloader)": _agent_client,
}


async def _count(port: int, path: str, client: Any, tmp: Path, package: bytes) -> dict[str, Any]:
    """Run one download through a counting relay; the bytes each way and the ratio."""
    async with _Relay(("127.0.0.1", port)) as relay:
        got = await client(relay.address[1], path, tmp)
        up, down = relay.upstream, relay.downstream
        result = {
            "ok": hashlib.sha256(got).digest() == hashlib.sha256(package).digest(),
            "up_datagrams": up.datagrams_in,
            "down_datagrams": down.datagrams_in,
            "up_bytes": up.bytes_in,
            "down_bytes": down.bytes_in,
            "middle_request": relay.middle_request,
            "middle_response": relay.middle_response,
        }
    blocks = -(-len(package) // BLOCK)
    total = result["up_bytes"] + result["down_bytes"]
    result["ratio"] = total / len(package)
    result["overhead_per_block"] = (total - len(package)) / blocks
    return result


class _Relay(UdpRelay):
    """The counting relay, also noting what the request and the response of a middle block
    (block :data:`MIDDLE`) cost: datagram bytes, payload bytes, token bytes, options."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target)
        self.middle_request: dict[str, Any] | None = None
        self.middle_response: dict[str, Any] | None = None

    @staticmethod
    def _describe(data: bytes) -> dict[str, Any] | None:
        message = aiocoap.Message.decode(data)
        block = message.opt.block2
        if block is None or block.block_number != MIDDLE:
            return None
        return {
            "bytes": len(data),
            "payload": len(message.payload),
            "token": len(message.token),
            "options": [f"{o.number.name}:{len(o.encode())}" for o in message.opt.option_list()],
        }

    def _from_client(self, data: bytes, client: Any, fd: int | None = None) -> None:
        self.middle_request = self.middle_request or self._describe(data)
        super()._from_client(data, client, fd)

    def _from_server(self, client: Any, data: bytes, fd: int | None = None) -> None:
        self.middle_response = self.middle_response or self._describe(data)
        super()._from_server(client, data, fd)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _libcoap_server(package: bytes, path: str, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen(
        ["coap-server-notls", "-A", "127.0.0.1", "-p", str(port), "-d", "4"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    source = tmp / "libcoap-put.bin"
    source.write_bytes(package)
    for _ in range(50):  # until it listens: bounded
        put = subprocess.run(
            ["coap-client-notls", "-m", "put", "-b", str(BLOCK), "-B", "5", "-f", str(source),
             f"coap://127.0.0.1:{port}{path}"],
            capture_output=True,
        )  # fmt: skip
        if put.returncode == 0:
            return proc, port
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("could not PUT the package to coap-server-notls")


def _fileserver(package: bytes, path: str, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    root = tmp / "fileserver"
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(package)
    port = _free_port()
    exe = Path(sys.executable).parent / "aiocoap-fileserver"
    proc = subprocess.Popen(
        [str(exe), "--bind", f"127.0.0.1:{port}", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, port


async def _answering(port: int) -> None:
    """Until a CoAP server on ``port`` answers a GET of ``/`` (bounded)."""
    ctx = await aiocoap.Context.create_client_context()
    try:
        for _ in range(100):
            probe = aiocoap.Message(code=aiocoap.GET, uri=f"coap://127.0.0.1:{port}/")
            try:
                await asyncio.wait_for(ctx.request(probe).response, 1.0)
                return
            except (TimeoutError, aiocoap.error.Error):
                await asyncio.sleep(0.1)
    finally:
        await ctx.shutdown()
    raise RuntimeError(f"no CoAP server answers on port {port}")


async def _bench(tmp: Path) -> dict[str, Any]:
    repo, record = _prepare(tmp)
    package = repo.blob_path(record).read_bytes()
    path = f"/fw/{record.id}"
    results: dict[str, Any] = {"size": len(package), "path": path, "servers": {}}
    ctx, port = await serve_repository_coap(repo)
    try:
        results["servers"]["fotakit (FastSite)"] = {
            name: await _count(port, path, client, tmp, package) for name, client in CLIENTS.items()
        }
    finally:
        await ctx.shutdown()
        repo.close()
    references = []
    if shutil.which("coap-server-notls") and shutil.which("coap-client-notls"):
        references.append(("libcoap coap-server-notls -d", _libcoap_server))
    if (Path(sys.executable).parent / "aiocoap-fileserver").exists():
        references.append(("aiocoap-fileserver", _fileserver))
    for name, start in references:
        proc, ref_port = start(package, path, tmp)
        try:
            await _answering(ref_port)
            results["servers"][name] = {
                client_name: await _count(ref_port, path, client, tmp, package)
                for client_name, client in CLIENTS.items()
            }
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return results


def _table(results: dict[str, Any], before: dict[str, Any] | None, args: argparse.Namespace) -> str:
    command = ".venv/bin/python bench/bench_wire.py --write docs/benchmarks.md"
    if args.before:
        command = command.replace(" --write", f" --before {args.before.name} --write")
    lines = [
        TITLE,
        "",
        f"Command: `{command}`",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} at {revision()}; {cpu_model()} "
        f"({os.cpu_count()} CPUs, loopback); Python "
        f"{platform.python_version()}, aiocoap {aiocoap.meta.version}, libcoap 4.3.1 "
        "(Debian libcoap3-bin). A signed package with a 1 MiB payload "
        f"({results['size']} bytes, {-(-results['size'] // BLOCK)} blocks of 1024 bytes) is "
        f"downloaded from `{'/fw/<id>'}` through a counting UDP relay (`fotakit.sim.UdpRelay`, "
        "no impairment) by each client, from fotakit's `/fw` resource mounted in a "
        "`fotakit.coap.FastSite` as `fotakit server` mounts it and, for reference, from "
        "libcoap's `coap-server-notls` (package PUT to a dynamic resource at the same path) "
        "and `aiocoap-fileserver` (the package as a file at the same path). Ratio = UDP "
        "payload bytes of all requests and responses / package size; overhead per block = "
        "(those bytes - package size) / blocks. The counts are deterministic (no loss, no "
        "retransmission); every copy is checked against the package's SHA-256.",
        "",
        "| server | client | datagrams up / down | bytes up / down | overhead per block "
        "| wire bytes per firmware byte |",
        "|---|---|---|---|---|---|",
    ]
    for server, clients in results["servers"].items():
        for client, r in clients.items():
            ratio = f"{r['ratio']:.4f}" if r["ok"] else "download failed"
            old = (before or {}).get("servers", {}).get(server, {}).get(client)
            if old is not None and r["ok"] and server.startswith("fotakit"):
                ratio = f"{old['ratio']:.4f} → **{r['ratio']:.4f}**"
            lines.append(
                f"| {server} | {client} | {r['up_datagrams']} / {r['down_datagrams']} | "
                f"{r['up_bytes']} / {r['down_bytes']} | {r['overhead_per_block']:.1f} B | "
                f"{ratio} |"
            )
    lines += [
        "",
        f"What block {MIDDLE} costs with the aiocoap client (option: bytes of its value; "
        "each option adds a 1-byte header, the payload a 1-byte marker):",
        "",
        "| server | request bytes (token) | request options | response bytes - payload "
        "(token) | response options |",
        "|---|---|---|---|---|",
    ]
    rows = [(server, clients.get("aiocoap")) for server, clients in results["servers"].items()]
    if before is not None:
        old_fotakit = before["servers"].get("fotakit (FastSite)", {}).get("aiocoap")
        rows.insert(0, (f"fotakit before ({before['revision']})", old_fotakit))
    for server, r in rows:
        if r is None or r.get("middle_request") is None or r.get("middle_response") is None:
            continue
        q, a = r["middle_request"], r["middle_response"]
        lines.append(
            f"| {server} | {q['bytes']} ({q['token']}) | {', '.join(q['options'])} | "
            f"{a['bytes'] - a['payload']} ({a['token']}) | {', '.join(a['options'])} |"
        )
    lines += [
        "",
        "Reading it: a response repeats on every block only what the clients check on every "
        "block — the ETag (aiocoap's and libcoap's clients fail a transfer whose blocks "
        "disagree on it, the fotakit agent resumes by offset + ETag; RFC 7959 §2.4) and the "
        "Content-Format (libcoap's client fails a transfer whose later blocks carry another "
        "or none) — and Size2 only in the first block or when asked for (RFC 7959 §4). The "
        "ETag is 2 bytes: `/fw/<id>` names the content (the id is 8 bytes of its SHA-256), "
        "so no other representation can ever appear under it (docs/repository.md). The "
        "request is the client's: its token, its Uri-Path (`fw` + the 16-character id: 21 "
        "bytes) and libcoap's Uri-Port and tokens of up to 8 bytes are why coap-client-notls costs "
        "more than aiocoap against every server.",
    ]
    if before is not None:
        lines += [
            "",
            f"Before → after: the first number is the same benchmark run on the code at "
            f"{before['revision']} (`bench/bench_wire.py --json b6-before.json` there).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="save the results here")
    ap.add_argument("--before", type=Path, help="results of an earlier run (--json) to compare")
    ap.add_argument("--write", type=Path, help="update this Markdown file's B6 section")
    args = ap.parse_args()
    import logging

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="fotakit-b6-") as tmp:
        results = asyncio.run(_bench(Path(tmp)))
    results["revision"] = revision()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    before = json.loads(args.before.read_text()) if args.before else None
    table = _table(results, before, args)
    print(table)
    if args.write:
        write_section(args.write, HEAD, table)


if __name__ == "__main__":
    main()
