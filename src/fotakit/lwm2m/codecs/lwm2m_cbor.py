"""LwM2M CBOR (Content-Format 11544): TS Core 1.2 §7.4.6.

The payload is one CBOR map whose keys are path components: an unsigned integer (one
component) or an array of them (several), always counted from the root "/". A value is
either a nested map, whose keys continue the path, or a resource value (item types as in
:mod:`fotakit.lwm2m.codecs.cborvalue`) at a resource or resource-instance path. So
``{[3, 0]: {0: "OMA", 6: {0: 1, 1: 5}}}``, ``{3: {0: {0: "OMA"}}}`` and
``{[3, 0, 0]: "OMA"}`` are all valid.

The encoder writes the target path as one array key and nests everything below it by
single components; an empty object instance is an empty map.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from fotakit.lwm2m.codecs import cborvalue
from fotakit.lwm2m.codecs.base import CodecError
from fotakit.lwm2m.codecs.values import (
    check_content,
    check_shape,
    check_value,
    describe,
    encode_type,
    resource_def,
)
from fotakit.lwm2m.model import EMPTY_INSTANCE, ObjectRegistry, Value
from fotakit.lwm2m.path import MAX_ID, Path

NAME: Final = "LwM2M CBOR"


def decode(root: Path, payload: bytes, registry: ObjectRegistry) -> dict[Path, Value]:
    if not payload:
        return {}
    item = cborvalue.loads(payload, NAME)
    if not isinstance(item, dict):
        raise CodecError(f"{NAME}: top level must be a map, got {describe(item)}")
    content: dict[Path, Value] = {}
    _walk(item, (), registry, content)
    check_content(root, content)
    return content


def _walk(
    node: dict[object, object],
    prefix: tuple[int, ...],
    registry: ObjectRegistry,
    content: dict[Path, Value],
) -> None:
    for key, value in node.items():
        ids = prefix + _components(key, prefix)
        path = Path(*ids)
        if isinstance(value, dict):
            if len(ids) >= 4:
                raise CodecError(f"{NAME}: map below resource instance {path}")
            if not value and len(ids) == 2:
                _put(content, path, EMPTY_INSTANCE)
            _walk(value, ids, registry, content)
            continue
        if len(ids) < 3:
            raise CodecError(f"{NAME}: value {describe(value)} at {path}, not at a resource")
        rdef = resource_def(registry, path)
        check_shape(path, rdef)
        _put(content, path, cborvalue.from_item(path, rdef.type if rdef else None, value))


def _components(key: object, prefix: tuple[int, ...]) -> tuple[int, ...]:
    parts = key if isinstance(key, tuple | list) else (key,)
    if not parts or len(prefix) + len(parts) > 4:
        raise CodecError(f"{NAME}: key {key!r} below {Path(*prefix)} is not a path step")
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, int) or not 0 <= part <= MAX_ID:
            raise CodecError(f"{NAME}: key {key!r} below {Path(*prefix)} is not an ID")
    return tuple(parts)


def _put(content: dict[Path, Value], path: Path, value: Value) -> None:
    if path in content:
        raise CodecError(f"{NAME}: {path} appears twice")
    content[path] = value


def encode(root: Path, content: Mapping[Path, Value], registry: ObjectRegistry) -> bytes:
    check_content(root, content)
    top: dict[object, object] = {}
    for path in sorted(content):
        value = content[path]
        if value is EMPTY_INSTANCE:
            item: object = {}
        else:
            rtype = encode_type(registry, path, value)
            item = cborvalue.to_item(rtype, check_value(path, rtype, value))
        _insert(top, root, path, item)
    return cborvalue.dumps(top, NAME)


def _insert(top: dict[object, object], root: Path, path: Path, item: object) -> None:
    rel = path.ids[len(root.ids) :]
    if root.depth == 0:
        node, steps = top, rel
    else:
        root_key: object = root.ids[0] if root.depth == 1 else tuple(root.ids)
        if not rel:
            top[root_key] = item
            return
        child = top.setdefault(root_key, {})
        assert isinstance(child, dict)
        node, steps = child, rel
    for step in steps[:-1]:
        child = node.setdefault(step, {})
        assert isinstance(child, dict)
        node = child
    node[steps[-1]] = item
