"""What the server knows about each device, for campaign targets: :class:`DeviceInventory`.

Campaigns select devices by class, exact current firmware version and tags
(:class:`~fotakit.updates.targets.TargetSpec`), and maintenance windows need each device's
time zone. This module keeps a :class:`~fotakit.updates.targets.DeviceView` per endpoint
in memory, filled from the devices themselves::

    inventory = DeviceInventory(server)
    await inventory.start()          # subscribes, then reads every registered device
    view = inventory("dev-17")       # sync: the engine's Inventory protocol
    await inventory.refresh("dev-17")
    await inventory.set_tags("dev-17", {"beta"})
    await inventory.stop()

Where each field comes from:

* ``class_name``: /3/0/1 Model Number; ``firmware_version``: /3/0/3 Firmware Version;
  ``tz``: /3/0/15 Timezone when it is a valid IANA zone name (else None, so the campaign's
  default zone applies). All read with one Read of /3/0 (TS Core 1.1.1 E.4) on every
  Register and, at :meth:`DeviceInventory.start`, for the registrations already present.
  An Update re-reads only /3/0/3 (a job's reboot may end in an Update rather than a
  Register). Manufacturer (/3/0/0) is read but not a view field: it is no vendor ID.
* ``vendor_id`` / ``class_id`` stay None: a device does not tell the SUIT UUIDs of its
  package manifest, and they are not derived from free text here.
* ``tags``: the ``"tags"`` list of the device's attributes in the server store
  (:meth:`fotakit.store.AsyncStore.set_device_attributes`), set by :meth:`set_tags`.

Bounds and failures: at most one read is in flight per device (and at most
``max_concurrent_reads`` over all devices); requests that arrive
meanwhile coalesce into one follow-up read. The reads a Register or Update triggers (and
those of :meth:`DeviceInventory.start`) are paced, in the order they were wanted: at most
``read_rate`` start per second (after a burst of ``read_burst``), and only
``storm_read_rate`` while Registers and Updates arrive faster than ``read_rate`` (their
rate estimated over about a second). So a registration storm — a fleet coming back after
an outage — is answered first and read afterwards, not turned into a storm of reads and
database writes competing with the Registers' answers (docs/benchmarks.md, B1). A read
someone waits for (:meth:`DeviceInventory.refresh`) is not paced. A read that fails
(4.xx/5.xx, timeout, unreachable, undecodable, de-registered meanwhile) keeps the last
known view; a device never read successfully is known by its endpoint only. Views are
kept after a device de-registers (its last known state; campaigns only consider
registered devices).

Persistence (given a ``store``, as :class:`~fotakit.updates.service.UpdateService` does):
every successful read is written to the ``device_inventory`` table (class, model,
manufacturer, version, zone, the resources read, when), and :meth:`DeviceInventory.start`
loads that table before reading anything. So after a restart a device whose read fails
still has its last known class and version (and class-targeted campaigns include it), and
a device this process has no view of (registered with another process sharing the
database) is looked up in the table on first use.

Limits: the tags of a device known only from the table come with its next full read (they
live in the device's store attributes). A view this process holds is not re-read from the
table when another process writes a newer one; the next read of the device here does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from fotakit.lwm2m.model import Content, Value
from fotakit.lwm2m.path import Path
from fotakit.server import LwM2MServer, Registered, ServerError, Updated
from fotakit.store import StoreError
from fotakit.store.records import JsonValue
from fotakit.updates.store import InventoryRecord, UpdateStore
from fotakit.updates.targets import DeviceView
from fotakit.updates.windows import UnknownTimeZone, resolve_zone

__all__ = ["TAGS_ATTRIBUTE", "DeviceInventory", "view_from_device_object"]

log = logging.getLogger("fotakit.updates.inventory")

TAGS_ATTRIBUTE = "tags"
"""The key of a device's tags (a list of strings) in its store attributes."""

DEVICE = Path(3, 0)
MANUFACTURER = Path(3, 0, 0)
MODEL_NUMBER = Path(3, 0, 1)
FIRMWARE_VERSION = Path(3, 0, 3)
TIMEZONE = Path(3, 0, 15)

ViewListener = Callable[[DeviceView], object]


