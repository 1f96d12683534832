"""Built-in object definitions 0, 1, 3, 4, 5 and their well-known paths and enums."""

from __future__ import annotations

import pytest

from fotakit.lwm2m.model import ObjectDef, Operations, ResourceType
from fotakit.lwm2m.objects import (
    BUILTIN_OBJECTS,
    DEVICE_FIRMWARE_VERSION,
    FIRMWARE_STATE,
    FIRMWARE_UPDATE_RESULT,
    DeliveryMethod,
    NetworkBearer,
    Severity,
    State,
    UpdateProtocol,
    UpdateResult,
    builtin_registry,
)

# Resource ID ranges of the OMA registry DDFs these definitions were written from.
EXPECTED_IDS = {
    0: set(range(31)),
    1: set(range(28)),
    3: set(range(23)),
    4: set(range(14)),
    5: set(range(15)) - {4},
}


def test_builtin_registry_holds_the_five_core_objects_and_fotakits_own() -> None:
    registry = builtin_registry()
    assert [obj.id for obj in registry] == [0, 1, 3, 4, 5, 33600]
    for object_id, ids in EXPECTED_IDS.items():
        obj = registry.get(object_id)
        assert obj is not None
        assert set(obj.resources) == ids, object_id


def test_each_call_returns_a_fresh_registry() -> None:
    first = builtin_registry()
    first.add(ObjectDef(id=3303, name="Temperature"))
    assert 3303 in first
    assert 3303 not in builtin_registry()


def test_resource_tables_are_read_only() -> None:
    obj = builtin_registry().get(5)
    assert obj is not None
    with pytest.raises(TypeError):
        obj.resources[4] = obj.resources[3]  # type: ignore[index]


def test_firmware_update_object_is_version_1_2_with_spec_resources() -> None:
    registry = builtin_registry()
    fw = registry.get(5)
    assert fw is not None
    assert (fw.version, fw.urn, fw.multiple, fw.mandatory) == (
        "1.2",
        "urn:oma:lwm2m:oma:5:1.2",
        False,
        False,
    )
    package, uri, update = fw.resources[0], fw.resources[1], fw.resources[2]
    assert package.operations is Operations.W and package.type is ResourceType.OPAQUE
    assert uri.operations is Operations.RW and uri.range == "0..255" and uri.mandatory
    assert update.executable and update.type is ResourceType.NONE
    assert fw.resources[8].multiple and fw.resources[8].range == "0..5"
    assert fw.resources[9].mandatory  # Delivery Method is mandatory
    assert fw.resources[13].type is ResourceType.UNSIGNED_INTEGER
    assert fw.resources[13].units == "s"
    assert fw.resources[14].type is ResourceType.BOOLEAN and fw.resources[14].writable
    assert registry.resource(FIRMWARE_STATE) is fw.resources[3]
    assert registry.resource(FIRMWARE_UPDATE_RESULT) is fw.resources[5]
    assert fw.resources[5].range == f"0..{max(UpdateResult)}"
    assert fw.resources[3].range == f"0..{max(State)}"


def test_device_and_server_resources_fotakit_relies_on() -> None:
    registry = builtin_registry()
    version = registry.resource(DEVICE_FIRMWARE_VERSION)
    assert version is not None and version.name == "Firmware Version"
    assert version.readable and not version.writable
    reboot = registry.resource(DEVICE_FIRMWARE_VERSION.parent().child(4))
    assert reboot is not None and reboot.executable and reboot.mandatory
    server = registry.get(1)
    assert server is not None and server.multiple
    lifetime = server.resources[1]
    assert lifetime.name == "Lifetime" and lifetime.units == "s" and lifetime.writable
    assert server.resources[8].name == "Registration Update Trigger"


def test_security_object_is_bootstrap_only() -> None:
    security = builtin_registry().get(0)
    assert security is not None
    assert all(r.operations is Operations.NONE for r in security.resources.values())


@pytest.mark.parametrize("obj", BUILTIN_OBJECTS, ids=lambda o: str(o.id))
def test_definitions_follow_template_rules(obj: ObjectDef) -> None:
    for rid, res in obj.resources.items():
        assert rid == res.id
        assert res.name and res.description
        # TS Core Appendix D: executables are single and untyped; everything else typed.
        if res.executable:
            assert res.type is ResourceType.NONE and not res.multiple
        else:
            assert res.type is not ResourceType.NONE


def test_enums_carry_spec_values() -> None:
    assert State.DOWNLOADED.value == 2 and State(3) is State.UPDATING
    assert UpdateResult.INTEGRITY_CHECK_FAILURE.value == 5
    assert UpdateResult.UNSUPPORTED_PROTOCOL.value == 9 and UpdateResult.DEFERRED.value == 11
    assert DeliveryMethod.BOTH.supports_pull and DeliveryMethod.BOTH.supports_push
    assert not DeliveryMethod.PUSH_ONLY.supports_pull
    assert not DeliveryMethod.PULL_ONLY.supports_push
    assert Severity.MANDATORY.value == 1
    assert NetworkBearer.NB_IOT.value == 7 and NetworkBearer.NB_IOT.is_cellular
    assert not NetworkBearer.ETHERNET.is_cellular


@pytest.mark.parametrize("proto", list(UpdateProtocol))
def test_update_protocols_map_to_uri_schemes_and_back(proto: UpdateProtocol) -> None:
    assert UpdateProtocol.from_scheme(proto.scheme) is proto
    assert UpdateProtocol.from_scheme(proto.scheme.upper()) is proto


def test_unknown_scheme_has_no_protocol() -> None:
    assert UpdateProtocol.from_scheme("ftp") is None


def test_update_diagnostics_is_a_vendor_object_described_by_its_shipped_ddf() -> None:
    from pathlib import Path

    from fotakit.lwm2m.ddf import load_ddf
    from fotakit.lwm2m.objects import UPDATE_DIAGNOSTICS

    # the company-reserved range of the OMNA registry, with the x URN label
    assert 32769 <= UPDATE_DIAGNOSTICS.id <= 42768
    assert UPDATE_DIAGNOSTICS.urn == "urn:oma:lwm2m:x:33600"
    assert all(not r.writable and not r.executable for r in UPDATE_DIAGNOSTICS.resources.values())
    ddf = Path(__file__).resolve().parents[2] / "docs" / "objects" / "33600.xml"
    [loaded] = load_ddf(ddf)
    assert loaded == UPDATE_DIAGNOSTICS
