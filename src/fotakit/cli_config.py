"""The CLI's configuration file: TOML tables become click's ``default_map``.

Every ``fotakit`` option takes its value from, in this order of precedence: the command
line, its environment variable (``FOTAKIT_…``, where the option has one), the TOML file,
the built-in default. That is exactly click's own order (COMMANDLINE > ENVIRONMENT >
DEFAULT_MAP > DEFAULT), so the file is loaded into the root context's ``default_map`` by
the root callback (:func:`apply_config`) and click does the rest.

The file (``--config PATH``, env ``FOTAKIT_CONFIG``, default
``$XDG_CONFIG_HOME/fotakit/config.toml`` or ``~/.config/fotakit/config.toml`` when it
exists) has one table per command, nested for subcommands, keyed by option name
(``http-port`` and ``http_port`` are the same key)::

    [server]
    port = 5684
    http-port = 8080

    [campaign.create]
    watch = true

    [remote]                  # every command that talks to the REST API
    url = "http://127.0.0.1:8080"
    token = "fk_..."

``[remote]`` gives ``url``/``token``/``timeout`` to every command of the remote groups
(``devices``, ``campaign``) that has such an option; a value in the command's own table
wins over ``[remote]``. Each value is checked against the option's type when the file is
loaded. An unknown table or key, a value of the wrong type or malformed TOML is an error
naming the file and the key (or the line), exit status 2 — never a silently ignored
setting.

Limits: keys are option names only (not their short forms ``-c``); options of a group
itself (rather than its commands) are not configurable except through ``[remote]``.
``fotakit config show COMMAND… [ARGS]`` prints every option of a command with its
effective value and where it came from.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer._click import core as click_core
from typer.core import TyperGroup, TyperOption

__all__ = [
    "CONFIG_OPTION",
    "ENV_CONFIG",
    "REMOTE_GROUPS",
    "REMOTE_KEYS",
    "ConfigError",
    "apply_config",
    "build_default_map",
    "config_app",
    "default_config_path",
    "load_config_file",
    "parse_config",
]

ENV_CONFIG: Final = "FOTAKIT_CONFIG"
REMOTE_TABLE: Final = "remote"
REMOTE_GROUPS: Final = ("devices", "campaign", "profiles")
"""Top-level groups whose commands talk to the REST API and take ``[remote]`` values."""
REMOTE_KEYS: Final = ("url", "token", "timeout")

config_app = typer.Typer(
    name="config",
    help="The configuration file: where it is and what each option resolves to.",
    no_args_is_help=True,
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True)


class ConfigError(Exception):
    """The configuration file is unreadable, malformed or names an unknown key."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)
        self.message = message


def default_config_path() -> Path:
    """``$XDG_CONFIG_HOME/fotakit/config.toml`` (``~/.config`` when XDG is unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fotakit" / "config.toml"


def load_config_file(path: Path) -> dict[str, Any]:
    """The parsed TOML document (raises :class:`ConfigError` with the line on bad TOML)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror or exc}") from None
    return parse_config(raw, path)


