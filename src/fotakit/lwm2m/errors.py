"""LwM2M error conditions and the CoAP response codes they are answered with.

TS Core 1.1.1 §6 lists, per operation, which CoAP codes a client or server answers
(e.g. Register: 4.00, 4.03, 4.12; Read: 4.01, 4.04, 4.05, 4.06). Code anywhere in
fotakit raises one of these exceptions; the CoAP layer turns ``exc.code`` into the
response code, so the mapping lives in exactly one place.
"""

from __future__ import annotations

from typing import ClassVar

from aiocoap.numbers.codes import Code


class LwM2MError(Exception):
    """Base class: an LwM2M operation failed and must be answered with :attr:`code`."""

    code: ClassVar[Code] = Code.INTERNAL_SERVER_ERROR

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__name__)

    @property
    def message(self) -> str:
        return str(self.args[0])


class BadRequest(LwM2MError):
    """4.00: malformed request, bad query parameters, undecodable payload."""

    code = Code.BAD_REQUEST


class Unauthorized(LwM2MError):
    """4.01: access rights forbid the operation (TS 1.1.1 §7.3 access control)."""

    code = Code.UNAUTHORIZED


class Forbidden(LwM2MError):
    """4.03: e.g. a Register from an endpoint the server refuses (TS 1.1.1 §6.2.1)."""

    code = Code.FORBIDDEN


class NotFound(LwM2MError):
    """4.04: no such object, instance, resource or registration."""

    code = Code.NOT_FOUND


class MethodNotAllowed(LwM2MError):
    """4.05: the operation is not allowed on this target or in this state."""

    code = Code.METHOD_NOT_ALLOWED


class NotAcceptable(LwM2MError):
    """4.06: none of the requested (Accept) content formats can be produced."""

    code = Code.NOT_ACCEPTABLE


class PreconditionFailed(LwM2MError):
    """4.12: e.g. a Register with an LwM2M version the server does not support."""

    code = Code.PRECONDITION_FAILED


class RequestEntityIncomplete(LwM2MError):
    """4.08: a Block1 body arrived with a gap (RFC 7959 §2.9.2): a block came whose
    predecessors the receiver does not have (or no transfer is in progress)."""

    code = Code.REQUEST_ENTITY_INCOMPLETE


class RequestEntityTooLarge(LwM2MError):
    """4.13: the payload does not fit (RFC 7959 §2.9.3 for block-wise transfers).

    ``size1`` is the largest body the receiver accepts; the response carries it in a
    Size1 option (RFC 7959 §4) so the sender knows the limit.
    """

    code = Code.REQUEST_ENTITY_TOO_LARGE

    def __init__(self, message: str = "", *, size1: int | None = None) -> None:
        super().__init__(message)
        self.size1 = size1


class UnsupportedContentFormat(LwM2MError):
    """4.15: the request payload's Content-Format is not supported."""

    code = Code.UNSUPPORTED_CONTENT_FORMAT


class InternalServerError(LwM2MError):
    """5.00: an unexpected failure on the answering side."""

    code = Code.INTERNAL_SERVER_ERROR
