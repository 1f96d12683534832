"""The configuration file: flags > environment > TOML file > defaults, for every command.

``fotakit config show --json COMMAND… [ARGS]`` reports each option's effective value and
its source (click's own ParameterSource), so each precedence level is observed directly;
test_cli_server_process.py runs a real ``fotakit server`` configured by a file. Hypothesis
drives the loader with random nested tables (valid ones from the real command tree,
unknown keys inserted at random depths) and random bytes.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
import typer
from cli_helpers import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fotakit.cli import app
from fotakit.cli_config import ConfigError, build_default_map, parse_config

ROOT = typer.main.get_command(app)


def show(*args: str, config: Path | None = None, **env: str) -> dict[str, dict[str, str]]:
    prefix = ["--config", str(config)] if config is not None else []
    result = run_cli(*prefix, "config", "show", "--json", *args, env=dict(env))
    assert result.exit_code == 0, result.output
    out: dict[str, dict[str, str]] = json.loads(result.stdout)
    return out


def write(tmp_path: Path, text: str, name: str = "fotakit.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_root_help_offers_the_config_file_and_shell_completion() -> None:
    result = run_cli("--help")
    assert result.exit_code == 0
    for option in ("--config", "--install-completion", "--show-completion"):
        assert option in result.stdout
    for command in ("devices", "campaign", "config", "server", "agent"):
        assert command in result.stdout


def test_show_completion_prints_a_script_for_the_shell() -> None:
    result = run_cli("--show-completion", "bash", env={"SHELL": "/bin/bash"})
    assert result.exit_code == 0, result.output
    assert "complete" in result.stdout and "fotakit" in result.stdout.lower()


@pytest.mark.parametrize(
    ("option", "env_name", "file_value", "env_value", "flag_value"),
    [
        ("port", "FOTAKIT_PORT", "6001", "6002", "6003"),
        ("db", "FOTAKIT_DB", '"file.db"', "env.db", "flag.db"),
        ("node-id", "FOTAKIT_NODE_ID", '"from-file"', "from-env", "from-flag"),
    ],
)
def test_each_precedence_level_for_server_options(
    tmp_path: Path, option: str, env_name: str, file_value: str, env_value: str, flag_value: str
) -> None:
    config = write(tmp_path, f"[server]\n{option} = {file_value}\n")
    plain = file_value.strip('"')
    default = show("server")[option]
    assert default["source"] == "default"
    from_file = show("server", config=config)[option]
    assert from_file == {"value": plain, "source": "config file"}
    from_env = show("server", config=config, **{env_name: env_value})[option]
    assert from_env == {"value": env_value, "source": f"environment ({env_name})"}
    from_flag = show("server", f"--{option}", flag_value, config=config, **{env_name: env_value})[
        option
    ]
    assert from_flag == {"value": flag_value, "source": "command line"}


def test_options_without_an_environment_variable_take_the_file_over_the_default(
    tmp_path: Path,
) -> None:
    config = write(tmp_path, "[server]\nack_timeout = 0.5\nupdates = false\n")
    shown = show("server", config=config)
    assert shown["ack-timeout"] == {"value": "0.5", "source": "config file"}
    assert shown["updates"] == {"value": "False", "source": "config file"}
    flagged = show("server", "--ack-timeout", "3", "--updates", config=config)
    assert flagged["ack-timeout"] == {"value": "3.0", "source": "command line"}
    assert flagged["updates"]["source"] == "command line"


def test_subcommand_tables_and_the_remote_table(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[remote]\nurl = "http://127.0.0.1:9999"\ntoken = "fk_from_remote_table"\n'
        '[campaign.create]\nwatch = true\nwave = ["10%", "40"]\nclass = "sensor"\n'
        '[devices.list]\nurl = "http://127.0.0.1:7777"\n'
        '[agent.run]\nconfig = "/etc/fotakit/agent.toml"\n',
    )
    create = show("campaign", "create", config=config)
    assert create["watch"] == {"value": "True", "source": "config file"}
    assert create["wave"]["value"] == "10%, 40"
    assert create["class"] == {"value": "sensor", "source": "config file"}
    assert create["url"] == {"value": "http://127.0.0.1:9999", "source": "config file"}
    assert create["token"]["value"].endswith("(hidden)")  # never printed in full
    # a command's own table wins over [remote]
    assert show("devices", "list", config=config)["url"]["value"] == "http://127.0.0.1:7777"
    assert show("devices", "show", config=config)["url"]["value"] == "http://127.0.0.1:9999"
    assert show("agent", "run", config=config)["config"]["value"] == "/etc/fotakit/agent.toml"
    # the environment wins over [remote]
    env = show("devices", "show", config=config, FOTAKIT_URL="http://127.0.0.1:1")
    assert env["url"] == {"value": "http://127.0.0.1:1", "source": "environment (FOTAKIT_URL)"}


def test_fotakit_config_env_and_the_xdg_default_are_found(tmp_path: Path) -> None:
    config = write(tmp_path, "[server]\nport = 6111\n")
    assert show("server", FOTAKIT_CONFIG=str(config))["port"]["value"] == "6111"
    xdg = tmp_path / "xdg"
    (xdg / "fotakit").mkdir(parents=True)
    write(xdg / "fotakit", "[server]\nport = 6222\n", name="config.toml")
    assert show("server", XDG_CONFIG_HOME=str(xdg))["port"]["value"] == "6222"
    path = run_cli("config", "path", env={"XDG_CONFIG_HOME": str(xdg)})
    assert path.exit_code == 0 and path.stdout.strip() == str(xdg / "fotakit" / "config.toml")
    none = run_cli("config", "path", env={"XDG_CONFIG_HOME": str(tmp_path / "empty")})
    assert none.exit_code == 1


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[server]\nprot = 5\n", ["unknown command or option 'server.prot'", "'port'"]),
        ("[serve]\nport = 5\n", ["unknown command or option 'serve'", "'server'"]),
        ("[campaign.create]\nwatchh = true\n", ["'campaign.create.watchh'"]),
        ("[remote]\nuri = 'x'\n", ["'remote.uri'", "'url'"]),
        ("[server]\nport = \n", ["malformed TOML", "line 2"]),
        ("[server]\nport = 'abc'\n", ["server.port", "integer"]),
        ("[server]\nport = 70000\n", ["server.port", "65535"]),
        ("[campaign]\ncreate = 5\n", ["campaign.create is a command", "[campaign.create]"]),
        ("[server.port]\nx = 1\n", ["server.port is an option, not a table"]),
        ("[server]\nport = 1\nPORT = 2\n", ["unknown"]),
        ("[server]\nhttp-port = 1\nhttp_port = 2\n", ["given twice"]),
    ],
)
def test_bad_config_is_exit_2_naming_the_file_and_the_key(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    config = write(tmp_path, text)
    result = run_cli("--config", str(config), "server", "--help")
    assert result.exit_code == 2, result.output
    assert str(config) in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_a_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    result = run_cli("--config", str(tmp_path / "nope.toml"), "devices", "list")
    assert result.exit_code == 2
    assert "no such file" in result.stderr


# -- the loader, driven by hypothesis --------------------------------------------------------

#: Valid (table path, key, value, param name) entries of the real command tree.
VALID: list[tuple[tuple[str, ...], str, Any, str]] = [
    (("server",), "port", 5684, "port"),
    (("server",), "host", "0.0.0.0", "host"),
    (("server",), "ack-timeout", 1.5, "ack_timeout"),
    (("server",), "updates", False, "updates"),
    (("server",), "log-level", "DEBUG", "log_level"),
    (("agent", "run"), "config", "/etc/agent.toml", "config"),
    (("agent", "run"), "reexec", True, "reexec"),
    (("campaign", "create"), "watch", True, "watch"),
    (("campaign", "create"), "wave", ["10", "20%"], "wave"),
    (("campaign", "create"), "class", "sensor", "device_class"),
    (("campaign", "create"), "rate", 30.0, "rate"),
    (("campaign", "watch"), "interval", 0.5, "interval"),
    (("devices", "list"), "limit", 20, "limit"),
    (("devices", "list"), "json", True, "as_json"),
    (("devices", "show"), "url", "http://127.0.0.1:1", "url"),
]

entries = st.lists(st.sampled_from(range(len(VALID))), unique=True, max_size=len(VALID))
spelling = st.booleans()


def _document(chosen: list[int], underscores: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TOML-like document, the default_map expected from it)."""
    doc: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    for i in chosen:
        path, key, value, name = VALID[i]
        table, want = doc, expected
        for part in path:
            table = table.setdefault(part, {})
            want = want.setdefault(part, {})
        table[key.replace("-", "_") if underscores else key] = value
        want[name] = value
    return doc, expected