def _text(value: Value | None) -> str | None:
    """A non-empty string resource value, stripped; None otherwise."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _zone(value: Value | None) -> str | None:
    name = _text(value)
    if name is None:
        return None
    try:
        resolve_zone(name)
    except UnknownTimeZone:
        return None
    return name


def view_from_device_object(base: DeviceView, content: Content) -> DeviceView:
    """``base`` with what a Read of /3/0 (or one of its resources) says.

    Resources absent from ``content`` keep their value in ``base``; present but empty or
    non-string ones become None (a device that reports no model has no class name).
    """
    changes: dict[str, Any] = {}
    if MODEL_NUMBER in content:
        changes["class_name"] = _text(content[MODEL_NUMBER])
    if FIRMWARE_VERSION in content:
        changes["firmware_version"] = _text(content[FIRMWARE_VERSION])
    if TIMEZONE in content:
        changes["tz"] = _zone(content[TIMEZONE])
    return dataclasses.replace(base, **changes) if changes else base


def view_from_record(rec: InventoryRecord) -> DeviceView:
    """The view a stored inventory row describes (tags are not stored there)."""
    return DeviceView(
        endpoint=rec.endpoint,
        class_name=rec.class_name,
        firmware_version=rec.firmware_version,
        tz=rec.tz,
    )


def _json_value(value: Value) -> JsonValue:
    """A resource value as JSON (opaque bytes as hex, anything else as its text)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return str(value)


def _tags_of(attributes: Mapping[str, Any]) -> frozenset[str] | None:
    raw = attributes.get(TAGS_ATTRIBUTE)
    if not isinstance(raw, list):
        return None
    return frozenset(t for t in raw if isinstance(t, str) and t)


@dataclass
class _Slot:
    """One device's read worker: the task and who waits for the next read."""

    task: asyncio.Task[None] | None = None
    full: bool = False
    urgent: bool = False  # someone waits for this read: not paced
    waiters: list[asyncio.Future[DeviceView]] = field(default_factory=list)


