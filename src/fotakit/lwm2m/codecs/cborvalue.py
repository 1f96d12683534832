"""CBOR items as LwM2M values, shared by application/cbor, SenML CBOR and LwM2M CBOR.

RFC 8949 items map to the data types of TS Core Appendix C the way TS 1.1.1 §7.4.5 and
1.2 §7.4.6/§7.4.7 describe: integers (major types 0/1), floats (major type 7, and the
decimal fractions of tag 4 on input), booleans, text strings (String, Corelnk, and Objlnk
as "object:instance"), byte strings (Opaque), and Time as an integer of seconds (tag 1 is
accepted on input). Decoding is strict: no trailing bytes, no duplicate map keys, bounded
nesting.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

import cbor2

from fotakit.lwm2m.codecs.base import CodecError
from fotakit.lwm2m.codecs.values import (
    INT_MIN,
    UINT_MAX,
    check_value,
    describe,
    from_number,
    parse_objlnk,
    time_to_seconds,
)
from fotakit.lwm2m.model import ObjLink, ResourceType, Value
from fotakit.lwm2m.path import Path

#: LwM2M CBOR nests at most root map -> 4 path levels -> value; SenML is array -> map.
MAX_DEPTH: Final = 16


def loads(payload: bytes, format_name: str) -> object:
    """One CBOR data item filling all of ``payload``; CodecError for anything else."""
    stream = io.BytesIO(payload)
    decoder = cbor2.CBORDecoder(stream, max_depth=MAX_DEPTH, allow_duplicate_keys=False)
    try:
        item = decoder.decode()
    except Exception as exc:  # cbor2 raises assorted types from its semantic decoders
        raise CodecError(f"{format_name}: malformed CBOR ({exc})") from exc
    if stream.tell() != len(payload):
        extra = len(payload) - stream.tell()
        raise CodecError(f"{format_name}: {extra} trailing byte(s) after the CBOR item")
    return item


def dumps(item: object, format_name: str) -> bytes:
    try:
        return cbor2.dumps(item)
    except Exception as exc:  # pragma: no cover - values are checked before this
        raise CodecError(f"{format_name}: cannot encode ({exc})") from exc


def to_item(rtype: ResourceType, value: Value) -> object:
    """The CBOR item for an already checked value of ``rtype``."""
    if rtype is ResourceType.TIME:
        assert isinstance(value, datetime)
        return time_to_seconds(value)
    if rtype is ResourceType.OBJLNK:
        return str(value)
    return value


def from_item(path: Path, rtype: ResourceType | None, item: object) -> Value:
    """The value of ``rtype`` (or of the item's own type when unknown) that ``item`` holds."""
    if isinstance(item, Decimal):
        item = float(item)
    if rtype is None:
        return _untyped(path, item)
    match rtype:
        case ResourceType.INTEGER | ResourceType.UNSIGNED_INTEGER | ResourceType.FLOAT:
            return from_number(path, rtype, item)
        case ResourceType.TIME:
            if isinstance(item, datetime):
                return check_value(path, rtype, item)
            return from_number(path, rtype, item)
        case ResourceType.OBJLNK:
            if not isinstance(item, str):
                raise CodecError(f"{path}: Objlnk expected as text, got {describe(item)}")
            link: ObjLink = parse_objlnk(path, item)
            return link
    return check_value(path, rtype, item)


def _untyped(path: Path, item: object) -> Value:
    if isinstance(item, str):
        return check_value(path, ResourceType.STRING, item)
    if isinstance(item, bool | bytes):
        return item
    if isinstance(item, int):
        if not INT_MIN <= item <= UINT_MAX:
            raise CodecError(f"{path}: integer {item} does not fit 64 bits")
        return item
    if isinstance(item, float):
        return from_number(path, None, item)
    if isinstance(item, datetime):
        return item.astimezone(UTC) if item.tzinfo is not None else item.replace(tzinfo=UTC)
    raise CodecError(f"{path}: {describe(item)} is not a resource value")
