"""``make demo``: the whole system in one command, on SQLite, over real CoAP on loopback.

What it does, in order (each step is the real component, nothing is mocked):

1. recreates ``demo-data/`` (SQLite database, firmware repository, signing key, trust
   anchor, the simulated devices' data) and an admin API token;
2. starts ``fotakit server`` in this process: LwM2M + ``/fw`` on a UDP port, REST API and
   dashboard on an HTTP port;
3. starts the fleet simulator: 50 real device agents on mixed links (LAN, good, cellular,
   poor radio: RTT, loss and outages applied by in-process relays), running firmware
   1.0.0; a share of them carry an image-breaking fault (their new image fails its health
   check, so they roll back) and some lose their link in the middle of a download;
4. builds and signs firmware 1.1.0, uploads it through the REST API (verified against the
   trust anchor), creates a campaign through the REST API: a canary, then 50 %, then the
   rest, with success gates and an error threshold;
5. shows the campaign's progress live, then a summary table of every device's outcome
   (updated, rolled back with the reason, timed out, ...) that adds up to the fleet, and
   cross-checks it with the firmware the devices really run;
6. leaves the dashboard URL and the admin token on screen and keeps serving until Ctrl-C
   (``--exit`` ends right after the summary); Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, TypeVar

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from fotakit.store import default_db_url
from fotakit.updates.job import JobState

T = TypeVar("T")

VENDOR = "example.com"
DEVICE_CLASS = "sensor-v2"
OLD_VERSION = "1.0.0"
NEW_VERSION = "1.1.0"
TERMINAL = tuple(s.value for s in JobState if s.terminal)
FINISHED_CAMPAIGN = ("completed", "failed", "aborted", "cancelled", "paused")


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    data_dir: FsPath = FsPath("demo-data")
    devices: int = 50
    profile: str = "mixed"
    coap_port: int = 0
    http_port: int = 8080
    fail_health: float = 0.1
    offline_mid_download: float = 0.06
    seed: int = 2026
    payload_size: int = 48 * 1024
    timeout_s: float = 170.0
    """Bound on the whole campaign (the demo promises to finish in under 3 minutes)."""
    serve_after: bool = True
    """Keep serving the dashboard after the summary until Ctrl-C."""


def prepare_data_dir(data_dir: FsPath) -> str:
    """Recreate the demo's data directory; the database URL inside it."""
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    return default_db_url(data_dir)


