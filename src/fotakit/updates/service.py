"""The Python API of server-side updates: what the REST and CLI layers call.

::

    service = UpdateService(server, repository, "sqlite:///data/fotakit.db",
                            node_id="node-a", base_uris=BaseUris(coap="coap://10.0.0.5:5683"))
    await service.start()
    job_id = await service.start_job("dev-17", package_id)
    cid = await service.create_campaign(spec)        # a CampaignSpec (or its JSON)
    await service.start_campaign(cid)
    print(await service.progress(cid))               # from the counters, no scan
    async for event in service.stream():             # live events of this process
        ...
    await service.stop()

One :class:`UpdateService` runs in each server process (``fotakit server`` starts it); all
of them may share one PostgreSQL database (see docs/operator-guide.md, "Scaling out").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fotakit.repository import Repository
from fotakit.server import LwM2MServer
from fotakit.updates.campaign import Campaign, CampaignSpec
from fotakit.updates.engine import EngineConfig, UpdateEngine
from fotakit.updates.engine_campaigns import BUSY_KEY, CampaignError, Inventory
from fotakit.updates.engine_packages import BaseUris, PackageSource
from fotakit.updates.inventory import DeviceInventory
from fotakit.updates.job import JobPolicy
from fotakit.updates.profiles import BUILTIN_DEFAULT, DeviceProfile
from fotakit.updates.ratelimit import BucketConfig
from fotakit.updates.records import (
    TERMINAL_STATES,
    TOTAL_KEY,
    CampaignRecord,
    EventRecord,
    JobRecord,
    NewEvent,
)
from fotakit.updates.store import UpdateStore
from fotakit.updates.targets import DeviceView

__all__ = ["CampaignError", "Progress", "UpdateService", "default_node_id"]


def default_node_id(port: int) -> str:
    """``<host name>:<CoAP port>``: stable across restarts, distinct per process."""
    return f"{socket.gethostname()}:{port}"


@dataclass(frozen=True, slots=True)
class Progress:
    """A campaign's progress from its counters (never a scan of its jobs)."""

    campaign_id: str
    state: str
    wave: int
    total: int
    by_state: Mapping[str, int]
    by_reason: Mapping[str, int]
    busy: int = 0
    """Members queued because their device has an unfinished job of another campaign or a
    single-device job (they have no job yet; see docs/operator-guide.md)."""

    @property
    def finished(self) -> int:
        return sum(self.by_state.get(s, 0) for s in TERMINAL_STATES)

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "state": self.state,
            "wave": self.wave,
            "total": self.total,
            "finished": self.finished,
            "by_state": dict(self.by_state),
            "by_reason": dict(self.by_reason),
            "busy": self.busy,
        }


