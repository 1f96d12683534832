"""Target selection: class, exact current version, tags, endpoints (AND-ed), JSON, errors."""

from __future__ import annotations

import json

import pytest
from campaign_helpers import view
from hypothesis import given
from hypothesis import strategies as st

from fotakit.updates.targets import DeviceClass, TargetSpec, TargetSpecError


def test_version_match_is_exact_never_a_prefix_or_substring() -> None:
    t = TargetSpec(current_version="1.1.1")
    assert t.matches(view("a", version="1.1.1"))
    for other in ("1.1.10", "1.1", "v1.1.1", "1.1.1 ", "11.1.1", None):
        assert not t.matches(view("a", version=other))


def test_criteria_are_and_ed() -> None:
    t = TargetSpec(
        device_class=DeviceClass(vendor_id="acme", class_id="sensor"),
        current_version="1.0.0",
        tags=frozenset({"eu", "beta"}),
        endpoints=("a", "b", "c"),
    )
    good = dict(version="1.0.0", tags={"eu", "beta", "extra"})
    assert t.matches(view("a", **good))  # type: ignore[arg-type]
    assert not t.matches(view("z", **good))  # type: ignore[arg-type]
    assert not t.matches(view("a", version="1.0.0", tags={"eu"}))
    assert not t.matches(view("a", vendor_id="other", **good))  # type: ignore[arg-type]
    assert not t.matches(view("a", class_id="gateway", **good))  # type: ignore[arg-type]
    assert not t.matches(view("a", version="0.9", tags={"eu", "beta"}))


def test_class_by_name() -> None:
    t = TargetSpec(device_class=DeviceClass(name="sensor-v1"))
    assert t.matches(view("a"))
    assert not t.matches(view("a", class_name="sensor-v2"))
    assert not t.matches(view("a", class_name=None))


def test_select_keeps_first_occurrence_once() -> None:
    t = TargetSpec(tags=frozenset({"x"}))
    out = t.select([view("a", tags={"x"}), view("b"), view("a", tags={"x"})])
    assert [v.endpoint for v in out] == ["a"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "target"),
        ({"current_version": ""}, "target.current_version"),
        ({"current_version": " 1.0"}, "target.current_version"),
        ({"tags": frozenset({""})}, "target.tags"),
        ({"endpoints": ()}, "target.endpoints"),
        ({"endpoints": ("a", "b", "a")}, "target.endpoints[2]"),
        ({"endpoints": ("a", 5)}, "target.endpoints[1]"),
    ],
)
def test_invalid_specs_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(TargetSpecError) as info:
        TargetSpec(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field and isinstance(info.value, ValueError)
    assert str(info.value).startswith(field + ":")


def test_empty_device_class_is_refused() -> None:
    with pytest.raises(TargetSpecError, match=r"target\.device_class"):
        DeviceClass()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], "target"),
        ({"tags": "eu"}, "target.tags"),
        ({"endpoints": "a"}, "target.endpoints"),
        ({"current_version": "1", "colour": "red"}, "target.colour"),
        ({"device_class": {"vendor": "x"}}, "target.device_class.vendor"),
    ],
)
def test_from_json_errors_name_the_field(data: object, field: str) -> None:
    with pytest.raises(TargetSpecError) as info:
        TargetSpec.from_json(data)
    assert info.value.field == field


names = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12
).filter(lambda s: s == s.strip())


@given(
    dc=st.none()
    | st.builds(DeviceClass, vendor_id=names, class_id=st.none() | names, name=st.none() | names),
    version=st.none() | names,
    tags=st.frozensets(names, max_size=4),
    endpoints=st.none() | st.lists(names, min_size=1, max_size=5, unique=True).map(tuple),
)
def test_json_round_trip(
    dc: DeviceClass | None,
    version: str | None,
    tags: frozenset[str],
    endpoints: tuple[str, ...] | None,
) -> None:
    if dc is None and version is None and not tags and endpoints is None:
        return
    t = TargetSpec(device_class=dc, current_version=version, tags=tags, endpoints=endpoints)
    back = TargetSpec.from_json(json.loads(json.dumps(t.to_json())))
    assert back == t
    v = view(endpoints[0] if endpoints else "e", version=version, tags=tags)
    assert back.matches(v) == t.matches(v)
