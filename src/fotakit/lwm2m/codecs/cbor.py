"""application/cbor (Content-Format 60): one resource value as a single CBOR item.

TS Core 1.1.1 §7.4.5 (and 1.2 §7.4.7): like text/plain, this format carries the value of
exactly one resource or resource instance; the item types are described in
:mod:`fotakit.lwm2m.codecs.cborvalue`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from fotakit.lwm2m.codecs import cborvalue
from fotakit.lwm2m.codecs.single import only_value, target
from fotakit.lwm2m.codecs.values import check_value, encode_type
from fotakit.lwm2m.model import ObjectRegistry, Value
from fotakit.lwm2m.path import Path

NAME: Final = "application/cbor"


def encode(root: Path, content: Mapping[Path, Value], registry: ObjectRegistry) -> bytes:
    target(root, registry, NAME)
    value = only_value(root, content, NAME)
    rtype = encode_type(registry, root, value)
    return cborvalue.dumps(cborvalue.to_item(rtype, check_value(root, rtype, value)), NAME)


def decode(root: Path, payload: bytes, registry: ObjectRegistry) -> dict[Path, Value]:
    rdef = target(root, registry, NAME)
    item = cborvalue.loads(payload, NAME)
    return {root: cborvalue.from_item(root, rdef.type if rdef else None, item)}
