"""SenML CBOR (Content-Format 112): RFC 8428 §6 with the LwM2M rules of TS 1.1.1 §7.4.5.

Records are CBOR maps keyed by the integer labels of RFC 8428 Table 6 (bn -2, bt -3,
bv -5, n 0, v 2, vs 3, vb 4, t 6, vd 8 with Opaque as a byte string) plus the text label
"vlo" for Objlnk; the record logic lives in :mod:`fotakit.lwm2m.codecs.senml`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from fotakit.lwm2m.codecs import cborvalue, senml
from fotakit.lwm2m.model import ObjectRegistry, Value
from fotakit.lwm2m.path import Path

NAME: Final = "SenML CBOR"
LABELS: Final[dict[object, str]] = {
    -2: "bn",
    -3: "bt",
    -5: "bv",
    0: "n",
    2: "v",
    3: "vs",
    4: "vb",
    6: "t",
    8: "vd",
    "vlo": "vlo",
}
_KEYS: Final = {name: label for label, name in LABELS.items()}


def encode(root: Path, content: Mapping[Path, Value], registry: ObjectRegistry) -> bytes:
    records = senml.to_records(root, content, registry, NAME)
    return cborvalue.dumps([{_KEYS[k]: v for k, v in r.items()} for r in records], NAME)


def decode(root: Path, payload: bytes, registry: ObjectRegistry) -> dict[Path, Value]:
    if not payload:
        return {}
    pack = cborvalue.loads(payload, NAME)
    if not isinstance(pack, list):
        return senml.resolve(pack, root, registry, NAME)
    return senml.resolve(senml.rename(pack, LABELS, NAME), root, registry, NAME)
