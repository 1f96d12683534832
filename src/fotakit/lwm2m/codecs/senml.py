"""SenML records as LwM2M content: what SenML JSON, SenML CBOR and OMA JSON share.

RFC 8428 §4 and TS Core 1.1.1 §7.4.4/§7.4.5. A pack is a list of records; a record's
name is the latest base name ``bn`` plus its own name ``n`` and must be an LwM2M resource
or resource-instance path ("/3/0/0", "/3/0/6/1"). Exactly one value field per record:
``v`` (Integer, Unsigned Integer, Float, Time in seconds), ``vs`` (String, Corelnk),
``vb`` (Boolean), ``vd`` (Opaque) or ``vlo`` (Objlnk as "3:0"). Where the registry knows the
resource the field must fit its type (a ``vs`` for an Integer resource is refused).

The format modules turn their wire labels into the names above; ``vd`` arrives as ``bytes``
(CBOR) or base64url text (JSON) and OMA JSON's Opaque arrives base64 in ``vs``.

:data:`Content` holds one value per path. A pack may carry several records for one path
(a history, in Send or Notify): the one with the latest time (``bt`` + ``t``) wins; RFC 8428
§4.5.3 times below 2**28 are relative to now, and so later than any absolute time. Two
records for one path without any time are an error.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Final

from fotakit.lwm2m.codecs.base import CodecError, UnsupportedFormat
from fotakit.lwm2m.codecs.values import (
    check_content,
    check_shape,
    check_value,
    describe,
    encode_type,
    from_number,
    parse_objlnk,
    resource_def,
    time_to_seconds,
    type_name,
)
from fotakit.lwm2m.model import (
    EMPTY_INSTANCE,
    ObjectRegistry,
    ObjLink,
    ResourceType,
    Value,
)
from fotakit.lwm2m.path import InvalidPath, Path

Record = dict[str, object]

VALUE_FIELDS: Final = ("v", "vs", "vb", "vd", "vlo")
#: RFC 8428 §4.5.3: times below 2**28 are relative to the current time.
RELATIVE_TIME_LIMIT: Final = 2**28
_NUMERIC: Final = (
    ResourceType.INTEGER,
    ResourceType.UNSIGNED_INTEGER,
    ResourceType.FLOAT,
    ResourceType.TIME,
)
_FIELD_TYPES: Final = {
    "vs": (ResourceType.STRING, ResourceType.CORELNK),
    "vb": (ResourceType.BOOLEAN,),
    "vd": (ResourceType.OPAQUE,),
    "vlo": (ResourceType.OBJLNK,),
}
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_+/-]*={0,2}")


def is_empty(payload: bytes) -> bool:
    return not payload.strip()


def name_to_path(name: str, format_name: str) -> Path:
    """A record name as a Path; a missing leading slash is tolerated (older peers)."""
    if not name.startswith("/"):
        name = "/" + name
    try:
        return Path.parse(name)
    except InvalidPath as exc:
        raise CodecError(f"{format_name}: record name {name[:60]!r} is not a path ({exc})") from exc


def decode_opaque_text(path: Path, text: str) -> bytes:
    """base64url (RFC 4648 §5) with or without padding; standard base64 is accepted too."""
    if not _BASE64URL.fullmatch(text) or len(text.rstrip("=")) % 4 == 1:
        raise CodecError(f"{path}: Opaque value is not base64url")
    stripped = text.rstrip("=")
    padded = stripped + "=" * (-len(stripped) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except binascii.Error as exc:
        raise CodecError(f"{path}: Opaque value is not base64url ({exc})") from exc


def encode_opaque_text(value: bytes) -> str:
    """base64url without padding, as RFC 8428 §5 asks of ``vd`` in JSON."""
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")


class _Latest:
    """The winning record per path: the latest in time, duplicates without time refused."""

    def __init__(self, format_name: str) -> None:
        self.format_name = format_name
        self.content: dict[Path, Value] = {}
        self._times: dict[Path, tuple[int, float] | None] = {}

    def add(self, path: Path, value: Value, time: float | None) -> None:
        key = None if time is None else (0 if time >= RELATIVE_TIME_LIMIT else 1, time)
        if path in self._times:
            old = self._times[path]
            if old is None or key is None:
                raise CodecError(f"{self.format_name}: several records for {path}")
            if key < old:
                return
        self._times[path] = key
        self.content[path] = value


def resolve(
    records: object,
    root: Path,
    registry: ObjectRegistry,
    format_name: str,
    *,
    opaque_in_vs: bool = False,
) -> dict[Path, Value]:
    """The content of a pack of records already carrying the field names above."""
    if not isinstance(records, list):
        raise CodecError(f"{format_name}: a pack must be an array, got {describe(records)}")
    latest = _Latest(format_name)
    base_name = ""
    base_time: float | None = None
    base_value: float | None = None
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise CodecError(f"{format_name}: record {index} is {describe(record)}, not a map")
        base_name = _text(record, "bn", base_name, index, format_name)
        base_time = _number(record, "bt", base_time, index, format_name)
        base_value = _number(record, "bv", base_value, index, format_name)
        name = base_name + _text(record, "n", "", index, format_name)
        path = name_to_path(name, format_name)
        if path.depth < 3 or not path.startswith(root):
            raise CodecError(f"{format_name}: record {index} names {path}, not a value in {root}")
        fields = [f for f in VALUE_FIELDS if f in record]
        if len(fields) != 1:
            what = "no value" if not fields else f"several values {fields}"
            raise CodecError(f"{format_name}: record {index} for {path} has {what}")
        value = _value(path, fields[0], record[fields[0]], registry, base_value, opaque_in_vs)
        time = _number(record, "t", None, index, format_name)
        if time is not None or base_time is not None:
            time = (time or 0.0) + (base_time or 0.0)
        latest.add(path, value, time)
    return latest.content


def _text(record: Record, key: str, default: str, index: int, format_name: str) -> str:
    if key not in record:
        return default
    value = record[key]
    if not isinstance(value, str):
        raise CodecError(f"{format_name}: record {index} {key!r} is {describe(value)}, not text")
    return value


def _number(
    record: Record, key: str, default: float | None, index: int, format_name: str
) -> float | None:
    if key not in record:
        return default
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CodecError(f"{format_name}: record {index} {key!r} is {describe(value)}")
    try:
        return float(value)
    except OverflowError as exc:
        raise CodecError(f"{format_name}: record {index} {key!r} is out of range") from exc


def _value(
    path: Path,
    field: str,
    raw: object,
    registry: ObjectRegistry,
    base_value: float | None,
    opaque_in_vs: bool,
) -> Value:
    rdef = resource_def(registry, path)
    check_shape(path, rdef)
    rtype = rdef.type if rdef is not None else None
    if field == "v":
        if rtype is not None and rtype not in _NUMERIC:
            raise CodecError(f"{path}: resource is {rtype.value}; record carries 'v'")
        if base_value is not None:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise CodecError(f"{path}: 'v' is {describe(raw)}, not a number")
            raw = raw + base_value
        return from_number(path, rtype, raw)
    if field == "vs" and opaque_in_vs and rtype is ResourceType.OPAQUE:
        if not isinstance(raw, str):
            raise CodecError(f"{path}: Opaque value is {describe(raw)}, not base64 text")
        return decode_opaque_text(path, raw)
    if rtype is not None and rtype not in _FIELD_TYPES[field]:
        raise CodecError(f"{path}: resource is {type_name(rtype)}; record carries {field!r}")
    if field == "vs":
        return check_value(path, rtype or ResourceType.STRING, raw)
    if field == "vb":
        return check_value(path, ResourceType.BOOLEAN, raw)
    if field == "vlo":
        if not isinstance(raw, str):
            raise CodecError(f"{path}: 'vlo' is {describe(raw)}, not text")
        link: ObjLink = parse_objlnk(path, raw)
        return link
    if isinstance(raw, str):
        return decode_opaque_text(path, raw)
    return check_value(path, ResourceType.OPAQUE, raw)


def to_records(
    root: Path, content: Mapping[Path, Value], registry: ObjectRegistry, format_name: str
) -> list[Record]:
    """Records for ``content`` under base name ``root``; ``vd`` values stay ``bytes``."""
    check_content(root, content)
    records: list[Record] = []
    single = len(content) == 1 and root in content
    base = str(root) if single else str(root).rstrip("/") + "/"
    for path in sorted(content):
        value = content[path]
        if value is EMPTY_INSTANCE:
            raise UnsupportedFormat(f"{format_name} cannot carry the empty object instance {path}")
        rtype = encode_type(registry, path, value)
        field, item = _field(rtype, check_value(path, rtype, value))
        record: Record = {}
        if not records:
            record["bn"] = base
        if not single:
            record["n"] = "/".join(str(i) for i in path.ids[len(root.ids) :])
        record[field] = item
        records.append(record)
    return records


def _field(rtype: ResourceType, value: Value) -> tuple[str, object]:
    match rtype:
        case ResourceType.TIME:
            assert isinstance(value, datetime)
            return "v", time_to_seconds(value)
        case ResourceType.BOOLEAN:
            return "vb", value
        case ResourceType.STRING | ResourceType.CORELNK:
            return "vs", value
        case ResourceType.OPAQUE:
            return "vd", value
        case ResourceType.OBJLNK:
            return "vlo", str(value)
    return "v", value


def rename(records: Iterable[object], labels: Mapping[object, str], format_name: str) -> object:
    """Records with wire labels replaced by field names; unknown ``_`` labels refused.

    RFC 8428 §4.4: a label ending in ``_`` must be understood, any other unknown label is
    ignored.
    """
    renamed: list[object] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise CodecError(f"{format_name}: record {index} is {describe(record)}, not a map")
        fields: Record = {}
        for key, value in record.items():
            name = labels.get(key)
            if name is not None:
                fields[name] = value
            elif isinstance(key, str) and key.endswith("_"):
                raise CodecError(f"{format_name}: record {index} has must-understand {key!r}")
        renamed.append(fields)
    return renamed
