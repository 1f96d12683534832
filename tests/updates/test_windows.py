"""Maintenance windows: parsing, midnight crossing, DST in Europe/Berlin, next_open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fotakit.updates.windows import (
    MaintenanceWindow,
    UnknownTimeZone,
    WindowRule,
    WindowSpecError,
    resolve_zone,
)

BERLIN = "Europe/Berlin"


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_parse_and_print_round_trip() -> None:
    w = MaintenanceWindow.parse("Mon-Fri 01:00-05:00; sat,Sun 22:00-02:30;12:00-24:00")
    assert str(w) == "Mon-Fri 01:00-05:00; Sat-Sun 22:00-02:30; 12:00-24:00"
    assert MaintenanceWindow.parse(str(w)) == w
    assert MaintenanceWindow.parse("Fri-Mon 00:00-01:00").rules[0].days == {4, 5, 6, 0}


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("", "window", "non-empty"),
        ("Mon-Fri 01:00", "window[0]", "HH:MM-HH:MM"),
        ("Mon-Fry 01:00-02:00", "window[0]", "unknown day"),
        ("01:00-02:00; Mon 25:00-02:00", "window[1]", "invalid time"),
        ("01:60-02:00", "window[0]", "invalid time"),
        ("24:00-02:00", "window[0]", "invalid time"),
        ("03:00-03:00", "window.end", "empty window"),
    ],
)
def test_bad_specs_name_the_field(text: str, field: str, words: str) -> None:
    with pytest.raises(WindowSpecError, match=words) as info:
        MaintenanceWindow.parse(text)
    assert info.value.field == field


def test_unknown_time_zone_is_a_precise_error_and_none_means_default() -> None:
    w = MaintenanceWindow.parse("01:00-02:00")
    with pytest.raises(UnknownTimeZone, match="'Europe/Atlantis'") as info:
        w.is_open(utc(2026, 1, 1), "Europe/Atlantis")
    assert isinstance(info.value, ValueError) and info.value.field == "tz"
    with pytest.raises(UnknownTimeZone):
        resolve_zone("../etc/passwd")
    assert w.is_open(utc(2026, 1, 1, 1, 30), None)  # UTC by default
    assert not w.is_open(utc(2026, 1, 1, 1, 30), None, default_tz=BERLIN)  # 02:30 there
    assert w.is_open(utc(2026, 1, 1, 0, 30), None, default_tz=BERLIN)


def test_window_crossing_midnight_belongs_to_its_start_day() -> None:
    w = MaintenanceWindow.parse("Fri 22:00-02:00")
    # 2026-01-02 is a Friday
    assert w.is_open(utc(2026, 1, 2, 23, 0), "UTC")
    assert w.is_open(utc(2026, 1, 3, 1, 59), "UTC")  # Saturday early morning
    assert not w.is_open(utc(2026, 1, 3, 2, 0), "UTC")
    assert not w.is_open(utc(2026, 1, 2, 1, 0), "UTC")  # Friday early: Thursday not listed
    assert not w.is_open(utc(2026, 1, 3, 23, 0), "UTC")  # Saturday evening
    assert w.next_open(utc(2026, 1, 3, 2, 0), "UTC") == utc(2026, 1, 9, 22, 0)


def test_berlin_spring_forward_skips_the_missing_hour() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC)
    w = MaintenanceWindow.parse("01:00-05:00")
    assert w.is_open(utc(2026, 3, 29, 0, 0), BERLIN)  # 01:00 CET
    assert w.is_open(utc(2026, 3, 29, 2, 59), BERLIN)  # 04:59 CEST
    assert not w.is_open(utc(2026, 3, 29, 3, 0), BERLIN)  # 05:00 CEST
    # a window inside the skipped hour does not open that night, but does the next
    gap = MaintenanceWindow.parse("02:00-03:00")
    day = datetime(2026, 3, 28, 23, 0, tzinfo=UTC).timestamp()
    assert gap.next_open(day, BERLIN) == utc(2026, 3, 30, 0, 0)  # 02:00 CEST on the 30th
    # a window starting inside the gap opens when the gap ends (03:00 CEST)
    late = MaintenanceWindow.parse("02:30-04:00")
    assert late.next_open(day, BERLIN) == utc(2026, 3, 29, 1, 0)


def test_berlin_fall_back_window_lasts_an_hour_longer() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET (01:00 UTC): 02:00-03:00 local happens twice
    w = MaintenanceWindow.parse("01:00-05:00")
    opens = w.next_open(utc(2026, 10, 24, 12, 0), BERLIN)
    assert opens == utc(2026, 10, 24, 23, 0)  # 01:00 CEST
    # open for 5 real hours: until 05:00 CET = 04:00 UTC
    assert w.is_open(utc(2026, 10, 25, 3, 59), BERLIN)
    assert not w.is_open(utc(2026, 10, 25, 4, 0), BERLIN)
    repeated = MaintenanceWindow.parse("02:15-02:45")
    first = repeated.next_open(utc(2026, 10, 24, 12, 0), BERLIN)
    assert first == utc(2026, 10, 25, 0, 15)  # 02:15 CEST
    second = repeated.next_open(utc(2026, 10, 25, 0, 45), BERLIN)
    assert second == utc(2026, 10, 25, 1, 15)  # 02:15 CET, the same wall time again


def test_next_open_is_now_when_open() -> None:
    w = MaintenanceWindow.parse("Mon-Fri 01:00-05:00")
    t = utc(2026, 6, 2, 0, 30)  # Tuesday 02:30 CEST
    assert w.next_open(t, BERLIN) == t


ZONES = ["UTC", BERLIN, "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]


@st.composite
def windows(draw: st.DrawFn) -> MaintenanceWindow:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        start = draw(st.integers(0, 47)) * 30
        end = draw(st.integers(1, 48).filter(lambda e, s=start: e * 30 != s)) * 30
        out.append(WindowRule(draw(st.frozensets(st.integers(0, 6), min_size=1)), start, end))
    return MaintenanceWindow(tuple(out))


@settings(max_examples=60, deadline=None)
@given(
    w=windows(),
    zone=st.sampled_from(ZONES),
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)).map(
        lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC).timestamp()
    ),
)
def test_next_open_agrees_with_a_minute_by_minute_scan(
    w: MaintenanceWindow, zone: str, start: float
) -> None:
    got = w.next_open(start, zone)
    assert got is not None
    assert w.is_open(got, zone)
    # nothing opens earlier: scan every 15 minutes (all rule times and offsets are on
    # quarter hours in these zones) up to the answer
    t = start
    while t < got:
        assert not w.is_open(t, zone)
        t += 900
    assert str(MaintenanceWindow.parse(str(w))) == str(w)


def test_a_week_of_minutes_matches_the_rule_in_local_time() -> None:
    w = MaintenanceWindow.parse("Mon,Wed 23:00-01:00")
    start = datetime(2026, 3, 23, tzinfo=UTC)  # a Monday, the week of the spring change
    for minute in range(0, 7 * 24 * 60, 7):
        t = start + timedelta(minutes=minute)
        local = t.astimezone(resolve_zone(BERLIN))
        m = local.hour * 60 + local.minute
        expect = (local.weekday() in (0, 2) and m >= 23 * 60) or (
            local.weekday() in (1, 3) and m < 60
        )
        assert w.is_open(t.timestamp(), BERLIN) is expect
