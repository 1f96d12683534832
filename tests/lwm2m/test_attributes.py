"""Notification attributes: Write-Attributes wire format, rules, and notify decisions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fotakit.lwm2m.attributes import (
    InvalidAttributes,
    NotificationAttributes,
    earliest_notification,
    next_deadline,
    should_notify,
)


def test_parse_query_reads_values_and_removals() -> None:
    attrs = NotificationAttributes.parse_query(["pmin=10", "pmax=60", "gt=3.5", "st"])
    assert (attrs.pmin, attrs.pmax, attrs.gt, attrs.lt) == (10, 60, 3.5, None)
    assert attrs.unset == {"st"}
    assert attrs.to_query() == ["pmin=10", "pmax=60", "gt=3.5", "st"]


def test_values_keep_their_spec_types() -> None:
    attrs = NotificationAttributes.parse_query(["pmin=1", "lt=-2", "epmax=9", "st=.5"])
    assert isinstance(attrs.pmin, int) and isinstance(attrs.epmax, int)
    assert isinstance(attrs.lt, float) and attrs.lt == -2.0 and attrs.st == 0.5


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (["pmin=-1"], "not a non-negative integer"),
        (["pmin=1.5"], "not a non-negative integer"),
        (["pmin="], "not a non-negative integer"),
        (["gt=abc"], "not a number"),
        (["gt=nan"], "not a number"),
        (["gt=1e999"], "out of range"),
        (["st=-1"], "st must not be negative"),
        (["pmin=10", "pmax=5"], "pmin 10 is greater than pmax 5"),
        (["epmin=10", "epmax=5"], "epmin 10 is greater than epmax 5"),
        (["gt=1", "lt=1"], "lt 1.0 must be less than gt 1.0"),
        (["gt=10", "lt=4", "st=3"], r"lt \+ 2\*st"),
        (["pmin=1", "pmin=2"], "given twice"),
        (["pmin", "pmin=2"], "given twice"),
        (["foo=1"], "unknown attribute"),
        (["PMIN=1"], "unknown attribute"),
    ],
)
def test_bad_attributes_are_refused_with_4_00(query: list[str], message: str) -> None:
    with pytest.raises(InvalidAttributes, match=message) as info:
        NotificationAttributes.parse_query(query)
    assert str(info.value.code) == "4.00 Bad Request"


def test_equal_pmin_and_pmax_and_st_inside_the_gap_are_fine() -> None:
    attrs = NotificationAttributes.parse_query(["pmin=5", "pmax=5", "gt=10", "lt=4", "st=2.9"])
    assert attrs.pmax == 5 and attrs.st == 2.9


def test_constructor_checks_like_the_parser() -> None:
    with pytest.raises(InvalidAttributes):
        NotificationAttributes(pmin=-1)
    with pytest.raises(InvalidAttributes):
        NotificationAttributes(pmin=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidAttributes):
        NotificationAttributes(gt=math.inf)
    with pytest.raises(InvalidAttributes):
        NotificationAttributes(pmin=True)
    with pytest.raises(InvalidAttributes, match="both set and removed"):
        NotificationAttributes(pmin=1, unset=frozenset({"pmin"}))
    with pytest.raises(InvalidAttributes, match="unknown"):
        NotificationAttributes(unset=frozenset({"dim"}))


def test_merged_sets_replaces_and_removes() -> None:
    stored = NotificationAttributes(pmin=10, pmax=60, gt=5.0)
    request = NotificationAttributes.parse_query(["pmax=120", "gt", "lt=1"])
    merged = stored.merged(request)
    assert merged == NotificationAttributes(pmin=10, pmax=120, lt=1.0)
    assert merged.unset == frozenset()


def test_merged_validates_the_result_as_a_whole() -> None:
    stored = NotificationAttributes(pmax=30)
    with pytest.raises(InvalidAttributes, match="greater than pmax"):
        stored.merged(NotificationAttributes(pmin=40))
    # Removing pmax in the same request makes the same pmin acceptable.
    assert stored.merged(NotificationAttributes.parse_query(["pmin=40", "pmax"])).pmin == 40


def test_to_params_for_discover_and_is_empty() -> None:
    assert NotificationAttributes(gt=50.0, pmin=1).to_params() == {"pmin": "1", "gt": "50"}
    assert NotificationAttributes().is_empty
    assert not NotificationAttributes(st=1.0).is_empty


def test_pmin_holds_notifications_back() -> None:
    attrs = NotificationAttributes(pmin=10)
    assert not should_notify(1, 2, 9.9, attrs)
    assert should_notify(1, 2, 10, attrs)


def test_pmax_forces_a_notification_without_change() -> None:
    attrs = NotificationAttributes(pmax=60)
    assert not should_notify(1, 1, 59, attrs)
    assert should_notify(1, 1, 60, attrs)


def test_without_conditions_any_change_notifies() -> None:
    attrs = NotificationAttributes()
    assert should_notify("1.0.0", "1.0.1", 0, attrs)
    assert not should_notify("1.0.0", "1.0.0", 1000, attrs)
    assert should_notify(None, 3, 0, attrs)


def test_gt_and_lt_notify_on_crossing_only() -> None:
    attrs = NotificationAttributes(gt=30.0, lt=10.0)
    assert should_notify(29.0, 31.0, 5, attrs)  # up across gt
    assert should_notify(31.0, 29.0, 5, attrs)  # down across gt
    assert should_notify(11.0, 9.0, 5, attrs)  # down across lt
    assert not should_notify(31.0, 35.0, 5, attrs)  # stays above gt
    assert not should_notify(15.0, 20.0, 5, attrs)  # moves between thresholds


def test_step_notifies_on_large_enough_changes() -> None:
    attrs = NotificationAttributes(st=2.0)
    assert not should_notify(10, 11.5, 5, attrs)
    assert should_notify(10, 12, 5, attrs)
    assert should_notify(10, 7.9, 5, attrs)


def test_non_numeric_values_ignore_thresholds() -> None:
    attrs = NotificationAttributes(gt=1.0, st=5.0)
    assert should_notify(b"a", b"b", 0, attrs)
    assert should_notify(False, True, 0, attrs)
    assert not should_notify(True, True, 0, attrs)


def test_deadlines_follow_pmin_and_pmax() -> None:
    assert next_deadline(100.0, NotificationAttributes(pmax=60)) == 160.0
    assert next_deadline(100.0, NotificationAttributes(pmax=0)) is None
    assert next_deadline(100.0, NotificationAttributes()) is None
    assert earliest_notification(100.0, NotificationAttributes(pmin=5)) == 105.0
    assert earliest_notification(100.0, NotificationAttributes()) == 100.0


periods = st.none() | st.integers(0, 10**6)
levels = st.none() | st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-1000, 1000).map(float)


@st.composite
def valid_attributes(draw: st.DrawFn) -> NotificationAttributes:
    values = {name: draw(periods) for name in ("pmin", "pmax", "epmin", "epmax")}
    for low, high in (("pmin", "pmax"), ("epmin", "epmax")):
        a, b = values[low], values[high]
        if a is not None and b is not None:
            values[low], values[high] = min(a, b), max(a, b)
    gt, lt = draw(levels), draw(levels)
    step = draw(st.none() | st.floats(0, 1e3, allow_nan=False))
    if gt is not None and lt is not None:
        lt, gt = min(lt, gt), max(lt, gt) + 1.0
        if step is not None and not lt + 2 * step < gt:
            step = None
    unset = draw(st.frozensets(st.sampled_from(["pmin", "pmax", "gt", "lt", "st"])))
    attrs = {**values, "gt": gt, "lt": lt, "st": step}
    unset = frozenset(n for n in unset if attrs[n] is None)
    return NotificationAttributes(**attrs, unset=unset)  # type: ignore[arg-type]


@given(valid_attributes())
def test_query_round_trip(attrs: NotificationAttributes) -> None:
    assert NotificationAttributes.parse_query(attrs.to_query()) == attrs


@given(valid_attributes(), valid_attributes())
def test_merged_never_leaves_removals_and_prefers_the_request(
    stored: NotificationAttributes, request: NotificationAttributes
) -> None:
    try:
        merged = stored.merged(request)
    except InvalidAttributes:
        return  # the combination breaks a rule: refused, never half-applied
    assert merged.unset == frozenset()
    for name in ("pmin", "pmax", "gt", "lt", "st"):
        if name in request.unset:
            assert getattr(merged, name) is None
        elif getattr(request, name) is not None:
            assert getattr(merged, name) == getattr(request, name)
        else:
            assert getattr(merged, name) == getattr(stored, name)


@settings(max_examples=300)
@given(st.lists(st.text(alphabet="pminaxgtlse=0123456789.-+e ", max_size=10), max_size=5))
def test_garbage_queries_give_invalid_attributes_not_crashes(query: list[str]) -> None:
    try:
        attrs = NotificationAttributes.parse_query(query)
    except InvalidAttributes:
        return
    assert NotificationAttributes.parse_query(attrs.to_query()) == attrs


@given(
    st.floats(-100, 100, allow_nan=False),
    st.floats(-100, 100, allow_nan=False),
    st.floats(0, 1000, allow_nan=False),
    valid_attributes(),
)
def test_notify_decision_respects_pmin_and_pmax(
    old: float, new: float, elapsed: float, attrs: NotificationAttributes
) -> None:
    decision = should_notify(old, new, elapsed, attrs)
    if attrs.pmin is not None and elapsed < attrs.pmin:
        assert decision is False
    elif attrs.pmax and elapsed >= attrs.pmax:
        assert decision is True
    elif old == new:
        assert decision is False
