"""Strict, bounded CBOR decoding helpers shared by the envelope and manifest parsers.

Every decode error, whatever cbor2 raises for it, becomes MalformedPackage; nesting is
capped so hostile input cannot recurse deeply. cbor2 6 returns tuples and frozendicts for
items inside tags, so shapes are checked against the abstract types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import cbor2

from fotakit.packages.errors import MalformedPackage

DECODE_DEPTH: Final = 8
DECODE_ERRORS: Final = (
    cbor2.CBORError,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
    LookupError,
)


def loads_item(data: object, what: str) -> object:
    """Decode a bstr-wrapped CBOR item (duplicate map keys rejected)."""
    if not isinstance(data, bytes):
        raise MalformedPackage(f"{what} must be a bstr-wrapped CBOR item")
    try:
        return cbor2.loads(data, max_depth=DECODE_DEPTH, allow_duplicate_keys=False)
    except DECODE_ERRORS as exc:
        raise MalformedPackage(f"{what} is not valid CBOR: {exc}") from exc


def as_map(value: object, what: str) -> Mapping[object, object]:
    if not isinstance(value, Mapping):
        raise MalformedPackage(f"{what} must be a CBOR map")
    return value


def as_array(value: object, what: str) -> Sequence[object]:
    if not isinstance(value, list | tuple):
        raise MalformedPackage(f"{what} must be a CBOR array")
    return value


def as_uint(value: object, what: str, maximum: int) -> int:
    # bool is an int subclass in Python; CBOR true/false is never a number.
    if type(value) is not int or not 0 <= value <= maximum:
        raise MalformedPackage(f"{what} must be an unsigned integer")
    return value
