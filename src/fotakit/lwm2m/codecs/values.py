"""Resource values as the codecs see them: typing, range checks and conversions.

TS Core 1.1.1 Appendix C defines the data types; this module turns them into the Python
values of :data:`fotakit.lwm2m.model.Value` and back, one rule per type, so every content
format checks values the same way:

- Integer is a signed 64-bit ``int``; Unsigned Integer an ``int`` in 0..2**64-1.
- Float is a finite ``float`` (an ``int`` is accepted when encoding).
- Time is an aware ``datetime`` in UTC, carried on the wire as whole seconds since the
  epoch (fractions are dropped when encoding to an integer-only format).
- Opaque is ``bytes``, String and Corelnk are ``str``, Objlnk is :class:`ObjLink`.

It also checks the shape of content: a value for a single-instance resource sits at a
depth-3 path, values of a multi-instance resource at depth-4 paths, and the only thing at a
depth-2 path is :data:`EMPTY_INSTANCE`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

from fotakit.lwm2m.codecs.base import CodecError
from fotakit.lwm2m.model import (
    EMPTY_INSTANCE,
    ObjectRegistry,
    ObjLink,
    ResourceDef,
    ResourceType,
    Value,
)
from fotakit.lwm2m.path import Path

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
UINT_MAX: Final = 2**64 - 1
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)


def describe(value: object) -> str:
    """A short name for the Python type of ``value`` in error messages."""
    if value is EMPTY_INSTANCE:
        return "an empty object instance"
    return type(value).__name__


def resource_def(registry: ObjectRegistry, path: Path) -> ResourceDef | None:
    """The definition of the resource ``path`` is or lies in, if the registry knows it."""
    return registry.resource(path) if path.depth >= 3 else None


def infer_type(value: Value) -> ResourceType | None:
    """The resource type a Python value would have when no definition says otherwise."""
    if isinstance(value, bool):
        return ResourceType.BOOLEAN
    if isinstance(value, int):
        return ResourceType.INTEGER if value <= INT_MAX else ResourceType.UNSIGNED_INTEGER
    if isinstance(value, float):
        return ResourceType.FLOAT
    if isinstance(value, str):
        return ResourceType.STRING
    if isinstance(value, bytes):
        return ResourceType.OPAQUE
    if isinstance(value, datetime):
        return ResourceType.TIME
    if isinstance(value, ObjLink):
        return ResourceType.OBJLNK
    return None


def check_shape(path: Path, rdef: ResourceDef | None) -> None:
    """Refuse a depth-4 value for a single resource, or a depth-3 value for a multiple one."""
    if rdef is None:
        return
    if path.depth == 4 and not rdef.multiple:
        raise CodecError(f"{path}: resource {path.resource_path()} is single-instance")
    if path.depth == 3 and rdef.multiple:
        raise CodecError(f"{path}: resource is multi-instance; values need instance paths")


def check_content(root: Path, content: Mapping[Path, Value]) -> None:
    """Every path lies under ``root`` and holds a value that fits its depth."""
    for path, value in content.items():
        if not isinstance(path, Path):
            raise CodecError(f"content key {path!r} is not a Path")
        if not path.startswith(root):
            raise CodecError(f"{path} lies outside the target {root}")
        if path.depth < 2:
            raise CodecError(f"{path}: content needs instance, resource or instance paths")
        if (value is EMPTY_INSTANCE) != (path.depth == 2):
            raise CodecError(f"{path}: {describe(value)} at depth {path.depth}")
        # A resource is either one value or a set of instances, never both; an instance
        # is either empty or has resources.
        if path.depth >= 3 and path.parent() in content:
            raise CodecError(f"{path}: {path.parent()} also has a value of its own")


def encode_type(registry: ObjectRegistry, path: Path, value: Value) -> ResourceType:
    """The type to encode ``value`` at ``path`` as: the definition's, else inferred."""
    rdef = resource_def(registry, path)
    check_shape(path, rdef)
    if rdef is not None:
        return rdef.type
    inferred = infer_type(value)
    if inferred is None:
        raise CodecError(f"{path}: cannot encode a {describe(value)}")
    return inferred


