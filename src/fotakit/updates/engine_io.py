"""The update engine's I/O adapter: the few LwM2M operations a job needs, on a live server.

Every operation goes through :class:`fotakit.server.LwM2MServer` (so queue mode, format
negotiation and the registry apply) and ends in an :class:`Outcome`: ``ok``, and a short
``code`` for the per-device event log — the CoAP response code of the answer (``"2.04"``,
``"4.05"``), or one of ``timeout``, ``unreachable``, ``not_registered``, ``invalid``,
``superseded``.

Operations on one device run one at a time. A device that registers anew (a reboot)
usually comes back from another port: a request still waiting for an answer at the old
address would hold the device's turn until its timeout (a minute by default) while the
job waits to judge the reboot. :meth:`DeviceIO.superseded` abandons such a request at once
(``superseded``), and the job's next operations go to the new registration.
Nothing here raises for a device-side failure: the job decides what a failure means.

Facts are read with three requests (TS Core §6.3.1 Read of an object instance): ``/5/0``
(State, Update Result, PkgVersion, Protocol Support, Delivery Method, Severity, defer,
auto-upgrade), ``/3/0/3`` (Firmware Version) and ``/4/0`` (bearer, RSSI, link quality).
A missing Object 4 (4.04) is not an error: the device simply reports no radio figures.

Why a device's update failed is read from its private object /33600/0 "fotakit Update
Diagnostics" (docs/agent-guide.md): :meth:`DeviceIO.read_failure_text`. Devices without
that object (any other LwM2M client) answer 4.04, which is not an error either.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from fotakit.lwm2m.model import Content, Value
from fotakit.lwm2m.objects.paths import (
    CONNECTIVITY_LINK_QUALITY,
    CONNECTIVITY_NETWORK_BEARER,
    CONNECTIVITY_RADIO_SIGNAL_STRENGTH,
    DEVICE_FIRMWARE_VERSION,
    DIAGNOSTICS_LAST_FAILURE_TEXT,
    FIRMWARE_AUTOMATIC_UPGRADE,
    FIRMWARE_CANCEL,
    FIRMWARE_DELIVERY_METHOD,
    FIRMWARE_INSTANCE,
    FIRMWARE_MAXIMUM_DEFER_PERIOD,
    FIRMWARE_PACKAGE,
    FIRMWARE_PACKAGE_URI,
    FIRMWARE_PKG_VERSION,
    FIRMWARE_PROTOCOL_SUPPORT,
    FIRMWARE_SEVERITY,
    FIRMWARE_STATE,
    FIRMWARE_UPDATE_RESULT,
)
from fotakit.lwm2m.path import Path
from fotakit.server import (
    DeviceError,
    DeviceUnreachable,
    InvalidResponse,
    LwM2MServer,
    NotRegistered,
    Observation,
    RequestTimeout,
    ServerError,
)
from fotakit.updates.delivery import DeviceFacts, RadioFigures


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one operation ended: ``ok`` and a code for the event log."""

    ok: bool
    code: str
    elapsed: float = 0.0
    value: Any = None


