"""LwM2M CBOR (11544, TS Core 1.2 §7.4.6): path-keyed nested maps."""

from __future__ import annotations

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
from fotakit.lwm2m.model import EMPTY_INSTANCE

LWM2M_CBOR = ContentFormat.LWM2M_CBOR

# Vectors from AVSystem/Anjay tests/core/io/lwm2m_cbor_in.c and lwm2m_cbor_out.c (test
# data only): object 13 instance 26 is unknown to the registry, so values keep CBOR types.
ANJAY_DECODE_VECTORS = [
    ("/13/26/1", "A1830D181A01182A", {"/13/26/1": 42}),  # {[13, 26, 1]: 42}
    ("/13/26/1", "A1830D181A01F5", {"/13/26/1": True}),  # {[13, 26, 1]: true}
    ("/13/26/1", "BF9F0D181A01FF182AFF", {"/13/26/1": 42}),  # {_ [_ 13, 26, 1]: 42}
    ("/13/26/1", "A10DA1181AA101182A", {"/13/26/1": 42}),  # {13: {26: {1: 42}}}
    ("/13/26/1", "A1810DA181181AA18101182A", {"/13/26/1": 42}),  # {[13]: {[26]: {[1]: 42}}}
    # {[13]: {[26]: {[1]: {[2]: 4([-1, 45])}}}}: a decimal fraction.
    ("/13/26/1/2", "A1810DA181181AA18101A18102C48220182D", {"/13/26/1/2": 4.5}),
    ("/13/26", "A1820D181AA201182A0215", {"/13/26/1": 42, "/13/26/2": 21}),
    ("/13/26", "A2830D181A01182A830D181A0215", {"/13/26/1": 42, "/13/26/2": 21}),
    ("/13/26", "A2820D181AA101182A830D181A0215", {"/13/26/1": 42, "/13/26/2": 21}),
    ("/13/26", "A2830D181A01182A820D181AA1810215", {"/13/26/1": 42, "/13/26/2": 21}),
]


@pytest.mark.parametrize(("root", "payload", "expected"), ANJAY_DECODE_VECTORS)
def test_anjay_vectors_decode(root: str, payload: str, expected: dict[str, object]) -> None:
    content = decode(LWM2M_CBOR, p(root), bytes.fromhex(payload), EMPTY_REGISTRY)
    assert content == {p(k): v for k, v in expected.items()}


def test_anjay_encoder_shapes_decode_to_the_same_content() -> None:
    # lwm2m_cbor_out.c resource_instances_nested_maps, indefinite-length maps:
    # {[13, 26]: {1: 42, 3: {21: 69.68, 37: false}}}
    payload = bytes.fromhex("BF820D181ABF01182A03BF15FB40516B851EB851EC1825F4FFFFFF")
    assert decode(LWM2M_CBOR, p("/13/26"), payload, EMPTY_REGISTRY) == {
        p("/13/26/1"): 42,
        p("/13/26/3/21"): 69.68,
        p("/13/26/3/37"): False,
    }


def test_encoder_keys_the_target_path_and_nests_below_it() -> None:
    single = encode(LWM2M_CBOR, p("/13/26/1"), {p("/13/26/1"): 42}, EMPTY_REGISTRY)
    assert single == bytes.fromhex("A1830D181A01182A")
    two = encode(LWM2M_CBOR, p("/13/26"), {p("/13/26/1"): 42, p("/13/26/2"): 21}, EMPTY_REGISTRY)
    assert two == bytes.fromhex("A1820D181AA201182A0215")
    root = encode(LWM2M_CBOR, p("/"), {p("/13/26/1"): 42, p("/14/27/1"): 43}, EMPTY_REGISTRY)
    assert cbor2.loads(root) == {13: {26: {1: 42}}, 14: {27: {1: 43}}}


def test_device_instance_round_trips_with_types() -> None:
    payload = encode(LWM2M_CBOR, p("/3/0"), DEVICE_CONTENT, REGISTRY)
    tree = cbor2.loads(payload)
    assert tree[(3, 0)][6] == {0: 1, 1: 5}
    assert tree[(3, 0)][13] == 1367491215
    assert decode(LWM2M_CBOR, p("/3/0"), payload, REGISTRY) == DEVICE_CONTENT


