"""Observations belong to one registration and die with it (ON DELETE CASCADE)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from store_helpers import T0, make_observation, make_registration, snapshot

from fotakit.store import Conflict, InvalidRecord, Store, UnknownRegistration


def test_observation_reads_back_exactly(store: Store) -> None:
    reg = make_registration()
    store.upsert_registration(reg)
    obs = make_observation(reg, token=b"\x00\xff" * 4, attributes={"pmin": 5, "gt": 2.5})

    assert store.add_observation(obs) == obs

    assert store.get_observation(obs.observation_id) == obs
    assert store.list_observations() == [obs]
    assert store.list_observations(reg.registration_id) == [obs]


def test_list_observations_filters_by_registration(store: Store) -> None:
    a, b = make_registration("a"), make_registration("b")
    store.upsert_registration(a)
    store.upsert_registration(b)
    obs_a = [
        make_observation(a, "/3/0/13", created_at=T0 + timedelta(seconds=2)),
        make_observation(a, "/5/0/3", created_at=T0 + timedelta(seconds=3)),
    ]
    obs_b = make_observation(b, "/5/0/5")
    for obs in [obs_a[1], obs_b, obs_a[0]]:
        store.add_observation(obs)

    # Oldest first, whatever the insertion order.
    assert store.list_observations(a.registration_id) == obs_a
    assert store.list_observations(b.registration_id) == [obs_b]
    assert len(store.list_observations()) == 3
    assert store.list_observations("unknown") == []


def test_deleting_a_registration_deletes_its_observations(store: Store) -> None:
    a, b = make_registration("a"), make_registration("b")
    store.upsert_registration(a)
    store.upsert_registration(b)
    store.add_observation(make_observation(a))
    kept = store.add_observation(make_observation(b))

    store.delete_registration(a.registration_id)

    assert store.list_observations() == [kept]


def test_delete_observation_returns_it_once(store: Store) -> None:
    reg = make_registration()
    store.upsert_registration(reg)
    obs = store.add_observation(make_observation(reg))

    assert store.delete_observation(obs.observation_id) == obs
    assert store.delete_observation(obs.observation_id) is None
    assert store.list_observations() == []


def test_observation_of_unknown_registration_is_refused(store: Store) -> None:
    reg = make_registration()
    before = snapshot(store)

    with pytest.raises(UnknownRegistration, match=reg.registration_id):
        store.add_observation(make_observation(reg))

    assert snapshot(store) == before


def test_observation_of_a_replaced_registration_is_refused(store: Store) -> None:
    old = make_registration("ep")
    store.upsert_registration(old)
    store.upsert_registration(make_registration("ep"))

    with pytest.raises(UnknownRegistration):
        store.add_observation(make_observation(old))


def test_observation_with_another_endpoint_than_its_registration_is_refused(
    store: Store,
) -> None:
    reg = make_registration("ep")
    store.upsert_registration(reg)

    with pytest.raises(InvalidRecord, match="differs from the endpoint 'ep'"):
        store.add_observation(make_observation(reg, endpoint="impostor"))
    assert store.list_observations() == []


def test_reusing_an_observation_id_is_a_conflict(store: Store) -> None:
    reg = make_registration()
    store.upsert_registration(reg)
    first = store.add_observation(make_observation(reg))
    before = snapshot(store)

    with pytest.raises(Conflict):
        store.add_observation(make_observation(reg, observation_id=first.observation_id))

    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"token": b"123456789"}, "token must be 0 to 8 bytes"),
        ({"attributes": {"pmin": float("nan")}}, "JSON cannot hold"),
        ({"attributes": {"when": object()}}, "contains a object"),
        ({"attributes": {1: 2}}, "non-str key"),
        ({"content_format": -1}, "content_format -1 is outside"),
        ({"path": "/3\x000"}, "path contains a NUL"),
        ({"observation_id": "has space"}, "not 1 to 64 URL-safe"),
    ],
)
def test_bad_observation_is_refused_with_a_precise_error(
    store: Store, overrides: dict[str, Any], message: str
) -> None:
    reg = make_registration()
    store.upsert_registration(reg)
    before = snapshot(store)

    with pytest.raises(InvalidRecord, match=message):
        store.add_observation(make_observation(reg, **overrides))

    assert snapshot(store) == before
