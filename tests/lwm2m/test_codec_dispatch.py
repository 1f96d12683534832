"""The codec dispatcher: format numbers, legacy codes, refusals, and all-format properties."""

from __future__ import annotations

import os
import time

import pytest
from codec_helpers import DEVICE_CONTENT, DEVICE_TLV, REGISTRY, object_content, p
from hypothesis import given, settings
from hypothesis import strategies as st

from fotakit.lwm2m.codecs import (
    SINGLE_VALUE_FORMATS,
    SUPPORTED_DECODE,
    SUPPORTED_ENCODE,
    CodecError,
    ContentFormat,
    UnsupportedFormat,
    decode,
    encode,
    is_single_value,
    normalize,
)
from fotakit.lwm2m.model import EMPTY_INSTANCE

MULTI_VALUE = [
    ContentFormat.TLV,
    ContentFormat.SENML_JSON,
    ContentFormat.SENML_CBOR,
    ContentFormat.OMA_JSON,
    ContentFormat.LWM2M_CBOR,
]


def test_every_data_format_is_supported_both_ways_and_link_format_is_not() -> None:
    data_formats = set(ContentFormat) - {ContentFormat.LINK}
    assert data_formats == SUPPORTED_DECODE == SUPPORTED_ENCODE
    assert SINGLE_VALUE_FORMATS == {ContentFormat.TEXT, ContentFormat.OPAQUE, ContentFormat.CBOR}
    assert is_single_value(0) and not is_single_value(11542)


def test_legacy_codes_map_to_tlv_and_oma_json() -> None:
    assert normalize(1542) is ContentFormat.TLV
    assert normalize(1543) is ContentFormat.OMA_JSON
    assert decode(1542, p("/3/0"), DEVICE_TLV, REGISTRY) == DEVICE_CONTENT
    assert encode(ContentFormat.LEGACY_TLV, p("/3/0"), DEVICE_CONTENT, REGISTRY) == DEVICE_TLV


def test_link_format_and_unknown_numbers_are_unsupported() -> None:
    with pytest.raises(UnsupportedFormat, match="linkformat"):
        decode(ContentFormat.LINK, p("/3/0"), b"</3/0>", REGISTRY)
    with pytest.raises(UnsupportedFormat, match="Content-Format 50"):
        decode(50, p("/3/0"), b"{}", REGISTRY)
    with pytest.raises(UnsupportedFormat):
        encode(1541, p("/3/0"), {}, REGISTRY)


def test_content_outside_the_root_or_mixed_depths_is_refused_in_every_format() -> None:
    for fmt in MULTI_VALUE:
        with pytest.raises(CodecError, match="outside the target /3/0"):
            encode(fmt, p("/3/0"), {p("/3/1/0"): "x"}, REGISTRY)
        with pytest.raises(CodecError, match="also has a value"):
            encode(fmt, p("/1000/0"), {p("/1000/0/6"): 1, p("/1000/0/6/0"): 2}, REGISTRY)
        with pytest.raises(CodecError, match="empty object instance at depth 3"):
            encode(fmt, p("/3/0"), {p("/3/0/1"): EMPTY_INSTANCE}, REGISTRY)


def test_wrong_value_type_is_refused_in_every_format() -> None:
    for fmt in [*MULTI_VALUE, ContentFormat.TEXT, ContentFormat.CBOR]:
        with pytest.raises(CodecError, match="resource is Integer; got str"):
            encode(fmt, p("/3/0/9"), {p("/3/0/9"): "100"}, REGISTRY)
        with pytest.raises(CodecError, match="executable"):
            encode(fmt, p("/3/0/4"), {p("/3/0/4"): b""}, REGISTRY)


@pytest.mark.parametrize("fmt", MULTI_VALUE)
def test_builtin_registry_device_instance_round_trips(fmt: ContentFormat) -> None:
    from fotakit.lwm2m.objects import builtin_registry

    registry = builtin_registry()
    payload = encode(fmt, p("/3/0"), DEVICE_CONTENT, registry)
    assert decode(fmt, p("/3/0"), payload, registry) == DEVICE_CONTENT


@pytest.mark.parametrize("fmt", MULTI_VALUE)
@given(content=object_content(p("/1000")))
@settings(max_examples=50)
def test_object_content_survives_every_pair_of_formats(fmt: ContentFormat, content: dict) -> None:  # type: ignore[type-arg]
    # Formats that cannot carry an empty instance are given content without one.
    if fmt in (ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR, ContentFormat.OMA_JSON):
        content = {k: v for k, v in content.items() if v is not EMPTY_INSTANCE}
    root = p("/1000")
    decoded = decode(fmt, root, encode(fmt, root, content, REGISTRY), REGISTRY)
    for other in MULTI_VALUE:
        if EMPTY_INSTANCE in decoded.values() and other not in (
            ContentFormat.TLV,
            ContentFormat.LWM2M_CBOR,
        ):
            continue
        assert decode(other, root, encode(other, root, decoded, REGISTRY), REGISTRY) == content


ALL_DECODABLE = sorted(SUPPORTED_DECODE)
ROOTS = ["/", "/3", "/3/0", "/3/0/6", "/3/0/9", "/3/0/6/1", "/5/0/0", "/9/0/0"]


@given(
    fmt=st.sampled_from(ALL_DECODABLE),
    root=st.sampled_from(ROOTS),
    payload=st.binary(max_size=300),
)
@settings(max_examples=400)
def test_any_bytes_into_any_decoder_raise_only_codec_error(
    fmt: ContentFormat, root: str, payload: bytes
) -> None:
    try:
        decode(fmt, p(root), payload, REGISTRY)
    except CodecError:
        pass


@pytest.mark.parametrize("fmt", ALL_DECODABLE)
def test_one_megabyte_of_garbage_fails_fast(fmt: ContentFormat) -> None:
    garbage = b"\x9f\xbf[{" + os.urandom(1 << 20)
    for root in ("/3/0", "/3/0/0"):
        started = time.perf_counter()
        try:
            decode(fmt, p(root), garbage, REGISTRY)
        except CodecError:
            pass
        assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("fmt", ALL_DECODABLE)
def test_deeply_nested_input_is_refused_without_recursion_errors(fmt: ContentFormat) -> None:
    nested_json = b"[" * 100_000
    nested_cbor = b"\x81" * 100_000
    for payload in (nested_json, nested_cbor):
        try:
            decode(fmt, p("/3/0"), payload, REGISTRY)
        except CodecError:
            pass


def test_targets_a_format_cannot_represent_raise_unsupported_format() -> None:
    cases = [
        (ContentFormat.TEXT, p("/3/0/6"), {p("/3/0/6/0"): 1}),
        (ContentFormat.CBOR, p("/3/0"), {p("/3/0/9"): 1}),
        (ContentFormat.OPAQUE, p("/3/0/0"), {p("/3/0/0"): b"x"}),
        (ContentFormat.TLV, p("/"), {p("/3/0/9"): 1}),
        (ContentFormat.SENML_JSON, p("/3"), {p("/3/0"): EMPTY_INSTANCE}),
    ]
    for fmt, root, content in cases:
        with pytest.raises(UnsupportedFormat):
            encode(fmt, root, content, REGISTRY)
