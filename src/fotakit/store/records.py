"""Plain, typed records the store hands out and takes in (never ORM objects).

Times are timezone-aware UTC :class:`~datetime.datetime` values; the store refuses naive
ones because a server and its database may disagree about the local zone. Field names
follow the registration interface of LwM2M TS Core 1.1.1 §6.2 (``ep``, ``lt``, ``lwm2m``,
``b``, ``Q``, ``sms``) and the observe interface of §6.4.

The records are frozen, but their JSON mappings are ordinary dicts: treat them as
read-only.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
"""A value that survives a round trip through a JSON column."""

JsonObject: TypeAlias = Mapping[str, JsonValue]


def new_registration_id() -> str:
    """A fresh short, URL-safe registration ID for the ``/rd/<id>`` Location-Path."""
    return secrets.token_urlsafe(6)


def new_observation_id() -> str:
    """A fresh observation ID (opaque, URL-safe)."""
    return secrets.token_urlsafe(9)


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (what the store expects everywhere)."""
    return datetime.now(UTC)


def expiry_for(when: datetime, lifetime: int) -> datetime | None:
    """When a registration made or updated at ``when`` with lifetime ``lt`` expires.

    A lifetime of 0 means "infinite" (Server Object resource /1/x/1), hence ``None``.
    """
    if lifetime <= 0:
        return None
    return when + timedelta(seconds=lifetime)


@dataclass(frozen=True, kw_only=True, slots=True)
class RegistrationRecord:
    """One live registration of an LwM2M client (TS Core §6.2.1 Register)."""

    registration_id: str
    endpoint: str
    address: str
    port: int
    lifetime: int
    registered_at: datetime
    last_update: datetime
    expires_at: datetime | None
    lwm2m_version: str = "1.0"
    binding: str = "U"
    queue_mode: bool = False
    sms: str | None = None
    root_path: str = "/"
    object_links: str = ""
    """The link-format payload of the Register (or latest Update), exactly as received."""
    content_formats: tuple[int, ...] = ()
    node_id: str | None = None
    """The server process ("node") holding the registration, when several share the
    database (docs/operator-guide.md "Several processes on PostgreSQL"); None: not said."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ObservationRecord:
    """One observation the server holds on a client (TS Core §6.4.3, RFC 7641)."""

    registration_id: str
    endpoint: str
    path: str
    token: bytes
    created_at: datetime
    content_format: int | None = None
    attributes: JsonObject = field(default_factory=dict)
    observation_id: str = field(default_factory=new_observation_id)


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceRecord:
    """A device the server has ever seen, kept after its registration ends."""

    endpoint: str
    first_seen: datetime
    last_seen: datetime
    lwm2m_version: str
    last_registration_id: str | None
    attributes: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingRequestRecord:
    """A request queued for a client in queue mode until it is awake (TS Core §8.3)."""

    id: int
    endpoint: str
    created_at: datetime
    operation: str
    path: str
    payload: bytes = b""
    content_format: int | None = None
    options: JsonObject = field(default_factory=dict)