@dataclass(slots=True)
class FactsRead:
    """The outcome of one facts read: the facts, and the code of each request."""

    facts: DeviceFacts
    codes: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Object 5 State and Update Result were read."""
        return self.facts.fw_state is not None and self.facts.fw_result is not None

    @property
    def reachable(self) -> bool:
        return not any(
            c in ("timeout", "unreachable", "not_registered", "superseded")
            for c in self.codes.values()
        )


def _code(exc: BaseException) -> str:
    if isinstance(exc, DeviceError):
        return exc.code
    if isinstance(exc, RequestTimeout | TimeoutError):
        return "timeout"
    if isinstance(exc, DeviceUnreachable):
        return "unreachable"
    if isinstance(exc, NotRegistered):
        return "not_registered"
    if isinstance(exc, InvalidResponse):
        return "invalid"
    return type(exc).__name__


def _int(value: Value | None) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    return None


def _str(value: Value | None) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None


def _instances(content: Content, resource: Path) -> tuple[int, ...]:
    """Values of a multiple-instance resource (or a single value) as ints."""
    out: list[int] = []
    for path, value in sorted(content.items(), key=lambda kv: kv[0].ids):
        if path.ids[:3] == resource.ids[:3] and isinstance(value, int):
            out.append(int(value))
    return tuple(out)


class DeviceIO:
    """The engine's operations on one server; each returns an :class:`Outcome`."""

    def __init__(self, server: LwM2MServer) -> None:
        self.server = server
        self._locks: dict[str, asyncio.Lock] = {}
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._dropped: set[asyncio.Future[Any]] = set()

    def _lock(self, endpoint: str) -> asyncio.Lock:
        lock = self._locks.get(endpoint)
        if lock is None:
            lock = self._locks[endpoint] = asyncio.Lock()
        return lock

    def superseded(self, endpoint: str) -> bool:
        """The device registered anew: abandon the operation in flight to its previous
        registration (it ends ``superseded``); True if there was one."""
        inner = self._inflight.pop(endpoint, None)
        if inner is None or inner.done():
            return False
        self._dropped.add(inner)
        inner.cancel()
        return True

    def forget(self, endpoint: str) -> None:
        """Drop the endpoint's lock (no job for it any more)."""
        lock = self._locks.get(endpoint)
        if lock is not None and not lock.locked():
            del self._locks[endpoint]

    async def _run(self, coro: Any, timeout: float, endpoint: str = "") -> Outcome:  # noqa: ASYNC109
        """One operation, bounded by ``timeout``; operations on one device run one at a
        time (NSTART 1, RFC 7252 §4.7: a constrained device serves one exchange at a time,
        and aiocoap's message layer loses exchanges when a server overlaps many)."""
        start = time.monotonic()
        started = False
        inner: asyncio.Future[Any] | None = None
        try:
            async with asyncio.timeout(timeout), self._lock(endpoint):
                op = inner = asyncio.ensure_future(coro)
                started = True
                if endpoint:
                    self._inflight[endpoint] = op
                try:
                    value = await op
                finally:
                    if self._inflight.get(endpoint) is op:
                        del self._inflight[endpoint]
                    if not op.done():
                        op.cancel()
        except asyncio.CancelledError:
            if not started:
                coro.close()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled
            if inner is not None and inner in self._dropped:
                # superseded() cancelled it: the device registered anew meanwhile
                self._dropped.discard(inner)
                return Outcome(False, "superseded", time.monotonic() - start, "re-registered")
            # aiocoap cancelled the exchange's future (an internal error of its message
            # layer): the request is lost, which for the job is an unanswered request
            return Outcome(False, "unreachable", time.monotonic() - start, "exchange dropped")
        except (ServerError, TimeoutError) as exc:
            if not started:
                coro.close()
            return Outcome(False, _code(exc), time.monotonic() - start)
        except OSError as exc:
            # aiocoap lets an ICMP error through unwrapped (e.g. ConnectionRefusedError
            # from the port a rebooting device just closed): the device is unreachable
            return Outcome(False, "unreachable", time.monotonic() - start, str(exc))
        except (ValueError, KeyError) as exc:
            return Outcome(False, f"invalid: {exc}", time.monotonic() - start)
        except Exception as exc:
            # a transport library's internal error (aiocoap raises AssertionError from its
            # observation bookkeeping under load): the exchange is lost, not answered
            return Outcome(False, "unreachable", time.monotonic() - start, repr(exc))
        self._dropped.discard(inner)  # superseded() raced with the answer: it won
        return Outcome(True, "ok", time.monotonic() - start, value)

    def announces(self, endpoint: str, object_id: int) -> bool:
        """Whether the device's registration links name object ``object_id`` (TS Core
        6.2.1: a client registers the objects and instances it has)."""
        reg = self.server.get(endpoint)
        return reg is not None and object_id in reg.object_ids()

    def registration_facts(self, endpoint: str) -> DeviceFacts:
        """What the registration says (LwM2M version, queue mode, lifetime)."""
        reg = self.server.get(endpoint)
        if reg is None:
            return DeviceFacts(endpoint=endpoint)
        return DeviceFacts(
            endpoint=endpoint,
            lwm2m_version=str(reg.lwm2m_version),
            queue_mode=bool(reg.queue_mode),
            lifetime_s=int(reg.lifetime),
        )

    async def read_facts(
        self,
        endpoint: str,
        timeout: float,  # noqa: ASYNC109
        paths: tuple[str, ...] = ("/5/0", "/3/0/3", "/4/0"),
    ) -> FactsRead:
        """Read what ``paths`` ask for with as few requests as possible: any /5/0/x by one
        Read of the instance /5/0, /3/0/3 alone, /4/x by one Read of /4/0 (a queue-mode
        device answers them at its next Update). Fields not read stay None."""
        want_fw = any(p.startswith("/5") for p in paths)
        want_version = any(p.startswith("/3") for p in paths)
        want_radio = any(p.startswith("/4") for p in paths)
        codes: dict[str, str] = {}
        values: dict[str, Any] = {}
        rtts: list[float] = []
        lost = ("not_registered", "unreachable", "timeout", "superseded")
        if want_fw:
            fw = await self._run(self.server.read(endpoint, FIRMWARE_INSTANCE), timeout, endpoint)
            codes["/5/0"] = "2.05" if fw.ok else fw.code
            if fw.ok:
                content: Content = fw.value
                rtts.append(fw.elapsed)
                auto = content.get(FIRMWARE_AUTOMATIC_UPGRADE)
                protocols = _instances(content, FIRMWARE_PROTOCOL_SUPPORT)
                values.update(
                    fw_state=_int(content.get(FIRMWARE_STATE)),
                    fw_result=_int(content.get(FIRMWARE_UPDATE_RESULT)),
                    pkg_version=_str(content.get(FIRMWARE_PKG_VERSION)),
                    protocols=protocols if protocols else None,
                    delivery_method=_int(content.get(FIRMWARE_DELIVERY_METHOD)),
                    severity=_int(content.get(FIRMWARE_SEVERITY)),
                    max_defer_s=_int(content.get(FIRMWARE_MAXIMUM_DEFER_PERIOD)),
                    auto_upgrade=bool(auto) if isinstance(auto, bool | int) else None,
                )
            elif fw.code in lost:
                return FactsRead(self.registration_facts(endpoint), codes)
        if want_version:
            version = await self._run(
                self.server.read_value(endpoint, DEVICE_FIRMWARE_VERSION), timeout, endpoint
            )
            codes["/3/0/3"] = "2.05" if version.ok else version.code
            if version.ok:
                values["firmware_version"] = _str(version.value)
                rtts.append(version.elapsed)
            elif version.code in lost:
                return FactsRead(self.registration_facts(endpoint), codes)
        if want_radio:
            radio = await self._run(self.server.read(endpoint, "/4/0"), timeout, endpoint)
            codes["/4/0"] = "2.05" if radio.ok else radio.code
            if radio.ok:
                rc: Content = radio.value
                values["radio"] = RadioFigures(
                    bearer=_int(rc.get(CONNECTIVITY_NETWORK_BEARER)),
                    rssi_dbm=_int(rc.get(CONNECTIVITY_RADIO_SIGNAL_STRENGTH)),
                    link_quality=_int(rc.get(CONNECTIVITY_LINK_QUALITY)),
                )
        reg = self.server.get(endpoint)
        if rtts and not (reg is not None and reg.queue_mode):
            values["rtt_s"] = min(rtts)  # a queued request's wait is not a round trip
        facts = self.registration_facts(endpoint).merged(DeviceFacts(endpoint=endpoint, **values))
        return FactsRead(facts, codes)

    async def read_failure_text(self, endpoint: str, timeout: float) -> str | None:  # noqa: ASYNC109
        """Why the device's last update attempt failed, in its own words (/33600/0/0).

        None when there is nothing to say: the device has no such object (4.04, or any
        other error answer), has recorded no failure yet (empty text), or did not answer
        within ``timeout``. Never raises for a device-side problem.
        """
        outcome = await self._run(
            self.server.read_value(endpoint, DIAGNOSTICS_LAST_FAILURE_TEXT), timeout, endpoint
        )
        if not outcome.ok:
            return None
        return _str(outcome.value) or None

    async def observe(self, endpoint: str, path: Path, timeout: float) -> Outcome:  # noqa: ASYNC109
        """Observe ``path``; the outcome's value is the :class:`Observation`."""
        return await self._run(self.server.observe(endpoint, path), timeout, endpoint)

    async def cancel_observation(self, obs: Observation) -> None:
        await self._run(self.server.cancel_observe(obs), 5.0, obs.endpoint)

    async def write_uri(self, endpoint: str, uri: str, timeout: float) -> Outcome:  # noqa: ASYNC109
        """Write /5/0/1 Package URI (an empty URI resets the state machine, TS E.6)."""
        return await self._run(
            self.server.write(endpoint, FIRMWARE_PACKAGE_URI, uri), timeout, endpoint
        )

    async def push(self, endpoint: str, data: bytes, timeout: float) -> Outcome:  # noqa: ASYNC109
        """Write /5/0/0 Package: aiocoap does the Block1 transfer (RFC 7959)."""
        return await self._run(
            self.server.write(endpoint, FIRMWARE_PACKAGE, data), timeout, endpoint
        )

    async def execute(self, endpoint: str, path: Path | str, timeout: float) -> Outcome:  # noqa: ASYNC109
        return await self._run(self.server.execute(endpoint, path), timeout, endpoint)

    async def cancel(self, endpoint: str, method: str, timeout: float) -> Outcome:  # noqa: ASYNC109
        """Cancel the update on the device: ``execute`` /5/0/10 (Object 5 v1.1, LwM2M
        1.1+), or ``reset`` by an empty /5/0/1 (1.0 clients)."""
        if method == "execute":
            return await self.execute(endpoint, FIRMWARE_CANCEL, timeout)
        return await self.write_uri(endpoint, "", timeout)

    async def write_resource(
        self,
        endpoint: str,
        path: str,
        value: Value,
        timeout: float,  # noqa: ASYNC109
    ) -> Outcome:
        return await self._run(self.server.write(endpoint, path, value), timeout, endpoint)
