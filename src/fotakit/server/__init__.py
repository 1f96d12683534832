"""The LwM2M server runtime (TS Core 1.1.1 §6.2-§6.5): registrations, device management,
observations and queue mode over aiocoap, persisted through :mod:`fotakit.store`.

See :mod:`fotakit.server.server` for the theory of operation.
"""

from fotakit.server.config import ServerConfig
from fotakit.server.errors import (
    DeviceError,
    DeviceUnreachable,
    InvalidResponse,
    NotRegistered,
    RequestTimeout,
    ServerError,
)
from fotakit.server.events import (
    Deregistered,
    Event,
    Expired,
    Notification,
    ObservationEnded,
    QueuedRequestCompleted,
    Registered,
    RequestQueued,
    Updated,
)
from fotakit.server.observations import Observation
from fotakit.server.registrations import Registration
from fotakit.server.runner import run_server
from fotakit.server.server import LwM2MServer

__all__ = [
    "Deregistered",
    "DeviceError",
    "DeviceUnreachable",
    "Event",
    "Expired",
    "InvalidResponse",
    "LwM2MServer",
    "NotRegistered",
    "Notification",
    "Observation",
    "ObservationEnded",
    "QueuedRequestCompleted",
    "Registered",
    "Registration",
    "RequestQueued",
    "RequestTimeout",
    "ServerConfig",
    "ServerError",
    "Updated",
    "run_server",
]
