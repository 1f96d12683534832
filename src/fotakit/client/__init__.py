"""LwM2M client runtime: registration loop, request dispatch, observe (TS Core 1.1.1 §6).

Device code builds :class:`LwM2MObject` s from :class:`ObjectInstance` subclasses (or
:class:`SimpleInstance`), hands them to :class:`LwM2MClient` with a
:class:`ClientConfig`, and awaits ``start()`` / ``wait_registered()``.
"""

from fotakit.client.client import LwM2MClient
from fotakit.client.config import ClientConfig, default_update_margin
from fotakit.client.events import EventKind, RegistrationEvent
from fotakit.client.instance import (
    ExecuteHandler,
    LwM2MObject,
    ObjectInstance,
    ResourceValue,
    SimpleInstance,
)
from fotakit.client.registration import RegistrationFailed
from fotakit.coap import TransportParams

__all__ = [
    "ClientConfig",
    "EventKind",
    "ExecuteHandler",
    "LwM2MClient",
    "LwM2MObject",
    "ObjectInstance",
    "RegistrationEvent",
    "RegistrationFailed",
    "ResourceValue",
    "SimpleInstance",
    "TransportParams",
    "default_update_margin",
]