def test_empty_instance_is_an_empty_map() -> None:
    payload = encode(LWM2M_CBOR, p("/3"), {p("/3/0"): EMPTY_INSTANCE}, REGISTRY)
    assert cbor2.loads(payload) == {3: {0: {}}}
    assert decode(LWM2M_CBOR, p("/3"), payload, REGISTRY) == {p("/3/0"): EMPTY_INSTANCE}


@pytest.mark.parametrize(
    ("root", "tree", "message"),
    [
        ("/3/0", [1], "top level must be a map"),
        ("/3/0", {(3, 0): 1}, "not at a resource"),
        ("/3/0", {(3, 0, 9, 0): {1: 2}}, "map below resource instance"),
        ("/3/0", {(3, 0, 9, 0, 1): 2}, "not a path step"),
        ("/3/0", {(): 2}, "not a path step"),
        ("/3/0", {"3": {0: {9: 1}}}, "not an ID"),
        ("/3/0", {3: {0: {65535: 1}}}, "not an ID"),
        ("/3/0", {(3, 0, 9): 1, 3: {0: {9: 2}}}, "/3/0/9 appears twice"),
        ("/3/0", {(4, 0, 9): 1}, "outside the target /3/0"),
        ("/3/0", {(3, 0, 9): "x"}, "expected a number, got str"),
        ("/3/0", {(3, 0, 6): 1}, "multi-instance"),
        ("/3/0", {(3, 0, 9, 1): 1}, "single-instance"),
        ("/3/0", {(3, 0, 9): None}, "expected a number, got NoneType"),
        ("/3/0", {(3, 0): {9: 1, 6: {}}, (3, 0, 6, 0): 2}, None),
    ],
)
def test_malformed_trees_get_precise_errors(root: str, tree: object, message: str | None) -> None:
    payload = cbor2.dumps(tree)
    if message is None:
        assert decode(LWM2M_CBOR, p(root), payload, REGISTRY) == {p("/3/0/9"): 1, p("/3/0/6/0"): 2}
        return
    with pytest.raises(CodecError, match=message):
        decode(LWM2M_CBOR, p(root), payload, REGISTRY)


def test_duplicate_map_keys_and_trailing_bytes_are_refused() -> None:
    with pytest.raises(CodecError, match="Duplicate map key"):
        decode(LWM2M_CBOR, p("/3/0"), bytes.fromhex("A2830300090183030009 02"), REGISTRY)
    with pytest.raises(CodecError, match="trailing"):
        decode(LWM2M_CBOR, p("/3/0/9"), bytes.fromhex("A183030009 01 00"), REGISTRY)


@given(resource_content(p("/1000/3")))
def test_resource_round_trip(content: dict) -> None:  # type: ignore[type-arg]
    (root,) = {path if path.depth == 3 else path.parent() for path in content}
    assert (
        decode(LWM2M_CBOR, root, encode(LWM2M_CBOR, root, content, REGISTRY), REGISTRY) == content
    )


@given(instance_content(p("/1000/9")))
def test_instance_round_trip(content: dict) -> None:  # type: ignore[type-arg]
    root = p("/1000/9")
    assert (
        decode(LWM2M_CBOR, root, encode(LWM2M_CBOR, root, content, REGISTRY), REGISTRY) == content
    )


@given(object_content(p("/1000")), st.sampled_from(["/", "/1000"]))
def test_object_round_trip(content: dict, root: str) -> None:  # type: ignore[type-arg]
    encoded = encode(LWM2M_CBOR, p(root), content, REGISTRY)
    assert decode(LWM2M_CBOR, p(root), encoded, REGISTRY) == content


@given(st.binary(max_size=200), st.sampled_from(["/", "/3", "/3/0", "/3/0/9"]))
def test_garbage_raises_only_codec_error(payload: bytes, root: str) -> None:
    try:
        decode(LWM2M_CBOR, p(root), payload, REGISTRY)
    except CodecError:
        pass
