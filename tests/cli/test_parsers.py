"""Property tests for the CLI's parsers: LwM2M paths, percentages, error thresholds, Write
values, the campaign JSON built from flags, and the server-sent events parser."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fotakit.cli_campaign import build_spec, exit_code_for, parse_percent, parse_threshold
from fotakit.cli_devices import firmware_names, parse_value, resource_type
from fotakit.cli_remote import CliError, ServerEvent, lwm2m_path, parse_sse
from fotakit.updates.campaign import CampaignSpec

segments = st.lists(st.integers(0, 65535), min_size=1, max_size=4)


@given(ids=segments, lead=st.booleans(), trail=st.booleans())
def test_lwm2m_paths_normalise(ids: list[int], lead: bool, trail: bool) -> None:
    text = ("/" if lead else "") + "/".join(map(str, ids)) + ("/" if trail else "")
    assert lwm2m_path(text) == "/".join(map(str, ids))


@given(text=st.text(max_size=30))
def test_any_path_text_is_accepted_or_a_usage_error(text: str) -> None:
    try:
        out = lwm2m_path(text)
    except CliError as exc:
        assert exc.exit_code == 2
        return
    parts = out.split("/")
    assert 1 <= len(parts) <= 4 and all(0 <= int(p) <= 65535 for p in parts)


@given(value=st.floats(min_value=0, max_value=100, exclude_min=True), pct=st.booleans())
def test_percentages_round_trip(value: float, pct: bool) -> None:
    text = repr(value) + ("%" if pct else "")
    assert parse_percent(text) == value


@given(text=st.text(max_size=12))
def test_any_percentage_text_is_in_range_or_a_usage_error(text: str) -> None:
    try:
        value = parse_percent(text)
    except CliError as exc:
        assert exc.exit_code == 2
        return
    assert 0 < value <= 100 and math.isfinite(value)


@given(count=st.integers(1, 10**9))
def test_threshold_counts(count: int) -> None:
    assert parse_threshold(str(count)) == {"count": count}
    assert parse_threshold(f" {min(count, 100)}% ") == {"percent": float(min(count, 100))}


@given(text=st.text(max_size=12))
def test_any_threshold_text_is_parsed_or_a_usage_error(text: str) -> None:
    try:
        out = parse_threshold(text)
    except CliError as exc:
        assert exc.exit_code == 2
        return
    assert set(out) in ({"count"}, {"percent"})


@given(number=st.integers(-(2**40), 2**40))
def test_integer_resources_take_integers(number: int) -> None:
    assert parse_value(str(number), rtype="Integer") == number
    if number >= 0:
        assert parse_value(str(number), rtype="Unsigned Integer") == number
    else:
        with pytest.raises(CliError):
            parse_value(str(number), rtype="Unsigned Integer")


@given(
    value=st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
def test_unknown_resources_take_json_scalars(value: Any) -> None:
    assert parse_value(json.dumps(value)) == value


@given(text=st.text(max_size=40), rtype=st.sampled_from([None, "String", "Integer", "Float",
    "Boolean", "Opaque", "Time", "Unsigned Integer"]))  # fmt: skip
def test_any_value_text_is_converted_or_a_usage_error(text: str, rtype: str | None) -> None:
    try:
        value = parse_value(text, rtype=rtype)
    except CliError as exc:
        assert exc.exit_code == 2
        return
    json.dumps(value)  # always sendable
    if rtype in ("String", "Opaque"):
        assert value == text
    assert parse_value(text, mode="string", rtype=rtype) == text


def test_resource_types_come_from_the_builtin_objects() -> None:
    assert resource_type("1/0/1") == "Unsigned Integer"
    assert resource_type("/3/0/3") == "String"
    assert resource_type("3/0") is None
    assert resource_type("30000/0/1") is None


def test_object_5_names() -> None:
    assert firmware_names(2, 1) == ("2 DOWNLOADED", "1 SUCCESS")
    assert firmware_names(None, 99) == ("-", "99 (unknown)")


flag_sets = st.fixed_dictionaries(
    {},
    optional={
        "device_class": st.sampled_from(["sensor", "gw"]),
        "version": st.sampled_from(["1.0.0", "2.1"]),
        "tags": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
        "devices": st.lists(st.sampled_from(["d1", "d2", "d3"]), max_size=3),
        "canary": st.integers(0, 5),
        "waves": st.lists(st.sampled_from(["5", "10%", "25", "50%", "100", "0", "x"]), max_size=4),
        "success_gate": st.sampled_from(["90", "100%", "150"]),
        "soak_s": st.sampled_from([0.0, 30.0]),
        "error_threshold": st.sampled_from(["1", "5", "10%", "0", "x%"]),
        "min_sample": st.integers(1, 5),
        "on_error": st.sampled_from(["pause", "abort"]),
        "rate": st.sampled_from([0.5, 60.0]),
        "burst": st.integers(1, 4),
        "concurrency": st.integers(1, 4),
        "continuous": st.booleans(),
    },
)


@settings(max_examples=150, deadline=None)
@given(flags=flag_sets)
def test_campaign_flags_build_a_valid_spec_or_a_usage_error(flags: dict[str, Any]) -> None:
    try:
        spec = build_spec(package="pkg", **flags)
    except CliError as exc:
        assert exc.exit_code == 2 and exc.message
        return
    parsed = CampaignSpec.from_json(spec)  # what the server will parse
    target = parsed.target
    if flags.get("devices"):
        assert target.endpoints == tuple(flags["devices"])
    if flags.get("tags"):
        assert target.tags == frozenset(flags["tags"])
    if "device_class" in flags:
        assert target.device_class is not None
        assert target.device_class.name == flags["device_class"]
    if flags.get("waves"):
        percents = [float(w.rstrip("%")) for w in flags["waves"]]
        given_waves = parsed.waves[: len(percents)]
        assert [w.percent for w in given_waves] == percents
        extra = len(parsed.waves) - len(percents)
        assert extra == (1 if sum(percents) < 100 else 0)
    if "rate" in flags:
        assert parsed.rate_per_minute == flags["rate"]
    if "error_threshold" in flags:
        assert parsed.error_threshold is not None


def test_spec_file_fields_are_overridden_by_flags() -> None:
    base = {
        "name": "from file",
        "package_id": "p1",
        "target": {"tags": ["x"]},
        "rate_per_minute": 10.0,
        "error_threshold": {"count": 3, "min_sample": 2},
    }
    spec = build_spec(base, package="p2", rate=20.0, error_threshold="50%")
    assert spec["package_id"] == "p2" and spec["name"] == "from file"
    assert spec["target"] == {"tags": ["x"]}
    assert spec["rate_per_minute"] == 20.0
    assert spec["error_threshold"] == {"percent": 50.0, "min_sample": 2}
    with pytest.raises(CliError, match=r"campaign\.bogus"):
        build_spec({**base, "bogus": 1})


def test_watch_exit_codes() -> None:
    def campaign(state: str, **by_state: int) -> dict[str, Any]:
        return {"state": state, "progress": {"by_state": by_state}}

    assert exit_code_for(campaign("completed", succeeded=3), strict=True) == 0
    assert exit_code_for(campaign("completed", succeeded=2, failed=1), strict=False) == 0
    assert exit_code_for(campaign("completed", succeeded=2, timed_out=1), strict=True) == 1
    assert exit_code_for(campaign("aborted"), strict=False) == 1
    assert exit_code_for(campaign("cancelled"), strict=False) == 1
    assert exit_code_for(campaign("running"), strict=True) is None
    assert exit_code_for(campaign("paused"), strict=True) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
event_names = st.sampled_from(["job", "device", "message"])


@given(
    events=st.lists(st.tuples(event_names, json_values, st.booleans()), max_size=8),
    crlf=st.booleans(),
)
def test_sse_round_trip(events: list[tuple[str, Any, bool]], crlf: bool) -> None:
    lines: list[str] = [": ping", ""]
    for name, data, pretty in events:
        lines.append(": a comment")
        if name != "message":
            lines.append(f"event: {name}")
        text = json.dumps(data, indent=1 if pretty else None)
        lines.extend(f"data: {part}" for part in text.split("\n"))  # multi-line data
        lines.append("")
    if crlf:  # a line reader strips the CR of CRLF; the parser must not care
        lines = [line.rstrip("\r") for line in lines]
    parsed = list(parse_sse(iter(lines)))
    assert parsed == [ServerEvent(name, data) for name, data, _ in events]


@given(lines=st.lists(st.text(max_size=20), max_size=20))
def test_sse_parser_never_crashes(lines: list[str]) -> None:
    for event in parse_sse(iter([*lines, ""])):
        assert isinstance(event, ServerEvent) and event.event


def test_spec_files_bad_json_and_bad_fields_are_usage_errors(tmp_path: Any) -> None:
    from cli_helpers import run_cli

    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json", encoding="utf-8")
    result = run_cli("campaign", "create", "--spec", str(bad_json))
    assert result.exit_code == 2 and "is not valid JSON" in result.stderr
    bad_field = json.dumps(
        {"name": "x", "package_id": "p", "target": {"tags": ["a"]}, "waves": [{"percent": 0}]}
    )
    result = run_cli("campaign", "create", "--spec", "-", input=bad_field)
    assert result.exit_code == 2 and "waves[0].percent" in result.stderr, result.stderr
    missing = run_cli("campaign", "create", "--spec", str(tmp_path / "none.json"))
    assert missing.exit_code == 2 and "cannot read --spec" in missing.stderr


@pytest.mark.parametrize("text", ["²", "٣", "1²", "-", "+5", " 7 "])
def test_unicode_digits_and_signs_never_crash_the_value_parsers(text: str) -> None:
    for rtype in ("Integer", "Unsigned Integer", "Float", "Time", "Boolean", None):
        try:
            json.dumps(parse_value(text, rtype=rtype))
        except CliError as exc:
            assert exc.exit_code == 2
    for parser in (lwm2m_path, parse_percent, parse_threshold):
        try:
            parser(text)
        except CliError as exc:
            assert exc.exit_code == 2


def test_the_watch_display_shows_server_text_literally() -> None:
    import io

    from rich.console import Console

    from fotakit.cli_campaign import render_campaign

    campaign = {
        "id": "c1",
        "name": "[red]not markup[/red]",
        "state": "paused",
        "wave": 1,
        "package_id": "p",
        "progress": {"total": 4, "finished": 2, "by_state": {"failed": 2}, "by_reason": {}},
        "waves": [
            {"index": 0, "size": 4, "success_gate": 0.9, "started_at": "2026-01-01T10:11:12Z"}
        ],
    }
    failures = {"groups": [{"reason": "rolled_back", "count": 2, "endpoints": ["d[1]", "d2"]}]}
    out = Console(file=io.StringIO(), width=100)
    out.print(render_campaign(campaign, failures))
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert "[red]not markup[/red]" in text
    assert "d[1], d2" in text and "rolled_back" in text
    assert "90%" in text and "10:11:12" in text and "2/4 finished" in text
    assert "fotakit campaign resume c1" in text
