"""How ``fotakit server`` starts, as an operator sees it (a real process each time,
docs/operator-guide.md "Run the LwM2M server" and "Your first campaign"): a wildcard bind
without ``--public-host`` is refused, a start that fails prints no admin token, and the
guide's key-copying sequence works on a fresh data directory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_cli
from e2e_helpers import FOTAKIT, ServerProcess, payload_of

ADMIN_LINE = re.compile(r"admin token \(store it now, it is not shown again\): (\S+)")
HTTP_LISTENING = re.compile(r"REST API: http://127\.0\.0\.1:(\d+)/")
LISTENING = re.compile(r"server listening on \S+:(\d+)")  # any bind address


def _env(home: Path) -> dict[str, str]:
    """The test's environment (PYTHONPATH included: the process runs this checkout's code)
    without any FOTAKIT_* setting or user config file that would change the start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOTAKIT_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"))
    return env


async def _run_to_exit(home: Path, *args: str, limit: float = 30) -> tuple[int | None, str, str]:
    """Run ``fotakit ARGS``; (exit code, stdout, stderr). A process still running after
    ``limit`` seconds (it started when it should not have) is stopped and gives code None."""
    proc = await asyncio.create_subprocess_exec(
        FOTAKIT, *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(home),
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
        code: int | None = proc.returncode
    except TimeoutError:
        proc.terminate()
        out, err = await proc.communicate()
        code = None
    return code, out.decode(errors="replace"), err.decode(errors="replace")


class Stdout:
    """A process's stdout lines as they come, and a bounded wait for one."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self._new = asyncio.Event()
        self._stream = stream

    async def read(self) -> None:
        while raw := await self._stream.readline():
            self.lines.append(raw.decode(errors="replace"))
            self._new.set()
        self._new.set()

    async def wait_for(self, pattern: re.Pattern[str], timeout: float = 30) -> re.Match[str]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if match := pattern.search(line):
                        return match
                self._new.clear()
                await self._new.wait()


@contextlib.asynccontextmanager
async def _server(home: Path, *args: str) -> AsyncIterator[tuple[ServerProcess, Stdout]]:
    """``fotakit server ARGS`` running; (its stderr reader, its stdout reader)."""
    proc = await asyncio.create_subprocess_exec(
        FOTAKIT, "server", "--port", "0", "--http-port", "0", *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(home),
    )  # fmt: skip
    assert proc.stdout is not None
    out = Stdout(proc.stdout)
    reader = asyncio.ensure_future(out.read())
    server = ServerProcess(proc, "fotakit server")
    try:
        await server.wait_for(LISTENING)
        yield server, out
    finally:
        await server.stop()
        await asyncio.wait_for(reader, 10)


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
async def test_a_wildcard_bind_without_public_host_is_refused(tmp_path: Path, host: str) -> None:
    code, out, err = await _run_to_exit(
        tmp_path, "server", "--host", host, "--port", "0", "--http-port", "0",
        "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    assert code == 2, (code, out, err)
    assert "--public-host" in err
    assert "admin token" not in out  # refused before anything was created


async def test_a_wildcard_bind_with_public_host_starts(tmp_path: Path) -> None:
    async with _server(
        tmp_path, "--host", "0.0.0.0", "--public-host", "fota.example.com",
        "--data-dir", str(tmp_path / "data"),
    ) as (server, _):  # fmt: skip
        assert server.proc.returncode is None


async def test_a_failed_start_prints_no_admin_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        http_port = taken.getsockname()[1]
        code, out, err = await _run_to_exit(
            tmp_path, "server", "--port", "0", "--http-port", str(http_port),
            "--data-dir", str(data),
        )  # fmt: skip
    assert code == 1, (code, out, err)
    assert "cannot start the server" in err
    assert "admin token" not in out
    # The token was not stored either: the next start that succeeds shows one.
    async with _server(tmp_path, "--data-dir", str(data)) as (_, out):
        await out.wait_for(ADMIN_LINE)


def _build(tmp_path: Path, keys: Path) -> bytes:
    """The guide's ``fotakit keys generate`` and ``fotakit package build``; the package."""
    made = run_cli("keys", "generate", "release", "--dir", str(keys))
    assert made.exit_code == 0, made.output
    firmware = tmp_path / "firmware.bin"
    firmware.write_bytes(payload_of(4_000, 3))
    suit = tmp_path / "fw-1.1.0.suit"
    built = run_cli(
        "package", "build", str(firmware), "--version", "1.1.0",
        "--vendor", "example.com", "--class", "sensor-v2", "--sequence", "2",
        "--key", str(keys / "release.pem"), "--output", str(suit),
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    return suit.read_bytes()


def _upload(
    http_port: int, token: str, package: bytes, query: str = ""
) -> tuple[int, dict[str, Any]]:
    """POST /api/v1/packages as the guide's curl does; (status, JSON body)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/api/v1/packages{query}",
        data=package,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_the_guides_trust_sequence_on_a_fresh_data_dir(tmp_path: Path) -> None:
    """docs/operator-guide.md "Your first campaign": the server is started first, then the
    key is made and its public half copied into ``<data-dir>/trust``, then the upload."""
    data = tmp_path / "data"
    async with _server(tmp_path, "--data-dir", str(data)) as (server, out):
        http_port = int((await server.wait_for(HTTP_LISTENING)).group(1))
        token = (await out.wait_for(ADMIN_LINE)).group(1)
        keys = tmp_path / "keys"
        package = await asyncio.to_thread(_build, tmp_path, keys)
        assert (data / "trust").is_dir()  # made at the first start
        shutil.copy(keys / "release.pub.pem", data / "trust")  # the guide's `cp ... trust/`
        query = "?vendor=example.com&class=sensor-v2"  # the guide's curl
        status, body = await asyncio.to_thread(_upload, http_port, token, package, query)
        assert status == 201, body
        assert (body["version"], body["class_name"]) == ("1.1.0", "sensor-v2")


async def test_a_key_copied_into_the_trust_dir_while_running_is_trusted(tmp_path: Path) -> None:
    """The server starts with an empty trust directory; an upload answers 503 naming the
    directory; the key is copied in; the same upload is accepted (no restart)."""
    data = tmp_path / "data"
    (data / "trust").mkdir(parents=True)
    async with _server(tmp_path, "--data-dir", str(data)) as (server, out):
        http_port = int((await server.wait_for(HTTP_LISTENING)).group(1))
        token = (await out.wait_for(ADMIN_LINE)).group(1)
        keys = tmp_path / "keys"
        package = await asyncio.to_thread(_build, tmp_path, keys)
        status, body = await asyncio.to_thread(_upload, http_port, token, package)
        assert status == 503, body
        assert str(data / "trust") in body["detail"]
        shutil.copy(keys / "release.pub.pem", data / "trust")
        status, body = await asyncio.to_thread(_upload, http_port, token, package)
        assert status == 201, body


async def test_http_head_timeout_from_the_command_line_closes_a_half_open_connection(
    tmp_path: Path,
) -> None:
    """``--http-head-timeout`` reaches the HTTP side: a client that never finishes its
    request head gets 408 and a closed connection within the bound (docs/repository.md)."""
    async with _server(
        tmp_path, "--data-dir", str(tmp_path / "data"), "--http-head-timeout", "0.5"
    ) as (server, _):
        http_port = int((await server.wait_for(HTTP_LISTENING)).group(1))
        reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
        try:
            writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")  # no blank line
            answer = await asyncio.wait_for(reader.read(), 0.5 + 5)
        finally:
            writer.close()
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


async def test_http_head_timeout_must_be_positive(tmp_path: Path) -> None:
    code, _, err = await _run_to_exit(
        tmp_path, "server", "--port", "0", "--http-port", "0", "--http-head-timeout", "0",
        "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    assert code == 2 and "--http-head-timeout" in err


async def test_min_lifetime_above_max_lifetime_is_refused(tmp_path: Path) -> None:
    code, _, err = await _run_to_exit(
        tmp_path, "server", "--port", "0", "--http-port", "0", "--min-lifetime", "600",
        "--max-lifetime", "60", "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    assert code == 2 and "--min-lifetime 600 is above --max-lifetime 60" in err


async def test_lifetime_bounds_and_registration_cap_from_the_command_line(tmp_path: Path) -> None:
    """``--min-lifetime``/``--max-lifetime``/``--max-registrations`` reach the LwM2M
    server (docs/operator-guide.md "What the server does with registrations")."""
    import aiocoap
    from aiocoap.numbers.codes import Code

    async with _server(
        tmp_path, "--data-dir", str(tmp_path / "data"), "--min-lifetime", "30",
        "--max-lifetime", "3600", "--max-registrations", "1",
    ) as (server, _):  # fmt: skip
        port = int((await server.wait_for(LISTENING)).group(1))
        ctx = await aiocoap.Context.create_client_context()
        try:

            async def register(ep: str, lt: int) -> aiocoap.Message:
                request = aiocoap.Message(
                    code=Code.POST,
                    uri=f"coap://127.0.0.1:{port}/rd?ep={ep}&lt={lt}&lwm2m=1.1",
                    payload=b"</3/0>",
                )
                response: aiocoap.Message = await asyncio.wait_for(
                    ctx.request(request).response, 10
                )
                return response

            too_short = await register("a", 29)
            assert too_short.code == Code.BAD_REQUEST
            assert b"minimum 30 s" in too_short.payload
            assert (await register("a", 3601)).code == Code.BAD_REQUEST
            assert (await register("a", 3600)).code == Code.CREATED
            full = await register("b", 60)
            assert full.code == Code.SERVICE_UNAVAILABLE and full.opt.max_age == 60
            await server.wait_for(re.compile(r"registration table full \(1 of max 1\)"))
        finally:
            await ctx.shutdown()
