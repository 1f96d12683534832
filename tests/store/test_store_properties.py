"""Property tests: whatever the store accepts reads back exactly; the rest is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_helpers import make_observation, make_registration, snapshot

from fotakit.store import InvalidRecord, JsonValue, Store

# Function-scoped `store` is deliberate: one database per backend, reused across examples;
# each example cleans up after itself.
_db_settings = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

storable_text = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
endpoints = st.text(storable_text, min_size=1, max_size=255)

json_values: st.SearchStrategy[JsonValue] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(storable_text, max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(storable_text, max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(storable_text, max_size=8), json_values, max_size=5)

aware_times = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(9000, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=13))]),
)


@_db_settings
@given(endpoint=endpoints)
def test_any_storable_endpoint_round_trips_exactly(store: Store, endpoint: str) -> None:
    reg = make_registration(endpoint)
    store.upsert_registration(reg)
    try:
        by_endpoint = store.get_registration_by_endpoint(endpoint)
        by_id = store.get_registration(reg.registration_id)
        device = store.get_device(endpoint)
        assert by_endpoint == reg
        assert by_id is not None and by_id.endpoint == endpoint
        assert device is not None and device.endpoint == endpoint
        assert endpoint in [d.endpoint for d in store.list_devices()]
    finally:
        store.delete_registration(reg.registration_id)


@_db_settings
@given(endpoint=st.text(min_size=1, max_size=300))
def test_any_endpoint_is_stored_exactly_or_refused_precisely(store: Store, endpoint: str) -> None:
    reg = make_registration(endpoint)
    before = snapshot(store)
    try:
        store.upsert_registration(reg)
    except InvalidRecord as exc:
        assert str(exc).startswith("endpoint ")
        assert snapshot(store) == before
        bad = len(endpoint) > 255 or "\x00" in endpoint
        bad = bad or any(0xD800 <= ord(c) <= 0xDFFF for c in endpoint)
        assert bad
    else:
        assert store.get_registration_by_endpoint(endpoint) == reg
        store.delete_registration(reg.registration_id)


@_db_settings
@given(attributes=json_objects, token=st.binary(max_size=8))
def test_observation_attributes_and_token_round_trip(
    store: Store, attributes: dict[str, JsonValue], token: bytes
) -> None:
    reg = make_registration("ep")
    store.upsert_registration(reg)
    obs = store.add_observation(make_observation(reg, attributes=attributes, token=token))

    stored = store.get_observation(obs.observation_id)

    assert stored == obs
    store.delete_registration(reg.registration_id)


@_db_settings
@given(at=aware_times, lifetime=st.integers(min_value=0, max_value=10**9))
def test_times_round_trip_as_the_same_instant_in_utc(
    store: Store, at: datetime, lifetime: int
) -> None:
    reg = make_registration("ep", at=at, lifetime=lifetime)
    store.upsert_registration(reg)

    stored = store.get_registration(reg.registration_id)

    assert stored is not None
    assert stored == reg  # aware datetimes compare as instants
    assert stored.registered_at.utcoffset() == timedelta(0)
    store.delete_registration(reg.registration_id)


@pytest.mark.parametrize("endpoint", ["é", "端点", "🛰️ sat", " ", "a" * 255, "x\ty\n", "'; DROP--"])
def test_tricky_endpoints_stay_distinct_and_exact(store: Store, endpoint: str) -> None:
    reg = make_registration(endpoint)
    lookalike = make_registration(endpoint + " ") if len(endpoint) < 255 else None
    store.upsert_registration(reg)
    if lookalike is not None:
        store.upsert_registration(lookalike)

    assert store.get_registration_by_endpoint(endpoint) == reg
    expected = 1 if lookalike is None else 2
    assert len(store.list_registrations()) == expected