class UpdateService:
    """Update jobs and campaigns on a running server (see the module docstring)."""

    _START_READS_S = 10.0
    """How long :meth:`start` waits for the default inventory's first reads."""

    def __init__(
        self,
        server: LwM2MServer,
        repository: Repository,
        store: str | UpdateStore,
        *,
        node_id: str | None = None,
        base_uris: BaseUris | None = None,
        policy: JobPolicy | None = None,
        tick_s: float = 1.0,
        lease_s: float = 7.0,
        resync_s: float = 10.0,
        op_timeout_s: float = 120.0,
        poll_s: float = 60.0,
        inventory: Inventory | None = None,
        clock: Callable[[], float] = time.time,
        global_rate: BucketConfig | None = None,
    ) -> None:
        """``store``: a database URL (opened by :meth:`start`, closed by :meth:`stop`) or an
        open :class:`UpdateStore` (not closed here). ``base_uris``: how devices reach the
        repository (default: CoAP on the server's own address and port). ``inventory``:
        device class / version / tags / zone of an endpoint for campaign targets (default:
        a :class:`DeviceInventory` on ``server``, started and stopped with the service, which
        reads /3/0 of each registering device). Which devices get the bare payload instead of
        the signed package is their device profile's (:meth:`put_profile`). ``global_rate``: devices
        started per minute over all campaigns and all processes sharing the database (the
        bucket is a database row); None for no fleet-wide limit."""
        self.server = server
        self.repository = repository
        self._store_arg = store
        self._node_id = node_id
        self._base_uris = base_uris
        self.policy = policy or JobPolicy()
        self._timing = {
            "tick_s": tick_s,
            "lease_s": lease_s,
            "resync_s": resync_s,
            "op_timeout_s": op_timeout_s,
            "poll_s": poll_s,
        }
        self._inventory = inventory
        self._clock = clock
        self._global_rate = global_rate
        self._engine: UpdateEngine | None = None
        self._own_store: UpdateStore | None = None
        self._own_inventory: DeviceInventory | None = None
        self._offers: set[asyncio.Future[None]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def engine(self) -> UpdateEngine:
        if self._engine is None:
            raise RuntimeError("update service not started")
        return self._engine

    @property
    def inventory(self) -> DeviceInventory | None:
        """The default inventory while started (None when the caller passed one)."""
        return self._own_inventory

    @property
    def node_id(self) -> str:
        return self.engine.node_id

    async def start(self) -> None:
        """Start on the (started) server: recover this node's jobs, run campaigns."""
        if self._engine is not None:
            return
        if isinstance(self._store_arg, str):
            store = await asyncio.to_thread(UpdateStore.open, self._store_arg)
            self._own_store = store
        else:
            store = self._store_arg
        host = self.server.config.host
        base = self._base_uris or BaseUris(
            coap=f"coap://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{self.server.port}"
        )
        node_id = (
            self._node_id
            or self.server.config.node_id
            or os.environ.get("FOTAKIT_NODE_ID")
            or default_node_id(self.server.port)
        )
        config = EngineConfig(
            node_id=node_id,
            global_rate=self._global_rate,
            **self._timing,
        )
        inventory = self._inventory
        if inventory is None:
            # not read while a job talks to it; read again when its job ends
            # kept in the database: known after a restart even when a read fails
            self._own_inventory = DeviceInventory(self.server, busy=self._busy, store=store)
            await self._own_inventory.start()
            # the devices registered already are read before any job may talk to them
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._own_inventory.settled(), self._START_READS_S)
            # a device's class and version are known only after its /3/0 is read, i.e.
            # after the engine offered it to continuous campaigns on Register: offer again
            self._own_inventory.add_listener(self._offer)
            inventory = self._own_inventory
        self._engine = UpdateEngine(
            self.server,
            PackageSource(self.repository, base),
            store,
            config,
            policy=self.policy,
            clock=self._clock,
            inventory=inventory,
        )
        if self._own_inventory is not None:
            self._engine.driver.add_listener(self._job_event)
        await self._engine.start()

    def _busy(self, endpoint: str) -> bool:
        return self._engine is not None and bool(self._engine.driver.jobs_of(endpoint))

    def _job_event(self, event: NewEvent) -> None:
        if event.kind == "finished" and self._own_inventory is not None:
            self._own_inventory.refresh_soon(event.endpoint)

    def _offer(self, view: DeviceView) -> None:
        if self._engine is not None:
            task = asyncio.ensure_future(self._engine.campaigns.offer(view.endpoint))
            self._offers.add(task)
            task.add_done_callback(self._offers.discard)

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.stop()
            self._engine = None
        if self._own_inventory is not None:
            await self._own_inventory.stop()
            self._own_inventory = None
        if self._own_store is not None:
            await asyncio.to_thread(self._own_store.close)
            self._own_store = None

    async def __aenter__(self) -> UpdateService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- single jobs ------------------------------------------------------------------------

    async def start_job(self, endpoint: str, package_id: str) -> str:
        """Update one device to a package; returns the job ID.

        Raises :class:`~fotakit.updates.store.DeviceBusy` (naming the job) when the device
        has an unfinished job already: one at a time per device.
        """
        return await self.engine.start_job(endpoint, package_id)

    async def cancel_job(self, job_id: str) -> bool:
        return await self.engine.cancel_job(job_id)

    async def job(self, job_id: str) -> JobRecord | None:
        return await self.engine.store.get_job(job_id)

    # -- device profiles --------------------------------------------------------------------

    async def profiles(self) -> dict[str, DeviceProfile]:
        """Every stored device profile by name (read from the store: other processes'
        changes included)."""
        await self.engine.reload_profiles()
        return dict(self.engine.profiles)

    async def put_profile(self, profile: DeviceProfile) -> bool:
        """Store a profile (applies to jobs started from now on); True when it is new."""
        new = await self.engine.store.run(
            lambda s: s.put_profile(profile.name, profile.to_json(), now=self._clock())
        )
        await self.engine.reload_profiles()
        return new

    async def delete_profile(self, name: str) -> bool:
        """Remove a profile (its devices fall back to ``default``); False when unknown."""
        gone = await self.engine.store.run(lambda s: s.delete_profile(name))
        await self.engine.reload_profiles()
        return gone

    def device_profile(self, endpoint: str) -> tuple[DeviceProfile, str]:
        """The profile a job started now would use for ``endpoint``, and why."""
        return self.engine.profile_for(endpoint)

    @staticmethod
    def builtin_profile() -> DeviceProfile:
        """What ``default`` means while no ``default`` profile is stored."""
        return BUILTIN_DEFAULT

    # -- campaigns --------------------------------------------------------------------------

    async def create_campaign(
        self, spec: CampaignSpec | Mapping[str, Any], *, require_match: bool = False
    ) -> str:
        """Store a campaign (draft); ``spec`` as a :class:`CampaignSpec` or its JSON.

        ``require_match`` (for a campaign started at once): raise
        :class:`~fotakit.updates.engine_campaigns.NoDeviceMatches`, storing nothing, when a
        snapshot campaign's target matches no device now."""
        parsed = spec if isinstance(spec, CampaignSpec) else CampaignSpec.from_json(spec)
        self.engine.packages.record(parsed.package_id)  # an unknown package fails here
        if require_match:
            await self.engine.campaigns.check_matches(parsed)
        return await self.engine.campaigns.create(parsed)

    async def start_campaign(self, campaign_id: str) -> None:
        await self.engine.campaigns.start_campaign(campaign_id)

    async def pause(self, campaign_id: str, *, by: str = "operator") -> None:
        """Pause a running campaign; ``by`` (who) goes into its event log and pause reason."""
        await self.engine.campaigns.pause(campaign_id, by=by)

    async def resume(
        self, campaign_id: str, *, reset_errors: bool = False, by: str = "operator"
    ) -> None:
        """Resume a paused campaign. Its error threshold keeps counting: while it is still
        crossed this raises CampaignError, unless ``reset_errors`` restarts the count (the
        campaign's event log records it). ``by``: who, for the event log and a gate override."""
        await self.engine.campaigns.resume(campaign_id, reset_errors=reset_errors, by=by)

    async def cancel(self, campaign_id: str) -> None:
        await self.engine.campaigns.cancel(campaign_id)

    async def retry_failed(self, campaign_id: str) -> str:
        """Start a child campaign over the failed and timed-out members; its ID."""
        return await self.engine.campaigns.retry_failed(campaign_id)

    async def get_campaign(self, campaign_id: str) -> CampaignRecord | None:
        return await self.engine.store.get_campaign(campaign_id)

    async def campaign_state(self, campaign_id: str) -> Campaign | None:
        """The pure campaign as stored (waves, members, gates)."""
        return await self.engine.campaigns.campaign(campaign_id)

    async def campaigns(self, *, state: str | None = None) -> list[CampaignRecord]:
        return await self.engine.store.list_campaigns(state=state)

    async def progress(self, campaign_id: str) -> Progress:
        """Counters by state and failure reason (kept incrementally by the store)."""
        rec = await self.engine.store.get_campaign(campaign_id)
        if rec is None:
            raise CampaignError(f"no campaign {campaign_id!r}")
        counters = await self.engine.store.get_counters(campaign_id)
        return _progress(rec, counters)

    async def jobs(
        self,
        campaign_id: str | None = None,
        *,
        endpoint: str | None = None,
        state: str | None = None,
        after_id: str | None = None,
        limit: int | None = None,
    ) -> list[JobRecord]:
        return await self.engine.store.list_jobs(
            campaign_id=campaign_id,
            endpoint=endpoint,
            state=state,
            after_id=after_id,
            limit=limit,
        )

    # -- events -----------------------------------------------------------------------------

    async def events(
        self,
        *,
        endpoint: str | None = None,
        job_id: str | None = None,
        campaign_id: str | None = None,
        after_id: int = 0,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[EventRecord]:
        """The stored event log (every process's), oldest first; page with ``after_id``.
        ``newest_first``: the ``limit`` newest events, newest first."""
        return await self.engine.store.list_events(
            endpoint=endpoint,
            job_id=job_id,
            campaign_id=campaign_id,
            after_id=after_id,
            limit=limit,
            newest_first=newest_first,
        )

    @contextlib.asynccontextmanager
    async def subscribe(self, maxsize: int = 10_000) -> AsyncIterator[asyncio.Queue[NewEvent]]:
        """A queue of the events this process logs from now on (oldest dropped if full)."""
        queue: asyncio.Queue[NewEvent] = asyncio.Queue(maxsize)

        def put(ev: NewEvent) -> None:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(ev)

        driver = self.engine.driver
        driver.add_listener(put)
        try:
            yield queue
        finally:
            driver.remove_listener(put)

    async def stream(
        self,
        *,
        endpoint: str | None = None,
        job_id: str | None = None,
        campaign_id: str | None = None,
    ) -> AsyncIterator[NewEvent]:
        """Live events of this process matching the filters (for SSE); runs until closed."""
        async with self.subscribe() as queue:
            while True:
                ev = await queue.get()
                if endpoint is not None and ev.endpoint != endpoint:
                    continue
                if job_id is not None and ev.job_id != job_id:
                    continue
                if campaign_id is not None and ev.campaign_id != campaign_id:
                    continue
                yield ev


def _progress(rec: CampaignRecord, counters: Mapping[str, int]) -> Progress:
    by_state = {k[6:]: v for k, v in counters.items() if k.startswith("state:") and v}
    by_reason = {k[7:]: v for k, v in counters.items() if k.startswith("reason:") and v}
    return Progress(
        campaign_id=rec.id,
        state=rec.state,
        wave=rec.wave,
        total=counters.get(TOTAL_KEY, 0),
        by_state=by_state,
        by_reason=by_reason,
        busy=counters.get(BUSY_KEY, 0),
    )
