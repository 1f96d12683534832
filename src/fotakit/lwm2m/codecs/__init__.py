"""Codecs for every LwM2M content format, behind one interface.

``encode(fmt, root, content, registry)`` and ``decode(fmt, root, payload, registry)``
convert between bytes and a flat :data:`fotakit.lwm2m.model.Content` mapping. ``root`` is
the request path the payload belongs to (a SenML base name, the TLV nesting level, the
resource a text/plain value is for). Formats without type information (text/plain, TLV)
need the registry to know resource types; unknown resources decode to ``bytes`` (TLV) or
``str`` (text).

Errors raise :class:`CodecError` (the server and client answer 4.00 Bad Request) or
:class:`UnsupportedFormat` (4.15 Unsupported Content-Format on input, 4.06 Not Acceptable
when asked to produce it).

One module per format (TS Core 1.1.1 §7.4, 1.2 §7.4.6): :mod:`.text` (0), :mod:`.opaque`
(42), :mod:`.cbor` (60), :mod:`.senml_json` (110), :mod:`.senml_cbor` (112), :mod:`.tlv`
(11542, legacy 1542), :mod:`.oma_json` (11543, legacy 1543), :mod:`.lwm2m_cbor` (11544).
CoRE link-format (40) is not a data format: Discover and Register payloads go through
:mod:`fotakit.lwm2m.linkformat`, so it is refused here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from fotakit.lwm2m.codecs import (
    cbor,
    lwm2m_cbor,
    oma_json,
    opaque,
    senml_cbor,
    senml_json,
    text,
    tlv,
)
from fotakit.lwm2m.codecs.base import CodecError, ContentFormat, UnsupportedFormat
from fotakit.lwm2m.model import Content, ObjectRegistry, Value
from fotakit.lwm2m.path import Path

__all__ = [
    "SINGLE_VALUE_FORMATS",
    "SUPPORTED_DECODE",
    "SUPPORTED_ENCODE",
    "CodecError",
    "ContentFormat",
    "UnsupportedFormat",
    "decode",
    "encode",
    "is_single_value",
    "normalize",
]

_Encoder = Callable[[Path, Mapping[Path, Value], ObjectRegistry], bytes]
_Decoder = Callable[[Path, bytes, ObjectRegistry], dict[Path, Value]]

_CODECS: Final[dict[ContentFormat, tuple[_Encoder, _Decoder]]] = {
    ContentFormat.TEXT: (text.encode, text.decode),
    ContentFormat.OPAQUE: (opaque.encode, opaque.decode),
    ContentFormat.CBOR: (cbor.encode, cbor.decode),
    ContentFormat.SENML_JSON: (senml_json.encode, senml_json.decode),
    ContentFormat.SENML_CBOR: (senml_cbor.encode, senml_cbor.decode),
    ContentFormat.TLV: (tlv.encode, tlv.decode),
    ContentFormat.OMA_JSON: (oma_json.encode, oma_json.decode),
    ContentFormat.LWM2M_CBOR: (lwm2m_cbor.encode, lwm2m_cbor.decode),
}
_LEGACY: Final = {
    ContentFormat.LEGACY_TLV: ContentFormat.TLV,
    ContentFormat.LEGACY_JSON: ContentFormat.OMA_JSON,
}

#: Formats :func:`decode` accepts (legacy 1542/1543 included).
SUPPORTED_DECODE: Final[frozenset[ContentFormat]] = frozenset(_CODECS) | frozenset(_LEGACY)
#: Formats :func:`encode` produces (legacy 1542/1543 included, written as 11542/11543 are).
SUPPORTED_ENCODE: Final[frozenset[ContentFormat]] = SUPPORTED_DECODE
#: Formats that carry exactly one resource or resource-instance value (TS 1.1.1 §7.4).
SINGLE_VALUE_FORMATS: Final[frozenset[ContentFormat]] = frozenset(
    {ContentFormat.TEXT, ContentFormat.OPAQUE, ContentFormat.CBOR}
)


def normalize(fmt: int) -> ContentFormat:
    """The format for a Content-Format number, legacy codes mapped to their successors.

    Raises UnsupportedFormat for a number that is no LwM2M data format (including 40).
    """
    try:
        known = ContentFormat(fmt)
    except ValueError:
        raise UnsupportedFormat(f"Content-Format {fmt} is not an LwM2M data format") from None
    known = _LEGACY.get(known, known)
    if known not in _CODECS:
        raise UnsupportedFormat(
            f"Content-Format {int(fmt)} ({known.name}) carries no resource values; "
            "link-format goes through fotakit.lwm2m.linkformat"
        )
    return known


def is_single_value(fmt: int) -> bool:
    """True if ``fmt`` can only carry one resource or resource-instance value."""
    return normalize(fmt) in SINGLE_VALUE_FORMATS


def encode(fmt: int, root: Path, content: Mapping[Path, Value], registry: ObjectRegistry) -> bytes:
    """The payload for ``content`` (all of it under ``root``) in format ``fmt``."""
    return _CODECS[normalize(fmt)][0](root, content, registry)


def decode(fmt: int, root: Path, payload: bytes, registry: ObjectRegistry) -> Content:
    """The content of a ``fmt`` payload that a request on ``root`` carried or returned."""
    return _CODECS[normalize(fmt)][1](root, bytes(payload), registry)
