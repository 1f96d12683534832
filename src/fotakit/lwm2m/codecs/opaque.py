"""application/octet-stream (Content-Format 42): one Opaque value, the raw bytes.

TS Core 1.1.1 §7.4.2: the format carries the value of a single Opaque resource or resource
instance, such as a firmware package written to /5/0/0. A resource of another type cannot
travel in it (UnsupportedFormat); an unknown resource decodes to ``bytes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from fotakit.lwm2m.codecs.base import UnsupportedFormat
from fotakit.lwm2m.codecs.single import only_value, target
from fotakit.lwm2m.codecs.values import check_value
from fotakit.lwm2m.model import ObjectRegistry, ResourceType, Value
from fotakit.lwm2m.path import Path

NAME: Final = "application/octet-stream"


def _check_opaque(root: Path, registry: ObjectRegistry) -> None:
    rdef = target(root, registry, NAME)
    if rdef is not None and rdef.type is not ResourceType.OPAQUE:
        raise UnsupportedFormat(f"{NAME} carries only Opaque values; {root} is {rdef.type.value}")


def encode(root: Path, content: Mapping[Path, Value], registry: ObjectRegistry) -> bytes:
    _check_opaque(root, registry)
    value = check_value(root, ResourceType.OPAQUE, only_value(root, content, NAME))
    assert isinstance(value, bytes)
    return value


def decode(root: Path, payload: bytes, registry: ObjectRegistry) -> dict[Path, Value]:
    _check_opaque(root, registry)
    return {root: bytes(payload)}
