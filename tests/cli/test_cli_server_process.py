"""The whole chain as an operator runs it: a real ``fotakit server`` process configured by
a TOML file (its UDP port, HTTP port, data directory and timers come from the file), a
real agent registering with it over UDP, and ``fotakit devices list`` and ``fotakit
campaign create --watch`` (typer's runner, in a worker thread so the agent keeps running
on the test's event loop) updating the agent to completion over the REST API."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path

from cli_helpers import run_cli
from e2e_helpers import (
    FOTAKIT,
    LISTENING,
    Fleet,
    ServerProcess,
    payload_of,
    publish_package,
    trust_for,
)

from fotakit.packages import generate_key
from fotakit.store import default_db_url

ADMIN = "fk_cli_process_test_admin_token_0123456789"
HTTP_LISTENING = re.compile(r"REST API: http://127\.0\.0\.1:(\d+)/")


async def test_server_process_with_a_config_file_devices_list_and_campaign_watch(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free now; the server binds it from the file
    config = tmp_path / "fotakit.toml"
    config.write_text(
        f"[server]\nhost = '127.0.0.1'\nport = {port}\nhttp-port = 0\n"
        f"data-dir = '{data}'\nlog-level = 'INFO'\n"
        "ack-timeout = 0.3\nmax-retransmit = 3\nrequest-timeout = 10\n"
        "register-rate = 1000\nregister-burst = 1000\nnode-id = 'cli-node'\n"
        f"[remote]\ntoken = '{ADMIN}'\n",
        encoding="utf-8",
    )
    key = generate_key("ed25519")
    fleet = Fleet(tmp_path / "agents", trust_for(key))
    proc = await asyncio.create_subprocess_exec(
        FOTAKIT, "--config", str(config), "server",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FOTAKIT_ADMIN_TOKEN": ADMIN},
    )  # fmt: skip
    server = ServerProcess(proc, "fotakit server")
    try:
        coap_port = int((await server.wait_for(LISTENING)).group(1))
        assert coap_port == port  # the file's, not the default 5683
        http_port = int((await server.wait_for(HTTP_LISTENING)).group(1))
        url = f"http://127.0.0.1:{http_port}"
        record = await asyncio.to_thread(
            publish_package,
            data / "repository",
            default_db_url(data),
            key,
            payload_of(5_000, 9),
            version="2.0.0",
            sequence=2,
        )
        agent = fleet.make("proc-0", coap_port)
        await agent.start()
        await fleet.wait(lambda: agent.client.registered)

        listed = await asyncio.to_thread(
            run_cli, "--config", str(config), "devices", "list", "--json", "--url", url
        )
        assert listed.exit_code == 0, listed.output
        assert [d["endpoint"] for d in json.loads(listed.stdout)] == ["proc-0"]

        watched = await asyncio.to_thread(
            run_cli,
            "--config", str(config),
            "campaign", "create", "--package", record.id, "--device", "proc-0",
            "--watch", "--interval", "0.5", "--max-wait", "60", "--url", url,
        )  # fmt: skip
        assert watched.exit_code == 0, watched.output + "".join(server.lines[-30:])
        assert "completed: 1/1 finished (1 succeeded)" in watched.stdout
        assert fleet.versions() == {"proc-0": "2.0.0"}
    finally:
        await fleet.stop()
        await server.stop()
