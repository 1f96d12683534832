"""The ``fotakit`` command line (typer + rich).

``fotakit server`` runs the LwM2M server in the foreground; ``fotakit demo`` starts a
server on SQLite and one client, and shows a registration, a read and a write. Later
issues add ``keys``, ``package``, ``campaign``, ``agent`` and ``sim``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from fotakit.updates.ratelimit import BucketConfig

app = typer.Typer(
    name="fotakit",
    help="Over-the-air firmware updates for IoT fleets with LwM2M.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _setup_logging(level: str) -> None:
    # One plain line per event: server logs are read by people and by log shippers alike.
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiocoap logs every retransmission and unmatched message at INFO; keep it quiet.
    logging.getLogger("coap").setLevel(logging.WARNING)
    logging.getLogger("coap-server").setLevel(logging.WARNING)


def _resolve_db(data_dir: FsPath | None, db: str | None) -> str:
    from fotakit.store import default_db_url, normalize_url

    if db and data_dir:
        raise typer.BadParameter("give --db or --data-dir, not both")
    if db:
        if "://" not in db:  # a bare SQLite file path
            return normalize_url(f"sqlite:///{FsPath(db).expanduser().resolve()}")
        return normalize_url(db)
    directory = (data_dir or FsPath("data")).expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return default_db_url(directory)


@app.command()
def server(
    host: Annotated[
        str,
        typer.Option(help="Address to bind the LwM2M (CoAP/UDP) server to.", envvar="FOTAKIT_HOST"),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            help="UDP port (5683 is the CoAP default).", envvar="FOTAKIT_PORT", min=0, max=65535
        ),
    ] = 5683,
    data_dir: Annotated[
        FsPath | None,
        typer.Option(
            help="Directory for the SQLite database (default ./data).", envvar="FOTAKIT_DATA_DIR"
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="Database URL (postgresql://… or sqlite:///…) or a SQLite file path.",
            envvar="FOTAKIT_DB",
        ),
    ] = None,
    ack_timeout: Annotated[
        float,
        typer.Option(help="CoAP ACK_TIMEOUT in seconds (raise it for NB-IoT links).", min=0.05),
    ] = 2.0,
    max_retransmit: Annotated[int, typer.Option(help="CoAP MAX_RETRANSMIT.", min=0)] = 4,
    request_timeout: Annotated[
        float,
        typer.Option(
            help="Bound on one device-management request, all retransmissions included.", min=0.1
        ),
    ] = 60.0,
    register_rate: Annotated[
        float,
        typer.Option(
            help="Sustained Register requests per second accepted from one source address "
            "(a flood beyond it gets 5.03 with Max-Age).",
            min=0.1,
        ),
    ] = 20.0,
    register_burst: Annotated[
        int,
        typer.Option(help="Burst of Register requests one source address may send at once.", min=1),
    ] = 50,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    http_port: Annotated[
        int | None,
        typer.Option(
            help="Also serve the firmware repository over HTTP on this TCP port (default: no "
            "HTTP; /fw is always served over CoAP on the LwM2M port).",
            envvar="FOTAKIT_HTTP_PORT",
            min=0,
            max=65535,
        ),
    ] = None,
    repository: Annotated[
        FsPath | None,
        typer.Option(
            help="Firmware package directory (default <data-dir>/repository).",
            envvar="FOTAKIT_REPOSITORY",
        ),
    ] = None,
    node_id: Annotated[
        str | None,
        typer.Option(
            help="Name of this server process in update jobs (stable across restarts, "
            "distinct per process sharing a database; default <host name>:<port>).",
            envvar="FOTAKIT_NODE_ID",
        ),
    ] = None,
    public_host: Annotated[
        str | None,
        typer.Option(
            help="Host name devices use to fetch packages (default: the bind address).",
            envvar="FOTAKIT_PUBLIC_HOST",
        ),
    ] = None,
    updates: Annotated[
        bool,
        typer.Option(help="Run update jobs and campaigns in this process (fotakit.updates)."),
    ] = True,
    global_rate: Annotated[
        float | None,
        typer.Option(
            help="Fleet-wide limit: devices started per minute over all campaigns and all "
            "server processes sharing the database (default: no fleet-wide limit; each "
            "campaign's own rate still applies).",
            envvar="FOTAKIT_GLOBAL_RATE",
            min=0.001,
        ),
    ] = None,
    global_burst: Annotated[
        int,
        typer.Option(
            help="Starts the fleet-wide bucket allows at once (with --global-rate).",
            envvar="FOTAKIT_GLOBAL_BURST",
            min=1,
        ),
    ] = 1,
) -> None:
    """Run the LwM2M server in the foreground; one log line per registration event."""
    from fotakit.coap import TransportParams
    from fotakit.repository.runner import run_server_with_repository
    from fotakit.server import ServerConfig

    _setup_logging(log_level)
    try:
        url = _resolve_db(data_dir, db)
    except typer.BadParameter as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    transport = TransportParams(
        ack_timeout=ack_timeout, max_retransmit=max_retransmit, request_timeout=request_timeout
    )
    config = ServerConfig(
        host=host,
        port=port,
        db_url=url,
        transport=transport,
        max_register_rate=register_rate,
        register_burst=register_burst,
    )
    try:
        repository_dir = (repository or (data_dir or FsPath("data")) / "repository").expanduser()
        asyncio.run(
            run_server_with_repository(
                config,
                repository_dir,
                http_port=http_port,
                updates=updates,
                node_id=node_id,
                public_host=public_host,
                global_rate=_bucket(global_rate, global_burst),
            )
        )
    except OSError as exc:
        err_console.print(f"[red]error:[/red] cannot start the server on {host}:{port}: {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass


def _bucket(rate: float | None, burst: int) -> BucketConfig | None:
    from fotakit.updates.ratelimit import BucketConfig

    return None if rate is None else BucketConfig(rate_per_minute=rate, burst=burst)


@app.command()
def demo(
    data_dir: Annotated[
        FsPath,
        typer.Option(help="Where the demo keeps its SQLite database (recreated on each run)."),
    ] = FsPath("demo-data"),
    port: Annotated[
        int, typer.Option(help="UDP port of the demo server (0: any free).", min=0, max=65535)
    ] = 0,
) -> None:
    """Start a server on SQLite and one client; show a registration, a read and a write."""
    from fotakit.demo import prepare_data_dir, run_demo

    _setup_logging(os.environ.get("FOTAKIT_LOG_LEVEL", "WARNING"))
    db_url = prepare_data_dir(data_dir.expanduser().resolve())
    code = asyncio.run(run_demo(console, db_url, port))
    raise typer.Exit(code)


def _register_subcommands() -> None:
    from fotakit import cli_repository  # noqa: F401  (registers package upload / list)
    from fotakit.cli_agent import agent_app
    from fotakit.cli_packages import keys_app, package_app

    app.add_typer(keys_app, name="keys")
    app.add_typer(package_app, name="package")
    app.add_typer(agent_app, name="agent")


_register_subcommands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
