"""Conversion between the server's :class:`Registration` and the store's records.

The store (:mod:`fotakit.store`) keeps plain records; the server keeps parsed links and a
set of content formats. ``object_links`` holds the object links re-serialised from the
parsed form, so that loading them back after a restart gives exactly the same links.
"""

from __future__ import annotations

from fotakit.lwm2m.linkformat import format_links, parse_links
from fotakit.server.registrations import Registration
from fotakit.store.records import RegistrationRecord


def to_record(reg: Registration, node_id: str | None = None) -> RegistrationRecord:
    """``node_id``: the server process holding ``reg`` (stored with it)."""
    return RegistrationRecord(
        registration_id=reg.registration_id,
        endpoint=reg.endpoint,
        address=reg.address,
        port=reg.port,
        lifetime=reg.lifetime,
        registered_at=reg.registered_at,
        last_update=reg.last_update,
        expires_at=reg.expires_at,
        lwm2m_version=reg.lwm2m_version,
        binding=reg.binding,
        queue_mode=reg.queue_mode,
        sms=reg.sms,
        root_path=reg.root_path,
        object_links=format_links(reg.objects),
        content_formats=tuple(sorted(reg.content_formats)),
        node_id=node_id,
    )


def from_record(rec: RegistrationRecord) -> Registration:
    return Registration(
        registration_id=rec.registration_id,
        endpoint=rec.endpoint,
        address=rec.address,
        port=rec.port,
        lifetime=rec.lifetime,
        lwm2m_version=rec.lwm2m_version,
        binding=rec.binding,
        queue_mode=rec.queue_mode,
        sms=rec.sms,
        root_path=rec.root_path,
        objects=tuple(parse_links(rec.object_links)),
        content_formats=frozenset(rec.content_formats),
        registered_at=rec.registered_at,
        last_update=rec.last_update,
    )