def _port_free(port: int) -> bool:
    """Whether TCP ``port`` on 127.0.0.1 can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def demo_payload(size: int, seed: int) -> bytes:
    """A deterministic firmware image of ``size`` bytes."""
    out = bytearray()
    block = hashlib.sha256(f"fotakit demo firmware {seed}".encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def campaign_spec(package_id: str, devices: int) -> dict[str, Any]:
    """The demo's campaign (CampaignSpec JSON): canary, 50 %, the rest."""
    canary = max(1, min(5, devices // 10))
    return {
        "name": f"demo: {DEVICE_CLASS} {OLD_VERSION} -> {NEW_VERSION}",
        "package_id": package_id,
        "target": {"device_class": {"name": DEVICE_CLASS}, "current_version": OLD_VERSION},
        "canary": canary,
        "canary_success_gate": 0.6,
        "waves": [
            {"percent": 50, "success_gate": 0.75},
            {"success_gate": 0.75},
        ],
        "error_threshold": {"percent": 50, "min_sample": 20, "action": "pause"},
        "max_concurrent": 30,
        "retry_budget": 3,
    }


async def run_demo(console: Console, options: DemoOptions) -> int:
    """Run the demo (module docstring); the process exit code."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        interrupted = True
        main.cancel()

    try:
        return await _run(console, options, loop, on_signal)
    except asyncio.CancelledError:
        if not interrupted:
            raise
        console.print("\n[yellow]stopped[/yellow] (Ctrl-C): everything was shut down cleanly")
        return 130
    except DemoError as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        return 1


async def _run(
    console: Console,
    options: DemoOptions,
    loop: asyncio.AbstractEventLoop,
    on_signal: Any,
) -> int:
    from fotakit.api.auth import Role, TokenStore
    from fotakit.packages import build_package_in_memory, generate_key
    from fotakit.packages.keys import write_key_pair
    from fotakit.repository.runner import run_server_with_repository
    from fotakit.server import LwM2MServer, ServerConfig
    from fotakit.sim.fleet import FleetSimulator, SimConfig

    data = options.data_dir.expanduser().resolve()
    db_url = prepare_data_dir(data)
    console.rule("[bold]fotakit demo[/bold]: a fleet updated over LwM2M, end to end")

    # 1. keys, trust anchor, admin token
    key = generate_key("ed25519")
    _private, public = write_key_pair(key, data / "keys", "demo-signer")
    tokens = await asyncio.to_thread(TokenStore.open, db_url)
    try:
        _info, token = await asyncio.to_thread(tokens.create, "admin", Role.ADMIN)
    finally:
        await asyncio.to_thread(tokens.close)

    # 2. the server: LwM2M + /fw on UDP, REST + dashboard on HTTP
    stop = asyncio.Event()
    started: asyncio.Future[tuple[int, int]] = loop.create_future()

    def on_started(server: LwM2MServer, http: Any) -> None:
        if not started.done():
            started.set_result((server.port, http.port if http is not None else 0))

    http_port = options.http_port
    if http_port and not _port_free(http_port):
        console.print(f"[yellow]port {http_port} is taken[/yellow]: the dashboard gets a free one")
        http_port = 0
    config = ServerConfig(
        host="127.0.0.1",
        port=options.coap_port,
        db_url=db_url,
        max_register_rate=1000.0,
        register_burst=1000,
    )
    server_task = asyncio.ensure_future(
        run_server_with_repository(
            config,
            data / "repository",
            http_port=http_port,
            stop=stop,
            on_started=on_started,
            node_id="demo",
            trust=public,
        )
    )
    sim: FleetSimulator | None = None
    try:
        coap_port, http_port = await _first(started, server_task, 30, "the server did not start")
        # the server installs its own SIGINT handler; the demo's replaces it
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_signal)
        base = f"http://127.0.0.1:{http_port}"
        console.print(
            f"[green]server[/green]    LwM2M coap://127.0.0.1:{coap_port}   "
            f"REST + dashboard {base}   database {db_url}"
        )

        # 3. the simulated fleet
        sim = FleetSimulator(
            SimConfig(
                devices=options.devices,
                server=f"coap://127.0.0.1:{coap_port}",
                trust=public,
                profile=options.profile,
                data_dir=data / "devices",
                device_class=DEVICE_CLASS,
                model=DEVICE_CLASS,  # /3/0/1 Model Number: the class campaigns target
                vendor_domain=VENDOR,
                firmware_version=OLD_VERSION,
                seed=options.seed,
                fail_health=options.fail_health,
                offline_mid_download=options.offline_mid_download,
            )
        )
        t0 = time.monotonic()
        with console.status(f"starting {options.devices} simulated devices ..."):
            await sim.start()
        summary = sim.summary()
        profiles = ", ".join(f"{n} {p}" for p, n in sorted(summary.by_profile.items()))
        console.print(
            f"[green]fleet[/green]     {summary.registered}/{options.devices} devices registered "
            f"in {time.monotonic() - t0:.1f} s ({profiles}); "
            f"{summary.fails_health} carry a fault that fails the new image's health check, "
            f"{summary.goes_offline} will lose their link mid-download"
        )

        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as api:
            # the server reads each device's /3/0 (class, version) as it registers:
            # a campaign snapshots its target, so wait until the whole fleet is known
            known = await _inventoried(api, options.devices, 30.0)
            console.print(
                f"[green]inventory[/green] {known} devices known as {DEVICE_CLASS} "
                f"running {OLD_VERSION} (GET /api/v1/fleet)"
            )

            # 4. build, sign, upload; create the campaign
            package = build_package_in_memory(
                demo_payload(options.payload_size, options.seed),
                version=NEW_VERSION,
                vendor_domain=VENDOR,
                class_name=DEVICE_CLASS,
                sequence=2,
                key=key,
            )
            record = await _api(
                api.post(
                    "/api/v1/packages",
                    content=package,
                    headers={"Content-Type": "application/octet-stream"},
                ),
                "upload the package",
            )
            console.print(
                f"[green]package[/green]   firmware {NEW_VERSION} built, signed (Ed25519) and "
                f"uploaded: {record['id']} ({len(package)} bytes)"
            )
            campaign = await _api(
                api.post("/api/v1/campaigns", json=campaign_spec(record["id"], options.devices)),
                "create the campaign",
            )
            cid = campaign["id"]
            console.print(f"[green]campaign[/green]  {cid}: {campaign['spec']['name']}")

            # 5. live progress, then the summary
            final = await _watch(console, api, cid, options.timeout_s)
            jobs = await _all_jobs(api, cid)
        elapsed = time.monotonic() - t0
        code = _summary(console, final, jobs, sim, options.devices, elapsed)

        # 6. the dashboard and the token
        console.print()
        console.print(f"dashboard    [bold]{base}/#token={token}[/bold]")
        console.print(
            f"admin token  [bold]{token}[/bold]  (also: .venv/bin/fotakit campaign list --url "
            f"{base} --token ...)"
        )
        if options.serve_after:
            console.print("the server and the fleet keep running: press Ctrl-C to stop")
            await asyncio.Event().wait()  # until Ctrl-C cancels this task
        return code
    finally:
        if sim is not None:
            await sim.stop()
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server_task, 30)


async def _first(
    fut: asyncio.Future[T], guard: asyncio.Future[Any], limit_s: float, what: str
) -> T:
    """``fut``'s result; DemoError if ``guard`` (the server task) ends first or on timeout."""
    done, _ = await asyncio.wait({fut, guard}, timeout=limit_s, return_when="FIRST_COMPLETED")
    if fut in done:
        return fut.result()
    if guard in done and guard.exception() is not None:
        raise DemoError(f"{what}: {guard.exception()}")
    raise DemoError(what)


async def _inventoried(api: httpx.AsyncClient, devices: int, limit_s: float) -> int:
    """Wait (bounded) until the server knows ``devices`` devices of the demo's class and
    version; how many it knows."""
    deadline = time.monotonic() + limit_s
    known = 0
    while time.monotonic() < deadline:
        fleet = await _api(api.get("/api/v1/fleet"), "read the fleet overview")
        known = sum(
            int(row["count"])
            for row in fleet.get("by_class_version", [])
            if row.get("class") == DEVICE_CLASS and row.get("version") == OLD_VERSION
        )
        if known >= devices:
            break
        await asyncio.sleep(0.25)
    return known


async def _api(call: Awaitable[httpx.Response], what: str) -> Any:
    try:
        response = await call
    except httpx.HTTPError as exc:
        raise DemoError(f"could not {what}: {exc}") from exc
    if response.status_code >= 400:
        detail = response.text
        with contextlib.suppress(ValueError):
            detail = response.json().get("detail", detail)
        raise DemoError(f"could not {what}: HTTP {response.status_code}: {detail}")
    return response.json()


async def _watch(
    console: Console, api: httpx.AsyncClient, cid: str, limit_s: float
) -> dict[str, Any]:
    """Poll the campaign and show its progress until it finishes (bounded by ``limit_s``)."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=40),
        TaskProgressColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} finished"),
    )
    task = progress.add_task("campaign", total=1)
    deadline = time.monotonic() + limit_s
    campaign: dict[str, Any] = {}
    with Live(Group(progress), console=console, refresh_per_second=4) as live:
        while time.monotonic() < deadline:
            campaign = await _api(api.get(f"/api/v1/campaigns/{cid}"), "read the campaign")
            p = campaign["progress"]
            progress.update(
                task,
                total=max(1, p["total"]),
                completed=p["finished"],
                description=f"wave {p['wave']}  {campaign['state']}",
            )
            live.update(Group(progress, _counts_table(p)))
            if campaign["state"] in FINISHED_CAMPAIGN:
                break
            await asyncio.sleep(0.5)
        else:
            raise DemoError(
                f"the campaign did not finish within {limit_s:.0f} s "
                f"(state {campaign.get('state')})"
            )
    console.print()
    return campaign


def _counts_table(p: dict[str, Any]) -> Table:
    table = Table(show_header=True, box=None, pad_edge=False)
    for state in ("pending", "starting", "delivering", "installing", *TERMINAL):
        table.add_column(state.replace("_", " "), justify="right")
    row = [
        str(p["by_state"].get(s, 0))
        for s in ("pending", "starting", "delivering", "installing", *TERMINAL)
    ]
    table.add_row(*row)
    return table


async def _all_jobs(api: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):  # pages of 1000: bounded
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = await _api(api.get(f"/api/v1/campaigns/{cid}/devices", params=params), "list jobs")
        jobs.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return jobs


def _summary(
    console: Console,
    campaign: dict[str, Any],
    jobs: list[dict[str, Any]],
    sim: Any,
    devices: int,
    elapsed: float,
) -> int:
    """Print the outcome table; 0 when every device is accounted for and consistent."""
    outcome: Counter[str] = Counter()
    behind: dict[str, list[str]] = {}
    for job in jobs:
        if job["state"] == "succeeded":
            label = f"updated to {NEW_VERSION}"
        elif job["state"] == "timed_out":
            label = "timed out"
        elif job["state"] == "failed":
            label = f"failed: {job.get('reason') or 'unknown'}"
            if job.get("reason") == "rolled_back":
                label = "rolled back (new image failed its health check)"
        else:
            label = f"not finished: {job['state']}"
        outcome[label] += 1
        behind.setdefault(label, []).append(job["endpoint"])
    untouched = devices - len(jobs)
    if untouched:
        outcome["not in the campaign"] += untouched
    table = Table(title=f"campaign {campaign['id']}: {campaign['state']} in {elapsed:.0f} s")
    table.add_column("outcome")
    table.add_column("devices", justify="right")
    table.add_column("examples")
    for label, n in outcome.most_common():
        table.add_row(label, str(n), ", ".join(sorted(behind.get(label, []))[:3]))
    table.add_row("[bold]total[/bold]", f"[bold]{sum(outcome.values())}[/bold]", "")
    console.print(table)
    # cross-check with what the devices really run
    running = Counter(dev.version for dev in sim.devices)
    updated = outcome.get(f"updated to {NEW_VERSION}", 0)
    versions = ", ".join(f"{n} on {v}" for v, n in sorted(running.items()))
    consistent = (
        running.get(NEW_VERSION, 0) == updated
        and sum(outcome.values()) == devices
        and untouched == 0  # the demo's target is the whole fleet
    )
    mark = "[green]consistent[/green]" if consistent else "[red]INCONSISTENT[/red]"
    console.print(f"the devices report: {versions}  ({mark} with the table)")
    return 0 if consistent else 1


__all__ = ["DemoError", "DemoOptions", "campaign_spec", "prepare_data_dir", "run_demo"]