@settings(max_examples=60, deadline=None)
@given(chosen=entries, underscores=spelling)
def test_valid_tables_become_the_default_map(chosen: list[int], underscores: bool) -> None:
    doc, expected = _document(chosen, underscores)
    assert build_default_map(doc, ROOT, "f.toml") == expected


identifier = st.text(string.ascii_lowercase + "_-", min_size=1, max_size=12)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(chosen=entries, depth=st.integers(0, 2), key=identifier, value=st.integers() | st.text())
def test_an_unknown_key_anywhere_is_named(
    chosen: list[int], depth: int, key: str, value: Any
) -> None:
    doc, _ = _document(chosen, False)
    table: dict[str, Any] = doc
    path: list[str] = []
    for part in (("campaign", "create"), ("server",), ())[depth]:
        table = table.setdefault(part, {})
        path.append(part)
    try:
        build_default_map({**doc}, ROOT)  # the base document is valid
        before_ok = True
    except ConfigError:
        before_ok = False
    assert before_ok
    if key.replace("-", "_") in _known_here(path):
        return
    table[key] = value
    with pytest.raises(ConfigError) as info:
        build_default_map(doc, ROOT, "f.toml")
    dotted = ".".join([*path, key])
    assert f"'{dotted}'" in str(info.value) or f"{dotted} " in str(info.value)
    assert info.value.path == "f.toml"


