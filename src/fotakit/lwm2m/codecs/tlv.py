"""OMA TLV (Content-Format 11542, legacy 1542): the binary format of LwM2M 1.0.

TS Core 1.0.2 §6.4.3 / 1.1.1 §7.4.3. Each TLV is a type byte, an 8- or 16-bit identifier,
an optional 8/16/24-bit length and the value::

    bits 7-6  00 Object Instance, 01 Resource Instance, 10 Multiple Resource,
              11 Resource with value
    bit  5    identifier is 16 bits (else 8)
    bits 4-3  00 length in bits 2-0, 01/10/11 length in the next 1/2/3 bytes

Object Instance TLVs hold resource TLVs (types 11 and 10); Multiple Resource TLVs hold
Resource Instance TLVs. Values carry no type, so decoding asks the registry; an unknown
resource decodes to ``bytes``. Integers (and Time) use the smallest of 1/2/4/8 signed
bytes, Unsigned Integers the smallest of 1/2/4/8 unsigned bytes, Floats 4 or 8 bytes,
Booleans one byte, Objlnk two 16-bit IDs.

Decoding is strict: every length must fit its parent, nothing may follow the last TLV,
nesting must follow the rules above, IDs may not repeat within a level, and IDs must be
valid LwM2M IDs (65535 is reserved).
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from fotakit.lwm2m.codecs.base import CodecError, UnsupportedFormat
from fotakit.lwm2m.codecs.values import (
    check_content,
    check_int,
    check_shape,
    check_value,
    encode_type,
    resource_def,
    seconds_to_time,
    time_to_seconds,
)
from fotakit.lwm2m.model import (
    EMPTY_INSTANCE,
    ObjectRegistry,
    ObjLink,
    ResourceDef,
    ResourceType,
    Value,
)
from fotakit.lwm2m.path import MAX_ID, Path

NAME: Final = "TLV"
MAX_LENGTH: Final = 0xFFFFFF


class TlvType(enum.IntEnum):
    """Bits 7-6 of the TLV type byte."""

    OBJECT_INSTANCE = 0b00
    RESOURCE_INSTANCE = 0b01
    MULTIPLE_RESOURCE = 0b10
    RESOURCE = 0b11


_CONTAINERS: Final = (TlvType.OBJECT_INSTANCE, TlvType.MULTIPLE_RESOURCE)
#: Which TLV types may appear inside which: the nesting rule of §7.4.3.
_ALLOWED_CHILDREN: Final = {
    TlvType.OBJECT_INSTANCE: (TlvType.RESOURCE, TlvType.MULTIPLE_RESOURCE),
    TlvType.MULTIPLE_RESOURCE: (TlvType.RESOURCE_INSTANCE,),
}


@dataclass(frozen=True, slots=True)
class Tlv:
    """One parsed TLV: a leaf with a ``value`` or a container with ``children``."""

    type: TlvType
    id: int
    value: bytes = b""
    children: tuple[Tlv, ...] = ()
    offset: int = field(default=0, compare=False)


# -- wire level ----------------------------------------------------------------------


def parse(payload: bytes) -> tuple[Tlv, ...]:
    """All top-level TLVs of ``payload`` (containers parsed recursively)."""
    view = memoryview(payload)
    return _parse_level(view, 0, len(view), None)


def _parse_level(view: memoryview, start: int, end: int, parent: Tlv | None) -> tuple[Tlv, ...]:
    items: list[Tlv] = []
    seen: set[int] = set()
    pos = start
    while pos < end:
        tlv, pos = _parse_one(view, pos, end, parent)
        if tlv.id in seen:
            raise CodecError(f"TLV at byte {tlv.offset}: {_name(tlv.type)} ID {tlv.id} repeats")
        seen.add(tlv.id)
        items.append(tlv)
    return tuple(items)


def _parse_one(view: memoryview, pos: int, end: int, parent: Tlv | None) -> tuple[Tlv, int]:
    offset = pos
    header = view[pos]
    kind = TlvType(header >> 6)
    if parent is not None and kind not in _ALLOWED_CHILDREN[parent.type]:
        raise CodecError(
            f"TLV at byte {offset}: {_name(kind)} inside {_name(parent.type)} {parent.id}"
        )
    id_size = 2 if header & 0x20 else 1
    length_size = (header >> 3) & 0x03
    need = 1 + id_size + length_size
    if pos + need > end:
        raise CodecError(f"TLV at byte {offset}: header truncated ({end - pos} of {need} bytes)")
    pos += 1
    ident = int.from_bytes(view[pos : pos + id_size], "big")
    pos += id_size
    if ident > MAX_ID:
        raise CodecError(f"TLV at byte {offset}: ID {ident} is reserved")
    if length_size:
        length = int.from_bytes(view[pos : pos + length_size], "big")
        pos += length_size
    else:
        length = header & 0x07
    if pos + length > end:
        raise CodecError(
            f"TLV at byte {offset}: {_name(kind)} {ident} declares {length} byte(s), "
            f"only {end - pos} remain"
        )
    if kind in _CONTAINERS:
        probe = Tlv(kind, ident, offset=offset)
        children = _parse_level(view, pos, pos + length, probe)
        return Tlv(kind, ident, children=children, offset=offset), pos + length
    return Tlv(kind, ident, bytes(view[pos : pos + length]), offset=offset), pos + length


def _name(kind: TlvType) -> str:
    return kind.name.replace("_", " ").title()


def serialize(tlvs: list[Tlv] | tuple[Tlv, ...]) -> bytes:
    """The bytes of ``tlvs`` (containers serialized from their children)."""
    out = bytearray()
    for tlv in tlvs:
        body = serialize(tlv.children) if tlv.type in _CONTAINERS else tlv.value
        out += _header(tlv.type, tlv.id, len(body))
        out += body
    return bytes(out)


def _header(kind: TlvType, ident: int, length: int) -> bytes:
    if length > MAX_LENGTH:
        raise CodecError(f"{_name(kind)} {ident}: {length} bytes exceed TLV's 24-bit length")
    first = kind << 6
    id_bytes = ident.to_bytes(1 if ident < 0x100 else 2, "big")
    if ident >= 0x100:
        first |= 0x20
    if length < 8:
        return bytes([first | length]) + id_bytes
    size = 1 if length < 0x100 else 2 if length < 0x10000 else 3
    return bytes([first | size << 3]) + id_bytes + length.to_bytes(size, "big")


# -- values ----------------------------------------------------------------------------


def encode_value(rtype: ResourceType, value: Value) -> bytes:
    """The TLV value bytes of an already checked value of ``rtype``."""
    match rtype:
        case ResourceType.INTEGER:
            assert isinstance(value, int)
            return _int_bytes(value, signed=True)
        case ResourceType.TIME:
            assert isinstance(value, datetime)
            return _int_bytes(time_to_seconds(value), signed=True)
        case ResourceType.UNSIGNED_INTEGER:
            assert isinstance(value, int)
            return _int_bytes(value, signed=False)
        case ResourceType.FLOAT:
            assert isinstance(value, float)
            single = struct.pack(">f", value) if abs(value) <= 3.4e38 else b""
            if single and struct.unpack(">f", single)[0] == value:
                return single
            return struct.pack(">d", value)
        case ResourceType.BOOLEAN:
            return b"\x01" if value else b"\x00"
        case ResourceType.STRING | ResourceType.CORELNK:
            assert isinstance(value, str)
            return value.encode("utf-8")
        case ResourceType.OBJLNK:
            assert isinstance(value, ObjLink)
            return struct.pack(">HH", value.object_id, value.instance_id)
    assert isinstance(value, bytes)
    return value


def _int_bytes(value: int, *, signed: bool) -> bytes:
    for size in (1, 2, 4, 8):
        try:
            return value.to_bytes(size, "big", signed=signed)
        except OverflowError:
            continue
    raise CodecError(f"integer {value} does not fit 8 bytes")  # pragma: no cover


def decode_value(path: Path, rtype: ResourceType | None, raw: bytes) -> Value:
    """The value of ``rtype`` in TLV value bytes ``raw`` (``bytes`` if the type is unknown)."""
    if rtype is None or rtype is ResourceType.OPAQUE:
        return raw
    size = len(raw)
    match rtype:
        case ResourceType.INTEGER | ResourceType.TIME | ResourceType.UNSIGNED_INTEGER:
            if size not in (1, 2, 4, 8):
                raise CodecError(f"{path}: {rtype.value} needs 1, 2, 4 or 8 bytes, got {size}")
            number = int.from_bytes(raw, "big", signed=rtype is not ResourceType.UNSIGNED_INTEGER)
            if rtype is ResourceType.TIME:
                return seconds_to_time(path, number)
            return check_int(path, rtype, number)
        case ResourceType.FLOAT:
            if size not in (4, 8):
                raise CodecError(f"{path}: Float needs 4 or 8 bytes, got {size}")
            result: float = struct.unpack(">f" if size == 4 else ">d", raw)[0]
            if not math.isfinite(result):
                raise CodecError(f"{path}: Float value is not finite")
            return result
        case ResourceType.BOOLEAN:
            if raw not in (b"\x00", b"\x01"):
                raise CodecError(f"{path}: Boolean must be one byte 0 or 1, got {raw[:8].hex()}")
            return raw == b"\x01"
        case ResourceType.STRING | ResourceType.CORELNK:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CodecError(f"{path}: {rtype.value} is not UTF-8 ({exc.reason})") from exc
        case ResourceType.OBJLNK:
            if size != 4:
                raise CodecError(f"{path}: Objlnk needs 4 bytes, got {size}")
            object_id, instance_id = struct.unpack(">HH", raw)
            return ObjLink(object_id, instance_id)
    raise CodecError(f"{path}: executable resource carries no value")


# -- content <-> TLVs -------------------------------------------------------------------


def decode(root: Path, payload: bytes, registry: ObjectRegistry) -> dict[Path, Value]:
    if root.depth == 0:
        raise UnsupportedFormat("TLV cannot carry several objects; target an object or below")
    tlvs = parse(payload)
    content: dict[Path, Value] = {}
    if root.depth == 1:
        for tlv in tlvs:
            if tlv.type is not TlvType.OBJECT_INSTANCE:
                raise _unexpected(tlv, root, "Object Instance")
            _instance(root.child(tlv.id), tlv, registry, content)
        return content
    tlvs = _unwrap(tlvs, root, TlvType.OBJECT_INSTANCE, 1)
    if root.depth == 2:
        if len(tlvs) == 1 and tlvs[0].type is TlvType.OBJECT_INSTANCE:
            _check_id(tlvs[0], root.instance_id, root)
            _instance(root, tlvs[0], registry, content)
            return content
        _resources(root, tlvs, registry, content)
        return content
    if root.depth == 3:
        return _resource_root(root, tlvs, registry)
    tlvs = _unwrap(tlvs, root, TlvType.MULTIPLE_RESOURCE, 2)
    if len(tlvs) != 1 or tlvs[0].type is not TlvType.RESOURCE_INSTANCE:
        raise CodecError(f"TLV for {root} must be one Resource Instance")
    _check_id(tlvs[0], root.resource_instance_id, root)
    rdef = resource_def(registry, root)
    check_shape(root, rdef)
    content[root] = decode_value(root, rdef.type if rdef else None, tlvs[0].value)
    return content


def _unwrap(tlvs: tuple[Tlv, ...], root: Path, kind: TlvType, index: int) -> tuple[Tlv, ...]:
    """Accept a redundant container around the target (Leshan and others send one)."""
    if len(tlvs) == 1 and tlvs[0].type is kind and root.depth > index + 1:
        _check_id(tlvs[0], root.ids[index], root)
        return tlvs[0].children
    return tlvs


def _check_id(tlv: Tlv, expected: int | None, root: Path) -> None:
    if tlv.id != expected:
        raise CodecError(f"TLV at byte {tlv.offset}: {_name(tlv.type)} {tlv.id} is not in {root}")


def _unexpected(tlv: Tlv, root: Path, wanted: str) -> CodecError:
    return CodecError(
        f"TLV at byte {tlv.offset}: {_name(tlv.type)} {tlv.id} where {root} needs {wanted}"
    )


def _instance(path: Path, tlv: Tlv, registry: ObjectRegistry, content: dict[Path, Value]) -> None:
    if not tlv.children:
        content[path] = EMPTY_INSTANCE
        return
    _resources(path, tlv.children, registry, content)


def _resources(
    instance: Path, tlvs: tuple[Tlv, ...], registry: ObjectRegistry, content: dict[Path, Value]
) -> None:
    for tlv in tlvs:
        if tlv.type not in (TlvType.RESOURCE, TlvType.MULTIPLE_RESOURCE):
            raise _unexpected(tlv, instance, "resources")
        _resource(instance.child(tlv.id), tlv, registry, content)


def _resource(path: Path, tlv: Tlv, registry: ObjectRegistry, content: dict[Path, Value]) -> None:
    rdef = resource_def(registry, path)
    if tlv.type is TlvType.RESOURCE:
        check_shape(path, rdef)
        content[path] = decode_value(path, _type(rdef), tlv.value)
        return
    _resource_instances(path, tlv.children, rdef, content)


def _resource_instances(
    path: Path, tlvs: tuple[Tlv, ...], rdef: ResourceDef | None, content: dict[Path, Value]
) -> None:
    if rdef is not None and not rdef.multiple:
        raise CodecError(f"{path}: resource instances for a single-instance resource")
    for child in tlvs:
        inst = path.child(child.id)
        content[inst] = decode_value(inst, _type(rdef), child.value)


def _resource_root(
    root: Path, tlvs: tuple[Tlv, ...], registry: ObjectRegistry
) -> dict[Path, Value]:
    rdef = resource_def(registry, root)
    content: dict[Path, Value] = {}
    if not tlvs:
        if rdef is not None and not rdef.multiple:
            raise CodecError(f"{root}: empty TLV payload for a single-instance resource")
        return content
    if len(tlvs) == 1 and tlvs[0].type in (TlvType.RESOURCE, TlvType.MULTIPLE_RESOURCE):
        _check_id(tlvs[0], root.resource_id, root)
        _resource(root, tlvs[0], registry, content)
        return content
    for tlv in tlvs:
        if tlv.type is not TlvType.RESOURCE_INSTANCE:
            raise _unexpected(tlv, root, "one resource or its Resource Instances")
    _resource_instances(root, tlvs, rdef, content)
    return content


def _type(rdef: ResourceDef | None) -> ResourceType | None:
    return rdef.type if rdef is not None else None


def encode(root: Path, content: Mapping[Path, Value], registry: ObjectRegistry) -> bytes:
    if root.depth == 0:
        raise UnsupportedFormat("TLV cannot carry several objects; target an object or below")
    check_content(root, content)
    tree = _Tree.build(content)
    if root.depth == 1:
        return serialize([_instance_tlv(i, tree, root, registry) for i in tree.instances(root)])
    if root.depth == 2:
        if content.get(root) is EMPTY_INSTANCE:
            return serialize([Tlv(TlvType.OBJECT_INSTANCE, root.ids[1])])
        return serialize(_resource_tlvs(root, tree, registry))
    if root.depth == 3:
        if not content:
            return b""
        return serialize([_resource_tlv(root, tree, registry)])
    if root not in content:
        raise CodecError(f"TLV for {root} needs its value")
    return serialize([_leaf(TlvType.RESOURCE_INSTANCE, root, content[root], registry)])


class _Tree:
    """Content paths grouped by parent, so each TLV level can list its children."""

    def __init__(self) -> None:
        self.children: dict[Path, set[int]] = {}
        self.values: dict[Path, Value] = {}

    @classmethod
    def build(cls, content: Mapping[Path, Value]) -> _Tree:
        tree = cls()
        for path, value in content.items():
            tree.values[path] = value
            node = path
            while node.depth > 1:
                parent = node.parent()
                tree.children.setdefault(parent, set()).add(node.ids[-1])
                node = parent
        return tree

    def instances(self, path: Path) -> list[Path]:
        return [path.child(i) for i in sorted(self.children.get(path, ()))]


def _instance_tlv(path: Path, tree: _Tree, root: Path, registry: ObjectRegistry) -> Tlv:
    has_children = bool(tree.children.get(path))
    if path in tree.values and has_children:
        raise CodecError(f"{path}: instance is both empty and has resources")
    return Tlv(TlvType.OBJECT_INSTANCE, path.ids[1], children=_resource_tlvs(path, tree, registry))


def _resource_tlvs(path: Path, tree: _Tree, registry: ObjectRegistry) -> tuple[Tlv, ...]:
    return tuple(_resource_tlv(r, tree, registry) for r in tree.instances(path))


def _resource_tlv(path: Path, tree: _Tree, registry: ObjectRegistry) -> Tlv:
    instances = tree.instances(path)
    if path in tree.values:
        if instances:
            raise CodecError(f"{path}: both a single value and resource instances")
        return _leaf(TlvType.RESOURCE, path, tree.values[path], registry)
    rdef = resource_def(registry, path)
    if rdef is not None and not rdef.multiple:
        raise CodecError(f"{path}: resource is single-instance; got instance paths")
    leaves = tuple(_leaf(TlvType.RESOURCE_INSTANCE, i, tree.values[i], registry) for i in instances)
    return Tlv(TlvType.MULTIPLE_RESOURCE, path.ids[2], children=leaves)


def _leaf(kind: TlvType, path: Path, value: Value, registry: ObjectRegistry) -> Tlv:
    rtype = encode_type(registry, path, value)
    return Tlv(kind, path.ids[-1], encode_value(rtype, check_value(path, rtype, value)))
