"""Device profiles in the update store, on SQLite and PostgreSQL."""

from __future__ import annotations

from fotakit.updates.profiles import DeviceProfile
from fotakit.updates.store import UpdateStore


def test_put_list_replace_delete(ustore: UpdateStore) -> None:
    assert ustore.list_profiles() == {}
    acme = DeviceProfile("acme-meter", payload_form="bare", protocols=("coap",), push=False)
    assert ustore.put_profile(acme.name, acme.to_json(), now=1.0) is True
    assert ustore.list_profiles() == {"acme-meter": acme.to_json()}
    changed = DeviceProfile("acme-meter", timeouts={"downloading": 900})
    assert ustore.put_profile(changed.name, changed.to_json(), now=2.0) is False
    assert DeviceProfile.from_json(ustore.list_profiles()["acme-meter"]) == changed
    assert ustore.delete_profile("acme-meter") is True
    assert ustore.delete_profile("acme-meter") is False
    assert ustore.list_profiles() == {}


def test_profiles_survive_reopening(db_url: str) -> None:
    p = DeviceProfile("default", protocols=("http", "coap"))
    first = UpdateStore.open(db_url)
    try:
        first.put_profile(p.name, p.to_json(), now=1.0)
    finally:
        first.close()
    again = UpdateStore.open(db_url)
    try:
        assert again.list_profiles() == {"default": p.to_json()}
    finally:
        again.close()
