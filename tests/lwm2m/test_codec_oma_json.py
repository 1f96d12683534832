"""Legacy OMA JSON (11543, TS Core 1.0.2 §6.4.4): decode and encode."""

from __future__ import annotations

import json

import pytest
from codec_helpers import DEVICE_CONTENT, REGISTRY, instance_content, object_content, p
from hypothesis import given
from hypothesis import strategies as st

from fotakit.lwm2m.codecs import CodecError, ContentFormat, decode, encode
from fotakit.lwm2m.model import EMPTY_INSTANCE, ObjLink

OMA_JSON = ContentFormat.OMA_JSON

_ENTRIES = [
    ("0", "sv", "Open Mobile Alliance"), ("1", "sv", "Lightweight M2M Client"),
    ("2", "sv", "345000123"), ("3", "sv", "1.0"), ("6/0", "v", 1), ("6/1", "v", 5),
    ("7/0", "v", 3800), ("7/1", "v", 5000), ("8/0", "v", 125), ("8/1", "v", 900),
    ("9", "v", 100), ("10", "v", 15), ("11/0", "v", 0), ("13", "v", 1367491215),
    ("14", "sv", "+02:00"), ("16", "sv", "U"),
]  # fmt: skip
# TS Core 1.0 §6.4.4 example (Device object instance 0), as in eclipse-leshan/leshan
# LwM2mNodeDecoderTest.java json_device_object_instance0 and its two variants.
DEVICE_JSON = json.dumps(
    {"bn": "/3/0/", "e": [{"n": n, k: v} for n, k, v in _ENTRIES]}, separators=(",", ":")
).encode()
DEVICE_JSON_ROOT_BN = json.dumps(
    {"bn": "/", "e": [{"n": "3/0/" + n, k: v} for n, k, v in _ENTRIES]}
).encode()
DEVICE_JSON_NO_BN = json.dumps({"e": [{"n": "/3/0/" + n, k: v} for n, k, v in _ENTRIES]}).encode()


@pytest.mark.parametrize("payload", [DEVICE_JSON, DEVICE_JSON_ROOT_BN, DEVICE_JSON_NO_BN])
def test_spec_device_instance_decodes(payload: bytes) -> None:
    assert decode(OMA_JSON, p("/3/0"), payload, REGISTRY) == DEVICE_CONTENT


def test_device_instance_encodes_to_the_spec_document() -> None:
    assert encode(OMA_JSON, p("/3/0"), DEVICE_CONTENT, REGISTRY) == DEVICE_JSON


def test_legacy_code_1543_is_the_same_format() -> None:
    assert decode(ContentFormat.LEGACY_JSON, p("/3/0"), DEVICE_JSON, REGISTRY) == DEVICE_CONTENT


def test_opaque_travels_base64_in_sv_and_objlnk_in_ov() -> None:
    content = {p("/5/0/0"): b"\x01\x02\xff", p("/5/0/1"): "coap://h/fw"}
    payload = encode(OMA_JSON, p("/5/0"), content, REGISTRY)
    assert json.loads(payload)["e"][0] == {"n": "0", "sv": "AQL/"}
    assert decode(OMA_JSON, p("/5/0"), payload, REGISTRY) == content
    link = encode(OMA_JSON, p("/66/0/2"), {p("/66/0/2"): ObjLink(67, 0)}, REGISTRY)
    assert json.loads(link) == {"bn": "/66/0/2", "e": [{"ov": "67:0"}]}


def test_entry_times_are_relative_to_bt_and_the_latest_wins() -> None:
    # Leshan json_timestamped_resources: bt 25462634, t -30, -5, -50.
    payload = (
        b'{"bn":"/1000/0/3","e":[{"v":22.9,"t":-30},{"v":22.4,"t":-5},{"v":24.1,"t":-50}],'
        b'"bt":25462634}'
    )
    assert decode(OMA_JSON, p("/1000/0/3"), payload, REGISTRY) == {p("/1000/0/3"): 22.4}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{}", "'e' array is missing"),
        (b"[]", "expected an object"),
        (b'{"bn":"/3/0/","e":[{"n":"0"}]}', "has no value"),
        (b'{"bn":"/3/0/","e":[{"n":"1","sv":"a"},{"n":"1","sv":"b"}]}', "several records"),
        (b'{"bn":"/3/0/","e":[{"n":"9","sv":"100"}]}', "Integer; record carries 'vs'"),
        (b'{"bn":"/3/0/","e":[{"n":"9","v":true}]}', "expected a number, got bool"),
        (b'{"bn":"/3/0/","e":[{"n":"9","v":1}', "malformed JSON"),
    ],
)
def test_bad_documents_get_precise_errors(payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(OMA_JSON, p("/3/0"), payload, REGISTRY)


def test_empty_entry_list_is_empty_content() -> None:
    assert decode(OMA_JSON, p("/3/0/6"), b'{"e":[]}', REGISTRY) == {}


@given(instance_content(p("/1000/2")))
def test_instance_round_trip(content: dict) -> None:  # type: ignore[type-arg]
    content = {k: v for k, v in content.items() if v is not EMPTY_INSTANCE}
    root = p("/1000/2")
    assert decode(OMA_JSON, root, encode(OMA_JSON, root, content, REGISTRY), REGISTRY) == content


@given(object_content(p("/1000")))
def test_object_round_trip(content: dict) -> None:  # type: ignore[type-arg]
    content = {k: v for k, v in content.items() if v is not EMPTY_INSTANCE}
    root = p("/1000")
    assert decode(OMA_JSON, root, encode(OMA_JSON, root, content, REGISTRY), REGISTRY) == content


@given(st.binary(max_size=200))
def test_garbage_raises_only_codec_error(payload: bytes) -> None:
    try:
        decode(OMA_JSON, p("/3/0"), payload, REGISTRY)
    except CodecError:
        pass
