"""The API inside ``run_server_with_repository`` (what ``fotakit server`` runs) and the
``fotakit server`` flags: first admin token printed once, uploads verified with --trust,
campaign routes 503 without the update service, a bad --trust path exits 2."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import assert_problem, sign

from fotakit.api.auth import ADMIN_TOKEN_ENV
from fotakit.packages import generate_key
from fotakit.packages.keys import write_key_pair
from fotakit.repository.runner import run_server_with_repository
from fotakit.server import LwM2MServer, ServerConfig

SEED = "fk_c2VlZGVkLWZvci10aGUtcnVubmVyLXRlc3QtOTE4MjczNjQ1"
TOKEN_LINE = re.compile(r"admin token \(store it now, it is not shown again\): (fk_\S+)")
FOTAKIT = str(Path(sys.executable).with_name("fotakit"))


async def _run(
    tmp_path: Path, db_url: str, *, updates: bool = True, trust: Any = None
) -> tuple[asyncio.Event, asyncio.Task[None], int]:
    stop = asyncio.Event()
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_started(_server: LwM2MServer, http: Any) -> None:
        started.set_result(http.port)

    config = ServerConfig(host="127.0.0.1", port=0, db_url=db_url)
    task = asyncio.ensure_future(
        run_server_with_repository(
            config,
            tmp_path / "repository",
            http_port=0,
            stop=stop,
            on_started=on_started,
            updates=updates,
            node_id="n1",
            trust=trust,
        )
    )
    port = await asyncio.wait_for(asyncio.shield(started), 30)
    return stop, task, port


async def test_runner_serves_the_api_and_prints_the_admin_token_once(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    key = generate_key("ed25519")
    _, public = write_key_pair(key, tmp_path / "keys", "signer")
    stop, task, port = await _run(tmp_path, sqlite_url, trust=public)
    try:
        out = capsys.readouterr().out
        tokens = TOKEN_LINE.findall(out)
        assert len(tokens) == 1, out
        headers = {"Authorization": f"Bearer {tokens[0]}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as c:
            assert (await c.get("/api/v1/me")).json() == {"name": "admin", "role": "admin"}
            health = (await c.get("/api/v1/health")).json()
            assert health["node_id"] == "n1"
            data = sign(b"\x01" * 1000, key, version="2.0.0", sequence=2)
            r = await c.post("/api/v1/packages", content=data)
            assert r.status_code == 201, r.text
            fw = await c.get(f"/fw/{r.json()['id']}")
            assert fw.status_code == 200 and fw.content == data
            assert (await c.get("/api/v1/campaigns")).json()["items"] == []
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    # a second start: no new admin token, the old one still works
    stop, task, port = await _run(tmp_path, sqlite_url, trust=public)
    try:
        assert TOKEN_LINE.findall(capsys.readouterr().out) == []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as c:
            assert (await c.get("/api/v1/me")).status_code == 200
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_runner_without_updates_or_trust(
    tmp_path: Path, sqlite_url: str, monkeypatch: Any
) -> None:
    monkeypatch.setenv(ADMIN_TOKEN_ENV, SEED)
    stop, task, port = await _run(tmp_path, sqlite_url, updates=False)
    try:
        headers = {"Authorization": f"Bearer {SEED}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as c:
            body = assert_problem(await c.get("/api/v1/campaigns"), 503)
            assert "update service" in body["detail"]
            assert_problem(await c.get("/api/v1/jobs/j1"), 503)
            assert (await c.get("/api/v1/devices")).json()["items"] == []
            body = assert_problem(await c.post("/api/v1/packages", content=b"x"), 503)
            assert "trust" in body["detail"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_server_command_with_a_bad_trust_path_exits_2(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        FOTAKIT, "server", "--port", "0", "--http-port", "0",
        "--data-dir", str(tmp_path), "--trust", str(tmp_path / "missing.pem"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert b"cannot load trust anchors" in err


@pytest.mark.parametrize("weak", ["admin", "x" * 40, "fk_seeded-for-test"])
async def test_server_command_refuses_a_weak_admin_token_with_exit_2(
    tmp_path: Path, weak: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        FOTAKIT, "server", "--port", "0", "--http-port", "0", "--data-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, ADMIN_TOKEN_ENV: weak},
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err
    assert b"FOTAKIT_ADMIN_TOKEN must be at least 32 characters" in err
    assert b"at least 128 bits" in err
    assert not (tmp_path / "fotakit.db").exists()  # refused before anything is stored


async def test_server_command_prints_token_and_dashboard_url(tmp_path: Path) -> None:
    key = generate_key("ed25519")
    write_key_pair(key, tmp_path / "data" / "trust", "signer")  # the default --trust
    env_args = ("--port", "0", "--http-port", "0", "--data-dir", str(tmp_path / "data"))
    proc = await asyncio.create_subprocess_exec(
        FOTAKIT, "server", *env_args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != ADMIN_TOKEN_ENV},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(60):
            token_line = (await proc.stdout.readline()).decode()
            token = TOKEN_LINE.search(token_line)
            assert token, token_line
            url = None
            while url is None:
                line = (await proc.stderr.readline()).decode()
                assert line, "server exited"
                found = re.search(r"dashboard and REST API: (http://127\.0\.0\.1:\d+/)", line)
                url = found.group(1) if found else None
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        async with httpx.AsyncClient(base_url=url, headers=headers) as c:
            r = await c.post(
                "/api/v1/packages", content=sign(b"\x02" * 500, key, version="2", sequence=2)
            )
            assert r.status_code == 201, r.text  # verified against data/trust
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
