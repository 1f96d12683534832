"""``fotakit devices``: the fleet as the server sees it, over the REST API.

``list`` (filters: online/offline, class, firmware version, tag, endpoint substring),
``show EP`` (registration, objects, Object 5 State/Update Result by name with their
history, recent update jobs), and the device-management passthrough ``read``, ``write``
and ``execute`` on one LwM2M path. Every command takes ``--url``/``--token`` (env
``FOTAKIT_URL``/``FOTAKIT_TOKEN``, or ``[remote]`` in the config file) and ``--json`` where
it prints data, for scripts.

``write`` converts VALUE by the resource's type when the built-in object definitions know
it (``1/0/1`` Lifetime is an Integer, ``3/0/13`` Current Time a Time …), and otherwise
sends it as JSON when it reads as a JSON number, ``true``/``false``/``null`` or a quoted
string, else as text. ``--string`` always sends the text; ``--json`` requires JSON.
Opaque values are base64 strings, as the API returns them.

Errors (unknown device, device offline -> 503, timeout -> 504, bad path) are one red line
and exit status 1 (2 for bad usage).
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fotakit.cli_remote import (
    DEFAULT_URL,
    CliError,
    JsonFlag,
    RemoteClient,
    TimeoutOption,
    TokenOption,
    UrlOption,
    fail,
    lwm2m_path,
    open_client,
    print_json,
)

__all__ = [
    "complete_endpoint",
    "devices_app",
    "firmware_names",
    "parse_value",
    "resource_type",
]

devices_app = typer.Typer(
    name="devices",
    help="Devices registered with a fotakit server (over its REST API).",
    no_args_is_help=True,
)
console = Console(soft_wrap=True)


def complete_endpoint(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of endpoint names (asks the server; nothing on any error)."""
    params = ctx.params
    url = params.get("url") or DEFAULT_URL
    try:
        with RemoteClient(url, params.get("token"), timeout=2.0) as client:
            return [
                str(d["endpoint"])
                for d in client.paged("/devices", limit=50, q=incomplete or None)
                if str(d.get("endpoint", "")).startswith(incomplete)
            ]
    except Exception:  # completion must never print a traceback into the shell
        return []


EndpointArg = Annotated[
    str, typer.Argument(help="The device's endpoint name.", autocompletion=complete_endpoint)
]
PathArg = Annotated[str, typer.Argument(help="An LwM2M path: 3/0/3, /5/0, 4 …")]


def firmware_names(state: object, result: object) -> tuple[str, str]:
    """Object 5 State (/5/0/3) and Update Result (/5/0/5) as ``"2 DOWNLOADED"`` texts."""
    from fotakit.lwm2m.objects.firmware import State, UpdateResult

    def name(kind: type[State] | type[UpdateResult], value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool) or not isinstance(value, int):
            return str(value)
        try:
            return f"{value} {kind(value).name}"
        except ValueError:
            return f"{value} (unknown)"

    return name(State, state), name(UpdateResult, result)


def _yes(value: object) -> str:
    return "yes" if value else "no"


def _text(value: object) -> str:
    """A value from the server as table text (markup escaped: names may hold brackets)."""
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return escape(", ".join(str(v) for v in value)) or "-"
    return escape(str(value))


