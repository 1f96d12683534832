"""Registrations: create, read, update, delete, replace-on-same-endpoint, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from store_helpers import T0, make_observation, make_registration, snapshot

from fotakit.store import InvalidRecord, Store, expiry_for


def test_registration_reads_back_exactly_by_id_and_by_endpoint(store: Store) -> None:
    reg = make_registration(sms="+15550100", queue_mode=True, binding="UQ")

    assert store.upsert_registration(reg) is None

    assert store.get_registration(reg.registration_id) == reg
    assert store.get_registration_by_endpoint(reg.endpoint) == reg
    assert store.list_registrations() == [reg]


def test_unknown_registration_reads_as_none(store: Store) -> None:
    store.upsert_registration(make_registration("a"))

    assert store.get_registration("nope") is None
    assert store.get_registration_by_endpoint("b") is None


def test_list_registrations_is_ordered_by_endpoint(store: Store) -> None:
    regs = [make_registration(ep) for ep in ("c", "a", "b")]
    for reg in regs:
        store.upsert_registration(reg)

    assert [r.endpoint for r in store.list_registrations()] == ["a", "b", "c"]


def test_register_twice_replaces_the_first(store: Store) -> None:
    first = make_registration("ep")
    second = make_registration("ep", at=T0 + timedelta(minutes=5), address="127.0.0.2")
    store.upsert_registration(first)
    store.add_observation(make_observation(first))

    replaced = store.upsert_registration(second)

    assert replaced == first
    assert store.get_registration(first.registration_id) is None
    assert store.get_registration_by_endpoint("ep") == second
    assert store.list_registrations() == [second]
    assert store.list_observations() == []


def test_register_again_with_the_same_id_replaces_in_place(store: Store) -> None:
    first = make_registration("ep")
    second = make_registration("ep", registration_id=first.registration_id, port=1)
    store.upsert_registration(first)
    store.add_observation(make_observation(first))

    store.upsert_registration(second)

    assert store.list_registrations() == [second]
    assert store.list_observations() == []


def test_replacing_one_endpoint_leaves_other_endpoints_alone(store: Store) -> None:
    other = make_registration("other")
    other_obs = make_observation(other)
    store.upsert_registration(other)
    store.add_observation(other_obs)
    store.upsert_registration(make_registration("ep"))

    store.upsert_registration(make_registration("ep"))

    assert store.get_registration_by_endpoint("other") == other
    assert store.list_observations() == [other_obs]


def test_update_changes_only_the_given_fields(store: Store) -> None:
    reg = make_registration()
    store.upsert_registration(reg)
    later = T0 + timedelta(seconds=90)

    updated = store.update_registration(
        reg.registration_id,
        lifetime=600,
        binding="UQ",
        queue_mode=True,
        object_links="</3/0>,</5/0>",
        content_formats=(112,),
        last_update=later,
        expires_at=expiry_for(later, 600),
    )

    assert updated is not None
    assert store.get_registration(reg.registration_id) == updated
    assert updated.lifetime == 600
    assert updated.queue_mode is True
    assert updated.content_formats == (112,)
    assert updated.expires_at == later + timedelta(seconds=600)
    assert (updated.endpoint, updated.registered_at, updated.address, updated.port) == (
        reg.endpoint,
        reg.registered_at,
        reg.address,
        reg.port,
    )


def test_update_moves_the_device_last_seen(store: Store) -> None:
    reg = make_registration()
    store.upsert_registration(reg)
    later = T0 + timedelta(seconds=42)

    store.update_registration(reg.registration_id, last_update=later)

    device = store.get_device(reg.endpoint)
    assert device is not None
    assert (device.first_seen, device.last_seen) == (T0, later)


def test_update_of_unknown_registration_returns_none(store: Store) -> None:
    assert store.update_registration("missing", lifetime=5) is None


def test_update_without_changes_returns_the_stored_record(store: Store) -> None:
    reg = make_registration()
    store.upsert_registration(reg)

    assert store.update_registration(reg.registration_id) == reg


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"endpoint": "new"}, "cannot change \\['endpoint'\\]"),
        ({"registration_id": "x"}, "cannot change \\['registration_id'\\]"),
        ({"port": 70000}, "port 70000 is outside 0..65535"),
        ({"lifetime": -1}, "lifetime -1 is outside"),
        ({"last_update": T0.replace(tzinfo=None)}, "last_update .* is naive"),
        ({"binding": "U" * 33}, "binding is 33 characters long, at most 32"),
    ],
)
def test_update_with_bad_changes_is_refused_and_changes_nothing(
    store: Store, changes: dict[str, object], message: str
) -> None:
    reg = make_registration()
    store.upsert_registration(reg)
    before = snapshot(store)

    with pytest.raises(InvalidRecord, match=message):
        store.update_registration(reg.registration_id, **changes)  # type: ignore[arg-type]

    assert snapshot(store) == before


def test_delete_returns_the_registration_and_forgets_it(store: Store) -> None:
    reg = make_registration()
    store.upsert_registration(reg)

    assert store.delete_registration(reg.registration_id) == reg
    assert store.get_registration(reg.registration_id) is None
    assert store.delete_registration(reg.registration_id) is None


def test_expired_registrations_are_those_whose_expiry_has_passed(store: Store) -> None:
    short = make_registration("short", lifetime=60)
    long = make_registration("long", lifetime=3600)
    forever = make_registration("forever", lifetime=0)
    for reg in (short, long, forever):
        store.upsert_registration(reg)
    assert forever.expires_at is None

    assert store.expired_registrations(T0 + timedelta(seconds=59)) == []
    assert store.expired_registrations(T0 + timedelta(seconds=60)) == [short]
    assert store.expired_registrations(T0 + timedelta(seconds=3600)) == [short, long]
    assert store.expired_registrations(T0 + timedelta(days=10_000)) == [short, long]


def test_expiry_compares_instants_not_wall_clock_zones(store: Store) -> None:
    from datetime import timezone

    reg = make_registration("ep", lifetime=60)
    store.upsert_registration(reg)
    plus_two = timezone(timedelta(hours=2))
    just_before = (T0 + timedelta(seconds=59)).astimezone(plus_two)

    assert store.expired_registrations(just_before) == []
    assert store.expired_registrations(just_before + timedelta(seconds=1)) == [reg]


def test_update_that_extends_the_lifetime_unexpires_the_registration(store: Store) -> None:
    reg = make_registration("ep", lifetime=60)
    store.upsert_registration(reg)
    later = T0 + timedelta(seconds=50)

    store.update_registration(
        reg.registration_id, last_update=later, expires_at=expiry_for(later, 60)
    )

    assert store.expired_registrations(T0 + timedelta(seconds=100)) == []
    assert store.expired_registrations(T0 + timedelta(seconds=110)) != []


def test_expired_registrations_refuses_a_naive_now(store: Store) -> None:
    with pytest.raises(InvalidRecord, match=r"now .* is naive"):
        store.expired_registrations(T0.replace(tzinfo=None))
