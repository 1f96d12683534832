"""Devices outlive their registrations; queued (queue mode) requests keep FIFO order."""

from __future__ import annotations

from datetime import timedelta

import pytest
from store_helpers import T0, make_registration, snapshot

from fotakit.store import InvalidRecord, JsonValue, Store


def test_first_register_creates_the_device(store: Store) -> None:
    reg = make_registration("ep", lwm2m_version="1.2")
    store.upsert_registration(reg)

    device = store.get_device("ep")

    assert device is not None
    assert (device.first_seen, device.last_seen) == (T0, T0)
    assert device.lwm2m_version == "1.2"
    assert device.last_registration_id == reg.registration_id
    assert device.attributes == {}


def test_re_register_keeps_first_seen_and_moves_the_rest(store: Store) -> None:
    store.upsert_registration(make_registration("ep", lwm2m_version="1.0"))
    later = T0 + timedelta(hours=1)
    second = make_registration("ep", at=later, lwm2m_version="1.1")

    store.upsert_registration(second)

    device = store.get_device("ep")
    assert device is not None
    assert (device.first_seen, device.last_seen) == (T0, later)
    assert (device.lwm2m_version, device.last_registration_id) == ("1.1", second.registration_id)


def test_device_outlives_its_deregistration(store: Store) -> None:
    reg = make_registration("ep")
    store.upsert_registration(reg)
    store.delete_registration(reg.registration_id)

    device = store.get_device("ep")

    assert device is not None
    assert device.last_registration_id == reg.registration_id
    assert [d.endpoint for d in store.list_devices()] == ["ep"]


def test_list_devices_is_ordered_by_endpoint(store: Store) -> None:
    for ep in ("b", "c", "a"):
        store.upsert_registration(make_registration(ep))

    assert [d.endpoint for d in store.list_devices()] == ["a", "b", "c"]


def test_device_attributes_are_replaced_and_survive_re_registration(store: Store) -> None:
    store.upsert_registration(make_registration("ep"))
    attributes: dict[str, JsonValue] = {
        "firmware": {"version": "1.2.3", "slots": ["a", "b"]},
        "tag": None,
    }

    updated = store.set_device_attributes("ep", attributes)
    store.upsert_registration(make_registration("ep"))

    device = store.get_device("ep")
    assert updated is not None and device is not None
    assert updated.attributes == attributes
    assert device.attributes == attributes


def test_attributes_of_unknown_device_return_none(store: Store) -> None:
    assert store.set_device_attributes("ghost", {"a": 1}) is None
    assert store.get_device("ghost") is None


def test_pending_requests_come_back_in_enqueue_order(store: Store) -> None:
    first = store.enqueue_pending_request(
        "ep", "write", "/5/0/1", payload=b"coap://repo/fw", content_format=0, created_at=T0
    )
    other = store.enqueue_pending_request("other", "read", "/3/0/3", created_at=T0)
    second = store.enqueue_pending_request(
        "ep", "execute", "/5/0/2", options={"confirmable": True}, created_at=T0
    )

    assert store.list_pending_requests("ep") == [first, second]
    assert store.list_pending_requests() == [first, other, second]
    assert first.id < other.id < second.id
    assert (first.payload, first.content_format, second.options) == (
        b"coap://repo/fw",
        0,
        {"confirmable": True},
    )


def test_enqueue_stamps_a_utc_time_when_none_given(store: Store) -> None:
    request = store.enqueue_pending_request("ep", "read", "/3/0")

    assert request.created_at.utcoffset() == timedelta(0)
    assert store.list_pending_requests("ep") == [request]


def test_delete_pending_request_removes_only_that_one(store: Store) -> None:
    a = store.enqueue_pending_request("ep", "read", "/3/0/3", created_at=T0)
    b = store.enqueue_pending_request("ep", "read", "/3/0/19", created_at=T0)

    assert store.delete_pending_request(a.id) == a
    assert store.delete_pending_request(a.id) is None
    assert store.list_pending_requests("ep") == [b]


def test_pending_request_ids_are_never_reused(store: Store) -> None:
    a = store.enqueue_pending_request("ep", "read", "/3/0", created_at=T0)
    store.delete_pending_request(a.id)

    b = store.enqueue_pending_request("ep", "read", "/3/0", created_at=T0)

    assert b.id > a.id


def test_clear_pending_requests_counts_what_it_removed(store: Store) -> None:
    for path in ("/3/0/0", "/3/0/1", "/3/0/2"):
        store.enqueue_pending_request("ep", "read", path, created_at=T0)
    kept = store.enqueue_pending_request("other", "read", "/3/0", created_at=T0)

    assert store.clear_pending_requests("ep") == 3
    assert store.clear_pending_requests("ep") == 0
    assert store.list_pending_requests() == [kept]


def test_pending_requests_survive_re_registration(store: Store) -> None:
    store.upsert_registration(make_registration("ep"))
    queued = store.enqueue_pending_request("ep", "write", "/5/0/1", created_at=T0)

    store.upsert_registration(make_registration("ep"))

    assert store.list_pending_requests("ep") == [queued]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"endpoint": ""}, "endpoint must not be empty"),
        ({"operation": "x" * 33}, "operation is 33 characters long"),
        ({"payload": "text"}, "payload must be bytes"),
        ({"options": {"retry": float("inf")}}, "JSON cannot hold"),
        ({"created_at": T0.replace(tzinfo=None)}, "created_at .* is naive"),
        ({"content_format": 65536}, "content_format 65536 is outside"),
    ],
)
def test_bad_pending_request_is_refused_and_nothing_is_queued(
    store: Store, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"endpoint": "ep", "operation": "read", "path": "/3/0"}
    args.update(kwargs)
    before = snapshot(store)

    with pytest.raises(InvalidRecord, match=message):
        store.enqueue_pending_request(**args)  # type: ignore[arg-type]

    assert snapshot(store) == before
