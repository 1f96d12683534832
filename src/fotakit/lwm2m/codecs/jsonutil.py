"""Strict JSON for the JSON content formats: UTF-8, no NaN/Infinity, bounded numbers."""

from __future__ import annotations

import json

from fotakit.lwm2m.codecs.base import CodecError


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def loads(payload: bytes, format_name: str) -> object:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError(f"{format_name}: payload is not UTF-8 ({exc.reason})") from exc
    try:
        return json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digit limit, depth
        raise CodecError(f"{format_name}: malformed JSON ({exc})") from exc


def dumps(item: object) -> bytes:
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
