"""A live registration of an LwM2M client, as the server sees it (TS Core 1.1.1 §6.2).

A :class:`Registration` is immutable: Register creates one, Update replaces it by a copy
with the changed parameters, De-register and expiry drop it. The client is reached for
device management at the address and port its Register (or latest Update) came from.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from fotakit.lwm2m.linkformat import Link


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (1, 0)


@dataclass(frozen=True, kw_only=True, slots=True)
class Registration:
    """One client registration. ``objects`` are the links of the Register payload."""

    registration_id: str
    endpoint: str
    address: str
    port: int
    lifetime: int
    lwm2m_version: str
    binding: str
    queue_mode: bool
    sms: str | None
    root_path: str
    objects: tuple[Link, ...]
    content_formats: frozenset[int]
    registered_at: datetime
    last_update: datetime

    @property
    def expires_at(self) -> datetime | None:
        """End of the lifetime counted from the last Register/Update; None if lt is 0."""
        if self.lifetime <= 0:
            return None
        return self.last_update + timedelta(seconds=self.lifetime)

    @property
    def version(self) -> tuple[int, ...]:
        """The LwM2M enabler version as a comparable tuple, e.g. ``(1, 1)``."""
        return _version_tuple(self.lwm2m_version)

    @property
    def uri_base(self) -> str:
        """``coap://host:port`` of the client's device-management endpoint."""
        host = self.address
        try:
            if ipaddress.ip_address(host.split("%")[0]).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass
        return f"coap://{host}:{self.port}"

    @property
    def hostinfo(self) -> str:
        return self.uri_base.removeprefix("coap://")

    def object_ids(self) -> set[int]:
        """IDs of the objects the client announced (``</3/0>`` and ``</5>`` both count)."""
        ids: set[int] = set()
        root = self.root_path.rstrip("/")
        for link in self.objects:
            target = link.target
            if root and target.startswith(root + "/"):
                target = target[len(root) :]
            first = target.lstrip("/").split("/", 1)[0]
            if first.isdigit():
                ids.add(int(first))
        return ids

    def replace(self, **changes: object) -> Registration:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def summary(self, objects_limit: int = 8) -> str:
        """One log line's worth of this registration."""
        shown: Sequence[Link] = self.objects[:objects_limit]
        objects = ",".join(f"<{link.target}>" for link in shown)
        if len(self.objects) > objects_limit:
            objects += f",...(+{len(self.objects) - objects_limit})"
        q = "Q" if self.queue_mode and "Q" not in self.binding else ""
        return (
            f"ep={self.endpoint} id={self.registration_id} lt={self.lifetime} "
            f"lwm2m={self.lwm2m_version} b={self.binding}{q} addr={self.hostinfo} "
            f"objects={objects}"
        )
