"""Errors a device-management operation of :class:`~fotakit.server.LwM2MServer` raises.

TS Core 1.1.1 §6.3 (Device Management and Service Enablement Interface): every operation
ends in a CoAP response code. Success codes become results; 4.xx and 5.xx become
:class:`DeviceError` carrying the code, so a caller can tell 4.04 (no such object) from
4.05 (not allowed in this state, e.g. Execute /5/0/2 while not Downloaded).
"""

from __future__ import annotations


class ServerError(Exception):
    """Base class of the errors the server runtime raises on purpose."""


class NotRegistered(ServerError, LookupError):
    """The endpoint has no live registration (never registered, de-registered, expired)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        super().__init__(f"endpoint {endpoint!r} is not registered")


class DeviceError(ServerError):
    """The client answered with an error code (4.xx or 5.xx)."""

    def __init__(self, code: str, message: str = "") -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code} {message}".rstrip())


class RequestTimeout(ServerError, TimeoutError):
    """No response within the request timeout (or the caller's own timeout)."""


class DeviceUnreachable(ServerError):
    """The request could not be sent to the client's address (network error)."""


class InvalidResponse(ServerError):
    """The client answered with a success code but a payload that does not decode."""
