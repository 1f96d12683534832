"""``fotakit sim`` as a real subprocess against a real LwM2M server on loopback."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fotakit.cli_sim import sim
from fotakit.packages import generate_key, write_key_pair
from fotakit.server import Deregistered, LwM2MServer, Registered, ServerConfig
from fotakit.sim.fleet import device_host

FOTAKIT = str(Path(sys.executable).with_name("fotakit"))


async def _run(*args: str, timeout: float = 60) -> tuple[int, str, str]:  # noqa: ASYNC109
    proc = await asyncio.create_subprocess_exec(
        FOTAKIT,
        "sim",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_sim_runs_five_devices_for_a_bounded_time_and_prints_its_summary(
    tmp_path: Path, sqlite_url: str
) -> None:
    _, public = write_key_pair(generate_key("ed25519"), tmp_path / "keys", "signer")
    server = LwM2MServer(ServerConfig(host="127.0.0.1", port=0, db_url=sqlite_url))
    await server.start()
    try:
        async with server.subscribe() as events:
            code, out, err = await _run(
                "--devices", "5",
                "--duration", "1",
                "--server", f"coap://127.0.0.1:{server.port}",
                "--trust", str(public),
                "--data-dir", str(tmp_path / "sim"),
                "--lifetime", "60",
                "--json",
            )  # fmt: skip
            seen = []
            while not events.empty():
                seen.append(events.get_nowait())
    finally:
        await server.stop()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["devices"] == 5
    assert summary["registered"] == 5
    assert summary["by_version"] == {"1.0.0": 5}
    assert sum(summary["by_profile"].values()) == 5
    assert summary["by_state"] == {"idle": 5}
    assert "5 devices registered" in err
    registered = {e.endpoint: e.registration.address for e in seen if isinstance(e, Registered)}
    assert registered == {f"sim-{i:04d}": device_host(i) for i in range(5)}
    # a clean stop: every device de-registered
    assert {e.endpoint for e in seen if isinstance(e, Deregistered)} == set(registered)
    assert sorted(p.name for p in (tmp_path / "sim").iterdir()) == sorted(registered)


async def test_unknown_profile_is_refused_with_exit_2_naming_the_choices(tmp_path: Path) -> None:
    code, _, err = await _run("--profile", "nosuch", "--data-dir", str(tmp_path), timeout=30)
    assert code == 2
    assert "unknown profile 'nosuch'" in err
    assert "cellular" in err
    assert not (tmp_path / "sim-0000").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--fail-health", "1.5"), "--fail-health"),
        (("--devices", "0"), "--devices"),
        (("--server", "http://127.0.0.1:5683"), "must be a coap:// URI"),
        (("--server", "coap://127.0.0.1:99999"), "server: not a URI"),
        (("--prefix", "a/b"), "prefix"),
    ],
)
def test_bad_options_are_refused_with_exit_2_and_a_message(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    # in-process (the command alone, so other commands' imports do not matter)
    app = typer.Typer()
    app.command()(sim)
    result = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert list(tmp_path.iterdir()) == []  # nothing was started


def test_an_unreadable_trust_anchor_is_refused_with_exit_2(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(sim)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    for path in (tmp_path / "missing.pem", bad):
        result = CliRunner().invoke(app, ["--trust", str(path), "--data-dir", str(tmp_path)])
        assert result.exit_code == 2, result.output
        assert f"error: --trust: {path}" in result.output


def test_devices_that_never_register_end_the_run_with_exit_1_naming_them(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing answers there
    app = typer.Typer()
    app.command()(sim)
    result = CliRunner().invoke(
        app,
        [
            "--devices", "2",
            "--server", f"coap://127.0.0.1:{port}",
            "--registration-timeout", "1",
            "--data-dir", str(tmp_path),
            "--quiet",
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "2 of 2 devices did not register within 1 s" in result.output
    assert "sim-0000, sim-0001" in result.output


async def test_sigint_stops_the_fleet_cleanly(tmp_path: Path, sqlite_url: str) -> None:
    server = LwM2MServer(ServerConfig(host="127.0.0.1", port=0, db_url=sqlite_url))
    await server.start()
    try:
        async with server.subscribe() as events:
            proc = await asyncio.create_subprocess_exec(
                FOTAKIT, "sim",
                "--devices", "3",
                "--profile", "lan",
                "--server", f"coap://127.0.0.1:{server.port}",
                "--data-dir", str(tmp_path / "sim"),
                "--quiet",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                assert proc.stderr is not None and proc.stdout is not None
                async with asyncio.timeout(30):
                    lines: list[bytes] = []
                    while b"devices registered" not in (line := await proc.stderr.readline()):
                        assert line, b"".join(lines).decode()  # exited early
                        lines.append(line)
                    proc.send_signal(signal.SIGINT)
                    out = await proc.stdout.read()
                    await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            seen = []
            while not events.empty():
                seen.append(events.get_nowait())
    finally:
        await server.stop()
    assert proc.returncode == 0
    assert "fleet summary" in out.decode()
    gone = {e.endpoint for e in seen if isinstance(e, Deregistered)}
    assert gone == {"sim-0000", "sim-0001", "sim-0002"}
