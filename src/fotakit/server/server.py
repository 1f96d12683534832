"""The LwM2M server runtime: registrations, device management, observations, queue mode.

Implements the server side of TS Core 1.1.1 §6.2 (Registration Interface, via
:mod:`fotakit.server.rd`), §6.3 (Device Management: Read, Write, Execute, Discover,
Write-Attributes, Create, Delete), §6.4 (Observe, Cancel Observation) and §6.5 / §8.3
(queue mode) on top of aiocoap, with every registration change persisted through
:class:`fotakit.store.AsyncStore`.

Theory of operation
-------------------
* **Commit, then answer.** A Register, Update or De-register is committed to the store
  before the in-memory state changes and before the response leaves; a failed commit
  answers 5.00 and changes nothing. After a SIGKILL and a restart, :meth:`start` loads the
  registrations, so a client's next Update to ``/rd/<id>`` gets 2.04 without re-registering.
* **Expiry.** One background task sleeps until the earliest ``last_update + lifetime +
  expiry_grace`` and expires what is due (an :class:`Expired` event, observations and
  queued requests dropped). Registrations that ran out while the server was down are
  dropped from the store while :meth:`start` loads them: never online, never read.
* **Queue mode.** A client with ``Q`` is awake for ``queue_awake_time`` after it last sent
  anything. Requests to it while it sleeps are queued, persisted, and sent in order when
  it next talks; the caller's coroutine resolves then. Requests restored after a restart
  have lost their caller: their outcome is published as :class:`QueuedRequestCompleted`.
  Delivery is at most once (see :mod:`fotakit.server.queue`).
* **Observations after a restart.** aiocoap matches notifications by token, and tokens of
  a previous process are unknown to the new one (aiocoap answers those notifications with
  RST, which ends them in the client). So each persisted observation is *re-established*
  (a new GET with Observe=0 under the same observation ID) the next time its client sends
  an Update; its current value arrives as a :class:`Notification` with ``initial=True``.
  A Register instead drops them, as LwM2M says a new Register cancels all observations
  (TS Core §6.4.3); the orchestrator re-observes on the :class:`Registered` event.
* **Cancel Observation** (TS Core §6.4.5, RFC 7641 §3.6). :meth:`cancel_observe` ends
  the observation here, which makes any later notification on its token an unknown one,
  answered with RST (reactive), then sends a GET with Observe=1 under the observation's
  own token and options (proactive), which ends it on the device before it notifies
  again. Any notification nobody observes (unknown token, cancelled observation), CON or
  NON, is answered with RST (:mod:`fotakit.coap.compat`). A sleeping queue-mode client
  gets only the reactive half.
* **Observe transport.** Observations are sent without aiocoap's block-wise layer, whose
  observation relay keeps only the latest notification; LwM2M notifications of the few
  resources worth observing (/5/0/3, /5/0/5, /3/0/3) fit one datagram.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any, cast

import aiocoap
import aiocoap.error

from fotakit.coap import create_endpoint
from fotakit.coap.compat import (
    MalformedDatagrams,
    count_malformed_datagrams,
    reset_unknown_notifications,
    send_observation_cancel,
)
from fotakit.lwm2m import codecs
from fotakit.lwm2m.attributes import NotificationAttributes
from fotakit.lwm2m.codecs import CodecError, ContentFormat
from fotakit.lwm2m.errors import BadRequest, LwM2MError, NotFound
from fotakit.lwm2m.linkformat import Link, parse_links
from fotakit.lwm2m.model import Content, Value
from fotakit.lwm2m.path import InvalidPath, Path
from fotakit.lwm2m.registration import parse_register, parse_update
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
    EventBus,
    Expired,
    Notification,
    ObservationEnded,
    QueuedRequestCompleted,
    Registered,
    RequestQueued,
    Subscription,
    Updated,
)
from fotakit.server.locks import KeyedLock
from fotakit.server.negotiation import choose_format, fallback_format
from fotakit.server.observations import Observation
from fotakit.server.persistence import from_record, to_record
from fotakit.server.queue import AwakeTracker, PendingQueues, PendingRequest
from fotakit.server.ratelimit import RateLimiter
from fotakit.server.rd import build_site
from fotakit.server.registrations import Registration
from fotakit.server.requests import RequestSpec, code_text, diagnostic
from fotakit.store import AsyncStore, ObservationRecord, StoreError
from fotakit.store.records import new_observation_id, new_registration_id, utcnow

log = logging.getLogger("fotakit.server")

_Exchange = tuple[Any, aiocoap.Message]  # (aiocoap request handle, response)


def _as_path(path: Path | str) -> Path:
    return path if isinstance(path, Path) else Path.parse(path)


class LwM2MServer:
    """An LwM2M server bound to one UDP port. ``await start()``, then use, then ``stop()``."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        store: AsyncStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``store``: share an open store (not closed by :meth:`stop`). ``clock``: the
        monotonic clock queue-mode awake times are measured with (tests drive it)."""
        self.config = config
        self._registry = config.registry
        self._store_given = store
        self._store: AsyncStore | None = store
        self._ctx: aiocoap.Context | None = None
        self._port = 0
        self._tuning = config.transport.tuning()
        self._bus = EventBus()
        self._register_limiter = RateLimiter(config.max_register_rate, config.register_burst)
        self._awake = AwakeTracker(config.awake_time, clock)
        self._pending = PendingQueues()
        self._regs: dict[str, Registration] = {}
        self._by_id: dict[str, str] = {}
        # (host, port) -> the aiocoap remote a device last reached us from: requests to it
        # reuse it instead of a URI that aiocoap resolves and route-checks (a socket opened,
        # connected and closed) on every request
        self._remotes: dict[tuple[str, int], Any] = {}
        self._observations: dict[str, Observation] = {}
        self._dormant: dict[str, list[ObservationRecord]] = {}  # by registration ID
        self._flushers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locks = KeyedLock()  # per endpoint: registration changes stay in order
        # new endpoints whose Register is being committed: they count against the cap
        # (config.max_registrations) before they reach self._regs
        self._admitting = 0
        self._refused_full = 0  # Registers refused by the cap since the last warning
        self._full_warned_at = float("-inf")
        self._expiry_heap: list[tuple[float, str]] = []
        self._expiry_wake = asyncio.Event()
        self._expiry_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._malformed = MalformedDatagrams(log)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, load persisted state, bind the CoAP endpoint, start expiry."""
        opened_here = self._store is None
        if self._store is None:
            self._store = await AsyncStore.open(self.config.db_url)
        try:
            await self._load(self._store)
            self._ctx, self._port = await create_endpoint(
                build_site(self), self.config.host, self.config.port
            )
            reset_unknown_notifications(self._ctx)
            count_malformed_datagrams(self._ctx, self._malformed)
            _widen_receive_buffer(self._ctx)
        except BaseException:
            if opened_here:
                await self._store.close()
                self._store = None
            raise
        self._expiry_task = asyncio.create_task(self._expiry_loop(), name="fotakit-expiry")
        log.info(
            "server listening on %s:%d (%d registrations, %d observations, %d queued requests"
            " loaded)",
            self.config.host,
            self._port,
            len(self._regs),
            sum(len(v) for v in self._dormant.values()),
            len(self._pending),
        )

    @property
    def node_id(self) -> str:
        """This process's name in the registrations it stores (``config.node_id``, else
        ``<host name>:<port>``, the update service's default too)."""
        return self.config.node_id or f"{socket.gethostname()}:{self._port}"

    async def _load(self, store: AsyncStore) -> None:
        now = time.time()
        expired = 0
        for rec in await store.list_registrations():
            if self.config.node_id and rec.node_id not in (None, self.config.node_id):
                continue  # held by another process sharing the database
            try:
                reg = from_record(rec)
            except (ValueError, LwM2MError) as exc:
                # Unreadable links must not keep the server down; the client re-registers
                # once its Update gets 4.04.
                log.warning("skipping unreadable registration id=%s: %s", rec.registration_id, exc)
                continue
            if self._deadline(reg) <= now and await self._drop_expired_at_load(store, reg):
                expired += 1
                continue
            self._regs[reg.endpoint] = reg
            self._by_id[reg.registration_id] = reg.endpoint
            self._schedule_expiry(reg)
        if expired:
            log.info("%d registrations expired while the server was down: dropped", expired)
        for obs_rec in await store.list_observations():
            self._dormant.setdefault(obs_rec.registration_id, []).append(obs_rec)
        for pending in await store.list_pending_requests():
            try:
                spec = RequestSpec.from_stored(
                    operation=pending.operation,
                    path=pending.path,
                    payload=pending.payload,
                    content_format=pending.content_format,
                    options=pending.options,
                )
            except (InvalidPath, ValueError, TypeError):
                log.warning("dropping unreadable pending request id=%s", pending.id)
                await store.delete_pending_request(pending.id)
                continue
            self._pending.append(pending.endpoint, PendingRequest(spec, pending.id, None))

    async def _drop_expired_at_load(self, store: AsyncStore, reg: Registration) -> bool:
        """Delete a registration whose lifetime ran out while the server was down, before
        anything sees it: it is not online, and nobody reads a device not heard from
        (TS Core 1.1.1 §6.2.1: the server removes a registration past its lifetime).
        False if the store refused: it is then loaded and expires right after start."""
        try:
            await store.delete_registration(reg.registration_id)  # observations cascade
            await store.clear_pending_requests(reg.endpoint)
        except StoreError:
            log.exception("could not drop expired registration id=%s", reg.registration_id)
            return False
        log.debug(
            "dropped expired ep=%s id=%s lt=%d", reg.endpoint, reg.registration_id, reg.lifetime
        )
        return True

    async def stop(self) -> None:
        """Stop serving. Persisted state stays for the next :meth:`start`."""
        self._stopping = True
        tasks = [t for t in (self._expiry_task, *self._flushers.values(), *self._tasks) if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for obs in list(self._observations.values()):
            obs._end("server stopped")
        self._observations.clear()
        for endpoint in self._pending.endpoints():
            for item in self._pending.drain(endpoint):
                if item.future is not None and not item.future.done():
                    # The request stays in the database and is sent after a restart.
                    item.future.set_exception(ServerError("server stopped"))
        if self._ctx is not None:
            await self._ctx.shutdown()
            self._ctx = None
        if self._store is not None and self._store_given is None:
            await self._store.close()
            self._store = None
        log.info("server stopped")

    async def __aenter__(self) -> LwM2MServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- introspection --------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The UDP port actually bound (useful with ``port=0``)."""
        return self._port

    @property
    def registrations(self) -> Mapping[str, Registration]:
        """Live registrations by endpoint name (a read-only view)."""
        return MappingProxyType(self._regs)

    @property
    def malformed_datagrams(self) -> int:
        """Datagrams dropped since start because they are not well-formed CoAP."""
        return self._malformed.count

    def get(self, endpoint: str) -> Registration | None:
        return self._regs.get(endpoint)

    @property
    def observations(self) -> Mapping[str, Observation]:
        """Live observations by observation ID (including re-established ones)."""
        return MappingProxyType(self._observations)

    def queued(self, endpoint: str) -> int:
        """How many requests wait for ``endpoint`` to wake up."""
        return self._pending.count(endpoint)

    def is_awake(self, endpoint: str) -> bool:
        return self._awake.is_awake(endpoint)

    def subscribe(self) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """``async with server.subscribe() as events: await events.get()``."""
        return self._bus.subscribe()

    def events(self) -> AsyncIterator[Event]:
        return self._bus.events()

    @property
    def store(self) -> AsyncStore:
        if self._store is None:
            raise ServerError("server not started")
        return self._store

    # -- registration interface (called by fotakit.server.rd) -----------------------------

    async def _on_register(
        self, query: list[str], payload: bytes, host: str, port: int
    ) -> aiocoap.Message:
        params = parse_register(query, payload)
        if len(params.endpoint) > self.config.max_endpoint_length:
            raise BadRequest(
                f"endpoint name is {len(params.endpoint)} characters long, at most "
                f"{self.config.max_endpoint_length} accepted"
            )
        self._check_lifetime(params.lifetime)
        now = utcnow()
        async with self._locks.hold(params.endpoint):
            new_endpoint = params.endpoint not in self._regs
            if new_endpoint:
                if len(self._regs) + self._admitting >= self.config.max_registrations:
                    return self._registrations_full(params.endpoint)
                self._admitting += 1
            reg = Registration(
                registration_id=new_registration_id(),
                endpoint=params.endpoint,
                address=host,
                port=port,
                lifetime=params.lifetime,
                lwm2m_version=params.lwm2m_version,
                binding=params.binding,
                queue_mode=params.queue_mode,
                sms=params.sms,
                root_path=params.root_path,
                objects=tuple(params.objects),
                content_formats=frozenset(int(cf) for cf in params.content_formats),
                registered_at=now,
                last_update=now,
            )
            try:
                await self.store.upsert_registration(to_record(reg, self.node_id))
            finally:
                if new_endpoint:
                    self._admitting -= 1
            old = self._regs.get(reg.endpoint)
            if old is not None:
                self._by_id.pop(old.registration_id, None)
            self._regs[reg.endpoint] = reg
            self._by_id[reg.registration_id] = reg.endpoint
        if old is not None:
            # The store dropped its observations with it (ON DELETE CASCADE).
            self._drop_observations(old, "re-registered", delete=False)
        self._awake.heard_from(reg.endpoint)
        self._schedule_expiry(reg)
        if log.isEnabledFor(logging.INFO):
            log.info("registered %s", reg.summary())
        self._bus.publish(Registered(endpoint=reg.endpoint, registration=reg, replaced=old))
        self._kick(reg.endpoint)
        response = aiocoap.Message(code=aiocoap.CREATED)
        response.opt.location_path = ("rd", reg.registration_id)
        return response

    async def _on_update(
        self, registration_id: str, query: list[str], payload: bytes, host: str, port: int
    ) -> aiocoap.Message:
        endpoint = self._by_id.get(registration_id)
        if endpoint is None:
            raise NotFound(f"no registration {registration_id!r}")
        current = self._regs.get(endpoint)
        params = parse_update(
            query, payload, lwm2m_version=current.lwm2m_version if current else None
        )
        if params.lifetime is not None:
            self._check_lifetime(params.lifetime)
        now = utcnow()
        async with self._locks.hold(endpoint):
            previous = self._regs.get(endpoint)
            if previous is None or previous.registration_id != registration_id:
                raise NotFound(f"no registration {registration_id!r}")
            reg = previous.replace(
                address=host,
                port=port,
                last_update=now,
                lifetime=params.lifetime if params.lifetime is not None else previous.lifetime,
                binding=params.binding if params.binding is not None else previous.binding,
                queue_mode=(
                    params.queue_mode if params.queue_mode is not None else previous.queue_mode
                ),
                sms=params.sms if params.sms is not None else previous.sms,
                objects=tuple(params.objects) if params.objects is not None else previous.objects,
                root_path=(
                    params.root_path if params.root_path is not None else previous.root_path
                ),
                content_formats=(
                    frozenset(params.content_formats)
                    if params.content_formats is not None
                    else previous.content_formats
                ),
            )
            rec = to_record(reg)
            stored = await self.store.update_registration(
                registration_id,
                address=rec.address,
                port=rec.port,
                lifetime=rec.lifetime,
                binding=rec.binding,
                queue_mode=rec.queue_mode,
                sms=rec.sms,
                root_path=rec.root_path,
                object_links=rec.object_links,
                content_formats=rec.content_formats,
                last_update=rec.last_update,
                expires_at=rec.expires_at,
            )
            if stored is None:
                raise NotFound(f"no registration {registration_id!r}")
            self._regs[endpoint] = reg
        self._awake.heard_from(endpoint)
        self._schedule_expiry(reg)
        if log.isEnabledFor(logging.INFO):
            log.info("updated %s", reg.summary())
        self._bus.publish(Updated(endpoint=endpoint, registration=reg, previous=previous))
        self._reestablish_observations(reg)
        self._kick(endpoint)
        return aiocoap.Message(code=aiocoap.CHANGED)

    async def _on_deregister(self, registration_id: str) -> aiocoap.Message:
        reg = await self._remove(registration_id, None)
        if reg is None:
            raise NotFound(f"no registration {registration_id!r}")
        log.info("deregistered ep=%s id=%s", reg.endpoint, reg.registration_id)
        self._bus.publish(Deregistered(endpoint=reg.endpoint, registration=reg))
        return aiocoap.Message(code=aiocoap.DELETED)

    def _registrations_full(self, endpoint: str) -> aiocoap.Message:
        """5.03 with Max-Age (RFC 7252 §5.9.3.4) for a new endpoint beyond the cap, and a
        WARNING at most once a minute (a flood must not flood the log too)."""
        self._refused_full += 1
        now = time.monotonic()
        if now - self._full_warned_at >= 60.0:
            log.warning(
                "registration table full (%d of max %d): refused Register of ep=%s "
                "(%d refused since the last warning)",
                len(self._regs),
                self.config.max_registrations,
                endpoint[:64],
                self._refused_full,
            )
            self._full_warned_at = now
            self._refused_full = 0
        response = aiocoap.Message(
            code=aiocoap.SERVICE_UNAVAILABLE,
            payload=f"registration table full ({self.config.max_registrations})".encode(),
        )
        response.opt.max_age = self.config.registrations_full_max_age
        return response

    def _check_lifetime(self, lifetime: int) -> None:
        """Refuse an ``lt`` outside the configured bounds (4.00 naming the bound)."""
        low, high = self.config.min_lifetime, self.config.max_lifetime
        if lifetime < low:
            raise BadRequest(f"lifetime lt={lifetime} is below the minimum {low} s ({low}..{high})")
        if lifetime > high:
            raise BadRequest(
                f"lifetime lt={lifetime} is above the maximum {high} s ({low}..{high})"
            )

    def _remember_remote(self, host: str, port: int, remote: Any) -> None:
        """The aiocoap remote of a Register or Update from ``host``:``port``."""
        if len(self._remotes) > 2 * len(self._regs) + 1024:
            self._remotes.clear()  # bounded: stale addresses (rebooted devices) go
        self._remotes[(host, port)] = remote

    async def _remove(self, registration_id: str, due: float | None) -> Registration | None:
        """Drop a registration (and its observations and queue) from store and memory.

        With ``due`` set (expiry), nothing happens unless it is still due at that time.
        """
        endpoint = self._by_id.get(registration_id)
        if endpoint is None:
            return None
        async with self._locks.hold(endpoint):
            reg = self._regs.get(endpoint)
            if reg is None or reg.registration_id != registration_id:
                return None  # replaced or removed while this waited for the lock
            if due is not None and self._deadline(reg) > due:
                return None
            await self.store.delete_registration(registration_id)
            del self._by_id[registration_id]
            del self._regs[reg.endpoint]
            try:
                await self.store.clear_pending_requests(reg.endpoint)
            except StoreError:
                # Left-overs wait for a new registration of the endpoint; harmless.
                log.exception("could not clear queued requests of ep=%s", reg.endpoint)
        self._drop_observations(reg, "registration ended", delete=False)
        self._remotes.pop((reg.address, reg.port), None)
        self._awake.forget(reg.endpoint)
        for item in self._pending.drain(reg.endpoint):
            if item.future is not None and not item.future.done():
                item.future.set_exception(NotRegistered(reg.endpoint))
        return reg

    # -- expiry ---------------------------------------------------------------------------

    def _deadline(self, reg: Registration) -> float:
        expires = reg.expires_at
        if expires is None:
            return float("inf")
        return (expires + timedelta(seconds=self.config.expiry_grace)).timestamp()

    def _schedule_expiry(self, reg: Registration) -> None:
        deadline = self._deadline(reg)
        if deadline == float("inf"):
            return
        earliest = self._expiry_heap[0][0] if self._expiry_heap else float("inf")
        heapq.heappush(self._expiry_heap, (deadline, reg.registration_id))
        if deadline < earliest:
            self._expiry_wake.set()

    async def _expiry_loop(self) -> None:
        while True:
            now = time.time()
            while self._expiry_heap and self._expiry_heap[0][0] <= now:
                _, registration_id = heapq.heappop(self._expiry_heap)
                try:
                    reg = await self._remove(registration_id, now)
                except StoreError:
                    log.exception("expiring registration %s failed; retrying", registration_id)
                    heapq.heappush(self._expiry_heap, (now + 1.0, registration_id))
                    break
                if reg is not None:
                    log.info(
                        "expired ep=%s id=%s lt=%d", reg.endpoint, registration_id, reg.lifetime
                    )
                    self._bus.publish(Expired(endpoint=reg.endpoint, registration=reg))
            timeout = self._expiry_heap[0][0] - time.time() if self._expiry_heap else None
            self._expiry_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._expiry_wake.wait(), timeout)

    # -- device management (TS Core §6.3) -------------------------------------------------

    def _require(self, endpoint: str) -> Registration:
        reg = self._regs.get(endpoint)
        if reg is None:
            raise NotRegistered(endpoint)
        return reg

    def format_for(
        self, endpoint: str, path: Path | str, *, writing: bool = False
    ) -> ContentFormat:
        """The content format the server negotiates for ``path`` on this client."""
        return choose_format(
            self._require(endpoint), _as_path(path), self._registry, writing=writing
        )

    async def read(
        self,
        endpoint: str,
        path: Path | str,
        *,
        format: ContentFormat | None = None,
    ) -> Content:
        """Read (GET); the decoded content. Raises :class:`DeviceError` on 4.xx/5.xx."""
        reg = self._require(endpoint)
        p = _as_path(path)
        fmt = choose_format(reg, p, self._registry, explicit=format)
        spec = RequestSpec(operation="read", method="GET", path=p, accept=int(fmt))
        _, response = await self._request(reg, spec)
        retry = None if format is not None else fallback_format(reg, fmt, code_text(response.code))
        if retry is not None:
            fmt = retry
            spec = RequestSpec(operation="read", method="GET", path=p, accept=int(fmt))
            _, response = await self._request(reg, spec)
        self._check(response)
        return self._decode(response, p, fmt)

    async def read_value(self, endpoint: str, path: Path | str) -> Value:
        """Read one single resource (or resource instance) and return its value."""
        p = _as_path(path)
        if p.depth < 3:
            raise ValueError(f"{p} is not a resource")
        content = await self.read(endpoint, p)
        if p not in content:
            raise InvalidResponse(f"the answer to a Read of {p} holds no value for it")
        return content[p]

    async def write(
        self,
        endpoint: str,
        path: Path | str,
        content_or_value: Content | Value,
        *,
        replace: bool = True,
        format: ContentFormat | None = None,
    ) -> None:
        """Write: PUT (replace) or POST (partial update, object instances only)."""
        reg = self._require(endpoint)
        p = _as_path(path)
        if isinstance(content_or_value, dict):
            content: Content = content_or_value
        else:
            if p.depth < 3:
                raise ValueError(f"a single value needs a resource path, not {p}")
            content = {p: content_or_value}
        fmt: ContentFormat | None = choose_format(
            reg, p, self._registry, writing=True, explicit=format
        )
        while fmt is not None:
            spec = RequestSpec(
                operation="write" if replace else "write-partial",
                method="PUT" if replace else "POST",
                path=p,
                payload=codecs.encode(fmt, p, content, self._registry),
                content_format=int(fmt),
            )
            _, response = await self._request(reg, spec)
            fmt = (
                None if format is not None else fallback_format(reg, fmt, code_text(response.code))
            )
        self._check(response)

    async def execute(
        self,
        endpoint: str,
        path: Path | str,
        args: str | None = None,
    ) -> None:
        """Execute (POST on a resource), with optional arguments (TS Core §5.4.5)."""
        reg = self._require(endpoint)
        p = _as_path(path)
        if p.depth != 3:
            raise ValueError(f"Execute needs a resource path, not {p}")
        spec = RequestSpec(
            operation="execute", method="POST", path=p, payload=(args or "").encode("utf-8")
        )
        _, response = await self._request(reg, spec)
        self._check(response)

    async def discover(self, endpoint: str, path: Path | str) -> list[Link]:
        """Discover (GET with Accept: application/link-format)."""
        reg = self._require(endpoint)
        p = _as_path(path)
        spec = RequestSpec(
            operation="discover", method="GET", path=p, accept=int(ContentFormat.LINK)
        )
        _, response = await self._request(reg, spec)
        self._check(response)
        try:
            return parse_links(bytes(response.payload).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidResponse(f"Discover answer is not link-format: {exc}") from None

    async def write_attributes(
        self,
        endpoint: str,
        path: Path | str,
        attrs: NotificationAttributes,
    ) -> None:
        """Write-Attributes (PUT with the attributes as query parameters, no payload)."""
        reg = self._require(endpoint)
        p = _as_path(path)
        spec = RequestSpec(
            operation="write-attributes", method="PUT", path=p, query=tuple(attrs.to_query())
        )
        _, response = await self._request(reg, spec)
        self._check(response)

    async def create(
        self,
        endpoint: str,
        object_path: Path | str,
        content: Content,
        *,
        format: ContentFormat | None = None,
    ) -> Path:
        """Create (POST on an object); the new instance's path from Location-Path."""
        reg = self._require(endpoint)
        p = _as_path(object_path)
        if p.depth != 1:
            raise ValueError(f"Create needs an object path, not {p}")
        fmt = choose_format(reg, p, self._registry, writing=True, explicit=format)
        payload = codecs.encode(fmt, p, content, self._registry)
        spec = RequestSpec(
            operation="create", method="POST", path=p, payload=payload, content_format=int(fmt)
        )
        _, response = await self._request(reg, spec)
        self._check(response)
        location = tuple(response.opt.location_path)
        if location:
            try:
                return Path.from_segments(location)
            except InvalidPath as exc:
                raise InvalidResponse(f"Create answered Location-Path {location}: {exc}") from None
        instances = {q.ids[:2] for q in content if q.depth >= 2}
        if len(instances) == 1:
            return Path(*next(iter(instances)))
        raise InvalidResponse("Create answer has no Location-Path")

    async def delete(self, endpoint: str, path: Path | str) -> None:
        """Delete an object instance."""
        reg = self._require(endpoint)
        spec = RequestSpec(operation="delete", method="DELETE", path=_as_path(path))
        _, response = await self._request(reg, spec)
        self._check(response)

    # -- observe (TS Core §6.4) -----------------------------------------------------------

    async def observe(
        self,
        endpoint: str,
        path: Path | str,
        *,
        format: ContentFormat | None = None,
    ) -> Observation:
        """Observe ``path``; the first value is in ``obs.initial``.

        If the client answers without the Observe option (not observable), the returned
        observation has ended already and holds only ``initial``.
        """
        reg = self._require(endpoint)
        p = _as_path(path)
        fmt = choose_format(reg, p, self._registry, explicit=format)
        spec = RequestSpec(
            operation="observe",
            method="GET",
            path=p,
            accept=int(fmt),
            observation_id=new_observation_id(),
        )
        handle, response = await self._request(reg, spec)
        obs = await self._observation_answered(reg, spec, handle, response, persist=True)
        if isinstance(obs, BaseException):
            raise obs
        return obs

    async def cancel_observe(self, obs: Observation) -> None:
        """Cancel an observation (TS Core §6.4.5, RFC 7641 §3.6).

        Ended here first (a notification arriving from now on is answered with RST), then
        a GET with Observe=1 goes to the device under the observation's token, with the
        path and Accept of the registration; returns once the device answered it (or did
        not, within the request timeout: the RST still ends it at its next notification).
        """
        token = obs.token
        if not obs._end("cancelled"):
            return
        self._observations.pop(obs.id, None)
        with contextlib.suppress(StoreError):
            await self.store.delete_observation(obs.id)
        self._bus.publish(
            ObservationEnded(
                endpoint=obs.endpoint, observation_id=obs.id, path=obs.path, reason="cancelled"
            )
        )
        reg = self._regs.get(obs.endpoint)
        if reg is None or (reg.queue_mode and not self._awake.is_awake(reg.endpoint)):
            return
        if not token or reg.registration_id != obs.registration_id:
            return  # never established, or its registration (and the device's) is gone
        accept = int(obs.format) if obs.format is not None else None
        spec = RequestSpec(operation="cancel-observe", method="GET", path=obs.path, accept=accept)
        with contextlib.suppress(ServerError):
            await self._send(reg, spec, token=token)

    # -- request plumbing -----------------------------------------------------------------

    async def _request(self, reg: Registration, spec: RequestSpec) -> _Exchange:
        """Send now, or queue until a queue-mode client wakes up."""
        endpoint = reg.endpoint
        if reg.queue_mode and (
            not self._awake.is_awake(endpoint)
            or self._pending.count(endpoint)
            or endpoint in self._flushers
        ):
            return await self._enqueue_and_wait(reg, spec)
        return await self._send(reg, spec)

    async def _enqueue_and_wait(self, reg: Registration, spec: RequestSpec) -> _Exchange:
        """Queue for a sleeping client; wait as long as the caller does (its own timeout)."""
        rec = await self.store.enqueue_pending_request(
            reg.endpoint,
            spec.operation,
            str(spec.path),
            payload=spec.payload,
            content_format=spec.content_format,
            options=spec.options(),
        )
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        item = PendingRequest(spec, rec.id, future)
        self._pending.append(reg.endpoint, item)
        log.info(
            "queued %s %s for sleeping ep=%s (id=%d)",
            spec.operation,
            spec.path,
            reg.endpoint,
            rec.id,
        )
        self._bus.publish(
            RequestQueued(
                endpoint=reg.endpoint,
                request_id=rec.id,
                operation=spec.operation,
                path=spec.path,
            )
        )
        self._kick(reg.endpoint)
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            if self._pending.remove(reg.endpoint, item):
                # Withdrawn before it was sent (the caller gave up): it must not reach
                # the client later, so it leaves the database too.
                self._spawn(self._withdraw(rec.id))
            raise
        return cast(_Exchange, result)

    async def _withdraw(self, request_id: int) -> None:
        with contextlib.suppress(StoreError):
            await self.store.delete_pending_request(request_id)

    async def _send(
        self, reg: Registration, spec: RequestSpec, *, token: bytes | None = None
    ) -> _Exchange:
        """Send ``spec`` now; ``token``: under that token (only an observation's cancel)."""
        if self._ctx is None:
            raise ServerError("server not started")
        msg = spec.to_message(reg.uri_base, self._tuning)
        remote = self._remotes.get((reg.address, reg.port))
        if remote is not None:
            msg.remote = remote
        if spec.observe:
            self._prepare_observation(reg, spec)
        if token is not None:
            handle = send_observation_cancel(self._ctx, msg, token)
        else:
            handle = self._ctx.request(msg, handle_blockwise=not spec.observe)
        if spec.observe:
            self._attach_observation(spec, handle)
        limit = self.config.transport.request_timeout
        try:
            response = await asyncio.wait_for(handle.response, limit)
        except (TimeoutError, aiocoap.error.TimeoutError):
            self._request_failed(reg, spec)
            raise RequestTimeout(
                f"{spec.operation} {spec.path} on {reg.endpoint}: no answer within {limit}s"
            ) from None
        except aiocoap.error.NetworkError as exc:
            self._request_failed(reg, spec)
            raise DeviceUnreachable(f"{reg.endpoint} at {reg.hostinfo}: {exc}") from None
        self._awake.heard_from(reg.endpoint)
        return handle, response

    def _request_failed(self, reg: Registration, spec: RequestSpec) -> None:
        if reg.queue_mode:
            # It did not answer: it has gone back to sleep. Queue the rest.
            self._awake.fell_asleep(reg.endpoint)
        if spec.observation_id is not None:
            obs = self._observations.get(spec.observation_id)
            if obs is not None and not obs.token:
                self._observations.pop(spec.observation_id, None)
                obs._end("no answer")

    def _check(self, response: aiocoap.Message) -> None:
        if not response.code.is_successful():
            raise DeviceError(code_text(response.code), diagnostic(response))

    def _decode(self, response: aiocoap.Message, path: Path, requested: ContentFormat) -> Content:
        cf = response.opt.content_format
        try:
            fmt = ContentFormat(int(cf)) if cf is not None else requested
        except ValueError:
            raise InvalidResponse(f"unknown Content-Format {cf} in the answer") from None
        try:
            return codecs.decode(fmt, path, bytes(response.payload), self._registry)
        except CodecError as exc:
            raise InvalidResponse(f"undecodable {fmt.name} answer for {path}: {exc}") from None

    # -- queue mode -----------------------------------------------------------------------

    def _kick(self, endpoint: str) -> None:
        """Start sending queued requests if the client is awake and none is in flight."""
        if self._stopping or endpoint in self._flushers or not self._pending.count(endpoint):
            return
        if not self._awake.is_awake(endpoint):
            return
        task = asyncio.create_task(self._flush(endpoint), name=f"fotakit-flush-{endpoint}")
        self._flushers[endpoint] = task

        def done(_task: asyncio.Task[None]) -> None:
            if self._flushers.get(endpoint) is task:
                del self._flushers[endpoint]
                self._kick(endpoint)  # anything queued after the loop's last look

        task.add_done_callback(done)

    async def _flush(self, endpoint: str) -> None:
        while self._awake.is_awake(endpoint):
            reg = self._regs.get(endpoint)
            if reg is None:
                return
            item = self._pending.popleft(endpoint)
            if item is None:
                return
            if item.future is not None and item.future.done():
                continue
            if item.request_id is not None:
                try:
                    await self.store.delete_pending_request(item.request_id)
                except StoreError:
                    log.exception("could not dequeue request %s", item.request_id)
            try:
                exchange = await self._send(reg, item.spec)
            except ServerError as exc:
                self._deliver(reg, item, exc)
                continue
            self._deliver(reg, item, exchange)

    def _deliver(self, reg: Registration, item: PendingRequest, outcome: object) -> None:
        if item.future is not None:
            if not item.future.done():
                if isinstance(outcome, BaseException):
                    item.future.set_exception(outcome)
                else:
                    item.future.set_result(outcome)
            return
        self._spawn(self._complete_restored(reg, item, outcome))

    async def _complete_restored(
        self, reg: Registration, item: PendingRequest, outcome: object
    ) -> None:
        """Finish a request restored after a restart: its caller is gone, publish instead."""
        spec = item.spec
        code: str | None = None
        content: Content | None = None
        payload = b""
        error: str | None = None
        if isinstance(outcome, BaseException):
            error = str(outcome)
        else:
            handle: Any = outcome[0]  # type: ignore[index]
            response: aiocoap.Message = outcome[1]  # type: ignore[index]
            code = code_text(response.code)
            payload = bytes(response.payload)
            if spec.observe:
                result = await self._observation_answered(reg, spec, handle, response, persist=True)
                if isinstance(result, BaseException):
                    error = str(result)
            elif spec.operation == "read" and response.code.is_successful():
                try:
                    content = self._decode(response, spec.path, ContentFormat(spec.accept or 0))
                except (InvalidResponse, ValueError) as exc:
                    error = str(exc)
        log.info(
            "queued %s %s for ep=%s completed after restart: %s",
            spec.operation,
            spec.path,
            reg.endpoint,
            code or error,
        )
        self._bus.publish(
            QueuedRequestCompleted(
                endpoint=reg.endpoint,
                request_id=item.request_id or 0,
                operation=spec.operation,
                path=spec.path,
                code=code,
                content=content,
                payload=payload,
                error=error,
            )
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- observations ---------------------------------------------------------------------

    def _prepare_observation(self, reg: Registration, spec: RequestSpec) -> None:
        assert spec.observation_id is not None
        if spec.observation_id not in self._observations:
            fmt = ContentFormat(spec.accept) if spec.accept is not None else None
            self._observations[spec.observation_id] = Observation(
                id=spec.observation_id,
                endpoint=reg.endpoint,
                registration_id=reg.registration_id,
                path=spec.path,
                format=fmt,
            )

    def _attach_observation(self, spec: RequestSpec, handle: Any) -> None:
        obs_id = spec.observation_id
        assert obs_id is not None
        obs = self._observations[obs_id]
        obs._handle = handle

        # register_callback keeps every notification in order; the async iterator of
        # aiocoap's ClientObservation keeps only the latest one.
        def on_notification(message: aiocoap.Message) -> None:
            self._on_notification(obs_id, message)

        def on_error(exc: BaseException) -> None:
            self._on_observation_error(obs_id, exc)

        handle.observation.register_callback(on_notification, _suppress_deprecation=True)
        handle.observation.register_errback(on_error, _suppress_deprecation=True)

    async def _observation_answered(
        self,
        reg: Registration,
        spec: RequestSpec,
        handle: Any,
        response: aiocoap.Message,
        *,
        persist: bool,
    ) -> Observation | ServerError:
        """Turn the first answer to an Observe into a live observation (or an error)."""
        assert spec.observation_id is not None
        obs = self._observations.get(spec.observation_id)
        if obs is None:  # ended meanwhile (re-registered, cancelled)
            obs = Observation(
                id=spec.observation_id,
                endpoint=reg.endpoint,
                registration_id=reg.registration_id,
                path=spec.path,
                format=None,
            )
            obs._end("registration ended")
            return obs
        if not response.code.is_successful():
            self._observations.pop(obs.id, None)
            obs._end(code_text(response.code))
            return DeviceError(code_text(response.code), diagnostic(response))
        requested = obs.format or ContentFormat.TEXT
        try:
            obs.initial = self._decode(response, spec.path, requested)
        except InvalidResponse as exc:
            self._observations.pop(obs.id, None)
            obs._end("undecodable")
            return exc
        if response.opt.observe is None:
            self._observations.pop(obs.id, None)
            obs._end("not observable")
            return obs
        obs.token = bytes(response.token or b"") or b"\x00"
        if persist:
            try:
                existing = await self.store.get_observation(obs.id)
                if existing is None:
                    await self.store.add_observation(
                        ObservationRecord(
                            registration_id=obs.registration_id,
                            endpoint=obs.endpoint,
                            path=str(obs.path),
                            token=obs.token[:8],
                            created_at=utcnow(),
                            content_format=int(obs.format) if obs.format is not None else None,
                            observation_id=obs.id,
                        )
                    )
            except StoreError as exc:
                # The registration is gone (replaced meanwhile): so is the observation.
                self._observations.pop(obs.id, None)
                obs._end("registration ended")
                log.info("observation %s of ep=%s not kept: %s", obs.id, obs.endpoint, exc)
                return obs
        log.info("observing ep=%s path=%s id=%s", obs.endpoint, obs.path, obs.id)
        self._bus.publish(
            Notification(
                endpoint=obs.endpoint,
                observation_id=obs.id,
                path=obs.path,
                content=obs.initial,
                initial=True,
            )
        )
        return obs

    def _on_notification(self, obs_id: str, message: aiocoap.Message) -> None:
        obs = self._observations.get(obs_id)
        if obs is None or obs.ended:
            return
        self._awake.heard_from(obs.endpoint)
        self._kick(obs.endpoint)
        if not message.code.is_successful():
            self._end_observation(obs, code_text(message.code), delete=True)
            return
        try:
            content = self._decode(message, obs.path, obs.format or ContentFormat.TEXT)
        except InvalidResponse as exc:
            log.warning("dropping notification of ep=%s path=%s: %s", obs.endpoint, obs.path, exc)
            return
        notification = Notification(
            endpoint=obs.endpoint, observation_id=obs.id, path=obs.path, content=content
        )
        obs._push(notification)
        self._bus.publish(notification)

    def _on_observation_error(self, obs_id: str, exc: BaseException) -> None:
        obs = self._observations.get(obs_id)
        if obs is None or self._stopping or not obs.token:
            return  # not established yet: the first answer's handler decides
        reason = type(exc).__name__ if str(exc) == "" else str(exc)
        # aiocoap cancels the observation itself once its error callbacks return
        # (ClientObservation.error). Cancelling it here as well trips aiocoap's "cancelled
        # twice" assertion inside its dispatch_error loop, which then skips the other
        # exchanges with the same peer: after an ICMP port unreachable (a device that
        # rebooted onto a new port) they hung until their own timeouts.
        obs._handle = None
        self._end_observation(obs, reason, delete=True)

    def _end_observation(self, obs: Observation, reason: str, *, delete: bool) -> None:
        self._observations.pop(obs.id, None)
        if not obs._end(reason):
            return
        if delete:
            self._spawn(self._forget_observation(obs.id))
        self._bus.publish(
            ObservationEnded(
                endpoint=obs.endpoint, observation_id=obs.id, path=obs.path, reason=reason
            )
        )

    async def _forget_observation(self, obs_id: str) -> None:
        with contextlib.suppress(StoreError):
            await self.store.delete_observation(obs_id)

    def _drop_observations(self, reg: Registration, reason: str, *, delete: bool) -> None:
        self._dormant.pop(reg.registration_id, None)
        for obs in [
            o for o in self._observations.values() if o.registration_id == reg.registration_id
        ]:
            self._end_observation(obs, reason, delete=delete)

    def _reestablish_observations(self, reg: Registration) -> None:
        """After a restart: observe again what was observed, under the same IDs."""
        records = self._dormant.pop(reg.registration_id, None)
        if not records:
            return
        for rec in records:
            try:
                path = Path.parse(rec.path)
                fmt = ContentFormat(rec.content_format) if rec.content_format is not None else None
            except (InvalidPath, ValueError):
                self._spawn(self._forget_observation(rec.observation_id))
                continue
            spec = RequestSpec(
                operation="observe",
                method="GET",
                path=path,
                accept=int(fmt) if fmt is not None else None,
                observation_id=rec.observation_id,
            )
            log.info(
                "re-establishing observation id=%s ep=%s path=%s",
                rec.observation_id,
                reg.endpoint,
                path,
            )
            self._spawn(self._reobserve(reg, spec))

    async def _reobserve(self, reg: Registration, spec: RequestSpec) -> None:
        try:
            handle, response = await self._request(reg, spec)
        except ServerError as exc:
            log.warning("re-establishing observation %s failed: %s", spec.observation_id, exc)
            # Keep it persisted: it is tried again on the client's next Update.
            if reg.registration_id in self._by_id:
                rec = await self.store.get_observation(spec.observation_id or "")
                if rec is not None:
                    self._dormant.setdefault(reg.registration_id, []).append(rec)
            return
        result = await self._observation_answered(reg, spec, handle, response, persist=True)
        if isinstance(result, BaseException) or result.ended:
            await self._forget_observation(spec.observation_id or "")


#: receive buffer asked for the LwM2M socket (the kernel caps it at net.core.rmem_max)
RECEIVE_BUFFER = 4 * 1024 * 1024


def _widen_receive_buffer(ctx: aiocoap.Context) -> None:
    """Let the LwM2M socket hold a registration storm's datagrams (about 4 s at 1000
    Registers/s) while the loop is busy, instead of dropping them at the default of a
    few hundred: each drop costs the device an RFC 7252 retransmission 2-3 s later (and
    the server the work twice). Best effort: a smaller buffer is not an error."""
    for iface in ctx.request_interfaces:
        message_interface = iface.token_interface.message_interface
        transport = getattr(message_interface, "transport", None)
        sock = None if transport is None else transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
