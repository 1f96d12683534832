"""OMA TLV (11542): spec vectors, every nesting level, strict errors, round trips."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest
from codec_helpers import (
    ACL_TLV,
    DEVICE_CONTENT,
    DEVICE_TLV,
    DEVICE_TLV_WITH_INSTANCE,
    EMPTY_REGISTRY,
    OBJ65_TLV,
    OBJ66_TLV,
    REGISTRY,
    SERVER_TLV,
    instance_content,
    object_content,
    p,
    resource_content,
)
from hypothesis import given
from hypothesis import strategies as st

from fotakit.lwm2m.codecs import CodecError, ContentFormat, decode, encode
from fotakit.lwm2m.codecs.tlv import Tlv, TlvType, parse, serialize
from fotakit.lwm2m.model import EMPTY_INSTANCE, ObjLink

TLV = ContentFormat.TLV


def test_spec_device_instance_decodes_to_every_resource() -> None:
    assert decode(TLV, p("/3/0"), DEVICE_TLV, REGISTRY) == DEVICE_CONTENT


def test_spec_device_instance_encodes_to_the_spec_bytes() -> None:
    assert encode(TLV, p("/3/0"), DEVICE_CONTENT, REGISTRY) == DEVICE_TLV


def test_device_instance_wrapped_in_object_instance_tlv_decodes_the_same() -> None:
    assert decode(TLV, p("/3/0"), DEVICE_TLV_WITH_INSTANCE, REGISTRY) == DEVICE_CONTENT


def test_device_object_read_wraps_the_instance() -> None:
    assert encode(TLV, p("/3"), DEVICE_CONTENT, REGISTRY) == DEVICE_TLV_WITH_INSTANCE
    assert decode(TLV, p("/3"), DEVICE_TLV_WITH_INSTANCE, REGISTRY) == DEVICE_CONTENT


def test_spec_acl_object_has_two_instances_with_16_bit_resource_instance() -> None:
    content = decode(TLV, p("/2"), ACL_TLV, REGISTRY)
    assert content == {
        p("/2/0/0"): 1, p("/2/0/1"): 0, p("/2/0/2/127"): 7, p("/2/0/3"): 127,
        p("/2/2/0"): 3, p("/2/2/1"): 0, p("/2/2/2/127"): 7, p("/2/2/2/310"): 1,
        p("/2/2/3"): 127,
    }  # fmt: skip
    assert encode(TLV, p("/2"), content, REGISTRY) == ACL_TLV


def test_spec_server_object_values_are_typed() -> None:
    assert decode(TLV, p("/1"), SERVER_TLV, REGISTRY) == {
        p("/1/0/0"): 1, p("/1/0/1"): 86400, p("/1/0/6"): True, p("/1/0/7"): "U",
    }  # fmt: skip


def test_spec_objlnk_examples_decode_to_objlinks() -> None:
    obj65 = decode(TLV, p("/65/0"), OBJ65_TLV, REGISTRY)
    assert obj65 == {
        p("/65/0/0/0"): ObjLink(66, 0), p("/65/0/0/1"): ObjLink(66, 1),
        p("/65/0/1"): "8613800755500", p("/65/0/2"): 0x12345678,
    }  # fmt: skip
    obj66 = decode(TLV, p("/66"), OBJ66_TLV, REGISTRY)
    assert obj66[p("/66/0/2")] == ObjLink(67, 0)
    assert obj66[p("/66/1/2")] == ObjLink(65535, 65535)
    assert encode(TLV, p("/66"), obj66, REGISTRY) == OBJ66_TLV


def test_multiple_resource_as_bare_resource_instances_or_wrapped() -> None:
    # Leshan LwM2mNodeDecoderTest tlv_power_source__array_values / __multiple_resource.
    expected = {p("/3/0/6/0"): 1, p("/3/0/6/1"): 5}
    assert decode(TLV, p("/3/0/6"), bytes([65, 0, 1, 65, 1, 5]), REGISTRY) == expected
    wrapped = bytes([0x86, 6, 65, 0, 1, 65, 1, 5])
    assert decode(TLV, p("/3/0/6"), wrapped, REGISTRY) == expected
    assert encode(TLV, p("/3/0/6"), expected, REGISTRY) == wrapped


def test_single_resource_and_resource_instance_targets() -> None:
    assert encode(TLV, p("/3/0/9"), {p("/3/0/9"): 100}, REGISTRY) == bytes.fromhex("C10964")
    assert decode(TLV, p("/3/0/9"), bytes.fromhex("C10964"), REGISTRY) == {p("/3/0/9"): 100}
    one = encode(TLV, p("/3/0/7/1"), {p("/3/0/7/1"): 5000}, REGISTRY)
    assert one == bytes.fromhex("42011388")
    assert decode(TLV, p("/3/0/7/1"), one, REGISTRY) == {p("/3/0/7/1"): 5000}


def test_unknown_resource_decodes_to_raw_bytes() -> None:
    assert decode(TLV, p("/3/0/9"), bytes.fromhex("C10964"), EMPTY_REGISTRY) == {
        p("/3/0/9"): b"\x64"
    }


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 1), (127, 1), (-128, 1), (128, 2), (-32768, 2), (32768, 4), (2**31, 8), (-(2**63), 8)],
)
def test_integers_use_the_smallest_signed_size(value: int, size: int) -> None:
    payload = encode(TLV, p("/3/0/9"), {p("/3/0/9"): value}, REGISTRY)
    assert len(payload) == 2 + (size >= 8) + size
    assert decode(TLV, p("/3/0/9"), payload, REGISTRY) == {p("/3/0/9"): value}


def test_unsigned_integers_use_unsigned_bytes() -> None:
    payload = encode(TLV, p("/5/0/13"), {p("/5/0/13"): 255}, REGISTRY)
    assert payload == bytes.fromhex("C10DFF")
    assert decode(TLV, p("/5/0/13"), payload, REGISTRY) == {p("/5/0/13"): 255}
    big = encode(TLV, p("/5/0/13"), {p("/5/0/13"): 2**64 - 1}, REGISTRY)
    assert decode(TLV, p("/5/0/13"), big, REGISTRY) == {p("/5/0/13"): 2**64 - 1}


def test_negative_unsigned_refused_on_encode() -> None:
    with pytest.raises(CodecError, match="Unsigned Integer -1"):
        encode(TLV, p("/5/0/13"), {p("/5/0/13"): -1}, REGISTRY)


def test_floats_take_4_bytes_when_exact_else_8() -> None:
    exact = encode(TLV, p("/1000/0/3"), {p("/1000/0/3"): 1.5}, REGISTRY)
    assert exact == bytes([0xC4, 3]) + struct.pack(">f", 1.5)
    inexact = encode(TLV, p("/1000/0/3"), {p("/1000/0/3"): 0.1}, REGISTRY)
    assert inexact == bytes([0xC8, 3, 8]) + struct.pack(">d", 0.1)


def test_time_is_integer_seconds_and_objlnk_is_two_ids() -> None:
    when = datetime(2013, 5, 2, 10, 40, 15, tzinfo=UTC)
    assert encode(TLV, p("/3/0/13"), {p("/3/0/13"): when}, REGISTRY) == bytes.fromhex(
        "C40D5182428F"
    )
    link = encode(TLV, p("/66/0/2"), {p("/66/0/2"): ObjLink(67, 0)}, REGISTRY)
    assert link == bytes.fromhex("C40200430000")


def test_empty_object_instance_round_trips_as_zero_length_instance() -> None:
    payload = encode(TLV, p("/2"), {p("/2/4"): EMPTY_INSTANCE}, REGISTRY)
    assert payload == bytes.fromhex("0004")
    assert decode(TLV, p("/2"), payload, REGISTRY) == {p("/2/4"): EMPTY_INSTANCE}
    assert decode(TLV, p("/2/4"), payload, REGISTRY) == {p("/2/4"): EMPTY_INSTANCE}


def test_empty_payload_is_empty_content_except_for_a_single_resource() -> None:
    assert decode(TLV, p("/2"), b"", REGISTRY) == {}
    assert decode(TLV, p("/3/0"), b"", REGISTRY) == {}
    assert decode(TLV, p("/3/0/6"), b"", REGISTRY) == {}
    with pytest.raises(CodecError, match="empty TLV payload"):
        decode(TLV, p("/3/0/9"), b"", REGISTRY)


def test_long_values_use_16_and_24_bit_lengths() -> None:
    for size, header in ((300, "D000012C"), (70000, "D800011170")):
        value = b"x" * size
        payload = encode(TLV, p("/5/0/0"), {p("/5/0/0"): value}, REGISTRY)
        assert payload[: len(header) // 2] == bytes.fromhex(header)
        assert decode(TLV, p("/5/0/0"), payload, REGISTRY) == {p("/5/0/0"): value}


# -- strictness ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (bytes.fromhex("C8"), "header truncated"),
        (bytes.fromhex("C800"), "header truncated"),
        (bytes.fromhex("C80005414243"), "declares 5 byte"),
        (bytes.fromhex("C800FF41"), "declares 255 byte"),
        (bytes.fromhex("E0FFFF"), "ID 65535 is reserved"),
    ],
)
def test_truncated_and_oversized_lengths_are_refused(payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(TLV, p("/3/0"), payload, REGISTRY)


def test_trailing_garbage_after_the_last_tlv_is_refused() -> None:
    with pytest.raises(CodecError, match="byte 3"):
        decode(TLV, p("/3/0"), bytes.fromhex("C10964") + b"\xff", REGISTRY)


def test_lengths_inside_a_container_cannot_exceed_it() -> None:
    # Object Instance of 3 bytes whose resource claims 5.
    with pytest.raises(CodecError, match="declares 5 byte"):
        decode(TLV, p("/3"), bytes.fromhex("0300C5090102030405"), REGISTRY)


@pytest.mark.parametrize(
    ("root", "payload", "message"),
    [
        ("/3", "0200" + "0001", "Object Instance inside Object Instance"),
        ("/3/0/6", "8303C10901", "Resource inside Multiple Resource"),
        ("/3", "C10964", "where /3 needs Object Instance"),
        ("/3/0", "410001", "where /3/0 needs resources"),
        ("/3/0/6", "410001C10964", "needs one resource or its Resource Instances"),
        ("/3/0/9", "C10A64", "Resource 10 is not in /3/0/9"),
        ("/3/0", "0301C10964", "Object Instance 1 is not in /3/0"),
    ],
)
def test_nesting_violations_are_refused(root: str, payload: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(TLV, p(root), bytes.fromhex(payload), REGISTRY)


def test_repeated_ids_in_one_level_are_refused() -> None:
    with pytest.raises(CodecError, match="ID 1 repeats"):
        decode(TLV, p("/3/0"), bytes.fromhex("C10164C10165"), REGISTRY)


def test_wrong_shape_for_the_registry_is_refused() -> None:
    with pytest.raises(CodecError, match="single-instance"):
        decode(TLV, p("/3/0"), bytes.fromhex("8303410001"), REGISTRY)
    with pytest.raises(CodecError, match="multi-instance"):
        decode(TLV, p("/3/0"), bytes.fromhex("C10601"), REGISTRY)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("/3/0/9", "0102030405", "needs 1, 2, 4 or 8 bytes, got 5"),
        ("/1/0/6", "02", "Boolean must be one byte 0 or 1"),
        ("/1000/0/3", "010203", "Float needs 4 or 8 bytes"),
        ("/1000/0/3", "7FF00000", "not finite"),
        ("/3/0/0", "FF", "not UTF-8"),
        ("/66/0/2", "000102", "Objlnk needs 4 bytes"),
        ("/1/0/8", "00", "executable resource"),
    ],
)
def test_values_of_the_wrong_size_for_their_type_are_refused(
    path: str, value: str, message: str
) -> None:
    raw = bytes.fromhex(value)
    rid = p(path).resource_id
    assert rid is not None
    payload = serialize([Tlv(TlvType.RESOURCE, rid, raw)])
    with pytest.raises(CodecError, match=message):
        decode(TLV, p(path).parent(), payload, REGISTRY)


def test_root_and_values_too_big_for_tlv_are_refused() -> None:
    with pytest.raises(CodecError, match="cannot carry several objects"):
        decode(TLV, p("/"), b"", REGISTRY)
    with pytest.raises(CodecError, match="24-bit length"):
        encode(TLV, p("/5/0/0"), {p("/5/0/0"): bytes(2**24)}, REGISTRY)


# -- properties ---------------------------------------------------------------------


@given(st.binary(max_size=64))
def test_parse_then_serialize_gives_back_well_formed_input(payload: bytes) -> None:
    try:
        tlvs = parse(payload)
    except CodecError:
        return
    assert parse(serialize(tlvs)) == tlvs


@given(resource_content(p("/1000/3")))
def test_resource_round_trip(content: dict) -> None:  # type: ignore[type-arg]
    (root,) = {path if path.depth == 3 else path.parent() for path in content}
    assert decode(TLV, root, encode(TLV, root, content, REGISTRY), REGISTRY) == content


@given(instance_content(p("/1000/7")))
def test_instance_round_trip(content: dict) -> None:  # type: ignore[type-arg]
    root = p("/1000/7")
    assert decode(TLV, root, encode(TLV, root, content, REGISTRY), REGISTRY) == content


@given(object_content(p("/1000")))
def test_object_round_trip(content: dict) -> None:  # type: ignore[type-arg]
    root = p("/1000")
    assert decode(TLV, root, encode(TLV, root, content, REGISTRY), REGISTRY) == content


@given(st.binary(max_size=200), st.sampled_from(["/3", "/3/0", "/3/0/6", "/3/0/0", "/3/0/6/1"]))
def test_garbage_raises_only_codec_error(payload: bytes, root: str) -> None:
    try:
        decode(TLV, p(root), payload, REGISTRY)
    except CodecError:
        pass
