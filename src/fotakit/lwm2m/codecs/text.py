"""text/plain (Content-Format 0): one resource value as UTF-8 text.

TS Core 1.1.1 §7.4.1 and Appendix C: Integer and Unsigned Integer in decimal, Float as a
decimal number, Boolean as "0" or "1", Time as integer seconds since the epoch, Objlnk as
"object:instance", String and Corelnk as they are, Opaque in base64 (RFC 4648 §4, with
padding). A resource the registry does not know decodes to ``str``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from fotakit.lwm2m.codecs.base import CodecError
from fotakit.lwm2m.codecs.single import only_value, target
from fotakit.lwm2m.codecs.values import (
    check_int,
    check_value,
    encode_type,
    parse_objlnk,
    seconds_to_time,
    time_to_seconds,
)
from fotakit.lwm2m.model import ObjectRegistry, ObjLink, ResourceType, Value
from fotakit.lwm2m.path import Path

NAME: Final = "text/plain"
_INTEGER: Final = re.compile(r"[+-]?[0-9]{1,20}")
_FLOAT: Final = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def encode(root: Path, content: Mapping[Path, Value], registry: ObjectRegistry) -> bytes:
    target(root, registry, NAME)
    value = only_value(root, content, NAME)
    rtype = encode_type(registry, root, value)
    value = check_value(root, rtype, value)
    return format_value(rtype, value).encode("utf-8")


def format_value(rtype: ResourceType, value: Value) -> str:
    """The text form of an already checked value."""
    match rtype:
        case ResourceType.BOOLEAN:
            return "1" if value else "0"
        case ResourceType.FLOAT:
            assert isinstance(value, float)
            return repr(value)
        case ResourceType.TIME:
            assert isinstance(value, datetime)
            return str(time_to_seconds(value))
        case ResourceType.OPAQUE:
            assert isinstance(value, bytes)
            return base64.b64encode(value).decode("ascii")
    return str(value)


def decode(root: Path, payload: bytes, registry: ObjectRegistry) -> dict[Path, Value]:
    rdef = target(root, registry, NAME)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError(f"{root}: text/plain payload is not UTF-8 ({exc.reason})") from exc
    rtype = rdef.type if rdef is not None else ResourceType.STRING
    return {root: parse_value(root, rtype, text)}


def parse_value(path: Path, rtype: ResourceType, text: str) -> Value:
    """The value of ``rtype`` written as ``text``, or a CodecError saying what is wrong."""
    match rtype:
        case ResourceType.STRING | ResourceType.CORELNK:
            return text
        case ResourceType.INTEGER | ResourceType.UNSIGNED_INTEGER:
            if not _INTEGER.fullmatch(text):
                raise CodecError(f"{path}: {rtype.value} expected, got {text[:40]!r}")
            return check_int(path, rtype, int(text))
        case ResourceType.TIME:
            if not _INTEGER.fullmatch(text):
                raise CodecError(f"{path}: Time expected (seconds), got {text[:40]!r}")
            return seconds_to_time(path, int(text))
        case ResourceType.FLOAT:
            if len(text) > 400 or not _FLOAT.fullmatch(text):
                raise CodecError(f"{path}: Float expected, got {text[:40]!r}")
            number = float(text)
            if not math.isfinite(number):
                raise CodecError(f"{path}: Float {text[:40]!r} is out of range")
            return number
        case ResourceType.BOOLEAN:
            if text not in ("0", "1"):
                raise CodecError(f"{path}: Boolean must be '0' or '1', got {text[:40]!r}")
            return text == "1"
        case ResourceType.OBJLNK:
            link: ObjLink = parse_objlnk(path, text)
            return link
        case ResourceType.OPAQUE:
            if not _BASE64.fullmatch(text) or len(text) % 4:
                raise CodecError(f"{path}: Opaque in text/plain must be base64")
            try:
                return base64.b64decode(text, validate=True)
            except binascii.Error as exc:
                raise CodecError(f"{path}: bad base64 ({exc})") from exc
        case ResourceType.NONE:
            raise CodecError(f"{path}: executable resource carries no value")
    raise CodecError(f"{path}: unknown resource type {rtype!r}")  # pragma: no cover
