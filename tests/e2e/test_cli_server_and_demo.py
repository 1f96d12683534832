"""End to end through the command line: ``fotakit server`` (the demo: tests/e2e/test_demo.py).

The server runs as a real process (the installed ``fotakit`` console script); fotakit
clients register with it over UDP on loopback. The SIGKILL test is the issue's promise:
kill the server, start it again on the same database, and every client's next Update is
answered 2.04 — nobody has to register again.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path as FsPath

from fotakit.client import ClientConfig, EventKind, LwM2MClient
from fotakit.coap import TransportParams

FOTAKIT = str(FsPath(sys.executable).with_name("fotakit"))
FAST = TransportParams(
    ack_timeout=0.5, ack_random_factor=1.0, max_retransmit=2, request_timeout=5.0
)
LISTENING = re.compile(r"server listening on 127\.0\.0\.1:(\d+)")
STEP = 20.0


class ServerProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def wait_for(self, pattern: re.Pattern[str]) -> re.Match[str]:
        """Read stderr lines until one matches (bounded by STEP seconds)."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(STEP):
            while True:
                raw = await self.proc.stderr.readline()
                if not raw:
                    raise AssertionError("server exited:\n" + "".join(self.lines))
                line = raw.decode(errors="replace")
                self.lines.append(line)
                match = pattern.search(line)
                if match:
                    return match


@asynccontextmanager
async def fotakit_server(data_dir: FsPath, port: int) -> AsyncIterator[ServerProcess]:
    proc = await asyncio.create_subprocess_exec(
        FOTAKIT,
        "server",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--ack-timeout",
        "0.5",
        "--request-timeout",
        "5",
        "--http-port",
        "0",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    server = ServerProcess(proc)
    try:
        yield server
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_sigkilled_server_keeps_every_registration_and_updates_succeed(
    tmp_path: FsPath,
) -> None:
    async with fotakit_server(tmp_path, 0) as first:
        port = int((await first.wait_for(LISTENING)).group(1))
        clients = [
            LwM2MClient(
                ClientConfig(
                    endpoint=f"survivor-{i}",
                    server_uri=f"coap://127.0.0.1:{port}",
                    lifetime=600,
                    transport=FAST,
                )
            )
            for i in range(5)
        ]
        ids = {}
        for client in clients:
            await client.start()
            ids[client] = await client.wait_registered(STEP)
        for client in clients:
            await first.wait_for(re.compile(rf"registered ep={client.config.endpoint} "))
        first.proc.send_signal(signal.SIGKILL)
        assert await first.proc.wait() == -signal.SIGKILL

    try:
        async with fotakit_server(tmp_path, port) as second:
            match = await second.wait_for(LISTENING)
            assert int(match.group(1)) == port
            assert "(5 registrations" in second.lines[-1]
            for client in clients:
                assert await client.update() is True, "Update after restart was refused"
                assert client.registration_id == ids[client]
                await second.wait_for(re.compile(rf"updated ep={client.config.endpoint} "))
            for client in clients:
                kinds = []
                while not client.events.empty():
                    kinds.append(client.events.get_nowait().kind)
                assert EventKind.REREGISTERED not in kinds
                assert EventKind.REGISTERED not in kinds[1:]
            second.proc.send_signal(signal.SIGTERM)
            assert await second.proc.wait() == 0
    finally:
        for client in clients:
            await client.stop(deregister=False)


async def test_server_rejects_both_db_and_data_dir_with_a_message(tmp_path: FsPath) -> None:
    proc = await asyncio.create_subprocess_exec(
        FOTAKIT,
        "server",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path),
        "--db",
        str(tmp_path / "x.db"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), STEP)
    assert proc.returncode == 2
    assert b"--db or --data-dir" in err


async def test_server_on_a_busy_port_exits_non_zero_with_a_message(tmp_path: FsPath) -> None:
    async with fotakit_server(tmp_path / "a", 0) as first:
        port = int((await first.wait_for(LISTENING)).group(1))
        proc = await asyncio.create_subprocess_exec(
            FOTAKIT,
            "server",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "b"),
            "--http-port",
            "0",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), STEP)
        assert proc.returncode == 1
        assert f"cannot start the server on 127.0.0.1:{port}".encode() in err
