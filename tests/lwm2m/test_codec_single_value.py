"""text/plain (0), application/octet-stream (42) and application/cbor (60): one value."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from codec_helpers import ALL_TYPES, EMPTY_REGISTRY, REGISTRY, p, values_of
from hypothesis import given
from hypothesis import strategies as st

from fotakit.lwm2m.codecs import CodecError, ContentFormat, UnsupportedFormat, decode, encode
from fotakit.lwm2m.model import ObjLink, ResourceType, Value
from fotakit.lwm2m.path import Path

TEXT = ContentFormat.TEXT
OPAQUE = ContentFormat.OPAQUE
CBOR = ContentFormat.CBOR

#: Resource path in object 1000 per type (see codec_helpers.ALL_TYPES).
PATHS = {ALL_TYPES.resources[i].type: p(f"/1000/0/{i}") for i in range(9)}


# -- text/plain -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rtype", "value", "text"),
    [
        (ResourceType.INTEGER, -42, "-42"),
        (ResourceType.UNSIGNED_INTEGER, 2**64 - 1, "18446744073709551615"),
        (ResourceType.FLOAT, 20.5, "20.5"),
        (ResourceType.BOOLEAN, True, "1"),
        (ResourceType.BOOLEAN, False, "0"),
        (ResourceType.STRING, "Open Mobile Alliance", "Open Mobile Alliance"),
        (ResourceType.TIME, datetime(2013, 5, 2, 10, 40, 15, tzinfo=UTC), "1367491215"),
        (ResourceType.OBJLNK, ObjLink(3, 0), "3:0"),
        (ResourceType.OPAQUE, bytes([1, 2, 3, 4, 5]), "AQIDBAU="),
        (ResourceType.CORELNK, "</3/0>,</5/0>", "</3/0>,</5/0>"),
    ],
)
def test_text_values_have_the_spec_form(rtype: ResourceType, value: Value, text: str) -> None:
    path = PATHS[rtype]
    assert encode(TEXT, path, {path: value}, REGISTRY) == text.encode()
    assert decode(TEXT, path, text.encode(), REGISTRY) == {path: value}


def test_text_unknown_resource_decodes_as_string() -> None:
    assert decode(TEXT, p("/9999/0/1"), b"100", EMPTY_REGISTRY) == {p("/9999/0/1"): "100"}


def test_text_device_resources_from_the_builtin_registry() -> None:
    from fotakit.lwm2m.objects import builtin_registry

    registry = builtin_registry()
    assert decode(TEXT, p("/3/0/9"), b"95", registry) == {p("/3/0/9"): 95}
    assert decode(TEXT, p("/5/0/0"), b"AQIDBAU=", registry) == {p("/5/0/0"): b"\1\2\3\4\5"}


@pytest.mark.parametrize(
    ("rtype", "text", "message"),
    [
        (ResourceType.INTEGER, "12a", "Integer expected"),
        (ResourceType.INTEGER, "9223372036854775808", "out of"),
        (ResourceType.UNSIGNED_INTEGER, "-1", "Unsigned Integer -1 out of"),
        (ResourceType.BOOLEAN, "true", "Boolean must be '0' or '1'"),
        (ResourceType.FLOAT, "nan", "Float expected"),
        (ResourceType.FLOAT, "1e999", "out of range"),
        (ResourceType.OBJLNK, "3-0", "not an Objlnk"),
        (ResourceType.OPAQUE, "!,-INVALID$_'", "base64"),
        (ResourceType.TIME, "yesterday", "Time expected"),
    ],
)
def test_text_malformed_values_are_refused(rtype: ResourceType, text: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(TEXT, PATHS[rtype], text.encode(), REGISTRY)


def test_text_refuses_non_utf8_and_multi_value_targets() -> None:
    with pytest.raises(CodecError, match="not UTF-8"):
        decode(TEXT, p("/3/0/0"), b"\xff", REGISTRY)
    with pytest.raises(CodecError, match="cannot carry multi-instance resource /3/0/6"):
        decode(TEXT, p("/3/0/6"), b"1", REGISTRY)
    with pytest.raises(CodecError, match="not a resource"):
        decode(TEXT, p("/3/0"), b"1", REGISTRY)
    with pytest.raises(CodecError, match="exactly one value"):
        encode(TEXT, p("/3/0/9"), {}, REGISTRY)
    with pytest.raises(CodecError, match="outside the target /3/0/9"):
        encode(TEXT, p("/3/0/9"), {p("/3/0/9"): 1, p("/3/0/10"): 2}, REGISTRY)


def test_text_value_of_the_wrong_type_is_refused_on_encode() -> None:
    with pytest.raises(CodecError, match="resource is Integer; got str"):
        encode(TEXT, p("/3/0/9"), {p("/3/0/9"): "100"}, REGISTRY)
    with pytest.raises(CodecError, match="no timezone"):
        encode(TEXT, p("/3/0/13"), {p("/3/0/13"): datetime(2020, 1, 1)}, REGISTRY)


# -- opaque -------------------------------------------------------------------------


def test_opaque_carries_raw_bytes() -> None:
    image = bytes(range(256)) * 4
    assert encode(OPAQUE, p("/5/0/0"), {p("/5/0/0"): image}, REGISTRY) == image
    assert decode(OPAQUE, p("/5/0/0"), image, REGISTRY) == {p("/5/0/0"): image}
    assert decode(OPAQUE, p("/9/0/0"), b"", EMPTY_REGISTRY) == {p("/9/0/0"): b""}


def test_opaque_refuses_resources_of_other_types() -> None:
    with pytest.raises(UnsupportedFormat, match="only Opaque values; /5/0/1 is String"):
        decode(OPAQUE, p("/5/0/1"), b"coap://x", REGISTRY)
    with pytest.raises(UnsupportedFormat):
        encode(OPAQUE, p("/5/0/1"), {p("/5/0/1"): "coap://x"}, REGISTRY)


# -- application/cbor ----------------------------------------------------------------


def test_cbor_items_per_type() -> None:
    assert encode(CBOR, p("/3/0/9"), {p("/3/0/9"): 100}, REGISTRY) == bytes.fromhex("1864")
    assert encode(CBOR, p("/1/0/6"), {p("/1/0/6"): True}, REGISTRY) == b"\xf5"
    assert encode(CBOR, p("/3/0/0"), {p("/3/0/0"): "OMA"}, REGISTRY) == b"\x63OMA"
    assert encode(CBOR, p("/66/0/2"), {p("/66/0/2"): ObjLink(3, 0)}, REGISTRY) == b"\x633:0"
    # Tag 1 (epoch time) and tag 4 (decimal fraction 4.5) are accepted on input.
    when = decode(CBOR, p("/3/0/13"), bytes.fromhex("c11a514b67b0"), REGISTRY)
    assert when == {p("/3/0/13"): datetime(2013, 3, 21, 20, 4, tzinfo=UTC)}
    assert decode(CBOR, PATHS[ResourceType.FLOAT], bytes.fromhex("c48220182d"), REGISTRY) == {
        PATHS[ResourceType.FLOAT]: 4.5
    }


def test_cbor_half_float_whole_number_is_an_integer() -> None:
    assert decode(CBOR, p("/3/0/9"), bytes.fromhex("f93c00"), REGISTRY) == {p("/3/0/9"): 1}
    with pytest.raises(CodecError, match="not whole"):
        decode(CBOR, p("/3/0/9"), bytes.fromhex("f93e00"), REGISTRY)


@pytest.mark.parametrize(
    ("path", "payload", "message"),
    [
        ("/3/0/9", "6131", "expected a number, got str"),
        ("/3/0/0", "1864", "resource is String; got int"),
        ("/5/0/13", "20", "Unsigned Integer -1"),
        ("/3/0/9", "1864ff", "1 trailing byte"),
        ("/3/0/9", "19", "malformed CBOR"),
        ("/3/0/9", "80", "expected a number, got list"),
        ("/66/0/2", "1864", "Objlnk expected as text"),
    ],
)
def test_cbor_mismatches_are_refused(path: str, payload: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(CBOR, p(path), bytes.fromhex(payload), REGISTRY)


# -- properties -----------------------------------------------------------------------

_SINGLE = st.sampled_from([t for t in PATHS if t is not ResourceType.NONE])


@st.composite
def single_values(draw: st.DrawFn) -> tuple[Path, Value]:
    rtype = draw(_SINGLE)
    path = PATHS[rtype]
    if draw(st.booleans()):
        path = p(f"/1000/0/{100 + path.resource_id}/{draw(st.integers(0, 65534))}")  # type: ignore[operator]
    return path, draw(values_of(rtype))


@pytest.mark.parametrize("fmt", [TEXT, CBOR])
@given(case=single_values())
def test_single_value_round_trip(fmt: ContentFormat, case: tuple[Path, Value]) -> None:
    path, value = case
    assert decode(fmt, path, encode(fmt, path, {path: value}, REGISTRY), REGISTRY) == {path: value}


@given(st.binary())
def test_opaque_round_trip(value: bytes) -> None:
    path = p("/5/0/0")
    assert decode(OPAQUE, path, encode(OPAQUE, path, {path: value}, REGISTRY), REGISTRY) == {
        path: value
    }


@pytest.mark.parametrize("fmt", [TEXT, OPAQUE, CBOR])
@given(payload=st.binary(max_size=64), rtype=_SINGLE)
def test_garbage_raises_only_codec_error(
    fmt: ContentFormat, payload: bytes, rtype: ResourceType
) -> None:
    try:
        decode(fmt, PATHS[rtype], payload, REGISTRY)
    except CodecError:
        pass
