"""Checks every value before it reaches the database, so bad input gets a precise error.

Both backends would otherwise fail in different, vaguer ways (PostgreSQL rejects NUL in
text, SQLite ignores ``VARCHAR`` lengths, neither can encode lone surrogates), or, worse,
store something that does not read back identically.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from fotakit.store.errors import InvalidRecord
from fotakit.store.records import (
    JsonObject,
    ObservationRecord,
    RegistrationRecord,
)
from fotakit.store.schema import (
    ENDPOINT_MAX,
    REGISTRATION_ID_MAX,
    SHORT_TEXT_MAX,
    TAG_MAX,
)

_URL_SAFE_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{REGISTRATION_ID_MAX}}}")
_MAX_TOKEN = 8  # RFC 7252 §5.3.1: tokens are 0 to 8 bytes.
_MAX_BIGINT = 2**63 - 1


def text(field: str, value: object, *, max_len: int | None, empty_ok: bool = False) -> str:
    """``value`` if it is storable text of at most ``max_len`` code points."""
    if not isinstance(value, str):
        raise InvalidRecord(f"{field} must be a str, not {type(value).__name__}")
    if not value and not empty_ok:
        raise InvalidRecord(f"{field} must not be empty")
    if max_len is not None and len(value) > max_len:
        raise InvalidRecord(f"{field} is {len(value)} characters long, at most {max_len} fit")
    if "\x00" in value:
        raise InvalidRecord(f"{field} contains a NUL character, which cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRecord(
            f"{field} is not valid Unicode text (character {exc.start} is a lone surrogate)"
        ) from None
    return value


def endpoint(value: object) -> str:
    return text("endpoint", value, max_len=ENDPOINT_MAX)


def identifier(field: str, value: object) -> str:
    if not isinstance(value, str) or not _URL_SAFE_ID.fullmatch(value):
        raise InvalidRecord(
            f"{field} {value!r} is not 1 to {REGISTRATION_ID_MAX} URL-safe characters [A-Za-z0-9_-]"
        )
    return value


def integer(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecord(f"{field} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidRecord(f"{field} {value} is outside {low}..{high}")
    return value


def optional_content_format(field: str, value: object) -> int | None:
    if value is None:
        return None
    return integer(field, value, 0, 65535)


def aware(field: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidRecord(f"{field} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRecord(f"{field} {value.isoformat()} is naive; use an aware UTC datetime")
    return value


def json_object(field: str, value: object) -> JsonObject:
    """A mapping that round-trips through JSON unchanged (no NaN, str keys, JSON types)."""
    if not isinstance(value, Mapping):
        raise InvalidRecord(f"{field} must be a mapping, not {type(value).__name__}")
    _json_value(field, value, depth=0)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRecord(f"{field} is not storable as JSON: {exc}") from None
    return value


def _json_value(field: str, value: object, depth: int) -> None:
    # Tuples would come back as lists, so they are refused rather than silently changed.
    if depth > 32:
        raise InvalidRecord(f"{field} nests deeper than 32 levels")
    if value is None or isinstance(value, bool | int | str):
        if isinstance(value, str):
            text(field, value, max_len=None, empty_ok=True)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRecord(f"{field} contains {value}, which JSON cannot hold")
        return
    if isinstance(value, list):
        for item in value:
            _json_value(field, item, depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidRecord(f"{field} has a non-str key {key!r}")
            text(field, key, max_len=None, empty_ok=True)
            _json_value(field, item, depth + 1)
        return
    raise InvalidRecord(f"{field} contains a {type(value).__name__}, which JSON cannot hold")


def registration(rec: RegistrationRecord) -> RegistrationRecord:
    if not isinstance(rec, RegistrationRecord):
        raise InvalidRecord(f"expected a RegistrationRecord, not {type(rec).__name__}")
    identifier("registration_id", rec.registration_id)
    endpoint(rec.endpoint)
    text("address", rec.address, max_len=SHORT_TEXT_MAX)
    integer("port", rec.port, 0, 65535)
    integer("lifetime", rec.lifetime, 0, _MAX_BIGINT)
    text("lwm2m_version", rec.lwm2m_version, max_len=TAG_MAX)
    text("binding", rec.binding, max_len=TAG_MAX)
    if not isinstance(rec.queue_mode, bool):
        raise InvalidRecord("queue_mode must be a bool")
    if rec.sms is not None:
        text("sms", rec.sms, max_len=SHORT_TEXT_MAX)
    if rec.node_id is not None:
        text("node_id", rec.node_id, max_len=SHORT_TEXT_MAX)
    text("root_path", rec.root_path, max_len=SHORT_TEXT_MAX)
    text("object_links", rec.object_links, max_len=None, empty_ok=True)
    if not isinstance(rec.content_formats, tuple):
        raise InvalidRecord("content_formats must be a tuple of ints")
    for fmt in rec.content_formats:
        integer("content_formats[]", fmt, 0, 65535)
    aware("registered_at", rec.registered_at)
    aware("last_update", rec.last_update)
    if rec.expires_at is not None:
        aware("expires_at", rec.expires_at)
    return rec


_VALID_REGISTRATION: Final = RegistrationRecord(
    registration_id="x",
    endpoint="x",
    address="x",
    port=0,
    lifetime=0,
    registered_at=datetime(2000, 1, 1, tzinfo=UTC),
    last_update=datetime(2000, 1, 1, tzinfo=UTC),
    expires_at=None,
)


def registration_changes(changes: Mapping[str, Any]) -> None:
    """Check the new values of a registration Update before the stored row is read.

    Every rule of :func:`registration` concerns one field, so the changed values checked
    on top of a record known to be valid get exactly the errors they would get in place.
    """
    registration(replace(_VALID_REGISTRATION, **changes))


def observation(rec: ObservationRecord) -> ObservationRecord:
    if not isinstance(rec, ObservationRecord):
        raise InvalidRecord(f"expected an ObservationRecord, not {type(rec).__name__}")
    identifier("observation_id", rec.observation_id)
    identifier("registration_id", rec.registration_id)
    endpoint(rec.endpoint)
    text("path", rec.path, max_len=SHORT_TEXT_MAX)
    if not isinstance(rec.token, bytes) or len(rec.token) > _MAX_TOKEN:
        raise InvalidRecord(f"token must be 0 to {_MAX_TOKEN} bytes (RFC 7252 §5.3.1)")
    optional_content_format("content_format", rec.content_format)
    json_object("attributes", rec.attributes)
    aware("created_at", rec.created_at)
    return rec


def pending_request(
    endpoint_name: str,
    operation: str,
    path: str,
    payload: bytes,
    content_format: int | None,
    options: JsonObject,
    created_at: datetime,
) -> None:
    endpoint(endpoint_name)
    text("operation", operation, max_len=TAG_MAX)
    text("path", path, max_len=SHORT_TEXT_MAX)
    if not isinstance(payload, bytes):
        raise InvalidRecord(f"payload must be bytes, not {type(payload).__name__}")
    optional_content_format("content_format", content_format)
    json_object("options", options)
    aware("created_at", created_at)
