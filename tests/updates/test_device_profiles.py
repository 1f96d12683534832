"""Device profiles, pure: validation, JSON round trip, which profile a device gets, and
the job policy a profile makes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fotakit.updates.job import JobPolicy
from fotakit.updates.profiles import (
    BUILTIN_DEFAULT,
    DEFAULT_PROFILE,
    PROTOCOLS,
    DeviceProfile,
    ProfileError,
    resolve,
)


def test_builtin_default_is_signed_coap_first_push_allowed() -> None:
    assert BUILTIN_DEFAULT.name == DEFAULT_PROFILE
    assert BUILTIN_DEFAULT.payload_form == "signed" and not BUILTIN_DEFAULT.bare
    assert BUILTIN_DEFAULT.protocols[0] == "coap"
    assert BUILTIN_DEFAULT.push is True
    assert dict(BUILTIN_DEFAULT.timeouts) == {}


def test_json_round_trip() -> None:
    p = DeviceProfile(
        "acme-meter",
        payload_form="bare",
        protocols=("http", "coap"),
        push=False,
        timeouts={"downloading": 1800, "start": 60.5},
        description="stock Acme firmware",
    )
    raw = p.to_json()
    assert raw == {
        "name": "acme-meter",
        "payload_form": "bare",
        "protocols": ["http", "coap"],
        "push": False,
        "timeouts": {"downloading": 1800.0, "start": 60.5},
        "description": "stock Acme firmware",
    }
    assert DeviceProfile.from_json(raw) == p
    # the name given apart (the URL's) wins over the body's
    assert DeviceProfile.from_json(raw, name="other").name == "other"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"payload_form": "zip"}, "payload_form"),
        ({"protocols": []}, "at least one"),
        ({"protocols": ["ftp"]}, "unknown protocol 'ftp'"),
        ({"protocols": ["coap", "coap"]}, "at most once"),
        ({"protocols": "coap"}, "list of protocol names"),
        ({"push": "yes"}, "push"),
        ({"timeouts": {"installing": 10}}, "unknown state 'installing'"),
        ({"timeouts": {"start": 0}}, "timeouts.start"),
        ({"timeouts": {"start": True}}, "timeouts.start"),
        ({"timeouts": {"start": float("nan")}}, "timeouts.start"),
        ({"timeouts": {"start": 10**9}}, "timeouts.start"),
        ({"timeouts": []}, "timeouts must be an object"),
        ({"colour": "red"}, "unknown field(s): colour"),
        ({"description": "x" * 501}, "description"),
    ],
)
def test_invalid_profiles_name_the_field(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ProfileError) as err:
        DeviceProfile.from_json(raw, name="c")
    assert needle in str(err.value)


@pytest.mark.parametrize("name", ["", " padded", "tab\there", "x" * 129])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ProfileError, match="name"):
        DeviceProfile(name)


_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(["signed", "bare"]),
    st.lists(st.sampled_from(["coap", "coaps", "http", "https", "ftp", ""]), max_size=5),
    st.dictionaries(
        st.sampled_from(["start", "downloading", "updating", "x"]),
        st.integers() | st.floats() | st.booleans() | st.text(max_size=3),
        max_size=3,
    ),
)


# the machine may be busy: generation speed is not what this test is about
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["name", "payload_form", "protocols", "push", "timeouts", "description", "x"]
        ),
        _value,
        max_size=6,
    )
)
def test_from_json_accepts_or_raises_profile_error_only(raw: dict[str, Any]) -> None:
    try:
        p = DeviceProfile.from_json(raw)
    except ProfileError:
        return
    assert DeviceProfile.from_json(p.to_json()) == p


def test_resolve_by_class_then_stored_default_then_builtin() -> None:
    acme = DeviceProfile("acme-meter", payload_form="bare")
    mine = DeviceProfile(DEFAULT_PROFILE, protocols=("http",))
    p, why = resolve("acme-meter", {"acme-meter": acme})
    assert p is acme and "acme-meter" in why and "own profile" in why
    p, why = resolve("other", {"acme-meter": acme})
    assert p is BUILTIN_DEFAULT and "no profile for device class 'other'" in why
    assert "built-in default" in why
    p, why = resolve("other", {"acme-meter": acme, DEFAULT_PROFILE: mine})
    assert p is mine and "stored default" in why
    p, why = resolve(None, {"acme-meter": acme})
    assert p is BUILTIN_DEFAULT and "device class unknown" in why


def test_profile_sets_protocols_push_timeouts_and_name_of_the_policy() -> None:
    base = JobPolicy(max_attempts=7)
    p = DeviceProfile(
        "acme-meter",
        protocols=("http", "coap"),
        push=False,
        timeouts={"downloading": 1800, "reregistration": 120},
    )
    policy = p.policy(base)
    assert policy.protocol_order == ("http", "coap")
    assert policy.allow_push is False
    assert policy.profile == "acme-meter"
    assert policy.downloading_timeout_s == 1800.0
    assert policy.reregistration_timeout_s == 120.0
    # everything else is the server's
    assert policy.start_timeout_s == base.start_timeout_s
    assert policy.max_attempts == 7


def test_every_profile_protocol_is_known_to_lwm2m() -> None:
    from fotakit.lwm2m.objects import UpdateProtocol

    assert {p.scheme for p in UpdateProtocol} >= set(PROTOCOLS)
