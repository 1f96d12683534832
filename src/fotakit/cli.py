"""The ``fotakit`` command line (typer + rich).

``fotakit server`` runs LwM2M + the repository + the update service + REST API and
dashboard in one process; ``fotakit demo`` runs the whole system on SQLite with a
simulated fleet (:mod:`fotakit.demo`). Subcommands registered from other modules:
``keys`` and ``package`` (packages and the repository), ``agent`` (the device agent),
``sim`` (the fleet simulator), ``devices`` and ``campaign`` (over the REST API),
``tokens`` (API tokens), ``config`` (the TOML config file: flags > environment > file).
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

from fotakit import cli_config

if TYPE_CHECKING:
    from fotakit.packages import TrustStore
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
    min_lifetime: Annotated[
        int,
        typer.Option(
            help="Shortest registration lifetime (lt, seconds) accepted; below it: 4.00.", min=1
        ),
    ] = 1,
    max_lifetime: Annotated[
        int,
        typer.Option(
            help="Longest registration lifetime (lt, seconds) accepted; above it: 4.00.", min=1
        ),
    ] = 30 * 24 * 3600,
    max_registrations: Annotated[
        int,
        typer.Option(
            help="Registrations held at most; a new endpoint beyond it gets 5.03 with Max-Age.",
            min=1,
        ),
    ] = 200_000,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    http_port: Annotated[
        int,
        typer.Option(
            help="TCP port of the REST API, the dashboard and HTTP /fw (0: any free port; "
            "/fw is also served over CoAP on the LwM2M port).",
            envvar="FOTAKIT_HTTP_PORT",
            min=0,
            max=65535,
        ),
    ] = 8080,
    http_host: Annotated[
        str | None,
        typer.Option(
            help="Address to bind HTTP to (default: the LwM2M bind address).",
            envvar="FOTAKIT_HTTP_HOST",
        ),
    ] = None,
    http: Annotated[
        bool,
        typer.Option("--http/--no-http", help="Serve HTTP (REST API, dashboard, /fw) at all."),
    ] = True,
    http_head_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds an HTTP client has to send a whole request head; a connection "
            "still sending one then is closed (slow or half-open clients).",
            envvar="FOTAKIT_HTTP_HEAD_TIMEOUT",
            min=0.1,
        ),
    ] = 10.0,
    trust: Annotated[
        FsPath | None,
        typer.Option(
            help="Trusted signer public key (PEM) or a directory of them, for REST uploads; "
            "a directory is re-read when its files change (default <data-dir>/trust, created "
            "at start; with no key in it, uploads answer 503).",
            envvar="FOTAKIT_TRUST",
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
            help="Host name devices use to fetch packages (default: the bind address; "
            "required when --host is a wildcard such as 0.0.0.0 or ::).",
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
    from fotakit.api.auth import ADMIN_TOKEN_ENV, check_admin_seed
    from fotakit.coap import TransportParams
    from fotakit.repository.runner import is_wildcard, run_server_with_repository
    from fotakit.server import ServerConfig

    _setup_logging(log_level)
    if updates and public_host is None and is_wildcard(host):
        # Devices are handed package URIs built from this host: a wildcard bind address
        # names no host they can reach, and guessing 127.0.0.1 sends them to themselves.
        err_console.print(
            f"[red]error:[/red] --host {host} binds every address, so it names no host "
            "devices can fetch packages from: give --public-host (FOTAKIT_PUBLIC_HOST), "
            "the name or address devices reach this server at"
        )
        raise typer.Exit(2)
    seed = os.environ.get(ADMIN_TOKEN_ENV) or None
    if seed is not None and http:
        try:
            check_admin_seed(seed)
        except ValueError as exc:  # refused before anything starts or is stored
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from exc
    try:
        url = _resolve_db(data_dir, db)
    except typer.BadParameter as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    transport = TransportParams(
        ack_timeout=ack_timeout, max_retransmit=max_retransmit, request_timeout=request_timeout
    )
    if min_lifetime > max_lifetime:
        err_console.print(
            f"[red]error:[/red] --min-lifetime {min_lifetime} is above --max-lifetime "
            f"{max_lifetime}",
            highlight=False,
        )
        raise typer.Exit(2)
    config = ServerConfig(
        host=host,
        port=port,
        db_url=url,
        transport=transport,
        max_register_rate=register_rate,
        register_burst=register_burst,
        min_lifetime=min_lifetime,
        max_lifetime=max_lifetime,
        max_registrations=max_registrations,
    )
    try:
        repository_dir = (repository or (data_dir or FsPath("data")) / "repository").expanduser()
        default_trust = (data_dir or FsPath("data")) / "trust"
        if trust is None and db is None:
            # The guide copies the signer's public key here once the server runs
            # (docs/operator-guide.md): the directory exists from the first start.
            default_trust.mkdir(parents=True, exist_ok=True)
        anchors = _trust_store(trust or (default_trust if default_trust.exists() else None))
        asyncio.run(
            run_server_with_repository(
                config,
                repository_dir,
                http_host=http_host,
                http_port=http_port if http else None,
                http_head_timeout=http_head_timeout,
                trust=anchors,
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


def _trust_store(path: FsPath | None) -> TrustStore | None:
    """The trust anchors at ``path`` (a PEM file or a directory); exit 2 if unreadable.

    A directory is a :class:`~fotakit.packages.TrustDirectory`: keys copied into it while
    the server runs are trusted from the next upload on, and it may start empty."""
    from fotakit.packages import KeyFileError, TrustDirectory, TrustStore

    if path is None:
        return None
    try:
        if path.expanduser().is_dir():
            anchors = TrustDirectory(path.expanduser())
            for name, why in anchors.skipped.items():
                err_console.print(f"[yellow]warning:[/yellow] {path}/{name} skipped: {why}")
            if not len(anchors):
                logging.getLogger("fotakit.server").warning(
                    "no trusted signer keys in %s yet: uploads answer 503 until a public key "
                    "(PEM) is copied there",
                    path,
                )
            return anchors
        return TrustStore.from_path(path.expanduser())
    except (KeyFileError, OSError, ValueError) as exc:
        err_console.print(f"[red]error:[/red] cannot load trust anchors from {path}: {exc}")
        raise typer.Exit(2) from exc


def _bucket(rate: float | None, burst: int) -> BucketConfig | None:
    from fotakit.updates.ratelimit import BucketConfig

    return None if rate is None else BucketConfig(rate_per_minute=rate, burst=burst)


@app.command()
def demo(
    data_dir: Annotated[
        FsPath,
        typer.Option(help="Where the demo keeps its data (recreated on each run)."),
    ] = FsPath("demo-data"),
    devices: Annotated[int, typer.Option(help="Simulated devices.", min=1, max=1000)] = 50,
    profile: Annotated[
        str, typer.Option(help="Link profile of the simulated fleet (see fotakit sim).")
    ] = "mixed",
    port: Annotated[
        int, typer.Option(help="UDP port of the LwM2M server (0: any free).", min=0, max=65535)
    ] = 0,
    http_port: Annotated[
        int,
        typer.Option(
            help="TCP port of the REST API and dashboard (0: any free).", min=0, max=65535
        ),
    ] = 8080,
    fail_health: Annotated[
        float,
        typer.Option(help="Share of devices whose new image fails its health check.", min=0, max=1),
    ] = 0.1,
    offline_mid_download: Annotated[
        float,
        typer.Option(help="Share of devices that lose their link mid-download.", min=0, max=1),
    ] = 0.06,
    seed: Annotated[int, typer.Option(help="Seed of the fleet's profiles and faults.")] = 2026,
    serve: Annotated[
        bool | None,
        typer.Option(
            "--serve/--exit",
            help="After the summary, keep serving the dashboard until Ctrl-C (--exit: stop). "
            "Default: serve when run from a terminal.",
        ),
    ] = None,
) -> None:
    """The whole system in one command: server, 50 simulated devices, a signed 1.1.0 and a
    campaign with live progress, then a summary, the dashboard URL and the admin token."""
    from fotakit.demo import DemoOptions, run_demo

    _setup_logging(os.environ.get("FOTAKIT_LOG_LEVEL", "ERROR"))
    options = DemoOptions(
        data_dir=data_dir,
        devices=devices,
        profile=profile,
        coap_port=port,
        http_port=http_port,
        fail_health=fail_health,
        offline_mid_download=offline_mid_download,
        seed=seed,
        serve_after=sys.stdin.isatty() if serve is None else serve,
    )
    code = asyncio.run(run_demo(console, options))
    raise typer.Exit(code)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[FsPath | None, cli_config.CONFIG_OPTION] = None,
) -> None:
    # Flags > environment > the TOML file > defaults: the file becomes click's default_map.
    cli_config.apply_config(ctx, config)


def _register_subcommands() -> None:
    from fotakit import cli_repository  # noqa: F401  (registers package upload / list)
    from fotakit.cli_agent import agent_app
    from fotakit.cli_campaign import campaign_app
    from fotakit.cli_devices import devices_app
    from fotakit.cli_packages import keys_app, package_app
    from fotakit.cli_profiles import profiles_app
    from fotakit.cli_sim import sim
    from fotakit.cli_tokens import tokens_app

    app.command(name="sim")(sim)

    app.add_typer(keys_app, name="keys")
    app.add_typer(package_app, name="package")
    app.add_typer(agent_app, name="agent")
    app.add_typer(cli_config.config_app, name="config")
    app.add_typer(devices_app, name="devices")
    app.add_typer(campaign_app, name="campaign")
    app.add_typer(profiles_app, name="profiles")
    app.add_typer(tokens_app, name="tokens")


_register_subcommands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
