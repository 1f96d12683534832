"""Legacy OMA JSON (Content-Format 11543, pre-registration 1543): TS Core 1.0.2 §6.4.4.

A JSON object with a base name ``bn``, an optional base time ``bt`` and the entry array
``e``; entries carry ``n`` (name relative to bn), ``t`` and one of ``v`` (numbers, Time
in seconds), ``sv`` (String, Corelnk, and Opaque in base64), ``bv`` (Boolean) or ``ov``
(Objlnk "3:0"). Entries map onto SenML records, so naming, typing and duplicate rules are
those of :mod:`fotakit.lwm2m.codecs.senml`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Final

from fotakit.lwm2m.codecs import jsonutil, senml
from fotakit.lwm2m.codecs.base import CodecError
from fotakit.lwm2m.codecs.values import describe
from fotakit.lwm2m.model import ObjectRegistry, Value
from fotakit.lwm2m.path import Path

NAME: Final = "OMA JSON"
_ENTRY_LABELS: Final[dict[object, str]] = {
    "n": "n",
    "t": "t",
    "v": "v",
    "sv": "vs",
    "bv": "vb",
    "ov": "vlo",
}
_TO_LEGACY: Final = {"n": "n", "v": "v", "vs": "sv", "vb": "bv", "vlo": "ov", "vd": "sv"}


def encode(root: Path, content: Mapping[Path, Value], registry: ObjectRegistry) -> bytes:
    records = senml.to_records(root, content, registry, NAME)
    base = str(root) if len(content) == 1 and root in content else str(root).rstrip("/") + "/"
    entries: list[dict[str, object]] = []
    for record in records:
        entry: dict[str, object] = {}
        for key, value in record.items():
            if key == "bn":
                continue
            if key == "vd":
                assert isinstance(value, bytes)
                value = base64.b64encode(value).decode("ascii")
            entry[_TO_LEGACY[key]] = value
        entries.append(entry)
    return jsonutil.dumps({"bn": base, "e": entries})


def decode(root: Path, payload: bytes, registry: ObjectRegistry) -> dict[Path, Value]:
    if senml.is_empty(payload):
        return {}
    document = jsonutil.loads(payload, NAME)
    if not isinstance(document, dict):
        raise CodecError(f"{NAME}: expected an object with 'e', got {describe(document)}")
    entries = document.get("e")
    if not isinstance(entries, list):
        raise CodecError(f"{NAME}: the 'e' array is missing")
    records = senml.rename(entries, _ENTRY_LABELS, NAME)
    assert isinstance(records, list)
    if records:
        first = records[0]
        assert isinstance(first, dict)
        for key in ("bn", "bt"):
            if key in document:
                first[key] = document[key]
    return senml.resolve(records, root, registry, NAME, opaque_in_vs=True)
