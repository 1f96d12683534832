"""The update engine of one server process: jobs, campaigns, events, leases, recovery.

:class:`UpdateEngine` wires the parts together on a running :class:`LwM2MServer`:

* :class:`~fotakit.updates.engine_jobs.JobDriver` drives the jobs this process owns
  (the I/O shell of the pure :class:`~fotakit.updates.job.UpdateJob`);
* :class:`~fotakit.updates.engine_campaigns.CampaignRunner` runs campaigns (the I/O shell of
  the pure :class:`~fotakit.updates.campaign.Campaign`), shared with other processes;
* one subscription to the server's events: a Register or Update of a device with a job
  feeds the job (which re-observes /5/0/3 and /5/0/5 and reads them: observations die
  with a reboot), a Notification feeds /5/0/3 and /5/0/5 to the job, a Register also
  claims jobs waiting for that device (a single-device job created before it registered,
  or after it moved here from another process) and offers it to continuous campaigns —
  both after the Register was answered and coalesced: the devices that registered while
  one claim was in flight are claimed together by the next (one database write for a
  batch, not one per Register; a registration storm is not a storm of writes);
* leases: the claims of this process's jobs are renewed every ``lease_s / 3``; a process
  that dies loses them after ``lease_s``, and at the same period this process claims the
  jobs of devices registered here whose owner's lease ran out (a device that moved here
  before the lease ended is taken over without waiting for its next Register): with the
  default 7 s lease a dead node's jobs are adopted within ``lease_s + lease_s / 3`` ≈ 9.3 s;
* cancel requests: :meth:`UpdateEngine.cancel_job` of a job another process drives
  writes a request row; its owner looks for requests every ``tick_s`` and cancels
  (a job whose owner died is cancelled by whoever claims it next);
* recovery: :meth:`start` claims the non-terminal jobs of the devices registered here
  (its own after a restart: a claim by the same node ID is immediate) and resumes each
  from its snapshot.

The node ID names the process in the job rows; it must be stable across restarts of the
same process (the default is the host name and the CoAP port) and distinct between
processes that share a database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from fotakit.server import (
    LwM2MServer,
    Notification,
    Registered,
    Updated,
)
from fotakit.updates.campaign import CampaignSpec
from fotakit.updates.engine_campaigns import CampaignRunner, Inventory
from fotakit.updates.engine_io import DeviceIO
from fotakit.updates.engine_jobs import ActiveJob, JobDriver
from fotakit.updates.engine_packages import PackageSource
from fotakit.updates.job import JobPolicy
from fotakit.updates.profiles import DeviceProfile, ProfileError, resolve
from fotakit.updates.ratelimit import BucketConfig
from fotakit.updates.records import JobRecord
from fotakit.updates.store import AsyncUpdateStore, UpdateStore

log = logging.getLogger("fotakit.updates.engine")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """Timing of the engine (the job policy holds the per-state deadlines)."""

    node_id: str
    tick_s: float = 1.0
    """How often campaigns are ticked without any job report."""
    lease_s: float = 7.0
    """A dead process's jobs may be taken over after this long (renewed every third of
    it, so one late renewal loses nothing; takeover within ``lease_s * 4 / 3``)."""
    resync_s: float = 10.0
    """How often campaign member states are reconciled with the job rows."""
    op_timeout_s: float = 120.0
    """Bound on one device operation other than a push (queue-mode waits included)."""
    global_rate: BucketConfig | None = None
    """Devices started per minute over all campaigns and processes (None: no limit)."""
    poll_s: float = 60.0
    """A job that heard nothing for this long while its device should be moving reads
    /5/0 itself (a notification can be lost)."""
    profiles_s: float = 5.0
    """How often device profiles are re-read from the store (changes made through another
    process; a change made through this one applies at once)."""


class UpdateEngine:
    """Jobs and campaigns of one server process (see the module docstring)."""

    def __init__(
        self,
        server: LwM2MServer,
        packages: PackageSource,
        store: UpdateStore,
        config: EngineConfig,
        *,
        policy: JobPolicy | None = None,
        clock: Callable[[], float] = time.time,
        inventory: Inventory | None = None,
    ) -> None:
        self.server = server
        self.config = config
        self.node_id = config.node_id
        self.policy = policy or JobPolicy()
        self.clock = clock
        self.sync_store = store
        self.store = AsyncUpdateStore(store)
        self.packages = packages
        self.io = DeviceIO(server)
        self.driver = JobDriver(
            self.io,
            packages,
            self.store,
            node_id=self.node_id,
            policy_for=self._policy_for,
            clock=clock,
            op_timeout=config.op_timeout_s,
            on_state=self._on_state,
            poll_s=config.poll_s,
            profile_for=self.profile_for,
        )
        self.campaigns = CampaignRunner(
            self.store,
            store,
            self.driver,
            server,
            node_id=self.node_id,
            clock=clock,
            tick_s=config.tick_s,
            lease_s=config.lease_s,
            resync_s=config.resync_s,
            global_rate=config.global_rate,
            inventory=inventory,
        )
        self._specs: dict[str, CampaignSpec] = {}
        self.profiles: dict[str, DeviceProfile] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._subscribed = asyncio.Event()
        self._started = False
        # devices that registered and wait for their job claim / continuous-campaign offer
        self._claim_wanted: set[str] = set()
        self._offer_wanted: dict[str, None] = {}  # ordered: offered in Register order
        self._registered = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the server's events, recover this process's jobs, run campaigns."""
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        await self.reload_profiles()
        self._tasks.append(loop.create_task(self._profile_loop(), name="fotakit-profiles"))
        self._tasks.append(loop.create_task(self._events(), name="fotakit-update-events"))
        self._tasks.append(loop.create_task(self._after_registers(), name="fotakit-registers"))
        await asyncio.wait_for(self._subscribed.wait(), 10)
        self.driver.start()
        await self.recover()
        self.campaigns.start()
        self._tasks.append(loop.create_task(self._leases(), name="fotakit-update-leases"))
        self._tasks.append(loop.create_task(self._cancels(), name="fotakit-update-cancels"))

    async def stop(self) -> None:
        """Stop driving; claims stay (a restart with the same node ID takes them back at
        once; another process after the lease)."""
        if not self._started:
            return
        self._started = False
        await self.campaigns.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.driver.stop()
        await self.store.close()

    async def recover(self) -> None:
        """Claim and resume the non-terminal jobs of the devices registered here."""
        endpoints = list(self.server.registrations)
        if not endpoints:
            return
        await self._claim(endpoints)

    async def _claim(self, endpoints: list[str]) -> None:
        claimed = await self.store.claim_jobs(
            self.node_id,
            lease_s=self.config.lease_s,
            now=self.clock(),
            endpoints=endpoints,
            limit=100_000,
        )
        for record in claimed:
            if record.id in self.driver.active:
                continue
            # campaign members not started yet wait for the campaign's decision
            if record.campaign_id is not None and not record.snapshot:
                self.campaigns.wake()
                continue
            await self.driver.adopt(record)

    # -- events -----------------------------------------------------------------------------

    async def _events(self) -> None:
        async with self.server.subscribe() as sub:
            self._subscribed.set()
            async for event in sub:
                try:
                    await self._on_event(event)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("update engine: event %r failed", type(event).__name__)

    async def _on_event(self, event: object) -> None:
        if isinstance(event, Registered):
            ep = event.endpoint
            # a request to the previous registration will not be answered (rebooted)
            self.io.superseded(ep)
            if self.driver.jobs_of(ep):
                await self.driver.on_registered(ep, "register")
            else:
                self._claim_wanted.add(ep)
            self._offer_wanted[ep] = None
            self._registered.set()
        elif isinstance(event, Updated):
            if self.driver.jobs_of(event.endpoint):
                await self.driver.on_registered(event.endpoint, "update")
        elif isinstance(event, Notification) and not event.initial:
            # an initial value may be older than a change already seen; reads cover it
            if self.driver.jobs_of(event.endpoint):
                await self.driver.on_notification(event.endpoint, event.path, event.content)

    #: offers made before the loop is given to other work (a Register's answer among them)
    _OFFER_SLICE = 64

    async def _after_registers(self) -> None:
        """Claim the jobs of, and offer to continuous campaigns, the devices that
        registered: in batches, one claim (one database write) per batch, so a storm of
        Registers neither waits for nor multiplies this work."""
        for _ in range(10**12):  # ends when stop() cancels it
            await self._registered.wait()
            self._registered.clear()
            while self._claim_wanted or self._offer_wanted:
                claim, self._claim_wanted = self._claim_wanted, set()
                offer, self._offer_wanted = list(self._offer_wanted), {}
                # a device that de-registered meanwhile is not served here
                claim = {ep for ep in claim if ep in self.server.registrations}
                if claim:
                    try:
                        await self._claim(sorted(claim))
                    except Exception:
                        log.exception("claiming the jobs of %d devices failed", len(claim))
                for i, ep in enumerate(offer, 1):
                    try:
                        await self.campaigns.offer(ep)
                    except Exception:
                        log.exception("offering %s to continuous campaigns failed", ep)
                    if i % self._OFFER_SLICE == 0:
                        await asyncio.sleep(0)

    async def _leases(self) -> None:
        period = max(0.05, self.config.lease_s / 3)
        for _ in range(10**12):  # ends when stop() cancels it
            await asyncio.sleep(period)
            ids = list(self.driver.active)
            if ids:
                with contextlib.suppress(Exception):
                    await self.store.renew_leases(
                        self.node_id, lease_s=self.config.lease_s, now=self.clock(), job_ids=ids
                    )
            try:
                await self._adopt_orphans()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("looking for jobs of dead processes failed; trying again")

    async def _adopt_orphans(self) -> None:
        """Claim the jobs of devices registered here whose owner stopped renewing."""
        orphaned = await self.store.orphaned_endpoints(self.node_id, self.clock())
        mine = [ep for ep in orphaned if ep in self.server.registrations]
        if mine:
            log.info("taking over the jobs of %d devices from processes gone quiet", len(mine))
            await self._claim(mine)

    async def _cancels(self) -> None:
        """Cancel the jobs of this process that another process asked to cancel."""
        period = max(0.05, self.config.tick_s)
        for _ in range(10**12):  # ends when stop() cancels it
            await asyncio.sleep(period)
            if not self.driver.active:
                continue  # no job driven here: no request can be for this process
            try:
                requested = await self.store.cancel_requests_for(self.node_id)
                for job_id in requested:
                    if job_id in self.driver.active:
                        log.info("job %s: cancel requested by another process", job_id)
                        await self.driver.cancel(job_id)
                        await self.store.clear_cancel_request(job_id)
            except Exception:
                log.exception("looking for cancel requests failed; trying again")

    # -- device profiles --------------------------------------------------------------------

    async def reload_profiles(self) -> None:
        """Read every device profile from the store (a stored profile that no longer
        validates is skipped and logged, never fatal)."""
        raw = await self.store.run(lambda s: s.list_profiles())
        profiles: dict[str, DeviceProfile] = {}
        for name, spec in raw.items():
            try:
                profiles[name] = DeviceProfile.from_json(spec, name=name)
            except ProfileError as exc:
                log.error("device profile %r in the store is invalid (%s): skipped", name, exc)
        self.profiles = profiles

    async def _profile_loop(self) -> None:
        period = max(0.05, self.config.profiles_s)
        for _ in range(10**12):  # ends when stop() cancels it
            await asyncio.sleep(period)
            try:
                await self.reload_profiles()
            except Exception:
                log.exception("reading device profiles failed; keeping the last ones")

    def profile_for(self, endpoint: str) -> tuple[DeviceProfile, str]:
        """The profile of ``endpoint`` by its device class (/3/0/1), and why."""
        return resolve(self.campaigns.inventory(endpoint).class_name, self.profiles)

    # -- jobs -------------------------------------------------------------------------------

    def _policy_for(self, record: JobRecord) -> JobPolicy:
        """The job policy: the server's, with the device profile's protocols, push
        permission and timeouts; campaign members get its retry budget and window."""
        profile, _why = self.profile_for(record.endpoint)
        base = profile.policy(self.policy)
        if record.campaign_id is None:
            return base
        spec = self._specs.get(record.campaign_id)
        if spec is None:
            rec = self.sync_store.get_campaign(record.campaign_id)
            if rec is None:
                return base
            spec = CampaignSpec.from_json(rec.spec)
            self._specs[record.campaign_id] = spec
        changes: dict[str, Any] = {"max_attempts": max(1, spec.retry_budget)}
        window = spec.window
        if window is not None:
            tz = self.campaigns.inventory(record.endpoint).tz
            default_tz = spec.default_tz

            def hook(now: float) -> float | None:
                opens = window.next_open(now, tz, default_tz=default_tz)
                return None if opens is not None and opens <= now else (opens or now + 3600)

            changes["window"] = hook
        return dataclasses.replace(base, **changes)

    async def _on_state(self, active: ActiveJob, state: str, reason: str | None) -> None:
        await self.campaigns.on_job_state(active, state, reason)

    async def start_job(self, endpoint: str, package_id: str) -> str:
        """A single-device job; driven here if the device is registered here, else by the
        process it registers with."""
        self.packages.record(package_id)  # fails early for an unknown package
        record = await self.store.create_job(endpoint, package_id, now=self.clock())
        if endpoint in self.server.registrations:
            await self._claim([endpoint])
        return record.id

    async def cancel_job(self, job_id: str) -> bool:
        """Cancel a job: at once if it is driven here or not started yet; by a request its
        owner (another process) carries out within its next tick otherwise. False if the
        job is unknown or finished already."""
        if await self.driver.cancel(job_id):
            return True
        record = await self.store.get_job(job_id)
        if record is None or record.terminal:
            return False
        if record.snapshot:  # started, so driven (or about to be) by its owner
            return await self.store.request_cancel(
                job_id, requested_by=self.node_id, now=self.clock()
            )
        claimed = await self.store.claim_jobs(
            self.node_id,
            lease_s=self.config.lease_s,
            now=self.clock(),
            endpoints=[record.endpoint],
            limit=100,
        )
        for rec in claimed:
            if rec.id == job_id:
                active = await self.driver.adopt_idle(rec)
                if active is not None:
                    await self.driver.cancel(job_id)
                    return True
        return await self.store.request_cancel(job_id, requested_by=self.node_id, now=self.clock())
