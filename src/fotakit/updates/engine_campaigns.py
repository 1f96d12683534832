"""Running campaigns: the I/O shell around the pure :class:`~fotakit.updates.campaign.Campaign`.

Every server process runs one :class:`CampaignRunner`; there is no leader. The campaign's
whole state is its JSON snapshot in the ``campaigns`` row, and each change is a
compare-and-set on the row's revision (:meth:`UpdateStore.set_campaign_state` with
``expected_rev``): load, restore, apply the inputs (job reports, a tick, an operator
trigger), write back; on :class:`StaleCampaign` another process got there first, so reload
and apply again. Hence:

* **Waves advance once.** Only the writer whose compare-and-set won acts on the decision;
  it records the advance with :meth:`UpdateStore.advance_wave` (``UPDATE ... WHERE wave =
  from``), and any process that finds the snapshot ahead of the row's ``wave`` (its writer
  died in between) repairs it the same way — exactly once either way.
* **Every node targets the whole fleet.** Whichever node creates or starts a campaign,
  its candidates are the devices with an unexpired registration in the database (any
  node's), as :mod:`fotakit.updates.fleet` describes them.
* **Each device is driven by one process.** A member the campaign has started is picked up
  by the process the device is registered with (:meth:`UpdateStore.claim_jobs` for its
  registered endpoints: row locks, ``SKIP LOCKED`` on PostgreSQL); no start message is
  needed, so nothing is lost if the deciding process dies.
* **Counters are exact.** Progress counters are the store's (moved in the transaction of
  each job change); the campaign's own counters move by compare-and-set.
* **Nothing is forgotten.** Job reports are queued in memory and applied in batches; the
  job rows are the truth, so every ``resync_s`` (and at start) each process reconciles the
  campaigns it drives jobs of with the rows.
* **Rate limits are shared.** The campaign's token bucket is part of its snapshot (so it
  is one bucket for all processes); an optional global bucket lives in ``rate_buckets``.
* **A busy device waits.** A device has at most one unfinished job (the database's partial
  unique index). A member whose device has an unfinished job of another campaign, or a
  single-device job, gets no job row yet: it stays pending (queued), a ``device_busy``
  event naming that job goes to the device's and the campaign's log, the campaign's
  ``busy`` counter counts such members, and its job is added at the first tick after the
  other job ended. It is never taken over mid-job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fotakit.server import LwM2MServer
from fotakit.updates.campaign import (
    Campaign,
    CampaignSpec,
    CampaignState,
    Decision,
    InvalidCampaignTransition,
    NoMatchingDevices,
)
from fotakit.updates.engine_jobs import ActiveJob, JobDriver
from fotakit.updates.fleet import live_registrations
from fotakit.updates.inventory import DeviceInventory
from fotakit.updates.ratelimit import BucketConfig, Jitter, Limiter
from fotakit.updates.records import TERMINAL_STATES, CampaignRecord, JobRecord, NewEvent
from fotakit.updates.store import AsyncUpdateStore, StaleCampaign, StaleJob, UpdateStore
from fotakit.updates.targets import DeviceView, SelectionMode

log = logging.getLogger("fotakit.updates.campaigns")

Inventory = Callable[[str], DeviceView]
"""What is known about an endpoint beyond its registration (class, version, tags, zone)."""

_ACTIVE_STATES = (CampaignState.RUNNING.value, CampaignState.PAUSED.value)
BUSY_KEY = "busy"
"""Counter of the members waiting because their device has an unfinished job elsewhere."""
_CAS_ATTEMPTS = 50


class CampaignError(Exception):
    """An operator action on a campaign could not be done (unknown, wrong state)."""


class NoDeviceMatches(CampaignError):
    """Starting a snapshot campaign whose target matches no device (see
    :class:`~fotakit.updates.campaign.NoMatchingDevices`); nothing was changed."""


def restore(rec: CampaignRecord) -> Campaign:
    """The pure campaign of a stored row (a draft has no snapshot yet)."""
    if rec.snapshot:
        return Campaign.restore(rec.snapshot)
    return Campaign(rec.id, CampaignSpec.from_json(rec.spec))


class _DbBucket:
    """The global token bucket of the ``rate_buckets`` row, as a ratelimit Limiter.

    ``available`` is optimistic (the burst); ``take`` asks the database, which grants what
    it really has. Put last in the chain, it is asked first (see ``combined_grant``).
    """

    def __init__(self, store: UpdateStore, config: BucketConfig, scope: str = "global") -> None:
        self.store = store
        self.config = config
        self.scope = scope
        self._refused_at: float | None = None

    def available(self, now: float) -> int:
        return self.config.burst

    def take(self, n: int, now: float) -> int:
        got = self.store.take_tokens(
            self.scope, n, rate_per_s=self.config.per_second, burst=self.config.burst, now=now
        )
        self._refused_at = now if got < n else None
        return got

    def next_available_at(self, now: float) -> float:
        return now + 1.0 / self.config.per_second


@dataclass
class _Pending:
    reports: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    operator: list[Callable[[Campaign, float], Decision]] = field(default_factory=list)


class CampaignRunner:
    """Runs every campaign with this process's share of the devices (module docstring)."""

    def __init__(
        self,
        store: AsyncUpdateStore,
        sync_store: UpdateStore,
        driver: JobDriver,
        server: LwM2MServer,
        *,
        node_id: str,
        clock: Callable[[], float] = time.time,
        tick_s: float = 1.0,
        lease_s: float = 7.0,
        resync_s: float = 5.0,
        global_rate: BucketConfig | None = None,
        inventory: Inventory | None = None,
    ) -> None:
        self.store = store
        self.sync_store = sync_store
        self.driver = driver
        self.server = server
        self.node_id = node_id
        self.clock = clock
        self.tick_s = tick_s
        self.lease_s = lease_s
        self.resync_s = resync_s
        self.inventory = inventory or (lambda ep: DeviceView(endpoint=ep))
        self._global = None if global_rate is None else _DbBucket(sync_store, global_rate)
        self._pending: dict[str, _Pending] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_resync = 0.0
        self._known: set[str] = set()  # campaigns this process has seen active
        self._cache: dict[str, Campaign] = {}
        self._busy_seen: dict[str, dict[str, str]] = {}  # campaign -> endpoint -> job logged
        self.waves_advanced = 0  # by this process (the two-process test sums them)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="fotakit-campaigns")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    # -- operator actions -------------------------------------------------------------------

    async def create(self, spec: CampaignSpec) -> str:
        rec = await self.store.create_campaign(
            spec.to_json(), name=spec.name, parent_id=spec.parent_id, now=self.clock()
        )
        return rec.id

    async def check_matches(self, spec: CampaignSpec) -> None:
        """Raise :class:`NoDeviceMatches` if a snapshot campaign of ``spec`` started now
        would have no member (checked before the draft is stored; the start checks again)."""
        if spec.mode is SelectionMode.CONTINUOUS:
            return
        population = await self._population()
        if not spec.target.select(population):
            raise NoDeviceMatches(str(NoMatchingDevices(len(population))))

    async def start_campaign(self, campaign_id: str) -> None:
        population = await self._population()

        def start(c: Campaign, now: float) -> Decision:
            return c.start(now, population, limiters=self._limiters())

        await self._operator(campaign_id, start)

    async def pause(self, campaign_id: str, *, by: str = "operator") -> None:
        await self._operator(campaign_id, lambda c, now: c.pause(now, by=by))

    async def resume(
        self, campaign_id: str, *, reset_errors: bool = False, by: str = "operator"
    ) -> None:
        """Resume; the error count goes on unless ``reset_errors`` (see Campaign.resume)."""
        await self._operator(
            campaign_id,
            lambda c, now: c.resume(
                now, limiters=self._limiters(), reset_errors=reset_errors, by=by
            ),
        )

    async def cancel(self, campaign_id: str) -> None:
        await self._operator(campaign_id, lambda c, now: c.cancel(now))

    async def retry_failed(self, campaign_id: str) -> str:
        """A child campaign over the failed and timed-out members, started at once."""
        rec = await self.store.get_campaign(campaign_id)
        if rec is None:
            raise CampaignError(f"no campaign {campaign_id!r}")
        try:
            spec = restore(rec).retry_failed()
        except ValueError as exc:
            raise CampaignError(str(exc)) from None
        child = await self.create(spec)
        await self.start_campaign(child)
        return child

    async def campaign(self, campaign_id: str) -> Campaign | None:
        rec = await self.store.get_campaign(campaign_id)
        return None if rec is None else restore(rec)

    async def _operator(
        self, campaign_id: str, action: Callable[[Campaign, float], Decision]
    ) -> None:
        errors: list[BaseException] = []

        def guarded(c: Campaign, now: float) -> Decision:
            try:
                return action(c, now)
            except (InvalidCampaignTransition, ValueError) as exc:
                errors.append(exc)
                return Decision(ignored=str(exc))

        done = await self._transact(campaign_id, [guarded])
        if errors:
            kind = NoDeviceMatches if isinstance(errors[-1], NoMatchingDevices) else CampaignError
            raise kind(str(errors[-1]))
        if not done:
            raise CampaignError(f"no campaign {campaign_id!r}")
        self._known.add(campaign_id)
        self.wake()

    async def _population(self) -> list[DeviceView]:
        """Every device registered with any node sharing the database (an unexpired
        stored registration) or with this one, as the whole deployment knows it
        (:mod:`fotakit.updates.fleet`)."""
        live = await live_registrations(self.server)
        endpoints = sorted(set(live) | set(self.server.registrations))
        if isinstance(self.inventory, DeviceInventory):
            views = await self.inventory.current(endpoints)
            return [views[ep] for ep in endpoints]
        return [self.inventory(ep) for ep in endpoints]

    def _limiters(self) -> Sequence[Limiter]:
        return [] if self._global is None else [self._global]

    # -- job reports ------------------------------------------------------------------------

    async def on_job_state(self, active: ActiveJob, state: str, reason: str | None) -> None:
        """A job of this process changed state: report it to its campaign (batched)."""
        if active.campaign_id is None:
            return
        pending = self._pending.setdefault(active.campaign_id, _Pending())
        pending.reports[active.endpoint] = (state, reason)
        self.wake()

    async def offer(self, endpoint: str) -> None:
        """A device registered: continuous campaigns may take it in."""
        view: DeviceView | None = None  # looked up only for a campaign that may take it
        for cid in list(self._known):
            c = self._cache.get(cid)
            if c is None or c.spec.mode.value != "continuous" or endpoint in c.members:
                continue
            view = self.inventory(endpoint) if view is None else view
            if c.spec.target.matches(view):
                self._pending.setdefault(cid, _Pending()).operator.append(_offer(view))
                self.wake()

    # -- the loop ---------------------------------------------------------------------------

    async def _loop(self) -> None:
        for _ in range(10**12):  # ends when stop() cancels it
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("campaign step failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_s)
            self._wake.clear()

    async def step(self) -> None:
        """One round: every active campaign gets its reports and a tick; this process
        picks up the started members registered here."""
        now = self.clock()
        active = await self.store.list_campaigns(state=CampaignState.RUNNING.value)
        active += await self.store.list_campaigns(state=CampaignState.PAUSED.value)
        ids = {rec.id for rec in active} | set(self._pending) | self._driven_campaigns()
        self._known |= {rec.id for rec in active}
        resync = now - self._last_resync >= self.resync_s
        if resync:
            self._last_resync = now
        for cid in sorted(ids):
            if resync:
                await self._resync(cid)
            pending = self._pending.pop(cid, _Pending())
            steps: list[Callable[[Campaign, float], Decision]] = list(pending.operator)
            reports = dict(pending.reports)
            if reports:
                steps.append(_report(reports))
            steps.append(lambda c, n: c.tick(n, limiters=self._limiters()))
            await self._transact(cid, steps)

    def _driven_campaigns(self) -> set[str]:
        return {a.campaign_id for a in self.driver.active.values() if a.campaign_id is not None}

    async def _transact(
        self, campaign_id: str, steps: Sequence[Callable[[Campaign, float], Decision]]
    ) -> bool:
        """Load, apply ``steps``, compare-and-set; then act on what was decided."""
        for _ in range(_CAS_ATTEMPTS):
            rec = await self.store.get_campaign(campaign_id)
            if rec is None:
                return False
            campaign = restore(rec)
            before = campaign.snapshot() if rec.snapshot else None
            now = self.clock()
            decisions = [step(campaign, now) for step in steps]
            after = campaign.snapshot()
            if after != before:
                try:
                    await self.store.set_campaign_state(
                        campaign_id,
                        str(campaign.state),
                        expected_rev=rec.rev,
                        snapshot=after,
                        now=now,
                    )
                except StaleCampaign:
                    continue
                await self._log(campaign_id, decisions, now)
            self._cache[campaign_id] = campaign
            await self._act(rec, campaign, decisions)
            return True
        log.warning("campaign %s: too much contention, will retry", campaign_id)
        return True

    async def _act(
        self, rec: CampaignRecord, campaign: Campaign, decisions: Sequence[Decision]
    ) -> None:
        cid = rec.id
        # jobs for every member (idempotent; repairs a writer that died after starting)
        # (queued members of a busy device are retried here, once per tick)
        counters = await self.store.get_counters(cid)
        if campaign.state in (CampaignState.RUNNING, CampaignState.PAUSED) and counters.get(
            "total", 0
        ) < len(campaign.members):
            await self._add_jobs(cid, campaign, counters)
        elif counters.get(BUSY_KEY, 0) and campaign.state.terminal:
            # cancelled or aborted while members were queued: none is waiting any more
            await self.store.set_counter(cid, BUSY_KEY, 0)
        # the wave recorded once (repairs a writer that died before recording it)
        if campaign.wave > rec.wave:
            for w in range(rec.wave, campaign.wave):
                won = await self.store.advance_wave(
                    cid, w, w + 1, node_id=self.node_id, now=self.clock()
                )
                if won:
                    self.waves_advanced += 1
        cancels: set[str] = set()
        for d in decisions:
            cancels.update(d.cancels)
        if campaign.state in (CampaignState.ABORTED, CampaignState.CANCELLED):
            cancels.update(a.endpoint for a in self.driver.active.values() if a.campaign_id == cid)
            await self._cancel_unstarted(cid, campaign)
        for active in list(self.driver.active.values()):
            if active.campaign_id == cid and active.endpoint in cancels:
                await self.driver.cancel(active.job_id)
        if campaign.state in (CampaignState.RUNNING, CampaignState.PAUSED):
            await self._pickup(cid, campaign)

    async def _add_jobs(self, cid: str, campaign: Campaign, counters: dict[str, int]) -> None:
        have = {job.endpoint for job in await self.store.list_jobs(campaign_id=cid)}
        by_wave: dict[int, list[str]] = {}
        for ep in campaign.members:
            if ep not in have:
                by_wave.setdefault(campaign.member_wave(ep) or 0, []).append(ep)
        busy: dict[str, str] = {}
        for wave, eps in sorted(by_wave.items()):
            added = await self.store.add_campaign_jobs(
                cid, eps, campaign.spec.package_id, wave=wave, now=self.clock()
            )
            busy.update(added.busy)
        await self._note_busy(cid, busy, counters.get(BUSY_KEY, 0))

    async def _note_busy(self, cid: str, busy: dict[str, str], counted: int) -> None:
        """Log each member newly found waiting for another job; keep the ``busy`` counter."""
        seen = self._busy_seen.setdefault(cid, {})
        now = self.clock()
        events = [
            NewEvent(
                endpoint=ep,
                kind="device_busy",
                at=now,
                campaign_id=cid,
                details={
                    "job_id": other,
                    "why": "the device has an unfinished update job; this campaign's job "
                    "waits until it has ended",
                    "node": self.node_id,
                },
            )
            for ep, other in sorted(busy.items())
            if seen.get(ep) != other
        ]
        self._busy_seen[cid] = dict(busy)
        if events:
            for ev in events:
                log.info(
                    "campaign %s: %s is busy with job %s; queued",
                    cid,
                    ev.endpoint,
                    ev.details["job_id"],
                )
            await self.store.append_events(events)
            self.driver._publish(events)
        if len(busy) != counted:
            await self.store.set_counter(cid, BUSY_KEY, len(busy))

    async def _pickup(self, cid: str, campaign: Campaign) -> None:
        """Claim and drive the started members registered with this process."""
        mine = self.server.registrations
        driven = {a.endpoint for a in self.driver.active.values() if a.campaign_id == cid}
        wanted = [
            ep
            for ep in campaign.members
            if ep in mine
            and ep not in driven
            and campaign.is_started(ep)
            and not _terminal(campaign.member_state(ep))
        ]
        if not wanted:
            return
        claimed = await self.store.claim_jobs(
            self.node_id,
            lease_s=self.lease_s,
            now=self.clock(),
            endpoints=wanted,
            campaign_id=cid,
            limit=len(wanted),
        )
        jitter = Jitter(campaign.spec.jitter_s, campaign.spec.seed)
        for record in claimed:
            delay = 0.0 if record.snapshot else jitter.delay(record.endpoint)
            await self.driver.adopt(record, delay=delay)

    async def _cancel_unstarted(self, cid: str, campaign: Campaign) -> None:
        """Jobs of members never started end CANCELLED (they are not failures)."""
        for job in await self.store.list_jobs(campaign_id=cid, state="pending"):
            if job.snapshot or job.id in self.driver.active:
                continue
            event = NewEvent(
                endpoint=job.endpoint,
                kind="finished",
                at=self.clock(),
                details={"state": "cancelled", "reason": "cancelled", "why": "campaign ended"},
            )
            with contextlib.suppress(StaleJob):
                await self.store.save_job(
                    job.id,
                    expected_rev=job.rev,
                    state="cancelled",
                    reason="cancelled",
                    snapshot={},
                    attempts=0,
                    next_timer_at=None,
                    events=[event],
                    now=self.clock(),
                )
                self._pending.setdefault(cid, _Pending()).reports[job.endpoint] = (
                    "cancelled",
                    "cancelled",
                )

    async def _resync(self, cid: str) -> None:
        """Queue a report for every job row whose state the campaign has not seen."""
        c = self._cache.get(cid)
        if c is None:
            rec = await self.store.get_campaign(cid)
            if rec is None or not rec.snapshot:
                return
            c = restore(rec)
        jobs: list[JobRecord] = await self.store.list_jobs(campaign_id=cid)
        pending = self._pending.setdefault(cid, _Pending())
        for job in jobs:
            seen = c.member_state(job.endpoint)
            if seen is not None and seen != (job.state, job.reason) and job.state != "pending":
                pending.reports.setdefault(job.endpoint, (job.state, job.reason))

    async def _log(self, cid: str, decisions: Iterable[Decision], now: float) -> None:
        events: list[NewEvent] = []
        for d in decisions:
            for change in d.changes:
                log.info(
                    "campaign %s: %s -> %s (%s%s)",
                    cid,
                    change.previous.value,
                    change.state.value,
                    change.trigger.value,
                    f": {change.detail}" if change.detail else "",
                )
                events.append(
                    NewEvent(
                        endpoint="*",
                        kind="campaign_state",
                        at=now,
                        campaign_id=cid,
                        details={
                            "from": str(change.previous),
                            "to": str(change.state),
                            "trigger": str(change.trigger),
                            "detail": change.detail,
                            "node": self.node_id,
                        },
                    )
                )
            # the decision itself, in the device's log: the process that drives the job
            # logs its "-> starting" when it picks the start up (up to a tick later)
            events.extend(
                NewEvent(
                    endpoint=start.endpoint,
                    kind="start_decided",
                    at=now,
                    campaign_id=cid,
                    details={
                        "wave": start.wave,
                        "not_before": start.not_before,
                        "node": self.node_id,
                    },
                )
                for start in d.starts
            )
            if d.advance is not None:
                log.info("campaign %s: wave %d -> %d", cid, d.advance.from_wave, d.advance.to_wave)
                events.append(
                    NewEvent(
                        endpoint="*",
                        kind="wave",
                        at=now,
                        campaign_id=cid,
                        details={
                            "from": d.advance.from_wave,
                            "to": d.advance.to_wave,
                            "node": self.node_id,
                        },
                    )
                )
        if events:
            await self.store.append_events(events)
            self.driver._publish(events)


def _terminal(state: tuple[str, str | None] | None) -> bool:
    return state is not None and state[0] in TERMINAL_STATES


Step = Callable[[Campaign, float], Decision]


def _report(reports: dict[str, tuple[str, str | None]]) -> Step:
    def step(c: Campaign, now: float) -> Decision:
        changes: list[Any] = []
        cancels: list[str] = []
        for endpoint, (state, reason) in reports.items():
            d = c.on_job_state(endpoint, state, reason, now)
            changes.extend(d.changes)
            cancels.extend(d.cancels)
        return Decision(changes=tuple(changes), cancels=tuple(cancels))

    return step


def _offer(view: DeviceView) -> Step:
    def step(c: Campaign, now: float) -> Decision:
        c.offer(view, now)
        return Decision()

    return step


__all__ = ["BUSY_KEY", "CampaignError", "CampaignRunner", "Inventory", "restore"]
