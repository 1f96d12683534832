"""``fotakit sim``: run a simulated fleet of real device agents against a server.

Starts :class:`fotakit.sim.fleet.FleetSimulator` (N agents, each with its own loopback
address, behind relays that apply their link profiles; see docs/simulator.md), waits
until every device has registered, then shows a live table refreshed about once a second
(devices per link profile: online, Object 5 state, running versions, last Update Result)
until Ctrl-C / SIGTERM or ``--duration`` seconds, stops cleanly (De-register, bounded)
and prints a final summary (``--json``: one JSON object on stdout instead).

Exit status: 0 after a clean run; 2 for bad options (unknown profile, a share outside
0..1, a malformed server URI, an unreadable trust anchor); 1 when the fleet could not
start (devices that never registered are named).

Limits: the live table needs a terminal (``--quiet`` turns it off; it is off anyway when
stdout is not one); the fleet runs in this one process and one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from fotakit.sim.fleet import FleetSimulator, SimSummary

REFRESH_S = 1.0


def _profile_names() -> list[str]:
    from fotakit.sim.profiles import profile_names

    return profile_names()


def _check_profile(value: str) -> str:
    from fotakit.sim.profiles import check_profile

    try:
        return check_profile(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _complete_profile(incomplete: str) -> list[str]:
    return [name for name in _profile_names() if name.startswith(incomplete)]


def fleet_table(sim: FleetSimulator, title: str) -> Table:
    """Devices per link profile: online, Object 5 states, versions, last results."""
    from fotakit.sim.fleet import SimDevice, result_name, state_name

    table = Table(title=title, title_justify="left")
    table.add_column("profile")
    table.add_column("devices", justify="right")
    table.add_column("online", justify="right")
    table.add_column("Object 5 state")
    table.add_column("running")
    table.add_column("last result")
    groups: dict[str, list[SimDevice]] = {}
    for dev in sim.devices:
        groups.setdefault(dev.profile.name, []).append(dev)

    def counts(values: Counter[str]) -> str:
        return ", ".join(f"{k} {n}" for k, n in sorted(values.items()))

    def row(label: str, devs: list[SimDevice]) -> list[str]:
        return [
            label,
            str(len(devs)),
            str(sum(1 for d in devs if d.registered)),
            counts(Counter(state_name(d.state) for d in devs)),
            counts(Counter(d.version for d in devs)),
            counts(Counter(result_name(d.result).split(" ", 1)[-1] for d in devs)),
        ]

    for name in sorted(groups):
        table.add_row(*row(name, groups[name]))
    table.add_section()
    table.add_row(*row("total", sim.devices), style="bold")
    return table


def summary_table(summary: SimSummary) -> Table:
    table = Table(title="fleet summary", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("devices", f"{summary.devices} ({summary.registered} registered at the end)")
    for label, counts in (
        ("running version", summary.by_version),
        ("link profile", summary.by_profile),
        ("Object 5 state", summary.by_state),
        ("last update result", summary.by_result),
    ):
        table.add_row(label, ", ".join(f"{k}: {v}" for k, v in counts.items()))
    table.add_row(
        "injected",
        f"{summary.fails_health} fail the new image's health check; "
        f"{summary.goes_offline} lose their link mid-download "
        f"({summary.offline_injected} did)",
    )
    return table


async def run_sim(
    sim: FleetSimulator,
    *,
    duration: float | None,
    live: bool,
    console: Console,
) -> SimSummary:
    """Start ``sim``, show it until a signal or ``duration``, stop it; the final summary."""
    from rich.live import Live

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        t0 = time.monotonic()
        starting = asyncio.ensure_future(sim.start())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not starting.done():  # interrupted while starting: start() stops what it began
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return sim.summary()
        starting.result()  # SimError: the stragglers are named
        started = time.monotonic() - t0
        console.print(
            f"{len(sim.devices)} devices registered with {sim.config.server} in {started:.1f} s",
            highlight=False,
        )
        end = None if duration is None else time.monotonic() + duration
        try:
            with (
                Live(
                    fleet_table(sim, "fleet"), console=console, auto_refresh=False, transient=False
                )
                if live
                else contextlib.nullcontext() as display
            ):
                for _ in range(10**9):  # bounded by the signal or the duration
                    left = REFRESH_S if end is None else min(REFRESH_S, end - time.monotonic())
                    if left <= 0 or stop.is_set():
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), left)
                    if display is not None:
                        elapsed = time.monotonic() - t0
                        display.update(fleet_table(sim, f"fleet ({elapsed:.0f} s)"), refresh=True)
            final = sim.summary()  # before the devices De-register
        finally:
            await sim.stop()
        return final
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def sim(
    devices: Annotated[
        int, typer.Option("--devices", "-n", help="How many devices.", min=1, max=62_500)
    ] = 10,
    profile: Annotated[
        str,
        typer.Option(
            help="Link profile of every device, or 'mixed' (40 % good, 30 % cellular, 20 % lan, "
            "10 % poor, seeded): lan, good, cellular, poor, flaky, nbiot.",
            callback=_check_profile,
            autocompletion=_complete_profile,
        ),
    ] = "mixed",
    server: Annotated[
        str, typer.Option(help="The LwM2M server (coap://host:port).", envvar="FOTAKIT_SIM_SERVER")
    ] = "coap://127.0.0.1:5683",
    trust: Annotated[
        Path | None,
        typer.Option(
            help="Public key PEM (or a directory of them) the devices verify packages with.",
            envvar="FOTAKIT_SIM_TRUST",
        ),
    ] = None,
    data_dir: Annotated[
        Path,
        typer.Option(
            help="Where each device keeps its slots and state (<dir>/<endpoint>).",
            envvar="FOTAKIT_SIM_DATA_DIR",
        ),
    ] = Path("sim-data"),
    reset: Annotated[
        bool, typer.Option(help="Delete the devices' data first (a factory-fresh fleet).")
    ] = False,
    prefix: Annotated[str, typer.Option(help="Endpoint names are <prefix>-0000, ...")] = "sim",
    device_class: Annotated[
        str, typer.Option("--class", help="Device class (packages must be for it).")
    ] = "sensor-v2",
    vendor: Annotated[
        str, typer.Option(help="Vendor domain (packages must be for it).")
    ] = "example.com",
    firmware_version: Annotated[
        str, typer.Option(help="Firmware version the devices start with (/3/0/3).")
    ] = "1.0.0",
    manufacturer: Annotated[str, typer.Option(help="/3/0/0 Manufacturer.")] = "fotakit sim",
    timezone: Annotated[str, typer.Option(help="/3/0/15 Timezone of every device.")] = "UTC",
    lifetime: Annotated[int, typer.Option(help="Registration lifetime, seconds.", min=1)] = 300,
    seed: Annotated[int, typer.Option(help="Seed of profiles, faults and losses.")] = 2026,
    fail_health: Annotated[
        float,
        typer.Option(
            help="Share of devices whose NEW image fails its health check (they roll back: "
            "Update Result 8).",
            min=0.0,
            max=1.0,
        ),
    ] = 0.0,
    offline_mid_download: Annotated[
        float,
        typer.Option(
            help="Share of devices that lose their link once their download/push starts.",
            min=0.0,
            max=1.0,
        ),
    ] = 0.0,
    outage_s: Annotated[
        float, typer.Option(help="How long those devices stay offline, seconds.", min=0.001)
    ] = 8.0,
    queue_mode: Annotated[
        float, typer.Option(help="Share of devices registering in queue mode.", min=0.0, max=1.0)
    ] = 0.0,
    registration_timeout: Annotated[
        float | None,
        typer.Option(
            help="Give up if not every device registered within this (default 30 s + 0.1 s "
            "per device).",
            min=0.1,
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            help="Stop this many seconds after every device registered (default: run until "
            "Ctrl-C).",
            min=0.0,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No live table.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final summary as one JSON object.")
    ] = False,
    log_level: Annotated[
        str, typer.Option(help="Log level for stderr (DEBUG, INFO, WARNING, ERROR).")
    ] = "ERROR",
) -> None:
    """Run N real device agents on simulated links against a server (Ctrl-C stops)."""
    from fotakit.sim.fleet import FleetSimulator, SimConfig, SimError

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("coap").setLevel(logging.ERROR)
    logging.getLogger("coap-server").setLevel(logging.ERROR)
    err = Console(stderr=True)
    out = Console()
    anchors = None
    if trust is not None:
        from fotakit.packages import KeyFileError, TrustStore

        try:
            anchors = TrustStore.from_path(trust.expanduser())
        except (KeyFileError, OSError, ValueError) as exc:
            err.print(f"[red]error:[/red] --trust: {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    config = SimConfig(
        devices=devices,
        server=server,
        trust=anchors,
        profile=profile,
        data_dir=data_dir.expanduser(),
        prefix=prefix,
        device_class=device_class,
        vendor_domain=vendor,
        firmware_version=firmware_version,
        manufacturer=manufacturer,
        timezone=timezone,
        lifetime=lifetime,
        seed=seed,
        fail_health=fail_health,
        offline_mid_download=offline_mid_download,
        outage_s=outage_s,
        queue_mode=queue_mode,
        registration_timeout=registration_timeout,
        reset=reset,
    )
    try:
        fleet = FleetSimulator(config)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    _raise_fd_limit(devices)
    live = not quiet and not as_json and err.is_terminal
    try:
        summary = asyncio.run(run_sim(fleet, duration=duration, live=live, console=err))
    except SimError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        raise typer.Exit(130) from None
    if as_json:
        sys.stdout.write(json.dumps(summary.to_json(), sort_keys=True) + "\n")
        sys.stdout.flush()
    else:
        out.print(summary_table(summary))


def _raise_fd_limit(devices: int) -> None:
    """A device needs a few sockets (client, relay session, downloads): lift the soft
    descriptor limit towards the hard one for big fleets."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 256 + devices * 8
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


__all__: list[str] = ["fleet_table", "run_sim", "sim", "summary_table"]
