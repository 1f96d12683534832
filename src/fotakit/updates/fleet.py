"""The fleet as every node sharing the database sees it: who is online, what each device is.

Several ``fotakit server`` processes ("nodes") may share one database
(docs/operator-guide.md "Several processes on PostgreSQL"); each holds in memory only the
registrations of the devices that registered with *it*. Fleet-wide questions — which
devices a campaign targets, what ``GET /api/v1/fleet`` counts as online — are answered
from the database instead:

* online: the device has a stored registration (TS Core 1.1.1 §6.2.1; every node persists
  a Register/Update before answering it) that has not expired: ``last_update + lifetime``
  plus the server's expiry grace is still ahead, or the lifetime is 0 (no expiry), whichever
  node holds it. A node that dies leaves its registrations behind; they count as offline
  once their lifetime has run out, as on the node itself.
* what a device is (class, firmware version, zone): the view this node read itself for a
  device registered here; else the row the node it is registered with wrote to the
  ``device_inventory`` table (:mod:`fotakit.updates.inventory`); tags always from the
  device's stored attributes (set through any node).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from fotakit.server import LwM2MServer
from fotakit.store.records import RegistrationRecord
from fotakit.updates.inventory import TAGS_ATTRIBUTE
from fotakit.updates.targets import DeviceView

__all__ = ["is_live", "live_registrations", "with_tags"]


def _aware(at: datetime) -> datetime:
    """A naive value read back from the database is UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def is_live(rec: RegistrationRecord, now: datetime, grace_s: float) -> bool:
    """True while ``rec`` has not expired at ``now`` (lifetime 0: never expires)."""
    if rec.expires_at is None:
        return True
    return _aware(rec.expires_at) + timedelta(seconds=grace_s) > now


async def live_registrations(
    server: LwM2MServer, now: datetime | None = None
) -> dict[str, RegistrationRecord]:
    """Every unexpired registration in the database, of any node, by endpoint."""
    at = now if now is not None else datetime.now(UTC)
    grace = server.config.expiry_grace
    return {
        rec.endpoint: rec
        for rec in await server.store.list_registrations()
        if is_live(rec, at, grace)
    }


def with_tags(view: DeviceView, attributes: object) -> DeviceView:
    """``view`` with the tags of a device's stored attributes, when they hold a list."""
    raw = attributes.get(TAGS_ATTRIBUTE) if isinstance(attributes, dict) else None
    if not isinstance(raw, list):
        return view
    tags = frozenset(t for t in raw if isinstance(t, str) and t)
    return view if tags == view.tags else dataclasses.replace(view, tags=tags)
