"""Content-Format numbers and the codec errors, shared by every codec module.

Kept apart from the package ``__init__`` so the format modules can import them without a
cycle; :mod:`fotakit.lwm2m.codecs` re-exports every name here.
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