@devices_app.command("list")
def devices_list(
    online: Annotated[
        bool | None,
        typer.Option("--online/--offline", help="Only online (or only offline) devices."),
    ] = None,
    device_class: Annotated[
        str | None, typer.Option("--class", help="Only this device class (/3/0/1).")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Only this exact firmware version.")
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only devices with this tag.")] = None,
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="Endpoint name contains this.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", help="At most this many devices.", min=1, max=100_000)
    ] = 100,
    as_json: JsonFlag = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List devices with their state, class and firmware version."""
    params: dict[str, Any] = {
        "online": None if online is None else ("true" if online else "false"),
        "class": device_class,
        "version": version,
        "tag": tag,
        "q": query,
    }
    try:
        with open_client(url, token, timeout) as client:
            items = list(client.paged("/devices", limit=limit, **params))
    except CliError as exc:
        raise fail(exc) from None
    if as_json:
        print_json(items)
        return
    table = Table(title=f"{len(items)} device(s)")
    for column in ("endpoint", "online", "class", "firmware", "tags", "address", "last seen"):
        table.add_column(column, overflow="fold")
    for d in items:
        table.add_row(
            _text(d.get("endpoint")),
            "[green]online[/green]" if d.get("online") else "[dim]offline[/dim]",
            _text(d.get("class")),
            _text(d.get("firmware_version")),
            _text(d.get("tags")),
            _text(d.get("address")),
            _text(d.get("last_seen")),
        )
    console.print(table)


@devices_app.command("show")
def devices_show(
    endpoint: EndpointArg,
    as_json: JsonFlag = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """One device: registration, objects, Object 5 state and result, recent jobs."""
    try:
        with open_client(url, token, timeout) as client:
            device = client.device(endpoint)
            firmware = client.firmware(endpoint)
    except CliError as exc:
        raise fail(exc) from None
    if as_json:
        print_json({**device, "firmware": firmware})
        return
    _show_device(device, firmware)


def _show_device(device: dict[str, Any], firmware: dict[str, Any]) -> None:
    state, result = firmware_names(firmware.get("state"), firmware.get("result"))
    online = device.get("online")
    console.print(
        f"[bold]{_text(device.get('endpoint'))}[/bold]  "
        + ("[green]online[/green]" if online else "[dim]offline[/dim]"),
        highlight=False,
    )
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim")
    facts.add_column()
    for label, key in (
        ("class", "class"),
        ("firmware", "firmware_version"),
        ("tags", "tags"),
        ("LwM2M", "lwm2m_version"),
        ("binding", "binding"),
        ("address", "address"),
        ("registration", "registration_id"),
        ("last seen", "last_seen"),
    ):
        facts.add_row(label, _text(device.get(key)))
    facts.add_row("queue mode", _yes(device.get("queue_mode")))
    profile = device.get("profile")
    if isinstance(profile, dict):
        facts.add_row(
            "profile",
            f"{_text(profile.get('name'))} ({_text(profile.get('payload_form'))}, "
            f"{_text(profile.get('protocols'))}, push "
            f"{'allowed' if profile.get('push') else 'never'}) — {_text(profile.get('why'))}",
        )
    facts.add_row("/5/0/3 State", state)
    facts.add_row("/5/0/5 Result", result)
    console.print(facts)
    registration = device.get("registration")
    if isinstance(registration, dict) and registration:
        reg = Table(title="registration", show_header=False)
        reg.add_column(style="dim")
        reg.add_column(overflow="fold")
        for key in sorted(registration):
            if key != "objects":
                reg.add_row(key, _text(registration[key]))
        console.print(reg)
    objects = device.get("objects") or []
    if objects:
        console.print(
            "objects: " + " ".join(str(o.get("path")) for o in objects if isinstance(o, dict)),
            highlight=False,
            markup=False,
        )
    history = firmware.get("history") or []
    if history:
        table = Table(title="Object 5 history")
        for column in ("at", "State", "Update Result"):
            table.add_column(column)
        for h in history[-15:]:
            s, r = firmware_names(h.get("state"), h.get("result"))
            table.add_row(_text(h.get("at")), s, r)
        console.print(table)
    jobs = device.get("jobs") or []
    if jobs:
        table = Table(title="recent update jobs")
        for column in ("job", "campaign", "package", "state", "reason", "updated"):
            table.add_column(column, overflow="fold")
        for j in jobs:
            table.add_row(
                _text(j.get("id")),
                _text(j.get("campaign_id")),
                _text(j.get("package_id")),
                _text(j.get("state")),
                _text(j.get("reason"))
                + (f"\n[dim]{_text(j['reason_detail'])}[/dim]" if j.get("reason_detail") else ""),
                _text(j.get("updated_at")),
            )
        console.print(table)


@devices_app.command("read")
def devices_read(
    endpoint: EndpointArg,
    path: PathArg,
    as_json: JsonFlag = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Read a resource, an instance or an object from the device (live)."""
    try:
        lwm2m_path(path)
        with open_client(url, token, timeout) as client:
            answer = client.read(endpoint, path)
    except CliError as exc:
        raise fail(exc) from None
    if as_json:
        print_json(answer)
        return
    if "values" in answer and isinstance(answer["values"], dict):
        for key, value in answer["values"].items():
            console.print(
                f"{key} = {json.dumps(value, ensure_ascii=False)}", highlight=False, markup=False
            )
    else:
        value = answer.get("value")
        console.print(
            f"{answer.get('path')} = {json.dumps(value, ensure_ascii=False)}",
            highlight=False,
            markup=False,
        )