def parse_config(raw: bytes, path: Path | str = "<config>") -> dict[str, Any]:
    """Parse TOML bytes (raises :class:`ConfigError` naming ``path`` and the line)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"not UTF-8 (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # the message already says "(at line N, column M)"
        raise ConfigError(path, f"malformed TOML: {exc}") from None


def _key(name: str) -> str:
    return name.replace("-", "_")


def _display(param: click_core.Parameter) -> str:
    """How the file names ``param``: its first long option without dashes (``http-port``,
    ``class`` for ``--class``), else its name (arguments)."""
    for opt in getattr(param, "opts", ()):
        if opt.startswith("--"):
            return str(opt[2:])
    return (param.name or "").replace("_", "-")


def _params(command: click_core.Command) -> dict[str, click_core.Parameter]:
    """The configurable parameters of ``command`` by display name (help and completion
    options excluded)."""
    out: dict[str, click_core.Parameter] = {}
    for param in command.params:
        if param.name is None or param.name == "help":
            continue
        if getattr(param, "is_eager", False) and param.expose_value is False:
            continue  # --install-completion, --version and the like
        out[_display(param)] = param
    return out


def _aliases(command: click_core.Command) -> dict[str, click_core.Parameter]:
    """Every key that names a parameter (normalised by :func:`_key`): its long options
    and its Python name."""
    out: dict[str, click_core.Parameter] = {}
    for display, param in _params(command).items():
        out[_key(display)] = param
        out.setdefault(_key(param.name or display), param)
    return out


def _subcommands(group: TyperGroup) -> dict[str, click_core.Command]:
    ctx = click_core.Context(group)
    out: dict[str, click_core.Command] = {}
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is not None:
            out[name] = cmd
    return out


def _where(path: tuple[str, ...]) -> str:
    return ".".join(path) if path else "(top level)"


def _unknown(path: Path | str, dotted: str, kind: str, choices: list[str]) -> ConfigError:
    hint = difflib.get_close_matches(dotted.rsplit(".", 1)[-1], choices, n=1)
    suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
    listed = ", ".join(sorted(choices)) or "none"
    return ConfigError(path, f"unknown {kind} {dotted!r}{suffix}; known here: {listed}")


def _check_value(
    source: Path | str,
    dotted: str,
    command: click_core.Command,
    param: click_core.Parameter,
    value: Any,
) -> Any:
    if isinstance(value, dict):
        raise ConfigError(source, f"{dotted} is an option, not a table")
    ctx = click_core.Context(command, info_name=command.name)
    coerce = getattr(param, "get_runtime_param", None)
    try:
        if coerce is not None:
            coerce().coerce(value, param=param, ctx=ctx)
        else:
            param.process_value(ctx, value)
    except typer.BadParameter as exc:
        raise ConfigError(source, f"{dotted}: {exc.format_message()}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, f"{dotted}: invalid value {value!r} ({exc})") from None
    return value


def _table(
    source: Path | str,
    data: Mapping[str, Any],
    command: click_core.Command,
    path: tuple[str, ...],
) -> dict[str, Any]:
    subcommands = _subcommands(command) if isinstance(command, TyperGroup) else {}
    # the root's own options (--config, completion) are not set from the file
    aliases = _aliases(command) if path else {}
    by_cmd_key = {_key(name): name for name in subcommands}
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        dotted = ".".join((*path, raw_key))
        key = _key(raw_key)
        if key in by_cmd_key:
            name = by_cmd_key[key]
            if not isinstance(value, dict):
                raise ConfigError(source, f"{dotted} is a command: give it a [{dotted}] table")
            out[name] = _table(source, value, subcommands[name], (*path, name))
        elif key in aliases:
            param = aliases[key]
            assert param.name is not None  # _params keeps named parameters only
            if param.name in out:
                raise ConfigError(source, f"{dotted}: {_display(param)!r} is given twice")
            out[param.name] = _check_value(source, dotted, command, param, value)
        else:
            choices = [*subcommands, *(_params(command) if path else [REMOTE_TABLE])]
            raise _unknown(source, dotted, "command or option", choices)
    return out


def _remote_targets(
    root: TyperGroup,
) -> list[tuple[tuple[str, ...], click_core.Command]]:
    """(path, command) of every command under the remote groups."""
    out: list[tuple[tuple[str, ...], click_core.Command]] = []
    stack: list[tuple[tuple[str, ...], click_core.Command]] = []
    subs = _subcommands(root)
    for name in REMOTE_GROUPS:
        if name in subs:
            stack.append(((name,), subs[name]))
    while stack:
        path, cmd = stack.pop()
        if isinstance(cmd, TyperGroup):
            stack.extend(((*path, n), c) for n, c in _subcommands(cmd).items())
        else:
            out.append((path, cmd))
    return out


def build_default_map(
    data: Mapping[str, Any], root: click_core.Command, source: Path | str = "<config>"
) -> dict[str, Any]:
    """Validate a parsed config document against the command tree; click's default_map.

    Raises :class:`ConfigError` naming the first unknown key or invalid value.
    """
    if not isinstance(root, TyperGroup):
        raise TypeError("the root command must be a group")
    body = {k: v for k, v in data.items() if k != REMOTE_TABLE}
    default_map = _table(source, body, root, ())
    remote = data.get(REMOTE_TABLE)
    if remote is None:
        return default_map
    if not isinstance(remote, dict):
        raise ConfigError(source, f"{REMOTE_TABLE} must be a table: [{REMOTE_TABLE}]")
    for raw_key in remote:
        if _key(raw_key) not in REMOTE_KEYS:
            raise _unknown(source, f"{REMOTE_TABLE}.{raw_key}", "option", list(REMOTE_KEYS))
    checked: set[str] = set()
    for path, command in _remote_targets(root):
        aliases = _aliases(command)
        table = default_map
        for part in path:
            table = table.setdefault(part, {})
        for raw_key, value in remote.items():
            key = _key(raw_key)
            param = aliases.get(key)
            if param is None or param.name is None:
                continue
            if key not in checked:
                _check_value(source, f"{REMOTE_TABLE}.{raw_key}", command, param, value)
                checked.add(key)
            table.setdefault(param.name, value)  # the command's own table wins
    return default_map


def resolve_config_path(explicit: Path | None) -> Path | None:
    """The file to load: ``explicit`` (must exist) or the default one if it exists."""
    if explicit is not None:
        return explicit.expanduser()
    default = default_config_path()
    return default if default.is_file() else None


def apply_config(ctx: click_core.Context, explicit: Path | None) -> Path | None:
    """Load the config file into ``ctx.default_map`` (the root context); the file used.

    On any :class:`ConfigError`: one red line and exit status 2.
    """
    path = resolve_config_path(explicit)
    if path is None:
        return None
    try:
        if not path.is_file():
            raise ConfigError(path, "no such file")
        data = load_config_file(path)
        default_map = build_default_map(data, ctx.command, path)
    except ConfigError as exc:
        if ctx.resilient_parsing:  # shell completion: never print, complete without it
            return None
        err_console.print(
            f"[red]error:[/red] config {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None
    merged = dict(ctx.default_map or {})
    merged.update(default_map)
    ctx.default_map = merged
    ctx.meta["fotakit.config_path"] = path
    return path


CONFIG_OPTION: Final = typer.Option(
    "--config",
    help="TOML configuration file: one table per command, e.g. \\[server] port = 5684; "
    "\\[remote] url/token for devices and campaign (default ~/.config/fotakit/config.toml "
    "if it exists). Flags and environment variables win over it.",
    envvar=ENV_CONFIG,
    dir_okay=False,
    show_default=False,
)
"""The root ``--config`` option (``Annotated[Path | None, CONFIG_OPTION]``)."""


# -- fotakit config ------------------------------------------------------------------------


@config_app.command("path")
def config_path(ctx: typer.Context) -> None:
    """Print the configuration file in use (nothing and exit 1 when none)."""
    path = ctx.find_root().meta.get("fotakit.config_path")
    if path is None:
        err_console.print(
            f"no configuration file (looked for {default_config_path()}; set --config or "
            f"{ENV_CONFIG})",
            highlight=False,
        )
        raise typer.Exit(1)
    console.print(str(path), highlight=False)


_SECRET_NAMES: Final = frozenset({"token", "password", "secret"})


def _shown(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name in _SECRET_NAMES and value:
        text = str(value)
        return text[:5] + "…(hidden)" if len(text) > 8 else "(hidden)"
    if isinstance(value, tuple | list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


@config_app.command(
    "show",
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
    },
)
def config_show(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object: {option: {value, source}}.")
    ] = False,
) -> None:
    """Show each option of a command, its effective value and its source.

    Usage: ``fotakit config show server --port 6000`` — the words name the command
    (``campaign create``), the rest are parsed as that command's arguments (nothing is
    run). Sources: command line > environment > config file > default.
    """
    root_ctx = ctx.find_root()
    words = list(ctx.args)
    command: click_core.Command = root_ctx.command
    parent = root_ctx
    path: list[str] = []
    while words and isinstance(command, TyperGroup) and not words[0].startswith("-"):
        name = words[0]
        sub = command.get_command(parent, name)
        if sub is None:
            err_console.print(
                f"[red]error:[/red] no command {escape(' '.join([*path, name]))!r}", highlight=False
            )
            raise typer.Exit(2)
        words.pop(0)
        path.append(name)
        args = words if not isinstance(sub, TyperGroup) else []
        parent = sub.make_context(name, list(args), parent=parent, resilient_parsing=True)
        command = sub
    if not path or isinstance(command, TyperGroup):
        err_console.print(
            "[red]error:[/red] name a command, e.g. `fotakit config show server`",
            highlight=False,
        )
        raise typer.Exit(2)
    labels = {
        click_core.ParameterSource.COMMANDLINE: "command line",
        click_core.ParameterSource.ENVIRONMENT: "environment",
        click_core.ParameterSource.DEFAULT_MAP: "config file",
        click_core.ParameterSource.DEFAULT: "default",
    }
    rows: dict[str, dict[str, str]] = {}
    for display, param in _params(command).items():
        name = param.name or display
        source = parent.get_parameter_source(name)
        label = labels.get(source, "-") if source is not None else "-"
        if label == "environment" and isinstance(param, TyperOption) and param.envvar:
            label = f"environment ({param.envvar})"
        rows[display] = {"value": _shown(name, parent.params.get(name)), "source": label}
    if as_json:
        typer.echo(json.dumps(rows, sort_keys=True))
        return
    table = Table(title=f"fotakit {' '.join(path)}")
    for column in ("option", "value", "source"):
        table.add_column(column, overflow="fold")
    for name, row in rows.items():
        table.add_row(name, row["value"], row["source"])
    console.print(table)
