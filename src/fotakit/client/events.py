"""Registration state transitions the client reports (TS Core 1.1.1 §6.2 Client Registration).

Every transition becomes a :class:`RegistrationEvent`, delivered to listeners and to the
client's bounded ``events`` queue, so tests and the device agent can await "registered" or
"updated" instead of sleeping.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic

_log = logging.getLogger(__name__)


class EventKind(enum.Enum):
    REGISTERED = "registered"
    UPDATED = "updated"
    REREGISTERED = "reregistered"
    DEREGISTERED = "deregistered"
    REGISTRATION_FAILED = "registration_failed"
    UPDATE_FAILED = "update_failed"
    SLEEPING = "sleeping"  # queue mode: the awake window passed without traffic


@dataclass(frozen=True, slots=True)
class RegistrationEvent:
    """One transition. For a failed Register/Update, ``code`` is the server's response
    code (``"4.00"``; None if no answer came) and ``diagnostic`` its diagnostic payload
    (RFC 7252 §5.5.2), both also summed up in ``detail``."""

    kind: EventKind
    registration_id: str | None = None
    detail: str = ""
    at: float = field(default_factory=monotonic)
    code: str | None = None
    diagnostic: str = ""


EventListener = Callable[[RegistrationEvent], None]

#: Events kept for a reader who is not draining the queue; the oldest go first.
EVENT_QUEUE_SIZE = 256


class EventHub:
    """Fans events out to listeners and a bounded queue (oldest dropped when full)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[RegistrationEvent] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._listeners: list[EventListener] = []

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        self._listeners.remove(listener)

    def emit(
        self,
        kind: EventKind,
        registration_id: str | None = None,
        detail: str = "",
        *,
        code: str | None = None,
        diagnostic: str = "",
    ) -> None:
        event = RegistrationEvent(kind, registration_id, detail, code=code, diagnostic=diagnostic)
        _log.debug("registration event %s %s %s", kind.value, registration_id, detail)
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not stop the registration loop
                _log.exception("registration event listener failed")
