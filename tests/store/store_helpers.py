"""Record factories and snapshots shared by the store tests (imported, not a conftest)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fotakit.store import (
    DeviceRecord,
    ObservationRecord,
    PendingRequestRecord,
    RegistrationRecord,
    Store,
    expiry_for,
    new_registration_id,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
"""A fixed, microsecond-precise start time, so expiry tests need no clock."""

_counter = itertools.count(1)


def make_registration(
    endpoint: str = "urn:dev:ep-1",
    *,
    at: datetime = T0,
    lifetime: int = 300,
    **overrides: Any,
) -> RegistrationRecord:
    """A plausible registration as the server would build it from a Register."""
    n = next(_counter)
    fields: dict[str, Any] = {
        "registration_id": new_registration_id(),
        "endpoint": endpoint,
        "address": "127.0.0.1",
        "port": 56000 + n % 1000,
        "lifetime": lifetime,
        "lwm2m_version": "1.1",
        "binding": "U",
        "queue_mode": False,
        "sms": None,
        "root_path": "/",
        "object_links": '</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</5>;ver=1.1,</5/0>',
        "content_formats": (110, 112),
        "registered_at": at,
        "last_update": at,
        "expires_at": expiry_for(at, lifetime),
    }
    fields.update(overrides)
    return RegistrationRecord(**fields)


def make_observation(
    reg: RegistrationRecord, path: str = "/5/0/3", **overrides: Any
) -> ObservationRecord:
    fields: dict[str, Any] = {
        "registration_id": reg.registration_id,
        "endpoint": reg.endpoint,
        "path": path,
        "token": next(_counter).to_bytes(4, "big"),
        "content_format": 112,
        "attributes": {"pmin": 1, "pmax": 60},
        "created_at": reg.registered_at + timedelta(seconds=1),
    }
    fields.update(overrides)
    return ObservationRecord(**fields)


@dataclass(frozen=True)
class Snapshot:
    """Everything the store holds, to show that a failed write changed nothing."""

    registrations: list[RegistrationRecord]
    observations: list[ObservationRecord]
    devices: list[DeviceRecord]
    pending: list[PendingRequestRecord]


def snapshot(s: Store) -> Snapshot:
    return Snapshot(
        s.list_registrations(), s.list_observations(), s.list_devices(), s.list_pending_requests()
    )
