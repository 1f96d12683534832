"""Every write is one transaction: a write that fails leaves the database unchanged."""

from __future__ import annotations

import pytest
from store_helpers import make_observation, make_registration, snapshot

from fotakit.store import Conflict, InvalidRecord, Store


def test_upsert_failing_on_its_insert_rolls_back_the_replacement(store: Store) -> None:
    # The new registration of "a" reuses the ID of "b"'s registration. The primary-key
    # violation happens only after the store has already deleted a's old registration,
    # cascaded its observations and touched a's device row: all of that must roll back.
    a, b = make_registration("a"), make_registration("b")
    store.upsert_registration(a)
    store.upsert_registration(b)
    store.add_observation(make_observation(a))
    store.add_observation(make_observation(b))
    store.enqueue_pending_request("a", "read", "/3/0", created_at=a.registered_at)
    before = snapshot(store)
    clash = make_registration("a", registration_id=b.registration_id, lwm2m_version="1.2")

    with pytest.raises(Conflict, match="constraint"):
        store.upsert_registration(clash)

    assert snapshot(store) == before
    assert store.get_registration_by_endpoint("a") == a


def test_store_keeps_working_after_a_failed_write(store: Store) -> None:
    a, b = make_registration("a"), make_registration("b")
    store.upsert_registration(a)
    store.upsert_registration(b)
    with pytest.raises(Conflict):
        store.upsert_registration(make_registration("a", registration_id=b.registration_id))

    c = make_registration("c")
    store.upsert_registration(c)

    assert [r.endpoint for r in store.list_registrations()] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"endpoint": ""}, "endpoint must not be empty"),
        ({"endpoint": "x" * 256}, "endpoint is 256 characters long, at most 255"),
        ({"endpoint": "a\x00b"}, "endpoint contains a NUL"),
        ({"endpoint": "a\ud800"}, "lone surrogate"),
        ({"registration_id": "a/b"}, "registration_id 'a/b' is not 1 to 64 URL-safe"),
        ({"registration_id": "x" * 65}, "is not 1 to 64 URL-safe"),
        ({"port": -1}, "port -1 is outside 0..65535"),
        ({"port": True}, "port must be an int, not bool"),
        ({"content_formats": [110]}, "content_formats must be a tuple"),
        ({"content_formats": (70000,)}, "content_formats\\[\\] 70000 is outside"),
        ({"expires_at": "tomorrow"}, "expires_at must be a datetime"),
        ({"queue_mode": 1}, "queue_mode must be a bool"),
    ],
)
def test_bad_registration_is_refused_before_anything_is_written(
    store: Store, overrides: dict[str, object], message: str
) -> None:
    existing = make_registration("ep")
    store.upsert_registration(existing)
    before = snapshot(store)
    fields: dict[str, object] = {"endpoint": "ep"}
    fields.update(overrides)

    with pytest.raises(InvalidRecord, match=message):
        store.upsert_registration(make_registration(**fields))  # type: ignore[arg-type]

    assert snapshot(store) == before


def test_naive_registration_time_is_refused(store: Store) -> None:
    reg = make_registration()
    naive = make_registration(registered_at=reg.registered_at.replace(tzinfo=None))

    with pytest.raises(InvalidRecord, match=r"registered_at .* is naive"):
        store.upsert_registration(naive)
    assert store.list_registrations() == []