def check_value(path: Path, rtype: ResourceType, value: object) -> Value:
    """``value`` as the canonical Python value of ``rtype``, or a CodecError naming why."""
    match rtype:
        case ResourceType.INTEGER | ResourceType.UNSIGNED_INTEGER:
            if not isinstance(value, int) or isinstance(value, bool):
                raise _mismatch(path, rtype, value)
            return check_int(path, rtype, value)
        case ResourceType.FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _mismatch(path, rtype, value)
            result = float(value)
            if not math.isfinite(result):
                raise CodecError(f"{path}: Float value {value!r} is not finite")
            return result
        case ResourceType.BOOLEAN:
            if not isinstance(value, bool):
                raise _mismatch(path, rtype, value)
            return value
        case ResourceType.STRING | ResourceType.CORELNK:
            if not isinstance(value, str):
                raise _mismatch(path, rtype, value)
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise CodecError(f"{path}: string is not valid Unicode ({exc.reason})") from exc
            return value
        case ResourceType.OPAQUE:
            if not isinstance(value, bytes | bytearray | memoryview):
                raise _mismatch(path, rtype, value)
            return bytes(value)
        case ResourceType.TIME:
            if isinstance(value, datetime):
                if value.tzinfo is None or value.utcoffset() is None:
                    raise CodecError(f"{path}: Time value {value!r} has no timezone")
                return value.astimezone(UTC)
            if isinstance(value, int) and not isinstance(value, bool):
                return seconds_to_time(path, value)
            raise _mismatch(path, rtype, value)
        case ResourceType.OBJLNK:
            if not isinstance(value, ObjLink):
                raise _mismatch(path, rtype, value)
            return value
        case ResourceType.NONE:
            raise CodecError(f"{path}: executable resource carries no value")
    raise CodecError(f"{path}: unknown resource type {rtype!r}")  # pragma: no cover


def check_int(path: Path, rtype: ResourceType, value: int) -> int:
    """Range check for Integer (signed 64-bit) and Unsigned Integer (unsigned 64-bit)."""
    if rtype is ResourceType.UNSIGNED_INTEGER:
        if not 0 <= value <= UINT_MAX:
            raise CodecError(f"{path}: Unsigned Integer {value} out of 0..{UINT_MAX}")
    elif not INT_MIN <= value <= INT_MAX:
        raise CodecError(f"{path}: Integer {value} out of {INT_MIN}..{INT_MAX}")
    return value


def from_number(path: Path, rtype: ResourceType | None, number: object) -> Value:
    """A decoded JSON/CBOR number as the value of ``rtype`` (``None``: keep int or float)."""
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise CodecError(f"{path}: expected a number, got {describe(number)}")
    if isinstance(number, float) and not math.isfinite(number):
        raise CodecError(f"{path}: number {number!r} is not finite")
    if rtype is None:
        return number
    match rtype:
        case ResourceType.INTEGER | ResourceType.UNSIGNED_INTEGER:
            if isinstance(number, float):
                if not number.is_integer():
                    raise CodecError(f"{path}: {rtype.value} value {number!r} is not whole")
                number = int(number)
            return check_int(path, rtype, number)
        case ResourceType.FLOAT:
            return float(number)
        case ResourceType.TIME:
            return seconds_to_time(path, number)
    raise CodecError(f"{path}: resource is {rtype.value}; got a number")


def time_to_seconds(value: datetime) -> int:
    """Whole seconds since the epoch (floor), as Time travels in integer formats."""
    return (value - EPOCH) // _SECOND


def time_to_number(value: datetime) -> int | float:
    """Seconds since the epoch, keeping a fraction only if there is one."""
    delta = value - EPOCH
    if delta.microseconds:
        return delta / _SECOND
    return delta // _SECOND


def seconds_to_time(path: Path, seconds: int | float) -> datetime:
    """A UTC datetime ``seconds`` after the epoch; CodecError outside datetime's range."""
    try:
        return EPOCH + timedelta(seconds=seconds)
    except (OverflowError, ValueError) as exc:
        raise CodecError(f"{path}: Time {seconds!r} is out of range") from exc


def parse_objlnk(path: Path, text: str) -> ObjLink:
    """``"3:0"`` as an ObjLink (TS Core Appendix C), CodecError if malformed."""
    obj, sep, inst = text.partition(":")
    if not sep or not _is_uint(obj) or not _is_uint(inst) or len(obj) > 5 or len(inst) > 5:
        raise CodecError(f"{path}: not an Objlnk 'object:instance': {text[:40]!r}")
    try:
        return ObjLink(int(obj), int(inst))
    except ValueError as exc:
        raise CodecError(f"{path}: {exc}") from exc


def _is_uint(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _mismatch(path: Path, rtype: ResourceType, value: object) -> CodecError:
    return CodecError(f"{path}: resource is {rtype.value}; got {describe(value)}")


def type_name(rtype: ResourceType | None) -> str:
    """The spec name of a type, or 'unknown' for a resource without a definition."""
    return rtype.value if rtype is not None else "unknown"
