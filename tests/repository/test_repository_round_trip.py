"""The issue's round trip, end to end through the command line and third-party clients.

``fotakit keys generate`` → ``fotakit package build`` → ``fotakit package upload`` →
``fotakit server --http-port`` (a real process) → download over CoAP with aiocoap and with
libcoap's ``coap-client-notls -b 1024``, over HTTP with ``curl --range`` and a resumed
``curl -C -`` → every copy is byte-identical, verifies with fotakit, and its signature
verifies with an independent COSE implementation (cwt, in its own virtualenv).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import aiocoap
import pytest
from repo_helpers import payload_of, skip_or_fail

from fotakit.packages import TrustStore, verify_package

FOTAKIT = str(Path(sys.executable).with_name("fotakit"))
COSE_PYTHON = Path(__file__).resolve().parents[2] / ".venv-cose" / "bin" / "python"
COSE_PEER = Path(__file__).resolve().parents[1] / "packages" / "cose_peer" / "verify_cose.py"
STEP = 30.0
HTTP_LISTENING = re.compile(r"HTTP delivery listening on 127\.0\.0\.1:(\d+)")
COAP_LISTENING = re.compile(r"server listening on 127\.0\.0\.1:(\d+)")

pytestmark = pytest.mark.timeout(120)


async def _run(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "COLUMNS": "300"}  # rich tables: one line per package
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), STEP)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _ok(*args: str) -> str:
    code, out, err = await _run(*args)
    assert code == 0, f"{args} exited {code}:\n{out}\n{err}"
    return out


async def _wait_line(
    stream: asyncio.StreamReader, pattern: re.Pattern[str], seen: list[str]
) -> int:
    async with asyncio.timeout(STEP):
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError("server exited:\n" + "".join(seen))
            seen.append(raw.decode(errors="replace"))
            match = pattern.search(seen[-1])
            if match:
                return int(match.group(1))


async def test_build_upload_download_everywhere_verify(tmp_path: Path) -> None:
    keys, data_dir = tmp_path / "keys", tmp_path / "data"
    firmware = tmp_path / "firmware.bin"
    firmware.write_bytes(payload_of(200_000, seed=3))
    package = tmp_path / "firmware.suit"
    await _ok(FOTAKIT, "keys", "generate", "signer", "--dir", str(keys))
    await _ok(
        FOTAKIT, "package", "build", str(firmware), "--version", "1.2.3",
        "--vendor", "example.com", "--class", "sensor-v2", "--sequence", "5",
        "--key", str(keys / "signer.pem"), "--output", str(package),
    )  # fmt: skip
    upload = await _ok(
        FOTAKIT, "package", "upload", str(package),
        "--trust", str(keys / "signer.pub.pem"), "--data-dir", str(data_dir),
    )  # fmt: skip
    found = re.search(r"stored (\w{16})", upload)
    assert found, upload
    package_id = found.group(1)
    expected = package.read_bytes()

    proc = await asyncio.create_subprocess_exec(
        FOTAKIT, "server", "--port", "0", "--http-port", "0", "--data-dir", str(data_dir),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    seen: list[str] = []
    copies: dict[str, bytes] = {}
    try:
        assert proc.stderr is not None
        http_port = await _wait_line(proc.stderr, HTTP_LISTENING, seen)
        coap_port = await _wait_line(proc.stderr, COAP_LISTENING, seen)
        coap_uri = f"coap://127.0.0.1:{coap_port}/fw/{package_id}"
        http_uri = f"http://127.0.0.1:{http_port}/fw/{package_id}"

        ctx = await aiocoap.Context.create_client_context()
        try:
            request = aiocoap.Message(code=aiocoap.GET, uri=coap_uri)
            response = await asyncio.wait_for(ctx.request(request).response, STEP)
            copies["aiocoap"] = response.payload
        finally:
            await ctx.shutdown()

        libcoap = shutil.which("coap-client-notls")
        if libcoap is not None:
            libcoap_out = tmp_path / "libcoap.suit"
            await _ok(libcoap, "-b", "1024", "-B", "20", "-o", str(libcoap_out), coap_uri)
            copies["coap-client-notls"] = libcoap_out.read_bytes()

        curl = shutil.which("curl")
        if curl is not None:
            head = tmp_path / "head.part"
            await _ok(curl, "--silent", "--fail", "--range", "0-49999", "-o", str(head), http_uri)
            assert head.read_bytes() == expected[:50_000]
            await _ok(curl, "--silent", "--fail", "-C", "-", "-o", str(head), http_uri)
            copies["curl resumed"] = head.read_bytes()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), STEP)

    for name, copy in copies.items():
        assert copy == expected, name
        path = tmp_path / f"copy-{name.replace(' ', '-')}.suit"
        path.write_bytes(copy)
        trust = TrustStore.from_path(keys / "signer.pub.pem")
        assert verify_package(path, trust).manifest.version == "1.2.3"

    listing = await _ok(FOTAKIT, "package", "list", "--data-dir", str(data_dir))
    row = next(line for line in listing.splitlines() if package_id in line)
    assert f"coap://127.0.0.1:5683/fw/{package_id}" in row
    downloads = re.search(r"(\d+) \(([\d,]+) B\)", row)
    assert downloads, row
    assert int(downloads.group(1)) == len(copies)  # every client fetched the whole package
    assert int(downloads.group(2).replace(",", "")) == len(copies) * len(expected)

    if libcoap is None:
        skip_or_fail("coap-client-notls (Debian libcoap3-bin) is not installed")
    if curl is None:
        skip_or_fail("curl is not installed")
    if not COSE_PYTHON.exists():
        skip_or_fail(f"{COSE_PYTHON} is missing (make builds the cwt venv)")
    code, out, err = await _run(
        str(COSE_PYTHON), str(COSE_PEER), str(tmp_path / "copy-curl-resumed.suit"),
        str(keys / "signer.pub.pem"),
    )  # fmt: skip
    assert code == 0, out + err
    verdict = json.loads(out)
    assert verdict["signature"] is True and verdict["payload"] is True