def _known_here(path: list[str]) -> set[str]:
    from fotakit.cli_config import _aliases, _subcommands

    command: Any = ROOT
    for part in path:
        command = _subcommands(command)[part]
    names = (
        {k.replace("-", "_") for k in _subcommands(command)}
        if hasattr(command, "commands")
        else set()
    )
    if path:
        names |= set(_aliases(command))
    else:
        names.add("remote")
    return names


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_parse_or_fail_with_a_config_error(raw: bytes) -> None:
    try:
        doc = parse_config(raw, "f.toml")
    except ConfigError as exc:
        assert exc.path == "f.toml"
        return
    try:
        build_default_map(doc, ROOT, "f.toml")
    except ConfigError:
        pass


toml_scalar = st.integers(-(2**31), 2**31) | st.booleans() | st.text(max_size=8)
table_names = identifier | st.sampled_from(["server", "campaign", "create", "remote", "list"])
tables = st.recursive(
    st.dictionaries(identifier, toml_scalar, max_size=3),
    lambda children: st.dictionaries(table_names, children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=80, deadline=None)
@given(doc=tables)
def test_random_nested_tables_are_accepted_or_refused_never_crash(doc: dict[str, Any]) -> None:
    try:
        result = build_default_map(doc, ROOT, "f.toml")
    except ConfigError as exc:
        assert exc.path == "f.toml" and exc.message
        return
    # whatever was accepted names real commands only
    for name in result:
        assert name in ROOT.commands  # type: ignore[attr-defined]
