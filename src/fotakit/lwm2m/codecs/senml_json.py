"""SenML JSON (Content-Format 110): RFC 8428 §5 with the LwM2M rules of TS 1.1.1 §7.4.4.

Records are JSON objects with the labels bn, bt, bv, n, t, v, vs, vb, vd (Opaque as
base64url without padding) and vlo (Objlnk); the record logic lives in
:mod:`fotakit.lwm2m.codecs.senml`. An empty payload is empty content.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from fotakit.lwm2m.codecs import jsonutil, senml
from fotakit.lwm2m.model import ObjectRegistry, Value
from fotakit.lwm2m.path import Path

NAME: Final = "SenML JSON"
_LABELS: Final[dict[object, str]] = {
    k: k for k in ("bn", "bt", "bv", "n", "t", "v", "vs", "vb", "vd", "vlo")
}


def encode(root: Path, content: Mapping[Path, Value], registry: ObjectRegistry) -> bytes:
    records = senml.to_records(root, content, registry, NAME)
    for record in records:
        opaque = record.get("vd")
        if isinstance(opaque, bytes):
            record["vd"] = senml.encode_opaque_text(opaque)
    return jsonutil.dumps(records)


def decode(root: Path, payload: bytes, registry: ObjectRegistry) -> dict[Path, Value]:
    if senml.is_empty(payload):
        return {}
    pack = jsonutil.loads(payload, NAME)
    if not isinstance(pack, list):
        return senml.resolve(pack, root, registry, NAME)
    return senml.resolve(senml.rename(pack, _LABELS, NAME), root, registry, NAME)
