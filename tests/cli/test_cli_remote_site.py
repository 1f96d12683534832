"""``fotakit devices`` and ``fotakit campaign`` against a real site (REST API, LwM2M server,
update service, real agents over UDP): what an operator types, what the fleet does."""

from __future__ import annotations

import json
import socket

from cli_helpers import BAD, GOOD, CliSite, run_cli


def _json(text: str) -> object:
    return json.loads(text)


# -- devices -------------------------------------------------------------------------------


def test_devices_list_shows_the_registered_agents(site: CliSite) -> None:
    result = site.cli("devices", "list", "--json", role="viewer")
    assert result.exit_code == 0, result.output
    items = _json(result.stdout)
    assert isinstance(items, list)
    by_ep = {d["endpoint"]: d for d in items}
    assert set(by_ep) >= {*GOOD, BAD}
    assert all(by_ep[ep]["online"] for ep in GOOD)
    table = site.cli("devices", "list", "--online", "-q", "cli-", role="viewer")
    assert table.exit_code == 0, table.output
    assert all(ep in table.stdout for ep in GOOD)


def test_devices_list_limit_pages_through_the_api(site: CliSite) -> None:
    result = site.cli("devices", "list", "--json", "--limit", "2", role="viewer")
    assert result.exit_code == 0, result.output
    assert len(_json(result.stdout)) == 2  # type: ignore[arg-type]


def test_devices_show_names_object_5_state_and_result(site: CliSite) -> None:
    result = site.cli("devices", "show", GOOD[0], role="viewer")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert GOOD[0] in out and "online" in out
    assert "/5/0/3 State" in out and "IDLE" in out
    assert "/5/0" in out  # the objects list


def test_devices_read_write_execute_round_trip(site: CliSite) -> None:
    ep = GOOD[2]
    read = site.cli("devices", "read", ep, "3/0/3", role="viewer")
    assert read.exit_code == 0, read.output
    assert '/3/0/3 = "' in read.stdout
    # 1/0/1 Lifetime is an Unsigned Integer: "75" is sent as the number 75
    write = site.cli("devices", "write", ep, "/1/0/1", "75")
    assert write.exit_code == 0, write.output
    back = site.cli("devices", "read", ep, "1/0/1", "--json", role="viewer")
    assert back.exit_code == 0, back.output
    assert _json(back.stdout) == {"path": "/1/0/1", "value": 75}
    whole = site.cli("devices", "read", ep, "1/0", "--json", role="viewer")
    assert _json(whole.stdout)["values"]["/1/0/1"] == 75  # type: ignore[index]
    # 1/0/8 Registration Update Trigger: harmless to execute
    execute = site.cli("devices", "execute", ep, "1/0/8")
    assert execute.exit_code == 0, execute.output
    assert "executed /1/0/8" in execute.stdout


def test_devices_write_checks_the_value_against_the_resource_type_locally(site: CliSite) -> None:
    result = site.cli("devices", "write", GOOD[0], "1/0/1", "soon")
    assert result.exit_code == 2
    assert "an integer is needed" in result.stderr


def test_viewer_may_not_write_and_gets_one_red_line(site: CliSite) -> None:
    result = site.cli("devices", "write", GOOD[0], "1/0/1", "80", role="viewer")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: 403"), result.stderr


def test_unknown_device_is_404_with_the_problem_detail(site: CliSite) -> None:
    result = site.cli("devices", "show", "no-such-device", role="viewer")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: 404") and "no-such-device" in result.stderr


def test_bad_token_is_401_and_says_how_to_fix_it(site: CliSite) -> None:
    result = run_cli("devices", "list", env={"FOTAKIT_URL": site.url, "FOTAKIT_TOKEN": "fk_wrong"})
    assert result.exit_code == 1
    assert "401" in result.stderr and "FOTAKIT_TOKEN" in result.stderr


def test_bad_lwm2m_path_is_a_usage_error_before_any_request(site: CliSite) -> None:
    result = site.cli("devices", "read", GOOD[0], "3/x/3", role="viewer")
    assert result.exit_code == 2
    assert "not an LwM2M path" in result.stderr


def test_connection_refused_names_the_url() -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = run_cli("devices", "list", "--url", url, "--token", "fk_x")
    assert result.exit_code == 1
    assert f"cannot connect to {url}" in result.stderr


# -- campaigns -----------------------------------------------------------------------------


