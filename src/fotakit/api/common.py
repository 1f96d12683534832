"""Helpers shared by the API routes: paging cursors, times, LwM2M values as JSON.

Cursors are opaque to clients: URL-safe base64 of a small JSON array (the sort key of the
last item of the previous page). A cursor that does not decode is a 400 problem.
:func:`decode_cursor` is a parser of client input and is covered by a property test.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, TypeVar

from fastapi import Query

from fotakit.api.problems import ApiProblem
from fotakit.lwm2m.model import ObjLink, ResourceType, Value, _EmptyInstance

T = TypeVar("T")

API_PREFIX: Final = "/api/v1"
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
_MAX_CURSOR: Final = 1024

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size (1..1000).")]
Cursor = Annotated[
    str | None,
    Query(max_length=_MAX_CURSOR, description="`next_cursor` of the previous page."),
]


def encode_cursor(key: Sequence[Any]) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    """The key inside ``cursor``; :class:`ApiProblem` 400 if it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii"))
        key = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeError):
        key = None
    if not isinstance(key, list) or not all(
        isinstance(k, str | int | float) and not isinstance(k, bool) for k in key
    ):
        raise ApiProblem(400, f"invalid cursor {cursor[:64]!r}", kind="invalid-cursor")
    return key


def page_by_key(
    items: Sequence[T], key: Callable[[T], Sequence[Any]], limit: int, cursor: str | None
) -> tuple[list[T], str | None]:
    """One page of ``items`` (already sorted by ``key``) after the cursor's key."""
    start = 0
    if cursor is not None:
        after = decode_cursor(cursor)
        start = len(items)
        for i, item in enumerate(items):
            if _after(list(key(item)), after):
                start = i
                break
    page = list(items[start : start + limit])
    more = start + limit < len(items)
    return page, encode_cursor(key(page[-1])) if more and page else None


def _after(key: list[Any], cursor: list[Any]) -> bool:
    try:
        return bool(key > cursor)
    except TypeError:  # a cursor of another listing: compare as text
        return [str(k) for k in key] > [str(k) for k in cursor]


def iso(value: datetime | float | None) -> str | None:
    """ISO 8601 in UTC for a datetime or epoch seconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    return datetime.fromtimestamp(value, UTC).isoformat()


def value_json(value: Value) -> Any:
    """An LwM2M value as JSON: opaque as base64, times as ISO 8601, Objlnk as ``a:b``."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, ObjLink):
        return str(value)
    if isinstance(value, _EmptyInstance):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def value_from_json(value: Any, rtype: ResourceType | None) -> Value:
    """A JSON value for a Write, converted to the resource's type (when it is known)."""
    try:
        if rtype is ResourceType.OPAQUE:
            if not isinstance(value, str):
                raise ValueError("an opaque value is a base64 string")
            return base64.b64decode(value.encode("ascii"), validate=True)
        if rtype is ResourceType.TIME:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return datetime.fromtimestamp(value, UTC)
            if isinstance(value, str):
                parsed = datetime.fromisoformat(value)
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            raise ValueError("a time is ISO 8601 text or epoch seconds")
        if rtype is ResourceType.OBJLNK:
            if not isinstance(value, str):
                raise ValueError("an Objlnk is 'object:instance' text")
            return ObjLink.parse(value)
        if rtype in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("an integer is needed")
            if rtype is ResourceType.UNSIGNED_INTEGER and value < 0:
                raise ValueError("an unsigned integer is needed")
            return value
        if rtype is ResourceType.FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("a number is needed")
            return float(value)
        if rtype is ResourceType.BOOLEAN:
            if not isinstance(value, bool):
                raise ValueError("true or false is needed")
            return value
        if rtype in (ResourceType.STRING, ResourceType.CORELNK):
            if not isinstance(value, str):
                raise ValueError("a string is needed")
            return value
    except (ValueError, UnicodeError, binascii.Error, OverflowError, OSError) as exc:
        raise ApiProblem(422, f"value: {exc}", kind="validation") from None
    if isinstance(value, str | int | float | bool):
        return value
    raise ApiProblem(422, "value: a string, number or boolean is needed", kind="validation")
