"""``fotakit profiles``: how each device class is updated, over the REST API.

A profile is named by a device class (/3/0/1 Model Number) or ``default``; it sets the
payload form (``signed`` package for fotakit agents, ``bare`` image for devices that
check their own image format), the pull protocols in order of preference, whether the
server may push, and per-state job timeouts (docs/operator-guide.md, "Device profiles")::

    fotakit profiles list
    fotakit profiles set acme-meter --payload-form bare --protocols coap,http --no-push
    fotakit profiles set default --state-timeout downloading=1800
    fotakit profiles show acme-meter
    fotakit profiles delete acme-meter
    fotakit profiles device dev-17        # which profile this device gets, and why

``set`` replaces the whole profile (fields not given take their defaults, as a new
profile would). Errors are one red line and exit status 1 (2 for bad usage).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fotakit.cli_remote import (
    DEFAULT_URL,
    CliError,
    JsonFlag,
    TimeoutOption,
    TokenOption,
    UrlOption,
    fail,
    open_client,
    print_json,
    seg,
)
from fotakit.updates.profiles import PROTOCOLS, TIMEOUT_KEYS

__all__ = ["parse_timeouts", "profiles_app"]

profiles_app = typer.Typer(
    name="profiles",
    help="Device profiles: payload form, protocols, push and timeouts per device class.",
    no_args_is_help=True,
)
console = Console(soft_wrap=True)
NameArg = Annotated[str, typer.Argument(help="A device class (/3/0/1), or 'default'.")]


def parse_timeouts(items: list[str]) -> dict[str, float]:
    """``["downloading=1800", ...]`` -> ``{"downloading": 1800.0}``; ValueError naming
    the bad item."""
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in TIMEOUT_KEYS:
            raise ValueError(
                f"--state-timeout {item!r}: expected STATE=SECONDS with STATE one of "
                f"{', '.join(TIMEOUT_KEYS)}"
            )
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"--state-timeout {item!r}: {value!r} is not a number") from None
    return out


def _call(
    url: str, token: str | None, timeout: float, method: str, path: str, body: Any = None
) -> Any:
    """One request to the REST API; a problem ends the command with its message."""
    try:
        with open_client(url, token, timeout) as client:
            return client.request(method, path, body=body)
    except CliError as exc:
        raise fail(exc) from None


def _print_profile(p: dict[str, Any], why: str | None = None) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    stored = "" if p.get("stored", True) else " [dim](built in: no 'default' stored)[/dim]"
    grid.add_row("profile", escape(str(p.get("name"))) + stored)
    if why:
        grid.add_row("why", escape(why))
    grid.add_row("payload form", escape(str(p.get("payload_form"))))
    grid.add_row("protocols", escape(", ".join(p.get("protocols") or [])))
    grid.add_row("push", "allowed" if p.get("push") else "never")
    timeouts = p.get("timeouts") or {}
    grid.add_row(
        "timeouts",
        escape(", ".join(f"{k}={v:g}s" for k, v in timeouts.items()) or "server defaults"),
    )
    if p.get("description"):
        grid.add_row("description", escape(str(p["description"])))
    console.print(grid)


@profiles_app.command("list")
def profiles_list(
    as_json: JsonFlag = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Every profile (and the built-in default while none named 'default' is stored)."""
    items = _call(url, token, timeout, "GET", "/profiles")["items"]
    if as_json:
        print_json(items)
        return
    table = Table(title=f"{len(items)} profile(s)")
    for column in ("name", "payload form", "protocols", "push", "timeouts", "stored"):
        table.add_column(column, overflow="fold")
    for p in items:
        table.add_row(
            escape(str(p["name"])),
            escape(str(p["payload_form"])),
            escape(", ".join(p["protocols"])),
            "allowed" if p["push"] else "never",
            escape(", ".join(f"{k}={v:g}" for k, v in p["timeouts"].items()) or "-"),
            "yes" if p.get("stored") else "built in",
        )
    console.print(table)


@profiles_app.command("show")
def profiles_show(
    name: NameArg,
    as_json: JsonFlag = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """One profile."""
    profile = _call(url, token, timeout, "GET", f"/profiles/{seg(name)}")
    if as_json:
        print_json(profile)
        return
    _print_profile(profile)


@profiles_app.command("set")
def profiles_set(
    name: NameArg,
    payload_form: Annotated[
        str,
        typer.Option(
            "--payload-form",
            help="signed: the signed package (fotakit agents); bare: the bare image "
            "(devices that check their own image format).",
        ),
    ] = "signed",
    protocols: Annotated[
        str,
        typer.Option(
            "--protocols",
            help=f"Pull protocols in order of preference, comma-separated ({','.join(PROTOCOLS)}).",
        ),
    ] = ",".join(PROTOCOLS),
    push: Annotated[
        bool, typer.Option("--push/--no-push", help="Whether the server may push /5/0/0.")
    ] = True,
    timeouts: Annotated[
        list[str] | None,
        typer.Option(
            "--state-timeout",
            help=f"STATE=SECONDS, repeatable; STATE one of {', '.join(TIMEOUT_KEYS)}.",
        ),
    ] = None,
    description: Annotated[str, typer.Option("--description", help="Free text.")] = "",
    as_json: JsonFlag = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Create or replace the profile of a device class (or 'default')."""
    try:
        parsed_timeouts = parse_timeouts(timeouts or [])
    except ValueError as exc:
        raise fail(CliError(str(exc), exit_code=2)) from None
    body = {
        "payload_form": payload_form,
        "protocols": [p.strip() for p in protocols.split(",") if p.strip()],
        "push": push,
        "timeouts": parsed_timeouts,
        "description": description,
    }
    profile = _call(url, token, timeout, "PUT", f"/profiles/{seg(name)}", body)
    if as_json:
        print_json(profile)
        return
    console.print(f"[green]profile {escape(name)} stored[/green]")
    _print_profile(profile)


@profiles_app.command("delete")
def profiles_delete(
    name: NameArg,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Remove a profile (its devices fall back to 'default')."""
    _call(url, token, timeout, "DELETE", f"/profiles/{seg(name)}")
    console.print(f"profile {escape(name)} deleted")


@profiles_app.command("device")
def profiles_device(
    endpoint: Annotated[str, typer.Argument(help="The device's endpoint name.")],
    as_json: JsonFlag = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Which profile a job started now would use for this device, and why."""
    choice = _call(url, token, timeout, "GET", f"/devices/{seg(endpoint)}/profile")
    if as_json:
        print_json(choice)
        return
    _print_profile(choice["profile"], choice.get("why"))
