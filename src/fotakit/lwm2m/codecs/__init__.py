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
"""

from __future__ import annotations

import enum


class ContentFormat(enum.IntEnum):
    """CoAP Content-Format numbers used by LwM2M (TS Core 1.2 Table 7.4-3)."""

    TEXT = 0
    LINK = 40
    OPAQUE = 42
    CBOR = 60
    SENML_JSON = 110
    SENML_CBOR = 112
    TLV = 11542
    OMA_JSON = 11543
    LWM2M_CBOR = 11544
    # Pre-registration codes some 1.0 clients still send (Wakaama, Leshan accept them).
    LEGACY_TLV = 1542
    LEGACY_JSON = 1543


class CodecError(ValueError):
    """A payload that does not decode, or content that cannot be encoded, in a format."""


class UnsupportedFormat(CodecError):
    """A content format this codec layer does not implement for the requested operation."""
