"""SenML JSON (110) and SenML CBOR (112): spec examples, naming, typing, times, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import cbor2
import pytest
from codec_helpers import (
    DEVICE_CONTENT,
    EMPTY_REGISTRY,
    REGISTRY,
    instance_content,
    object_content,
    p,
    resource_content,
)
from hypothesis import given
from hypothesis import strategies as st

from fotakit.lwm2m.codecs import CodecError, ContentFormat, decode, encode
from fotakit.lwm2m.model import EMPTY_INSTANCE, ObjLink

JSON = ContentFormat.SENML_JSON
CBOR = ContentFormat.SENML_CBOR

# TS Core 1.1.1 §7.4.4 example (Read /3/0 in SenML JSON), as given in eclipse-leshan/leshan
# leshan-lwm2m-core/src/test/java/org/eclipse/leshan/core/node/codec/
# LwM2mNodeDecoderTest.java, senml_json_decode_device_object_instance.
DEVICE_SENML_JSON = (
    b'[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},'
    b'{"n":"1","vs":"Lightweight M2M Client"},{"n":"2","vs":"345000123"},'
    b'{"n":"3","vs":"1.0"},{"n":"6/0","v":1},{"n":"6/1","v":5},{"n":"7/0","v":3800},'
    b'{"n":"7/1","v":5000},{"n":"8/0","v":125},{"n":"8/1","v":900},{"n":"9","v":100},'
    b'{"n":"10","v":15},{"n":"11/0","v":0},{"n":"13","v":1367491215},'
    b'{"n":"14","vs":"+02:00"},{"n":"16","vs":"U"}]'
)


def test_spec_device_instance_decodes() -> None:
    assert decode(JSON, p("/3/0"), DEVICE_SENML_JSON, REGISTRY) == DEVICE_CONTENT


def test_device_instance_encodes_to_the_spec_records() -> None:
    assert encode(JSON, p("/3/0"), DEVICE_CONTENT, REGISTRY) == DEVICE_SENML_JSON


def test_device_instance_with_the_builtin_registry() -> None:
    from fotakit.lwm2m.objects import builtin_registry

    assert decode(JSON, p("/3/0"), DEVICE_SENML_JSON, builtin_registry()) == DEVICE_CONTENT


def test_opaque_vd_is_base64url_in_json_and_bytes_in_cbor() -> None:
    # Leshan senml_json_decode_opaque_resource / senml_cbor_decode_opaque_resource:
    # [{"bn":"/0/0/3","vd":"q83v"}] and [{-2: "/0/0/3", 8: h'ABCDEF'}].
    expected = {p("/5/0/0"): bytes.fromhex("abcdef")}
    assert decode(JSON, p("/5/0/0"), b'[{"bn":"/5/0/0","vd":"q83v"}]', REGISTRY) == expected
    leshan_cbor = bytes.fromhex("81a221662f302f302f330843abcdef")
    assert decode(CBOR, p("/0/0/3"), leshan_cbor, EMPTY_REGISTRY) == {
        p("/0/0/3"): bytes.fromhex("abcdef")
    }
    assert encode(CBOR, p("/5/0/0"), expected, REGISTRY) == bytes.fromhex(
        "81a221662f352f302f300843abcdef"
    )
    assert encode(JSON, p("/5/0/0"), {p("/5/0/0"): b"\xfb\xff"}, REGISTRY) == (
        b'[{"bn":"/5/0/0","vd":"-_8"}]'
    )


def test_single_resource_record_has_only_the_base_name() -> None:
    payload = encode(JSON, p("/3/0/0"), {p("/3/0/0"): "OMA"}, REGISTRY)
    assert payload == b'[{"bn":"/3/0/0","vs":"OMA"}]'


def test_name_is_base_name_plus_name_even_mid_id() -> None:
    # Leshan json_cut_basename_name_in_the_middle_of_an_id: "3/0/1" + "1/0" is /3/0/11/0.
    payload = b'[{"bn":"/3/0/1","n":"1/0","v":0},{"n":"1/1","v":7}]'
    assert decode(JSON, p("/3/0/11"), payload, REGISTRY) == {
        p("/3/0/11/0"): 0,
        p("/3/0/11/1"): 7,
    }


def test_several_base_names_and_objlnk_and_boolean() -> None:
    payload = json.dumps(
        [
            {"bn": "/65/0/", "n": "0/0", "vlo": "66:0"},
            {"n": "0/1", "vlo": "66:1"},
            {"bn": "/1/0/", "n": "6", "vb": True},
        ]
    ).encode()
    assert decode(JSON, p("/"), payload, REGISTRY) == {
        p("/65/0/0/0"): ObjLink(66, 0),
        p("/65/0/0/1"): ObjLink(66, 1),
        p("/1/0/6"): True,
    }


def test_time_resource_accepts_exponent_notation_and_keeps_utc() -> None:
    # Leshan senml_json_decode_single_resource_using_exponantial_notation.
    payload = b'[{"bn":"/3/0/13","v":1.638435E9}]'
    assert decode(JSON, p("/3/0/13"), payload, REGISTRY) == {
        p("/3/0/13"): datetime.fromtimestamp(1638435000, UTC)
    }


def test_unknown_resources_keep_the_record_value_type() -> None:
    payload = b'[{"bn":"/9/0/","n":"0","v":1},{"n":"1","v":1.5},{"n":"2","vs":"x"}]'
    assert decode(JSON, p("/9/0"), payload, EMPTY_REGISTRY) == {
        p("/9/0/0"): 1,
        p("/9/0/1"): 1.5,
        p("/9/0/2"): "x",
    }


def test_latest_record_of_a_history_wins() -> None:
    # Leshan senml_timestamped_resources: bt 268500000, then t -5 and t -50.
    payload = b'[{"bn":"/1000/0/3","v":22.9,"bt":268500000},{"v":22.4,"t":-5},{"v":24.1,"t":-50}]'
    assert decode(JSON, p("/1000/0/3"), payload, REGISTRY) == {p("/1000/0/3"): 22.9}
    relative = b'[{"bn":"/1000/0/3","v":1.0,"t":-30},{"v":2.0,"t":-5},{"v":3.0,"t":-50}]'
    assert decode(JSON, p("/1000/0/3"), relative, REGISTRY) == {p("/1000/0/3"): 2.0}


def test_base_value_is_added_to_v() -> None:
    payload = b'[{"bn":"/3/0/","bv":100,"n":"9","v":-5}]'
    assert decode(JSON, p("/3/0"), payload, REGISTRY) == {p("/3/0/9"): 95}


@pytest.mark.parametrize(
    ("root", "payload", "message"),
    [
        ("/3/0", b'[{"bn":"/3/0/9","vs":"100"}]', "resource is Integer; record carries 'vs'"),
        ("/3/0", b'[{"bn":"/3/0/0","v":100}]', "resource is String; record carries 'v'"),
        ("/1/0/6", b'[{"bn":"/1/0/6","v":1}]', "resource is Boolean; record carries 'v'"),
        ("/3/0", b'[{"bn":"/3/0/9","v":1.5}]', "not whole"),
        ("/5/0/13", b'[{"bn":"/5/0/13","v":-1}]', "Unsigned Integer -1"),
        ("/3/0", b'[{"bn":"/3/0/9"}]', "has no value"),
        ("/3/0", b'[{"bn":"/3/0/9","v":1,"vs":"1"}]', "several values"),
        ("/3/0", b'[{"bn":"/3/0/9","v":1},{"bn":"/3/0/9","v":2}]', "several records for /3/0/9"),
        ("/3/0", b'[{"bn":"/3/0/","n":"x","v":1}]', "not a path"),
        ("/3/0", b'[{"bn":"/3/0","v":1}]', "not a value in /3/0"),
        ("/3/0", b'[{"bn":"/4/0/0","v":1}]', "not a value in /3/0"),
        ("/3/0", b'[{"bn":"/3/0/6","v":1}]', "multi-instance"),
        ("/3/0", b'[{"bn":"/3/0/9/0","v":1}]', "single-instance"),
        ("/3/0", b'[{"bn":"/3/0/9","v":1,"x_":1}]', "must-understand"),
        ("/3/0/9", b'[{"bn":7,"v":1}]', "'bn' is int"),
        ("/3/0", b'[{"bn":"/3/0/9","v":NaN}]', "malformed JSON"),
        ("/3/0", b'[{"bn":"/3/0/9","v":1}', "malformed JSON"),
        ("/3/0", b'{"bn":"/3/0/9","v":1}', "must be an array"),
        ("/3/0/9", b"[1]", "record 0 is int"),
        ("/66/0/2", b'[{"bn":"/66/0/2","vlo":"66"}]', "not an Objlnk"),
        ("/5/0/0", b'[{"bn":"/5/0/0","vd":"q8*v"}]', "not base64url"),
        ("/3/0/9", b"\xff", "not UTF-8"),
    ],
)
def test_bad_json_packs_get_precise_errors(root: str, payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(JSON, p(root), payload, REGISTRY)


def test_empty_payloads_are_empty_content() -> None:
    assert decode(JSON, p("/3/0/6"), b"", REGISTRY) == {}
    assert decode(JSON, p("/3/0/6"), b"[]", REGISTRY) == {}
    assert decode(CBOR, p("/3/0"), b"", REGISTRY) == {}


def test_empty_instance_cannot_be_encoded() -> None:
    with pytest.raises(CodecError, match="empty object instance /3/0"):
        encode(JSON, p("/3"), {p("/3/0"): EMPTY_INSTANCE}, REGISTRY)


def test_cbor_labels_are_the_rfc_8428_integers() -> None:
    payload = encode(CBOR, p("/3/0"), {p("/3/0/9"): 100, p("/3/0/0"): "x"}, REGISTRY)
    assert cbor2.loads(payload) == [{-2: "/3/0/", 0: "0", 3: "x"}, {0: "9", 2: 100}]
    links = encode(CBOR, p("/66/0/2"), {p("/66/0/2"): ObjLink(1, 2)}, REGISTRY)
    assert cbor2.loads(links) == [{-2: "/66/0/2", "vlo": "1:2"}]
    timed = cbor2.dumps([{-2: "/3/0/9", -3: 268500000, 2: 1}, {6: -5, 2: 2}])
    assert decode(CBOR, p("/3/0/9"), timed, REGISTRY) == {p("/3/0/9"): 1}


@pytest.mark.parametrize(
    ("pack", "message"),
    [
        ([{-2: "/3/0/9", 3: "100"}], "record carries 'vs'"),
        ([{-2: "/5/0/0", 3: "q83v"}], "resource is Opaque; record carries 'vs'"),
        ([{-2: "/5/0/0", 8: "q83v"}], None),
        ([{-2: "/3/0/0", 8: b"x"}], "record carries 'vd'"),
        ([{-2: b"/3/0/9", 2: 1}], "'bn' is bytes"),
        ({-2: "/3/0/9", 2: 1}, "must be an array"),
    ],
)
def test_cbor_packs_are_typed_like_json(pack: object, message: str | None) -> None:
    root = (
        p("/5/0/0")
        if "/5/" in repr(pack)
        else p("/3/0/0")
        if "/3/0/0" in repr(pack)
        else p("/3/0/9")
    )
    payload = cbor2.dumps(pack)
    if message is None:
        assert decode(CBOR, root, payload, REGISTRY) == {root: bytes.fromhex("abcdef")}
        return
    with pytest.raises(CodecError, match=message):
        decode(CBOR, root, payload, REGISTRY)


def test_cbor_trailing_bytes_are_refused() -> None:
    payload = encode(CBOR, p("/3/0/9"), {p("/3/0/9"): 1}, REGISTRY) + b"\x00"
    with pytest.raises(CodecError, match="1 trailing byte"):
        decode(CBOR, p("/3/0/9"), payload, REGISTRY)


# -- properties ---------------------------------------------------------------------

FORMATS = pytest.mark.parametrize("fmt", [JSON, CBOR])


@FORMATS
@given(content=resource_content(p("/1000/3")))
def test_resource_round_trip(fmt: ContentFormat, content: dict) -> None:  # type: ignore[type-arg]
    (root,) = {path if path.depth == 3 else path.parent() for path in content}
    assert decode(fmt, root, encode(fmt, root, content, REGISTRY), REGISTRY) == content


@FORMATS
@given(content=object_content(p("/1000")))
def test_object_round_trip(fmt: ContentFormat, content: dict) -> None:  # type: ignore[type-arg]
    content = {k: v for k, v in content.items() if v is not EMPTY_INSTANCE}
    for root in (p("/"), p("/1000")):
        assert decode(fmt, root, encode(fmt, root, content, REGISTRY), REGISTRY) == content


@FORMATS
@given(content=instance_content(p("/1000/1")))
def test_unknown_object_round_trip_keeps_inferred_types(
    fmt: ContentFormat,
    content: dict,  # type: ignore[type-arg]
) -> None:
    content = {k: v for k, v in content.items() if v is not EMPTY_INSTANCE}
    decoded = decode(
        fmt, p("/1000/1"), encode(fmt, p("/1000/1"), content, EMPTY_REGISTRY), EMPTY_REGISTRY
    )
    assert set(decoded) == set(content)
    for path, value in content.items():
        if isinstance(value, datetime):
            assert decoded[path] == int(value.timestamp())
        elif isinstance(value, ObjLink | bytes | str | bool | float | int):
            assert decoded[path] == value


@FORMATS
@given(payload=st.binary(max_size=200), root=st.sampled_from(["/", "/3", "/3/0", "/3/0/9"]))
def test_garbage_raises_only_codec_error(fmt: ContentFormat, payload: bytes, root: str) -> None:
    try:
        decode(fmt, p(root), payload, REGISTRY)
    except CodecError:
        pass


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["bn", "n", "v", "vs", "vb", "vd", "vlo", "t", "bt", "bv"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@given(pack=st.lists(_JSONISH, max_size=4))
def test_structured_garbage_raises_only_codec_error(pack: list) -> None:  # type: ignore[type-arg]
    payload = json.dumps(pack).encode()
    for fmt in (JSON,):
        try:
            decode(fmt, p("/"), payload, REGISTRY)
        except CodecError:
            pass
