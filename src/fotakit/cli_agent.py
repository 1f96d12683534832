"""``fotakit agent run`` and ``fotakit agent init-config``: the device agent's command line.

``run`` starts :class:`fotakit.agent.runtime.Agent` from a TOML file and writes one JSON
line per agent event to stdout (boot, registration, each Object 5 state change, download
progress, trial, confirm, revert, reboot), so both people and supervisors (systemd,
tests) can follow it. A reboot either restarts the agent in the same process
(``--no-reexec``, the default) or re-executes the program (``--reexec``), which is what a
real firmware switch needs when the agent itself is part of the image.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

agent_app = typer.Typer(
    name="agent",
    help="The LwM2M device agent: Object 5 firmware updates into A/B slots.",
    no_args_is_help=True,
)


def _print_event(event: object) -> None:
    to_json = getattr(event, "to_json", None)
    if to_json is not None:
        sys.stdout.write(json.dumps(to_json(), sort_keys=True) + "\n")
        sys.stdout.flush()


async def run_agent(config_path: Path, *, reexec: bool) -> str:
    """Run until SIGINT/SIGTERM (``"stopped"``) or a reboot in reexec mode (``"reboot"``)."""
    from fotakit.agent.config import load_config
    from fotakit.agent.runtime import Agent

    config = load_config(config_path)
    agent = Agent(config, reexec=reexec)
    agent.add_listener(_print_event)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await agent.start()
    stopping = asyncio.ensure_future(stop.wait())
    finished = asyncio.ensure_future(agent.wait_stopped())
    try:
        await asyncio.wait({stopping, finished}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if finished.done():
        return finished.result()
    finished.cancel()
    await agent.stop(deregister=True)
    return "stopped"


@agent_app.command("run")
def run(
    config: Annotated[
        Path,
        typer.Option("--config", "-c", help="The agent's TOML configuration file."),
    ],
    reexec: Annotated[
        bool,
        typer.Option(
            "--reexec/--no-reexec",
            help="On reboot, re-execute this program (default: restart in-process).",
        ),
    ] = False,
    log_level: Annotated[
        str, typer.Option(help="Log level for stderr (DEBUG, INFO, WARNING, ERROR).")
    ] = "WARNING",
) -> None:
    """Run the agent: register, serve Object 5, update into the inactive slot."""
    from fotakit.agent.config import ConfigError
    from fotakit.agent.persist import CorruptStateError

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("coap").setLevel(logging.WARNING)
    logging.getLogger("coap-server").setLevel(logging.WARNING)
    try:
        reason = asyncio.run(run_agent(config, reexec=reexec))
    except ConfigError as exc:
        typer.echo(f"error: {config}: {exc}", err=True)
        raise typer.Exit(2) from None
    except CorruptStateError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    if reason == "reboot":
        sys.stdout.flush()
        sys.stderr.flush()
        # the same command line again (interpreter, -m or script, arguments)
        os.execv(sys.executable, list(sys.orig_argv))


@agent_app.command("init-config")
def init_config(
    path: Annotated[Path, typer.Argument(help="Where to write the example configuration.")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented example configuration to edit."""
    from fotakit.agent.config import example_config

    if path.exists() and not force:
        typer.echo(f"error: {path} exists (use --force to overwrite)", err=True)
        raise typer.Exit(1)
    path.write_text(example_config(), encoding="utf-8")
    typer.echo(f"wrote {path}")


def main() -> None:
    """``python -m fotakit.cli_agent run ...`` (what --reexec re-executes)."""
    agent_app()


if __name__ == "__main__":
    main()