class DeviceInventory:
    """Device class, firmware version, tags and zone per endpoint (module docstring)."""

    def __init__(
        self,
        server: LwM2MServer,
        *,
        read_timeout: float = 30.0,
        read_on_update: bool = True,
        max_concurrent_reads: int = 64,
        read_rate: float = 100.0,
        read_burst: int = 50,
        storm_read_rate: float = 5.0,
        busy: Callable[[str], bool] | None = None,
        store: UpdateStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``read_timeout``: bound on one Read (queue-mode waits included).
        ``read_on_update``: re-read /3/0/3 on each registration Update.
        ``max_concurrent_reads``: reads in flight over all devices (a fleet registering at
        once, or :meth:`start` on a server with many registrations). ``read_rate``,
        ``read_burst``: reads started per second (and at once) for Register/Update
        events and at start; ``storm_read_rate``: per second during a registration storm
        (module docstring). ``busy``: devices
        not to read on their Register/Update events (an update job is talking to them:
        no requests of ours in between); whoever says so calls :meth:`refresh_soon`
        when they are free again. ``store``: where each successful read is kept and
        views are found after a restart or from other processes (module docstring);
        None keeps everything in memory."""
        self.server = server
        self.read_timeout = read_timeout
        self.read_on_update = read_on_update
        self.busy: Callable[[str], bool] = busy or (lambda _ep: False)
        self.store = store
        self.clock = clock
        self._facts: dict[str, dict[str, JsonValue]] = {}
        self._views: dict[str, DeviceView] = {}
        self._slots: dict[str, _Slot] = {}
        self._listeners: list[ViewListener] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._limit = asyncio.Semaphore(max(1, max_concurrent_reads))
        if read_rate <= 0 or storm_read_rate <= 0 or read_burst < 1:
            raise ValueError("read_rate and storm_read_rate must be > 0 and read_burst >= 1")
        self._read_rate = read_rate
        self._storm_read_rate = storm_read_rate
        self._read_burst = read_burst
        self._tokens = float(read_burst)  # token bucket of the paced reads
        self._tokens_at = 0.0
        self._arrivals = 0.0  # Registers and Updates, decayed with a 1 s time constant
        self._arrival_at = 0.0
        self._paced: collections.deque[asyncio.Future[None]] = collections.deque()
        self._pace_wake = asyncio.Event()
        self._pacer: asyncio.Task[None] | None = None
        self.reads = 0
        """Reads sent (for tests and metrics)."""
        self.failed_reads = 0

    # -- the engine's Inventory protocol ----------------------------------------------------

    def __call__(self, endpoint: str) -> DeviceView:
        """The last known view of ``endpoint`` (endpoint only when nothing is known).

        Without a view here, the stored one is looked up (one indexed read of the
        database, synchronous: the Inventory protocol is) and kept.
        """
        view = self._views.get(endpoint)
        if view is None:
            view = self._stored(endpoint)
        return view if view is not None else DeviceView(endpoint=endpoint)

    def _stored(self, endpoint: str) -> DeviceView | None:
        if self.store is None:
            return None
        try:
            rec = self.store.get_inventory(endpoint)
        except StoreError as exc:
            log.info("inventory: stored view of %s not read: %s", endpoint, exc)
            return None
        if rec is None:
            return None
        view = view_from_record(rec)
        self._views.setdefault(endpoint, view)
        self._facts.setdefault(endpoint, dict(rec.facts))
        return self._views[endpoint]

    async def current(self, endpoints: Iterable[str]) -> dict[str, DeviceView]:
        """The freshest view of each of ``endpoints`` any node has (by endpoint).

        A device registered here: this process's view (it reads the device itself).
        Any other: the stored row its own node wrote, read now (and kept here, so
        ``self(endpoint)`` is as fresh). Tags: the device's stored attributes, set
        through whichever node. Two queries (inventory rows, devices), whatever the
        number of endpoints. See :mod:`fotakit.updates.fleet`.
        """
        from fotakit.updates.fleet import with_tags  # (fleet imports this module)

        wanted = sorted(set(endpoints))
        stored: dict[str, InventoryRecord] = {}
        if self.store is not None:
            try:
                records = await asyncio.to_thread(self.store.list_inventory)
                stored = {rec.endpoint: rec for rec in records}
            except StoreError as exc:
                log.warning("inventory: stored views not read: %s", exc)
        attributes: dict[str, Any] = {}
        try:
            attributes = {d.endpoint: d.attributes for d in await self.server.store.list_devices()}
        except (StoreError, ServerError) as exc:
            log.warning("inventory: device tags not read: %s", exc)
        here = self.server.registrations
        out: dict[str, DeviceView] = {}
        for ep in wanted:
            view = self._views.get(ep) if ep in here else None
            if view is None and ep in stored:
                view = view_from_record(stored[ep])
                self._views[ep] = view
                self._facts[ep] = dict(stored[ep].facts)
            if view is None:
                view = self._views.get(ep) or DeviceView(endpoint=ep)
            out[ep] = with_tags(view, attributes.get(ep))
        return out

    @property
    def views(self) -> Mapping[str, DeviceView]:
        """Every known view by endpoint (a read-only live mapping)."""
        return MappingProxyType(self._views)

    def add_listener(self, listener: ViewListener) -> None:
        """``listener(view)`` after each completed refresh (changed or not); must not block."""
        self._listeners.append(listener)

    def remove_listener(self, listener: ViewListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the server's events, then read every device registered now.

        Returns once subscribed; the reads run in the background (await :meth:`settled`).
        """
        if self._task is not None:
            return
        await self._load()
        self._subscribed.clear()
        self._task = asyncio.get_running_loop().create_task(
            self._events(), name="fotakit-inventory-events"
        )
        await asyncio.wait_for(self._subscribed.wait(), 10)
        self._pacer = asyncio.get_running_loop().create_task(
            self._pace_reads(), name="fotakit-inventory-pacer"
        )
        for endpoint in list(self.server.registrations):
            self._request(endpoint, full=True, paced=True)

    async def _load(self) -> None:
        """The stored views, under any this process has read already."""
        if self.store is None:
            return
        try:
            records = await asyncio.to_thread(self.store.list_inventory)
        except StoreError as exc:
            log.warning("inventory: stored views not loaded: %s", exc)
            return
        for rec in records:
            self._views.setdefault(rec.endpoint, view_from_record(rec))
            self._facts.setdefault(rec.endpoint, dict(rec.facts))
        log.info("inventory: %d stored device views loaded", len(records))

    async def stop(self) -> None:
        """Unsubscribe and cancel reads in flight; the views are kept."""
        task, self._task = self._task, None
        pacer, self._pacer = self._pacer, None
        tasks = [t for t in (task, pacer, *(s.task for s in self._slots.values())) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for slot in self._slots.values():
            for w in slot.waiters:
                if not w.done():
                    w.cancel()
        self._slots.clear()
        self._paced.clear()  # their readers were cancelled above

    async def __aenter__(self) -> DeviceInventory:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def settled(self) -> None:
        """Until no read is in flight or wanted (for tests and start-up)."""
        while True:
            pending = [s.task for s in self._slots.values() if s.task is not None]
            if not pending:
                return
            await asyncio.wait(pending)  # (cancelling this wait leaves the reads running)

    # -- operations ---------------------------------------------------------------------------

    async def refresh(self, endpoint: str) -> DeviceView:
        """Read /3/0 and the stored tags now (joined to a read already in flight by a
        follow-up read); the resulting view, which is the last known one on failure."""
        return await self._request(endpoint, full=True, paced=False)

    def refresh_soon(self, endpoint: str) -> None:
        """Like :meth:`refresh`, in the background (from sync code, e.g. a job's end)."""
        self._request(endpoint, full=True)

    async def set_tags(self, endpoint: str, tags: Iterable[str]) -> DeviceView:
        """Replace the device's tags, persisted in its store attributes (other attributes
        kept). :class:`LookupError` if the store never saw the device."""
        wanted = sorted({_check_tag(t) for t in tags})
        record = await self.server.store.get_device(endpoint)
        if record is None:
            raise LookupError(f"no device {endpoint!r} in the store")
        attributes = dict(record.attributes)
        attributes[TAGS_ATTRIBUTE] = list(wanted)
        if await self.server.store.set_device_attributes(endpoint, attributes) is None:
            raise LookupError(f"no device {endpoint!r} in the store")
        view = dataclasses.replace(self(endpoint), tags=frozenset(wanted))
        self._set(view)
        return view

    # -- events -------------------------------------------------------------------------------

    async def _events(self) -> None:
        async with self.server.subscribe() as sub:
            self._subscribed.set()
            async for event in sub:
                try:
                    if isinstance(event, Registered | Updated) and self.busy(event.endpoint):
                        continue
                except Exception:
                    log.exception("inventory: busy(%r) failed", event.endpoint)
                if isinstance(event, Registered | Updated):
                    self._note_arrival()
                if isinstance(event, Registered):
                    self._request(event.endpoint, full=True, paced=True)
                elif isinstance(event, Updated) and self.read_on_update:
                    self._request(event.endpoint, full=False, paced=True)

    # -- reads --------------------------------------------------------------------------------

    def _request(
        self, endpoint: str, *, full: bool, paced: bool = False
    ) -> asyncio.Future[DeviceView]:
        """Want a read of ``endpoint``: joins the next read (one in flight per device);
        ``paced``: it waits for its slot at ``read_rate`` (unless someone waits for it)."""
        slot = self._slots.setdefault(endpoint, _Slot())
        slot.full = slot.full or full
        slot.urgent = slot.urgent or not paced
        future: asyncio.Future[DeviceView] = asyncio.get_running_loop().create_future()
        slot.waiters.append(future)
        if slot.task is None:
            slot.task = asyncio.get_running_loop().create_task(
                self._work(endpoint, slot), name=f"fotakit-inventory-{endpoint}"
            )
        return future

    async def _work(self, endpoint: str, slot: _Slot) -> None:
        try:
            while slot.waiters:
                if not slot.urgent:
                    await self._pace()
                waiters, slot.waiters = slot.waiters, []
                full, slot.full = slot.full, False
                slot.urgent = False
                view = await self._read(endpoint, full=full)
                for w in waiters:
                    if not w.done():
                        w.set_result(view)
        finally:
            slot.task = None
            if self._slots.get(endpoint) is slot and not slot.waiters:
                del self._slots[endpoint]

    def _note_arrival(self) -> None:
        now = asyncio.get_running_loop().time()
        self._arrivals = self._arrivals * math.exp(self._arrival_at - now) + 1.0
        self._arrival_at = now

    def _storming(self, now: float) -> bool:
        """Registers/Updates arrive faster than reads would (≈ the last second's count)."""
        return self._arrivals * math.exp(self._arrival_at - now) > self._read_rate

    async def _pace(self) -> None:
        """Wait for this read's turn (first wanted, first read) from the pacer."""
        if self._pacer is None:  # not started: nothing to pace against
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._paced.append(turn)
        self._pace_wake.set()
        await turn

    async def _pace_reads(self) -> None:
        """Grant the paced reads their turns: a token bucket of ``read_burst`` filling at
        ``read_rate`` per second, or ``storm_read_rate`` during a registration storm (the
        rate is re-decided at every turn, so reads speed up as soon as the storm ends)."""
        loop = asyncio.get_running_loop()
        self._tokens_at = loop.time()
        for _ in range(10**12):  # ends when stop() cancels it
            await self._pace_wake.wait()
            while self._paced:
                now = loop.time()
                rate = self._storm_read_rate if self._storming(now) else self._read_rate
                self._tokens = min(
                    float(self._read_burst), self._tokens + (now - self._tokens_at) * rate
                )
                self._tokens_at = now
                if self._tokens < 1.0:
                    await asyncio.sleep(min((1.0 - self._tokens) / rate, 0.25))
                    continue
                turn = self._paced.popleft()
                if not turn.done():  # (a cancelled reader gave its turn up)
                    self._tokens -= 1.0
                    turn.set_result(None)
            self._pace_wake.clear()

    async def _read(self, endpoint: str, *, full: bool) -> DeviceView:
        """One read; never raises (but for cancellation): the last known view on failure."""
        tags = await self._read_tags(endpoint) if full else None
        path = DEVICE if full else FIRMWARE_VERSION
        content: Content = {}
        try:
            async with self._limit:
                if self.busy(endpoint):  # a job started meanwhile: leave the device to it
                    return self(endpoint)
                self.reads += 1
                content = await asyncio.wait_for(
                    self.server.read(endpoint, path), self.read_timeout
                )
        except (ServerError, TimeoutError) as exc:
            self.failed_reads += 1
            log.info("inventory: read of %s on %s failed: %s", path, endpoint, exc)
        except Exception:
            self.failed_reads += 1
            log.exception("inventory: read of %s on %s failed", path, endpoint)
        # latest: set_tags may have run. A successful full read says everything a view takes
        # from /3/0, so a device with no view here needs no synchronous database lookup on
        # the event loop first (one per new device: a Register storm's worth of them)
        base = (
            self._views.get(endpoint) or DeviceView(endpoint=endpoint)
            if full and content
            else self(endpoint)
        )
        view = view_from_device_object(base, content)
        if tags is not None:
            view = dataclasses.replace(view, tags=tags)
        if content:
            await self._persist(view, content)
        self._set(view)
        return view

    async def _persist(self, view: DeviceView, content: Content) -> None:
        """Keep what a successful read said (a failure to write is logged, not raised:
        the view in memory is still right)."""
        facts = self._facts.setdefault(view.endpoint, {})
        facts.update({str(path): _json_value(value) for path, value in content.items()})
        if self.store is None:
            return
        manufacturer, model = facts.get(str(MANUFACTURER)), facts.get(str(MODEL_NUMBER))
        now = self.clock()
        try:
            await asyncio.to_thread(
                self.store.save_inventory,
                view.endpoint,
                class_name=view.class_name,
                model=model if isinstance(model, str) else None,
                manufacturer=manufacturer if isinstance(manufacturer, str) else None,
                firmware_version=view.firmware_version,
                tz=view.tz,
                facts=dict(facts),
                read_at=now,
                now=now,
            )
        except StoreError as exc:
            log.warning("inventory: view of %s not stored: %s", view.endpoint, exc)

    async def _read_tags(self, endpoint: str) -> frozenset[str] | None:
        try:
            record = await self.server.store.get_device(endpoint)
        except (StoreError, ServerError) as exc:
            log.info("inventory: tags of %s not read: %s", endpoint, exc)
            return None
        return None if record is None else _tags_of(record.attributes)

    def _set(self, view: DeviceView) -> None:
        self._views[view.endpoint] = view
        for listener in list(self._listeners):
            try:
                listener(view)
            except Exception:
                log.exception("inventory listener failed")


def _check_tag(tag: object) -> str:
    if not isinstance(tag, str) or not tag or tag != tag.strip() or len(tag) > 255:
        raise ValueError(f"invalid tag {tag!r}: a non-empty string without outer whitespace")
    return tag