def resource_type(path: str) -> str | None:
    """The type of the resource at ``path`` in the built-in object definitions (None when
    unknown: a vendor object, or not a resource path)."""
    from fotakit.lwm2m.objects import builtin_registry
    from fotakit.lwm2m.path import Path as LwPath

    try:
        rdef = builtin_registry().resource(LwPath.parse("/" + lwm2m_path(path)))
    except (CliError, ValueError):
        return None
    return None if rdef is None else str(rdef.type.value)


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def parse_value(text: str, *, mode: str = "auto", rtype: str | None = None) -> Any:
    """VALUE for a Write, as the JSON the API takes.

    ``string``: the text verbatim; ``json``: the text parsed as JSON (must be valid).
    ``auto``: by the resource's type ``rtype`` when known (Integer, Unsigned Integer,
    Float, Boolean are parsed, with a precise error; String, Opaque (base64), Objlnk,
    Corelnk and Time (ISO 8601) stay text, a Time given as digits becomes epoch seconds);
    for an unknown type, a JSON number/boolean/null/quoted string is parsed, anything
    else is the text. Raises :class:`CliError` (exit 2).
    """
    if mode == "string":
        return text
    if mode == "json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise CliError(f"VALUE is not valid JSON: {exc}", exit_code=2) from None
    raw = text.strip()
    if rtype in ("Integer", "Unsigned Integer"):
        try:
            number = int(raw, 10)
        except ValueError:
            raise CliError(f"VALUE {text!r}: an integer is needed ({rtype})", exit_code=2) from None
        if rtype == "Unsigned Integer" and number < 0:
            raise CliError(f"VALUE {text!r}: must be >= 0 ({rtype})", exit_code=2)
        return number
    if rtype == "Float":
        try:
            result = float(raw)
        except ValueError:
            raise CliError(f"VALUE {text!r}: a number is needed (Float)", exit_code=2) from None
        if not math.isfinite(result):
            raise CliError(f"VALUE {text!r}: a finite number is needed (Float)", exit_code=2)
        return result
    if rtype == "Boolean":
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise CliError(f"VALUE {text!r}: true or false is needed (Boolean)", exit_code=2)
    if rtype == "Time" and re.fullmatch(r"-?[0-9]+", raw):
        return int(raw)  # epoch seconds
    if rtype is not None:
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict | list) or (isinstance(value, float) and not math.isfinite(value)):
        return text  # JSON has no NaN/Infinity: send the text
    return value


@devices_app.command("write")
def devices_write(
    endpoint: EndpointArg,
    path: PathArg,
    value: Annotated[str, typer.Argument(help="The value (see --string / --json).")],
    as_string: Annotated[
        bool, typer.Option("--string", help="Send VALUE as a string, verbatim.")
    ] = False,
    as_json_value: Annotated[
        bool, typer.Option("--json", help="VALUE is JSON (objects and lists allowed).")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Write a value to a resource on the device (needs an operator token)."""
    try:
        if as_string and as_json_value:
            raise CliError("give --string or --json, not both", exit_code=2)
        lwm2m_path(path)
        mode = "string" if as_string else "json" if as_json_value else "auto"
        parsed = parse_value(value, mode=mode, rtype=resource_type(path))
        with open_client(url, token, timeout) as client:
            client.write(endpoint, path, parsed)
    except CliError as exc:
        raise fail(exc) from None
    console.print(f"wrote /{lwm2m_path(path)} on {endpoint}", highlight=False, markup=False)


@devices_app.command("execute")
def devices_execute(
    endpoint: EndpointArg,
    path: PathArg,
    args: Annotated[
        str | None, typer.Option("--args", help="Execute arguments (TS Core §5.4.5).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Execute a resource on the device, e.g. 3/0/4 (Reboot); needs an operator token."""
    try:
        if len(lwm2m_path(path).split("/")) != 3:
            raise CliError(f"Execute needs a resource path (like 3/0/4), not {path!r}", exit_code=2)
        with open_client(url, token, timeout) as client:
            client.execute(endpoint, path, args)
    except CliError as exc:
        raise fail(exc) from None
    console.print(f"executed /{lwm2m_path(path)} on {endpoint}", highlight=False, markup=False)
