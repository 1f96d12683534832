"""Which content format a Read or Notify answers in (TS Core 1.1.1 §7.4, 1.0.2 §6.4).

With an Accept option the server gets exactly that format, or 4.06 if it cannot be
produced. Without one the client picks: a single value goes out as text/plain (Opaque as
application/octet-stream); several values as TLV for an LwM2M 1.0 client (the format a
1.0 client MUST support) and SenML CBOR from 1.1 (TS 1.1.1: SHOULD support SenML, SHOULD
NOT use TLV).
"""

from __future__ import annotations

from fotakit.lwm2m.codecs import (
    CodecError,
    ContentFormat,
    UnsupportedFormat,
    encode,
    normalize,
)
from fotakit.lwm2m.errors import InternalServerError, NotAcceptable
from fotakit.lwm2m.model import Content, ObjectRegistry, ResourceType
from fotakit.lwm2m.path import Path


def default_format(path: Path, registry: ObjectRegistry, lwm2m_version: str) -> ContentFormat:
    rdef = registry.resource(path) if path.depth >= 3 else None
    single = path.depth == 4 or (rdef is not None and not rdef.multiple)
    if single:
        opaque = rdef is not None and rdef.type is ResourceType.OPAQUE
        return ContentFormat.OPAQUE if opaque else ContentFormat.TEXT
    return ContentFormat.TLV if lwm2m_version == "1.0" else ContentFormat.SENML_CBOR


def choose_format(
    path: Path, accept: int | None, registry: ObjectRegistry, lwm2m_version: str
) -> int:
    """The Content-Format to answer with; an Accept we cannot serve at all is 4.06."""
    if accept is None:
        return int(default_format(path, registry, lwm2m_version))
    try:
        return int(normalize(accept))
    except UnsupportedFormat:
        raise NotAcceptable(f"cannot produce Content-Format {accept}") from None


def encode_content(
    fmt: int, path: Path, content: Content, registry: ObjectRegistry, *, requested: bool
) -> bytes:
    """Encode; a requested format that cannot carry this content is 4.06, ours is 5.00."""
    try:
        return encode(fmt, path, content, registry)
    except CodecError as exc:
        if requested:
            raise NotAcceptable(f"Content-Format {fmt} cannot carry {path}: {exc}") from exc
        raise InternalServerError(f"cannot encode {path}: {exc}") from exc
