"""Client configuration: who we are, which server we register with, and how we time it.

TS Core 1.1.1 §6.2 (Register and Update parameters: ``ep``, ``lt``, ``lwm2m``, ``b``,
``Q``) and §6.2.2 (the client sends an Update before its Lifetime expires).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from fotakit.coap import TransportParams
from fotakit.lwm2m.codecs import SUPPORTED_DECODE, ContentFormat

#: The registration lifetime when none is configured (TS Core: ``lt`` default).
DEFAULT_LIFETIME = 86400

# An Update is sent at least this long before the lifetime ends, and at least 10 % of it.
_MIN_MARGIN = 5.0
_MARGIN_FRACTION = 0.1


#: The content format a 1.1+ client advertises in the ``ct`` of its root link by default
#: (TS Core 1.1.1 §6.2.1: "ct" lists the optional formats the client supports besides
#: the mandatory text/plain, opaque and link-format). SenML CBOR, because it is the
#: format this client answers a multi-value Read in when the server sends no Accept
#: (:mod:`fotakit.client.formats`), so what we advertise is what the server gets; every
#: major 1.1 server decodes it (and fotakit's server asks for it first,
#: :mod:`fotakit.server.negotiation`). ONE value, because one value is a bare integer
#: (``ct=112``), while a list must be a quoted, space-separated string (RFC 7252 §7.2.1)
#: that some strict servers refuse with 4.00: the plainest form is the one all parse.
DEFAULT_ADVERTISED_FORMAT: Final = ContentFormat.SENML_CBOR

#: Formats that may be listed in ``ct``: those this client can both decode (a Write) and
#: encode (a Read), minus CoRE link-format, which is not a data format.
ADVERTISABLE_FORMATS: Final = frozenset(int(f) for f in SUPPORTED_DECODE) - {40}


def default_advertised_formats(lwm2m_version: str) -> tuple[int, ...]:
    """The ``ct`` of the root link when the configuration names none.

    LwM2M 1.0 has no ``ct`` list of optional formats in its root link (a 1.0 client's
    formats are fixed: TLV is mandatory, TS Core 1.0.2 §6.4), so nothing is sent.
    """
    if lwm2m_version == "1.0":
        return ()
    return (int(DEFAULT_ADVERTISED_FORMAT),)


def default_update_margin(lifetime: float) -> float:
    """How long before ``lifetime`` ends the client sends its Registration Update.

    10 % of the lifetime, but at least a few seconds so retransmissions fit, and never more
    than half the lifetime so a short lifetime still leaves room between Updates.
    """
    if lifetime <= 0:
        return 0.0
    return min(max(lifetime * _MARGIN_FRACTION, _MIN_MARGIN), lifetime / 2)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything the client runtime needs that is not an object instance.

    ``lifetime`` 0 means "no Updates needed" (TS: infinite). ``update_margin`` None picks
    :func:`default_update_margin`; an explicit value is clamped to ``[0, lifetime/2]``.
    ``register_retry_initial`` and ``register_retry_max`` bound the exponential backoff
    after a failed Register; ``max_register_attempts`` 0 retries as long as the client
    runs. ``awake_window`` None uses MAX_TRANSMIT_WAIT of ``transport`` (queue mode).
    ``confirmable_notifications`` picks CON (True) or NON (False) Observe notifications.
    ``max_body_size`` bounds a Block1 request body reassembled in RAM (larger: 4.13 with
    Size1); resources that stream their Block1 Writes (a firmware push) are not bound.
    ``advertise_formats`` is the ``ct`` of the root link in Register (TS Core 1.1.1
    §6.2.1): None picks :func:`default_advertised_formats` (``ct=112``); ``()`` sends no
    ``ct``; several formats go out as one quoted list (``ct="110 112"``), which strict
    servers may refuse, so only list several for a server known to parse them.
    """

    endpoint: str
    server_uri: str = "coap://127.0.0.1:5683"
    lifetime: int = DEFAULT_LIFETIME
    lwm2m_version: str = "1.1"
    binding: str = "U"
    queue_mode: bool = False
    local_host: str = "127.0.0.1"
    local_port: int = 0
    transport: TransportParams = field(default_factory=TransportParams)
    update_margin: float | None = None
    short_server_id: int = 1
    register_retry_initial: float = 1.0
    register_retry_max: float = 60.0
    max_register_attempts: int = 0
    awake_window: float | None = None
    confirmable_notifications: bool = True
    sms_number: str | None = None
    max_body_size: int = 64 * 1024
    advertise_formats: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.endpoint:
            raise ValueError("endpoint name must not be empty")
        if self.lifetime < 0:
            raise ValueError("lifetime must be >= 0")
        if not 1 <= self.short_server_id <= 65534:
            raise ValueError("short server ID must be in 1..65534")
        if not 0 < self.register_retry_initial <= self.register_retry_max:
            raise ValueError("need 0 < register_retry_initial <= register_retry_max")
        if self.max_body_size < 0:
            raise ValueError("max_body_size must be >= 0")
        if self.advertise_formats is not None:
            check_advertised_formats(self.advertise_formats)

    @property
    def content_formats(self) -> tuple[int, ...]:
        """The formats the root link's ``ct`` lists (empty: no ``ct``, no root link)."""
        if self.advertise_formats is None:
            return default_advertised_formats(self.lwm2m_version)
        return self.advertise_formats

    def margin_for(self, lifetime: float) -> float:
        """The Update margin for a (possibly server-written) ``lifetime``."""
        if lifetime <= 0:
            return 0.0
        if self.update_margin is None:
            return default_update_margin(lifetime)
        return min(max(self.update_margin, 0.0), lifetime / 2)

    @property
    def awake_seconds(self) -> float:
        """How long a queue-mode client stays reachable after each message it sends."""
        if self.awake_window is not None:
            return self.awake_window
        return self.transport.max_transmit_wait


def check_advertised_formats(formats: tuple[int, ...]) -> None:
    """ValueError unless every format is one this client serves, each listed once."""
    for fmt in formats:
        if isinstance(fmt, bool) or not isinstance(fmt, int):
            raise ValueError(f"advertised content format {fmt!r} is not an integer")
        if fmt not in ADVERTISABLE_FORMATS:
            known = ", ".join(str(f) for f in sorted(ADVERTISABLE_FORMATS))
            raise ValueError(f"content format {fmt} is not one this client serves ({known})")
    if len(set(formats)) != len(formats):
        raise ValueError("an advertised content format is listed twice")
