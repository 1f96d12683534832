"""The Registration Interface, client side (TS Core 1.1.1 §6.2, §8.2.x).

Register (CON ``POST /rd?ep&lt&lwm2m&b[&Q]`` with the object links), keep the
registration alive with Update before the lifetime ends, re-register when an Update
answers 4.04 (the server forgot us), and De-register on stop.

Theory of operation: one task, :meth:`Registrar.run`, owns the state. It loops, each turn
bounded in time: when not registered it sends Register and, on failure, waits an
exponential backoff (``register_retry_initial`` doubling up to ``register_retry_max``);
when registered it waits until the Update is due (lifetime minus margin) or someone asks
for one (:meth:`Registrar.update`), then sends Update. Every message goes through one lock
so a Register, an Update and a De-register never overlap.

A refused Register (any answer but 2.01, or no answer) is never silent: it is logged at
WARNING with the response code and the server's diagnostic payload (RFC 7252 §5.5.2: a
4.xx/5.xx answer may carry a human-readable UTF-8 reason, e.g. which query parameter or
link attribute it could not parse) and emitted as ``REGISTRATION_FAILED`` with ``code``
and ``diagnostic`` set, and the loop retries after the backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiocoap
from aiocoap import Message
from aiocoap.numbers.codes import Code

from fotakit.client.config import ClientConfig
from fotakit.client.events import EventHub, EventKind
from fotakit.lwm2m.linkformat import Link
from fotakit.lwm2m.registration import (
    RegisterParams,
    UpdateParams,
    register_payload,
    register_query,
    update_payload,
    update_query,
)

_log = logging.getLogger(__name__)

#: A diagnostic payload is shown (log, event) up to this many characters: it is for humans,
#: and a misbehaving server must not flood the log.
MAX_DIAGNOSTIC_CHARS = 256


class RegistrationFailed(Exception):
    """A Register, Update or De-register did not get its success code.

    ``code`` is the response code (``"4.00"``), None when there was no answer (timeout,
    network error); ``diagnostic`` the diagnostic payload of the answer, if any.
    """

    def __init__(self, message: str, *, code: str | None = None, diagnostic: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.diagnostic = diagnostic


def diagnostic_text(response: Message) -> str:
    """The diagnostic payload of an error answer as printable text (RFC 7252 §5.5.2).

    The payload is UTF-8 "intended for a human" and carries no Content-Format; bytes that
    do not decode are replaced, control characters dropped, and the text bounded.
    """
    if not response.payload:
        return ""
    text = bytes(response.payload).decode("utf-8", errors="replace")
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    if len(text) > MAX_DIAGNOSTIC_CHARS:
        text = text[:MAX_DIAGNOSTIC_CHARS] + "..."
    return text


def refused(what: str, response: Message) -> RegistrationFailed:
    """The RegistrationFailed for an answer that is not the expected success code."""
    code = response.code.dotted
    diagnostic = diagnostic_text(response)
    message = f"{what} answered {response.code}"
    if diagnostic:
        message += f": {diagnostic}"
    return RegistrationFailed(message, code=code, diagnostic=diagnostic)


@dataclass(frozen=True, slots=True)
class Settings:
    """The values a Register carries that the server may later change (via /1/x/1, /1/x/7)."""

    lifetime: int
    binding: str


class Registrar:
    """Sends Register/Update/De-register for one client and tracks the registration."""

    def __init__(
        self,
        context: aiocoap.Context,
        config: ClientConfig,
        events: EventHub,
        objects: Callable[[], list[Link]],
        settings: Callable[[], Settings],
        content_formats: tuple[int, ...] = (),
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        self._ctx = context
        self._config = config
        self._events = events
        self._objects = objects
        self._settings = settings
        self._content_formats = content_formats
        self._on_sent = on_sent
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._registered = asyncio.Event()
        self.location: tuple[str, ...] | None = None
        self._sent: Settings | None = None
        self._last_contact = 0.0
        self._ever_registered = False
        self._objects_dirty = False
        self._stopping = False
        self._update_requested = False

    # -- state --------------------------------------------------------------------------
    @property
    def registration_id(self) -> str | None:
        """The Location-Path after ``rd``. Some servers (lwm2m-node-lib) send ``rd/1`` as one
        Location-Path option instead of two, so the segments are split on ``/`` first."""
        if not self.location:
            return None
        segments = [part for option in self.location for part in option.split("/") if part]
        return "/".join(segments[1:])

    @property
    def registered(self) -> bool:
        return self.location is not None

    async def wait_registered(self, timeout: float) -> str:  # noqa: ASYNC109
        await asyncio.wait_for(self._registered.wait(), timeout)
        assert self.registration_id is not None
        return self.registration_id

    def update_due_in(self) -> float | None:
        """Seconds until the next Update, from the last successful Register/Update."""
        if self._sent is None or self._sent.lifetime <= 0:
            return None
        margin = self._config.margin_for(self._sent.lifetime)
        loop = asyncio.get_running_loop()
        return self._last_contact + self._sent.lifetime - margin - loop.time()

    def request_update(self, *, objects_changed: bool = False) -> None:
        """Ask the loop for an Update soon (e.g. lifetime written, instance created)."""
        self._objects_dirty = self._objects_dirty or objects_changed
        self._update_requested = True
        self._wakeup.set()

    # -- the loop -------------------------------------------------------------------------
    async def run(self) -> None:
        delay = self._config.register_retry_initial
        attempts = 0
        while not self._stopping:
            if not self.registered:
                if await self._try_register():
                    delay = self._config.register_retry_initial
                    attempts = 0
                    continue
                attempts += 1
                if 0 < self._config.max_register_attempts <= attempts:
                    _log.warning("giving up registering after %d attempts", attempts)
                    self._events.emit(
                        EventKind.REGISTRATION_FAILED, None, f"gave up after {attempts} attempts"
                    )
                    return
                await self._sleep(delay)
                delay = min(delay * 2, self._config.register_retry_max)
                continue
            due = self.update_due_in()
            if not self._update_requested and (due is None or due > 0):
                await self._sleep(due)
                continue  # woken early or on time: recompute what is due
            self._update_requested = False
            if await self._try_update(objects_changed=self._objects_dirty):
                delay = self._config.register_retry_initial
            elif self.registered:
                if self._expired():
                    # No Update got through within the lifetime: the server has dropped
                    # us (TS §6.2.2), so start over with Register.
                    self.location = None
                    self._registered.clear()
                    continue
                await self._sleep(delay)
                delay = min(delay * 2, self._config.register_retry_max)
                self._update_requested = True

    def _expired(self) -> bool:
        due = self.update_due_in()
        if due is None or self._sent is None:
            return False
        return due + self._config.margin_for(self._sent.lifetime) <= 0

    async def _sleep(self, seconds: float | None) -> None:
        """Wait ``seconds`` (None: until woken); an Update request or stop cuts it short."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        self._wakeup.clear()

    # -- Register / Update / De-register ---------------------------------------------------
    async def _try_register(self) -> bool:
        try:
            await self.register()
        except RegistrationFailed as exc:
            _log.warning(
                "Register of %s with %s refused: code %s, diagnostic %r",
                self._config.endpoint,
                self._config.server_uri,
                exc.code or "none (no answer)",
                exc.diagnostic,
            )
            self._events.emit(
                EventKind.REGISTRATION_FAILED,
                None,
                str(exc),
                code=exc.code,
                diagnostic=exc.diagnostic,
            )
            return False
        return True

    async def register(self) -> str:
        """Send Register (TS §5.3.1) and remember the Location-Path the server assigned."""
        settings = self._settings()
        params = RegisterParams(
            endpoint=self._config.endpoint,
            lifetime=settings.lifetime,
            lwm2m_version=self._config.lwm2m_version,
            binding=settings.binding,
            queue_mode=self._config.queue_mode,
            sms=self._config.sms_number,
            objects=self._objects(),
            content_formats=self._content_formats,
        )
        request = Message(
            code=Code.POST,
            uri=self._config.server_uri.rstrip("/") + "/rd",
            payload=register_payload(params),
            content_format=40,
            transport_tuning=self._tuning(),
        )
        request.opt.uri_query = register_query(params)
        async with self._lock:
            response = await self._exchange(request, "Register")
            if response.code != Code.CREATED:
                raise refused("Register", response)
            location = tuple(response.opt.location_path)
            if not location:
                raise RegistrationFailed("Register answer has no Location-Path")
            again = self._ever_registered
            self.location = location
            self._sent = settings
            self._objects_dirty = False
            self._ever_registered = True
            self._last_contact = asyncio.get_running_loop().time()
            self._registered.set()
        kind = EventKind.REREGISTERED if again else EventKind.REGISTERED
        self._events.emit(kind, self.registration_id)
        assert self.registration_id is not None
        return self.registration_id

    async def _try_update(self, *, objects_changed: bool) -> bool:
        try:
            return await self.update(objects_changed=objects_changed)
        except RegistrationFailed as exc:
            _log.warning(
                "Update of %s refused: code %s, diagnostic %r",
                self._config.endpoint,
                exc.code or "none (no answer)",
                exc.diagnostic,
            )
            self._events.emit(
                EventKind.UPDATE_FAILED,
                self.registration_id,
                str(exc),
                code=exc.code,
                diagnostic=exc.diagnostic,
            )
            return False

    async def update(self, *, objects_changed: bool = False) -> bool:
        """Send Update (TS §5.3.2). True on 2.04; on 4.04 the loop re-registers (False).

        Other failures raise :class:`RegistrationFailed`.
        """
        async with self._lock:
            if self.location is None:
                raise RegistrationFailed("not registered")
            settings = self._settings()
            sent = self._sent
            objects_changed = objects_changed or self._objects_dirty
            params = UpdateParams(
                lifetime=settings.lifetime if sent and settings.lifetime != sent.lifetime else None,
                binding=settings.binding if sent and settings.binding != sent.binding else None,
                queue_mode=self._config.queue_mode
                if sent and settings.binding != sent.binding
                else None,
                objects=self._objects() if objects_changed else None,
                content_formats=self._content_formats if objects_changed else None,
            )
            request = Message(
                code=Code.POST,
                uri=self._config.server_uri.rstrip("/") + "/" + "/".join(self.location),
                payload=update_payload(params, self._config.lwm2m_version),
                transport_tuning=self._tuning(),
            )
            if request.payload:
                request.opt.content_format = 40
            request.opt.uri_query = update_query(params, self._config.lwm2m_version)
            response = await self._exchange(request, "Update")
            if response.code == Code.NOT_FOUND:
                old = self.registration_id
                self.location = None
                self._registered.clear()
                self._wakeup.set()
                self._events.emit(EventKind.UPDATE_FAILED, old, "server answered 4.04")
                return False
            if response.code != Code.CHANGED:
                raise refused("Update", response)
            self._sent = settings
            if objects_changed:
                self._objects_dirty = False
            self._last_contact = asyncio.get_running_loop().time()
        self._wakeup.set()  # the loop recomputes when the next Update is due
        self._events.emit(EventKind.UPDATED, self.registration_id)
        return True

    async def deregister(self) -> bool:
        """Send De-register (TS §5.3.3); True if the server answered 2.02."""
        async with self._lock:
            if self.location is None:
                return False
            request = Message(
                code=Code.DELETE,
                uri=self._config.server_uri.rstrip("/") + "/" + "/".join(self.location),
                transport_tuning=self._tuning(),
            )
            old = self.registration_id
            self.location = None
            self._registered.clear()
            try:
                response = await self._exchange(request, "De-register")
            except RegistrationFailed as exc:
                _log.info("De-register failed: %s", exc)
                return False
        ok = bool(response.code == Code.DELETED)
        self._events.emit(EventKind.DEREGISTERED, old, "" if ok else f"answered {response.code}")
        return ok

    def _tuning(self) -> Any:
        # Registration messages are always confirmable (TS §8.2.x: "CON POST /rd").
        tuning = self._config.transport.tuning()
        tuning.reliability = True
        return tuning

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def _exchange(self, request: Message, what: str) -> Message:
        if self._on_sent is not None:
            self._on_sent()
        try:
            response: Message = await asyncio.wait_for(
                self._ctx.request(request).response, self._config.transport.request_timeout
            )
        except TimeoutError:
            raise RegistrationFailed(f"{what} timed out") from None
        except (aiocoap.error.Error, OSError) as exc:
            raise RegistrationFailed(f"{what} failed: {exc}") from None
        if self._on_sent is not None:
            self._on_sent()
        return response