def test_campaign_create_watch_runs_to_completion_and_exits_0(site: CliSite) -> None:
    record = site.publish("2.0.0", 2, seed=1)
    targets = GOOD[:2]
    args = ["campaign", "create", "--package", record.id, "--name", "cli rollout"]
    for ep in targets:
        args += ["--device", ep]
    args += ["--canary", "1", "--wave", "100%", "--interval", "0.5", "--watch"]
    result = site.cli(*args)
    assert result.exit_code == 0, result.output
    assert "created campaign" in result.stdout
    assert "completed: 2/2 finished (2 succeeded)" in result.stdout
    versions = site.fleet.versions()
    assert all(versions[ep] == "2.0.0" for ep in targets), versions
    assert versions[GOOD[2]] == "1.0.0"  # not targeted
    listed = site.cli("campaign", "list", "--json", "--state", "completed", role="viewer")
    assert listed.exit_code == 0, listed.output
    campaigns = _json(listed.stdout)
    mine = [c for c in campaigns if c["name"] == "cli rollout"]  # type: ignore[union-attr]
    assert len(mine) == 1
    spec = mine[0]["spec"]
    assert spec["canary"] == 1 and spec["target"]["endpoints"] == list(targets)
    show = site.cli("campaign", "show", mine[0]["id"], role="viewer")
    assert show.exit_code == 0, show.output
    assert "completed" in show.stdout and "2/2 finished" in show.stdout


def test_campaign_that_aborts_makes_watch_exit_1_and_groups_the_failure(site: CliSite) -> None:
    record = site.publish("3.0.0", 3, seed=2)
    create = site.cli(
        "campaign", "create", "--package", record.id, "--device", BAD,
        "--error-threshold", "1", "--on-error", "abort", "--json",
    )  # fmt: skip
    assert create.exit_code == 0, create.output
    cid = _json(create.stdout)["id"]  # type: ignore[index]
    watch = site.cli("campaign", "watch", cid, "--interval", "0.5", "--max-wait", "60")
    assert watch.exit_code == 1, watch.output
    assert f"campaign {cid} aborted" in watch.stdout
    assert BAD in watch.stdout  # the failure group lists the device
    show = site.cli("campaign", "show", cid, "--json", role="viewer")
    groups = _json(show.stdout)["failures"]["groups"]  # type: ignore[index]
    assert [g["endpoints"] for g in groups] == [[BAD]]
    assert site.fleet.versions()[BAD] == "1.0.0"  # rolled back
    retry = site.cli("campaign", "retry", cid, "--json")
    assert retry.exit_code == 0, retry.output
    child = _json(retry.stdout)
    assert child["parent_id"] == cid  # type: ignore[index]
    cancel = site.cli("campaign", "cancel", child["id"])  # type: ignore[index]
    assert cancel.exit_code == 0, cancel.output


def test_draft_campaign_start_pause_cancel_and_409_for_a_wrong_state(site: CliSite) -> None:
    record = site.publish("4.0.0", 4, seed=3)
    create = site.cli(
        "campaign", "create", "--package", record.id, "--tag", "nobody-has-this",
        "--no-start", "--json",
    )  # fmt: skip
    assert create.exit_code == 0, create.output
    created = _json(create.stdout)
    assert created["state"] == "draft"  # type: ignore[index]
    cid = created["id"]  # type: ignore[index]
    pause_draft = site.cli("campaign", "pause", cid)
    assert pause_draft.exit_code == 1
    assert pause_draft.stderr.startswith("error: 409")
    viewer = site.cli("campaign", "cancel", cid, role="viewer")
    assert viewer.exit_code == 1 and "403" in viewer.stderr
    cancel = site.cli("campaign", "cancel", cid)
    assert cancel.exit_code == 0, cancel.output
    assert f"campaign {cid} is cancelled" in cancel.stdout
    watch = site.cli("campaign", "watch", cid, "--no-stream")
    assert watch.exit_code == 1  # cancelled: a script sees the failure
    assert "cancelled" in watch.stdout


def test_campaign_create_rejects_bad_flags_locally(site: CliSite) -> None:
    cases = [
        (["--package", "p", "--device", "a", "--wave", "0"], "within (0, 100]"),
        (["--package", "p", "--device", "a", "--wave", "60", "--wave", "50"], "add up to 110"),
        (["--package", "p", "--device", "a", "--error-threshold", "x"], "--error-threshold"),
        (["--package", "p"], "choose the devices"),
        (["--device", "a"], "--package"),
        (["--package", "p", "--device", "a", "--burst", "3"], "burst: needs rate_per_minute"),
        (["--package", "p", "--device", "a", "--device", "a"], "given twice"),
    ]
    for flags, message in cases:
        result = site.cli("campaign", "create", *flags)
        assert result.exit_code == 2, (flags, result.output)
        assert message in result.stderr, (flags, result.stderr)


def test_campaign_create_with_an_unknown_package_is_the_servers_error(site: CliSite) -> None:
    result = site.cli("campaign", "create", "--package", "nope", "--device", GOOD[0])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: 4"), result.stderr


