"""Driving update jobs: the I/O shell around the pure :class:`~fotakit.updates.job.UpdateJob`.

One :class:`JobDriver` per server process holds the *active* jobs this process owns (at
most one per endpoint and job). Every input to a job — its start, facts read after a
Register/Update, an Object 5 notification, the outcome of an operation, a timer, a cancel —
runs under the job's lock and follows the same three steps:

1. the pure job turns the input into commands;
2. the job's new state, its snapshot, the events (every operation, response code and
   State/Result seen) and the campaign counters it moves are committed in **one** store
   transaction (write-ahead: what is about to be sent is on disk before it is sent, so a
   restarted process knows a Write of /5/0/1 may have reached the device and reads the
   device's state before doing anything again);
3. then the I/O commands run as tasks (read facts, observe, write the URI, push,
   execute, cancel); each outcome re-enters as another input.

A write refused as stale (another process took the job over, or an operator changed it
elsewhere) drops the job from this process: it never drives a job it does not own.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Final

from fotakit.lwm2m.model import Content
from fotakit.lwm2m.objects.diagnostics import UPDATE_DIAGNOSTICS_ID
from fotakit.lwm2m.objects.paths import (
    FIRMWARE_INSTANCE,
    FIRMWARE_STATE,
    FIRMWARE_UPDATE_RESULT,
)
from fotakit.lwm2m.path import Path
from fotakit.server import Observation
from fotakit.store.errors import StoreError
from fotakit.updates import job as jobs
from fotakit.updates.delivery import JobTarget
from fotakit.updates.engine_io import DeviceIO, Outcome
from fotakit.updates.engine_packages import PackageSource, rebase_snapshot
from fotakit.updates.profiles import BUILTIN_DEFAULT, DeviceProfile
from fotakit.updates.records import JobRecord, NewEvent
from fotakit.updates.store import AsyncUpdateStore, StaleJob

log = logging.getLogger("fotakit.updates.engine")

Clock = Callable[[], float]
StateHook = Callable[["ActiveJob", str, str | None], Awaitable[None]]
PolicyFor = Callable[[JobRecord], jobs.JobPolicy]
JOB_BUG: Final = {"fotakit_job_bug": True}
"""``extra`` of the log records that mean a bug of the pure job (a table violation, an
exception): the test suite fails any test during which one is logged."""
ProfileFor = Callable[[str], tuple[DeviceProfile, str]]


@dataclass(eq=False)
class ActiveJob:
    """A job this process drives right now."""

    job_id: str
    endpoint: str
    campaign_id: str | None
    package_id: str
    wave: int | None
    job: jobs.UpdateJob
    rev: int
    state: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    observations: list[Observation] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    push: asyncio.Task[Any] | None = None
    timer_at: float | None = None
    inflight: dict[str, tuple[jobs.Command, float]] = field(default_factory=dict)
    last_input: float = field(default_factory=time.monotonic)
    executed_in: str | None = None  # registration ID when Execute /5/0/2 was sent
    polling: bool = False
    finished: bool = False
    fw_state: int | None = None
    fw_result: int | None = None


class JobDriver:
    """Runs the active jobs of one process (see the module docstring)."""

    def __init__(
        self,
        io: DeviceIO,
        packages: PackageSource,
        store: AsyncUpdateStore,
        *,
        node_id: str,
        policy_for: PolicyFor,
        clock: Clock = time.time,
        op_timeout: float = 30.0,
        on_state: StateHook | None = None,
        poll_s: float = 60.0,
        profile_for: ProfileFor | None = None,
    ) -> None:
        self.io = io
        self.packages = packages
        self.store = store
        self.node_id = node_id
        self.policy_for = policy_for
        self.clock = clock
        self.op_timeout = op_timeout
        self.on_state = on_state
        self.poll_s = poll_s
        self.profile_for: ProfileFor = profile_for or (
            lambda _ep: (BUILTIN_DEFAULT, "no device profiles configured")
        )
        self.active: dict[str, ActiveJob] = {}  # by job ID
        self.by_endpoint: dict[str, set[str]] = {}
        self._timers: list[tuple[float, str]] = []
        self._timer_wake = asyncio.Event()
        self._timer_task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[NewEvent], None]] = []
        self._detached: set[asyncio.Task[Any]] = set()
        self.pushes_in_flight = 0

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._timer_task = asyncio.get_running_loop().create_task(
            self._timer_loop(), name="fotakit-update-timers"
        )

    async def stop(self) -> None:
        """Stop driving (nothing is written: the store already has every job's state)."""
        if self._timer_task is not None:
            self._timer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer_task
            self._timer_task = None
        tasks = [t for a in self.active.values() for t in a.tasks] + list(self._detached)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.active.clear()
        self.by_endpoint.clear()

    def add_listener(self, listener: Callable[[NewEvent], None]) -> None:
        """Called with every event this process appends to the log (the live stream)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[NewEvent], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def jobs_of(self, endpoint: str) -> list[ActiveJob]:
        return [self.active[j] for j in self.by_endpoint.get(endpoint, ()) if j in self.active]

    # -- adopting jobs ----------------------------------------------------------------------

    async def adopt_idle(self, record: JobRecord) -> ActiveJob | None:
        """Hold ``record`` without starting it (to cancel a job that never started)."""
        return await self.adopt(record, start=False)

    async def adopt(
        self, record: JobRecord, *, delay: float = 0.0, start: bool = True
    ) -> ActiveJob | None:
        """Drive ``record`` (claimed by this process): start it, or resume it from its
        snapshot (a job restored in DELIVERING reads /5/0/3 instead of writing again).
        A resumed job gets this node's Package URIs (:meth:`_rebase`, logged as a
        ``rebased`` event when they change), so its retries send the device here."""
        if record.id in self.active or record.terminal:
            return self.active.get(record.id)
        chosen: dict[str, Any] | None = None
        rebased: dict[str, Any] | None = None
        try:
            policy = self.policy_for(record)
            if record.snapshot:
                snap, rebased = self._rebase(dict(record.snapshot))
                job = jobs.UpdateJob.from_snapshot(snap, policy)
            else:
                profile, why = self.profile_for(record.endpoint)
                target = self.packages.target(record.package_id, bare_payload=profile.bare)
                job = jobs.UpdateJob(record.id, record.endpoint, target, policy)
                chosen = {
                    "profile": profile.name,
                    "why": why,
                    "payload_form": profile.payload_form,
                    "protocols": list(profile.protocols),
                    "push": profile.push,
                    "timeouts": dict(profile.timeouts),
                }
        except Exception as exc:  # unknown package, corrupt snapshot
            log.error("cannot drive job %s: %s", record.id, exc)
            return None
        active = ActiveJob(
            job_id=record.id,
            endpoint=record.endpoint,
            campaign_id=record.campaign_id,
            package_id=record.package_id,
            wave=record.wave,
            job=job,
            rev=record.rev,
            state=record.state,
        )
        self.active[record.id] = active
        self.by_endpoint.setdefault(record.endpoint, set()).add(record.id)
        if chosen is not None and start:
            await self._log(active, "profile", chosen)
        if rebased is not None and start:
            await self._log(active, "rebased", rebased)
        if not start:
            pass
        elif record.snapshot:
            await self.feed(active, lambda j, now: j.resume(now), "resume")
            await self._missed_register(active, record)
        elif delay > 0:
            self._spawn(active, self._start_later(active, delay))
        else:
            await self._start(active)
        return active

    def _rebase(self, snap: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The snapshot with Package URIs of this node's repository (same package, same
        form), and what changed (None: nothing). The snapshot's URIs name the base URIs
        of the node that saved it: a job adopted from a dead node would otherwise send
        the device to a repository that no longer answers."""
        old = JobTarget.from_json(snap["target"])
        try:
            fresh = self.packages.target(old.package_id, bare_payload=old.bare_payload)
        except Exception as exc:  # the package is gone: the saved URIs are all there is
            log.warning("job %s: package URIs not rebuilt: %s", snap.get("job_id"), exc)
            return snap, None
        out = rebase_snapshot(snap, fresh)
        before, after = old.offered_uris(), fresh.offered_uris()
        if before == after:
            return out, None
        return out, {"from": before, "to": after, "form": old.form}

    async def _missed_register(self, active: ActiveJob, record: JobRecord) -> None:
        """A device that registered anew after the job's last change, while no process
        was watching (this one was down): tell the job, which judges the version."""
        reg = self.io.server.get(active.endpoint)
        if reg is None or active.job.state not in _AFTER_DOWNLOAD:
            return
        at = reg.registered_at
        if at.tzinfo is None:  # a naive value read back from the database is UTC
            at = at.replace(tzinfo=UTC)
        if at.timestamp() <= record.updated_at:
            return
        active.executed_in = reg.registration_id
        facts = self.io.registration_facts(active.endpoint)
        await self.feed(
            active, lambda j, now: j.on_registered(facts, now, kind="register"), "missed-reg"
        )

    async def _start_later(self, active: ActiveJob, delay: float) -> None:
        await asyncio.sleep(delay)  # the campaign's per-device jitter
        await self._start(active)

    async def _start(self, active: ActiveJob) -> None:
        facts = self.io.registration_facts(active.endpoint)
        await self.feed(active, lambda j, now: j.start(now, facts), "start")

    # -- inputs -----------------------------------------------------------------------------

    async def on_registered(self, endpoint: str, kind: str) -> None:
        """A Register (``kind="register"``) or Update of ``endpoint``: the job re-observes
        and reads /5/0/3, /5/0/5 (and /3/0/3 after an install)."""
        facts = self.io.registration_facts(endpoint)
        which: Any = "register" if kind == "register" else "update"
        for active in self.jobs_of(endpoint):
            if kind == "register":
                active.observations.clear()  # a new Register ended them (TS Core 6.4.3)
            await self.feed(
                active, lambda j, now: j.on_registered(facts, now, kind=which), f"reg:{kind}"
            )

    async def on_notification(self, endpoint: str, path: Path, content: Content) -> None:
        """/5/0/3 and /5/0/5 from an observation: of the instance /5/0 (both values in one
        notification, so never a State paired with a stale Result) or of each resource."""
        state = content.get(FIRMWARE_STATE)
        result = content.get(FIRMWARE_UPDATE_RESULT)
        if not isinstance(state, int) and not isinstance(result, int):
            return
        for active in self.jobs_of(endpoint):
            if isinstance(state, int):
                active.fw_state = int(state)
            if isinstance(result, int):
                active.fw_result = int(result)
            if active.fw_state is None or active.fw_result is None:
                continue
            await self.feed(active, _fw_step(active.fw_state, active.fw_result), "notification")

    async def cancel(self, job_id: str) -> bool:
        active = self.active.get(job_id)
        if active is None:
            return False
        await self.feed(active, lambda j, now: j.cancel(now), "cancel")
        return True

    async def feed(
        self,
        active: ActiveJob,
        step: Callable[[jobs.UpdateJob, float], Sequence[jobs.Command]],
        what: str,
    ) -> None:
        """One input: the job decides, the store commits, then the commands run."""
        async with active.lock:
            if active.finished:
                return
            active.last_input = time.monotonic()
            now = self.clock()
            try:
                commands = list(step(active.job, now))
            except jobs.TableViolation as exc:
                # a bug: the job refused the input and is unchanged; record it, go on
                log.error("job %s: %s (input %s)", active.job_id, exc, what, extra=JOB_BUG)
                details = {"phase": str(exc.phase), "input": str(exc.input), "error": str(exc)}
                await self._log(active, "table_violation", details)
                return
            except Exception:
                log.exception("job %s failed on input %s", active.job_id, what, extra=JOB_BUG)
                return
            await self._commit(active, commands, now)

    async def _commit(self, active: ActiveJob, commands: list[jobs.Command], now: float) -> None:
        job = active.job
        events: list[NewEvent] = []
        io: list[jobs.Command] = []
        finished = False
        for cmd in commands:
            if isinstance(cmd, jobs.Log):
                events.append(self._event(active, cmd.event, dict(cmd.details), now))
            elif isinstance(cmd, jobs.Finish):
                finished = True
            elif isinstance(cmd, jobs.SetTimer):
                continue  # job.deadline is the one timer; armed after the commit
            else:
                io.append(cmd)
        state = str(job.state)
        reason = _s(job.reason)
        try:
            active.rev = await self.store.save_job(
                active.job_id,
                expected_rev=active.rev,
                state=state,
                reason=reason,
                snapshot=job.snapshot(),
                attempts=job.attempts,
                next_timer_at=job.deadline,
                events=events,
                node_id=self.node_id,
                now=now,
                reason_detail=job.detail,
            )
        except StaleJob as exc:
            log.warning("job %s taken over elsewhere (%s): dropped here", active.job_id, exc)
            self._drop(active)
            return
        except StoreError:
            log.exception("job %s: store write failed; input dropped", active.job_id)
            return
        self._publish(events)
        changed = state != active.state
        active.state = state
        if finished or job.terminal:
            active.finished = True
            self._drop(active)
            if active.push is not None:
                active.push.cancel()
            self._spawn_detached(self._release(active))
            if job.state in (jobs.JobState.FAILED, jobs.JobState.TIMED_OUT):
                self._spawn_detached(self._diagnose(active, job.detail))
        else:
            self._arm(active, job.deadline)
            for cmd in io:
                active.inflight[cmd.command_id] = (cmd, self._bound(cmd))
                self._spawn(active, self._run(active, cmd))
        if changed and self.on_state is not None:
            self._spawn_detached(self.on_state(active, state, reason))

    async def _release(self, active: ActiveJob) -> None:
        for obs in active.observations:
            if not obs.ended:
                await self.io.cancel_observation(obs)
        active.observations.clear()

    async def _diagnose(self, active: ActiveJob, detail: str | None) -> None:
        """A failed job: read why the device says its update failed (object 33600, see
        docs/agent-guide.md) when it announced that object, log it as
        ``device_diagnostics`` and put its words into the job's reason detail."""
        if not self.io.announces(active.endpoint, UPDATE_DIAGNOSTICS_ID):
            return
        text = await self.io.read_failure_text(active.endpoint, min(self.op_timeout, 10.0))
        if text is None:
            return
        await self._log(active, "device_diagnostics", {"text": text})
        words = f"the device says: {text}"
        full = f"{detail}; {words}" if detail else words
        try:
            await self.store.run(lambda s: s.set_job_detail(active.job_id, full))
        except StoreError:
            log.exception("job %s: storing the device's diagnostics failed", active.job_id)

    def _drop(self, active: ActiveJob) -> None:
        self.active.pop(active.job_id, None)
        ids = self.by_endpoint.get(active.endpoint)
        if ids is not None:
            ids.discard(active.job_id)
            if not ids:
                del self.by_endpoint[active.endpoint]

    # -- commands ---------------------------------------------------------------------------

    def _bound(self, cmd: jobs.Command) -> float:
        """When the watchdog answers a command that got no result (monotonic clock)."""
        limit = cmd.timeout_s if isinstance(cmd, jobs.Push) else 3 * self.op_timeout
        return time.monotonic() + limit + self.op_timeout

    async def _run(self, active: ActiveJob, cmd: jobs.Command) -> None:
        """Carry out one command; whatever happens, the job gets an answer."""
        try:
            await self._carry_out(active, cmd)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            log.warning("job %s: %s lost (exchange cancelled)", active.job_id, cmd.kind)
            await self._result(active, cmd, Outcome(False, "unreachable"))
        except Exception as exc:
            log.exception("job %s: %s failed", active.job_id, cmd.kind)
            await self._result(active, cmd, Outcome(False, f"error: {type(exc).__name__}"))
        finally:
            active.inflight.pop(cmd.command_id, None)

    def _sweep(self) -> None:
        """Answer commands whose result never came within their bound (a lost exchange):
        a job must never wait for an answer that cannot come. Poll a job that has heard
        nothing for ``poll_s`` while the device should be moving (a lost notification)."""
        now = time.monotonic()
        for active in list(self.active.values()):
            if (
                active.job.state in jobs.MOVING_STATES
                and not active.inflight
                and not active.polling
                and now - active.last_input >= self.poll_s
                and not self.io.registration_facts(active.endpoint).queue_mode
            ):
                active.polling = True
                self._spawn(active, self._poll(active))
            for cid, (cmd, bound) in list(active.inflight.items()):
                if bound <= now:
                    del active.inflight[cid]
                    log.warning(
                        "job %s: no result for %s; taken as a timeout", active.job_id, cmd.kind
                    )
                    self._spawn(active, self._result(active, cmd, Outcome(False, "timeout")))

    async def _carry_out(self, active: ActiveJob, cmd: jobs.Command) -> None:
        ep = active.endpoint
        t = self.op_timeout
        if isinstance(cmd, jobs.ReadFacts):
            read = await self.io.read_facts(ep, t, cmd.paths)
            if read.facts.fw_state is not None:
                active.fw_state = read.facts.fw_state
            if read.facts.fw_result is not None:
                active.fw_result = read.facts.fw_result
            if any(c == "2.05" for c in read.codes.values()) and read.reachable:
                facts = read.facts
                await self.feed(
                    active,
                    lambda j, now: j.on_facts(facts, now, command_id=cmd.command_id),
                    "facts",
                )
            else:
                code = next((c for c in read.codes.values() if c != "2.05"), "no_answer")
                await self._result(active, cmd, Outcome(False, code))
            return
        if isinstance(cmd, jobs.Observe):
            out = await self._observe(active, cmd.paths)
        elif isinstance(cmd, jobs.WriteUri):
            out = await self.io.write_uri(ep, cmd.uri, t)
        elif isinstance(cmd, jobs.ResetUri):
            out = await self.io.write_uri(ep, "", t)
        elif isinstance(cmd, jobs.Push):
            out = await self._push(active, cmd)
        elif isinstance(cmd, jobs.Execute):
            reg = self.io.server.get(ep)
            active.executed_in = reg.registration_id if reg is not None else None
            out = await self.io.execute(ep, cmd.path, t)
        elif isinstance(cmd, jobs.WriteResource):
            out = await self.io.write_resource(ep, cmd.path, cmd.value, t)
        elif isinstance(cmd, jobs.Cancel):
            if active.push is not None:
                active.push.cancel()  # abort this job's running push first
            out = await self.io.cancel(ep, cmd.method, t)
        else:
            log.warning("job %s: unknown command %r", active.job_id, cmd)
            return
        await self._result(active, cmd, out)

    async def _observe(self, active: ActiveJob, paths: tuple[str, ...]) -> Outcome:
        """Observe /5/0/3 and /5/0/5 as one observation of the instance /5/0 (its
        notifications carry both), or each path when the device refuses that or answers
        without the Observe option (RFC 7641 §4.1: a plain Read, the instance is not
        observable there — e.g. lwm2m-node-lib observes single resources only)."""
        for obs in active.observations:
            if not obs.ended:
                await self.io.cancel_observation(obs)
        active.observations.clear()
        wanted = [Path.parse(p) for p in paths]
        if set(wanted) == {FIRMWARE_STATE, FIRMWARE_UPDATE_RESULT}:
            out = await self.io.observe(active.endpoint, FIRMWARE_INSTANCE, self.op_timeout)
            if out.ok and not out.value.ended:
                active.observations.append(out.value)
                return Outcome(True, "2.05")
            if out.code in ("timeout", "unreachable", "not_registered"):
                return out
        codes = []
        for path in wanted:
            out = await self.io.observe(active.endpoint, path, self.op_timeout)
            codes.append(out.code)
            if out.ok:
                active.observations.append(out.value)
        ok = len(active.observations) == len(wanted)
        return Outcome(ok, "2.05" if ok else next(c for c in codes if c != "ok"))

    async def _push(self, active: ActiveJob, cmd: jobs.Push) -> Outcome:
        try:
            data = await asyncio.to_thread(self.packages.read, cmd.package_id, cmd.form)
        except Exception as exc:
            return Outcome(False, f"package unreadable: {exc}")
        self.pushes_in_flight += 1
        task = asyncio.ensure_future(self.io.push(active.endpoint, data, cmd.timeout_s))
        active.push = task
        try:
            out = await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            out = Outcome(False, "aborted")
        finally:
            active.push = None
            self.pushes_in_flight -= 1
        if not out.ok and out.code != "aborted":
            # A broken Block1 transfer leaves the device Downloading a partial image that
            # nobody will complete: reset it (empty Package URI) so a retry starts clean.
            reset = await self.io.write_uri(active.endpoint, "", self.op_timeout)
            await self._log(active, "push_reset", {"push": out.code, "reset": reset.code})
        return out

    async def _poll(self, active: ActiveJob) -> None:
        """Read /5/0 and /3/0/3 and feed them as facts (nothing is sent to the device
        beyond the reads; the job decides as it would on a notification)."""
        try:
            reg = self.io.server.get(active.endpoint)
            if (
                active.job.state is jobs.JobState.REBOOTING
                and reg is not None
                and active.executed_in is not None
                and reg.registration_id != active.executed_in
            ):
                # registered anew since the Execute, but the Register reached the job
                # before it knew the install had started (the Execute's answer was lost)
                active.executed_in = reg.registration_id
                facts = self.io.registration_facts(active.endpoint)
                await self.feed(
                    active, lambda j, now: j.on_registered(facts, now, kind="register"), "poll"
                )
                return
            read = await self.io.read_facts(active.endpoint, self.op_timeout, ("/5/0", "/3/0/3"))
            if read.reachable and read.complete:
                facts = read.facts
                await self.feed(active, lambda j, now: j.on_facts(facts, now), "poll")
            else:
                active.last_input = time.monotonic()
        finally:
            active.polling = False

    async def _result(self, active: ActiveJob, cmd: jobs.Command, out: Outcome) -> None:
        code = None if out.ok else out.code
        await self.feed(
            active,
            lambda j, now: j.on_command_result(cmd.command_id, out.ok, code, now),
            f"result:{cmd.kind}",
        )

    # -- timers -----------------------------------------------------------------------------

    def _arm(self, active: ActiveJob, at: float | None) -> None:
        if at == active.timer_at:
            return
        active.timer_at = at
        if at is not None:
            heapq.heappush(self._timers, (at, active.job_id))
            self._timer_wake.set()

    async def _timer_loop(self) -> None:
        for _ in range(10**12):  # ends when stop() cancels it
            self._timer_wake.clear()
            now = self.clock()
            while self._timers and self._timers[0][0] <= now:
                at, job_id = heapq.heappop(self._timers)
                active = self.active.get(job_id)
                if active is None or active.timer_at != at:
                    continue  # superseded or finished
                active.timer_at = None
                self._spawn(active, self.feed(active, lambda j, n: j.on_timer(n), "timer"))
            self._sweep()
            delay = (self._timers[0][0] - now) if self._timers else 3600.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wake.wait(), max(0.005, min(delay, 1.0)))

    # -- helpers ----------------------------------------------------------------------------

    def _event(self, active: ActiveJob, kind: str, details: dict[str, Any], now: float) -> NewEvent:
        return NewEvent(
            endpoint=active.endpoint,
            kind=kind,
            at=now,
            job_id=active.job_id,
            campaign_id=active.campaign_id,
            details=_jsonable(details),
        )

    async def _log(self, active: ActiveJob, kind: str, details: dict[str, Any]) -> None:
        """An event of the shell itself (not of the job) in the job's log."""
        ev = self._event(active, kind, details, self.clock())
        await self.store.append_events([ev])
        self._publish([ev])

    def _publish(self, events: Sequence[NewEvent]) -> None:
        for ev in events:
            for listener in list(self._listeners):
                try:
                    listener(ev)
                except Exception:
                    log.exception("event listener failed")

    def _spawn(self, active: ActiveJob, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(_guard(coro, active.job_id))
        active.tasks.add(task)
        task.add_done_callback(active.tasks.discard)

    def _spawn_detached(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(_guard(coro, "hook"))
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)


_AFTER_DOWNLOAD = frozenset(
    {jobs.JobState.DOWNLOADED, jobs.JobState.INSTALLING, jobs.JobState.REBOOTING}
)
"""Job states in which a Register may be the reboot into the new image."""


def _fw_step(state: int, result: int) -> Callable[[jobs.UpdateJob, float], list[jobs.Command]]:
    def step(job: jobs.UpdateJob, now: float) -> list[jobs.Command]:
        return job.on_firmware_state(state, result, now, source="observe")

    return step


async def _guard(coro: Awaitable[Any], what: str) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("update engine task for %s failed", what)


def _s(value: object) -> str | None:
    return None if value is None else str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
