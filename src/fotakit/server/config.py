"""Configuration of the LwM2M server runtime.

Defaults follow the spec where it has one: a queue-mode client stays awake for
MAX_TRANSMIT_WAIT after its last message (TS Core 1.1.1 §6.5, RFC 7252 §4.8.2), so that is
the default awake time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fotakit.coap import TransportParams
from fotakit.lwm2m.model import ObjectRegistry


def _builtin_registry() -> ObjectRegistry:
    from fotakit.lwm2m.objects import builtin_registry

    return builtin_registry()


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Everything :class:`~fotakit.server.LwM2MServer` needs to run.

    ``port`` 0 binds an ephemeral port (read it back from ``server.port``).
    ``queue_awake_time`` None means ``transport.max_transmit_wait``.
    ``max_register_rate`` is the sustained number of Register requests per second accepted
    from one source host; ``register_burst`` is the token bucket's depth.
    ``expiry_grace`` is added to a registration's lifetime before it expires, so an Update
    sent at the last moment over a slow link is not lost to a race.
    ``min_lifetime`` .. ``max_lifetime`` (seconds) is the range of ``lt`` a Register or
    Update may ask for; outside it the answer is 4.00 naming the bound. TS Core 1.1.1
    §5.3.1 leaves the server's limits to the server: the defaults refuse only ``lt=0``
    (a registration that never expires) and lifetimes beyond 30 days.
    ``max_registrations`` caps the registration table: a Register of a new endpoint
    beyond it gets 5.03 with Max-Age ``registrations_full_max_age`` (RFC 7252
    §5.9.3.4); a re-Register of a registered endpoint is always accepted.
    ``extra_resources`` are (path, aiocoap resource) pairs mounted next to ``/rd`` on the
    same port, e.g. the firmware repository's ``/fw`` (``fotakit.repository.coap``).
    """

    host: str = "127.0.0.1"
    port: int = 5683
    db_url: str = "sqlite:///fotakit.db"
    transport: TransportParams = field(default_factory=TransportParams)
    registry: ObjectRegistry = field(default_factory=_builtin_registry)
    queue_awake_time: float | None = None
    max_register_rate: float = 20.0
    register_burst: int = 50
    expiry_grace: float = 2.0
    node_id: str | None = None
    """This process's name in the registrations it stores, when several share the
    database (docs/operator-guide.md "Several processes on PostgreSQL"): a node loads
    back only its own at start. None: ``<host name>:<port>`` is stored, and every stored
    registration is loaded (one process per database)."""
    max_endpoint_length: int = 255
    min_lifetime: int = 1
    max_lifetime: int = 30 * 24 * 3600
    max_registrations: int = 200_000
    registrations_full_max_age: int = 60
    extra_resources: tuple[tuple[tuple[str, ...], Any], ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.min_lifetime <= self.max_lifetime:
            raise ValueError(
                f"lifetime bounds {self.min_lifetime}..{self.max_lifetime} s: need "
                "1 <= min_lifetime <= max_lifetime"
            )
        if self.max_registrations < 1:
            raise ValueError(f"max_registrations {self.max_registrations}: need at least 1")

    @property
    def awake_time(self) -> float:
        """Seconds a queue-mode client is considered awake after its last message."""
        if self.queue_awake_time is not None:
            return self.queue_awake_time
        return self.transport.max_transmit_wait