def test_campaign_create_watch_matching_no_device_exits_1_and_says_so(site: CliSite) -> None:
    record = site.publish("4.1.0", 5, seed=4)
    result = site.cli(
        "campaign", "create", "--package", record.id, "--class", "no-such-class", "--watch",
        "--interval", "0.5", "--max-wait", "30",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: 422"), result.stderr
    assert "no device matches the campaign's target" in result.stderr
    assert "created campaign" not in result.stdout


def test_paused_reason_error_count_reset_and_gate_override_in_watch_and_show(
    site: CliSite,
) -> None:
    record = site.publish("4.2.0", 6, seed=5)
    create = site.cli(
        "campaign", "create", "--package", record.id, "--device", BAD,
        "--error-threshold", "1", "--json",
    )  # fmt: skip
    assert create.exit_code == 0, create.output
    cid = _json(create.stdout)["id"]  # type: ignore[index]
    watch = site.cli("campaign", "watch", cid, "--exit-on-pause", "--max-wait", "60")
    assert watch.exit_code == 3, watch.output
    assert "paused: error threshold crossed: 1 failed of 1 finished" in watch.stdout
    assert "--reset-errors" in watch.stdout
    refused = site.cli("campaign", "resume", cid)
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.startswith("error: 409"), refused.stderr
    assert "still crossed (1 failed of 1 finished)" in refused.stderr
    resumed = site.cli("campaign", "resume", cid, "--reset-errors")
    assert resumed.exit_code == 0, resumed.output

    gate = site.cli(
        "campaign", "create", "--package", record.id, "--device", BAD, "--canary", "1",
        "--json",
    )  # fmt: skip
    cid = _json(gate.stdout)["id"]  # type: ignore[index]
    watch = site.cli("campaign", "watch", cid, "--exit-on-pause", "--max-wait", "60")
    assert watch.exit_code == 3, watch.output
    assert "paused: success gate lost: wave 0: 0 of 1 succeeded, gate needs 1" in watch.stdout
    assert site.cli("campaign", "resume", cid).exit_code == 0
    done = site.cli("campaign", "watch", cid, "--max-wait", "30")
    assert done.exit_code == 0, done.output
    show = site.cli("campaign", "show", cid)
    assert "overridden" in show.stdout
    assert (
        "wave 0 gate overridden by operator 'operator': 0 of 1 succeeded, gate needs 1"
        in show.stdout
    ), show.stdout


def test_remote_settings_come_from_the_config_file(site: CliSite, tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    config = tmp_path / "fotakit.toml"
    config.write_text(
        f'[remote]\nurl = "{site.url}"\ntoken = "{site.tokens["viewer"]}"\n', encoding="utf-8"
    )
    result = run_cli("--config", str(config), "devices", "list", "--json")
    assert result.exit_code == 0, result.output
    assert {d["endpoint"] for d in _json(result.stdout)} >= set(GOOD)  # type: ignore[union-attr]
    # the environment wins over the file: a wrong token there is used (and refused)
    env = run_cli("--config", str(config), "devices", "list", env={"FOTAKIT_TOKEN": "fk_bad"})
    assert env.exit_code == 1 and "401" in env.stderr
    # and a flag wins over both
    flag = run_cli(
        "--config", str(config), "devices", "list", "--json",
        "--token", site.tokens["viewer"], env={"FOTAKIT_TOKEN": "fk_bad"},
    )  # fmt: skip
    assert flag.exit_code == 0, flag.output


def _complete(site: CliSite, words: str) -> list[str]:
    from typer.testing import CliRunner

    from fotakit.cli import app

    env = {
        **site.remote("viewer"),
        "_FOTAKIT_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    result = CliRunner().invoke(app, [], env=env, prog_name="fotakit")
    assert result.exit_code == 0, result.output
    return result.stdout.split()


def test_shell_completion_of_endpoints_and_campaign_ids(site: CliSite) -> None:
    assert _complete(site, "fotakit devices show cli-") == [*GOOD, BAD]
    assert _complete(site, "fotakit devices read cli-b") == [BAD]
    record = site.publish("5.0.0", 5, seed=4)
    create = site.cli(
        "campaign", "create", "--package", record.id, "--tag", "t", "--no-start", "--json"
    )
    cid = _json(create.stdout)["id"]  # type: ignore[index]
    assert cid in _complete(site, "fotakit campaign watch ")
    assert _complete(site, f"fotakit campaign show {cid}") == [cid]
    site.cli("campaign", "cancel", cid)


def test_watching_an_unknown_campaign_is_404(site: CliSite) -> None:
    result = site.cli("campaign", "watch", "c-none", role="viewer")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: 404"), result.stderr
