"""The device agent: LwM2M client + Object 5 + downloads + A/B slots + verification.

:class:`Agent` is the I/O shell around the sans-I/O parts (the Object 5 state machine in
:mod:`fotakit.agent.fsm`, the slot bookkeeping in :mod:`fotakit.agent.slots`). One *boot*
of the agent is what one start of the firmware is on a real device:

1. :meth:`SlotStore.boot` decides the slot (and counts a trial start *before* anything
   else runs, so a crash anywhere later still counts: MCUboot's boot counter);
2. the Object 5 snapshot is restored from ``data_dir`` (the state survives reboots, TS
   Core E.6: "Updating" before the reboot becomes Idle/1 or Idle-or-Downloaded/8 after);
3. the LwM2M client with Objects 3, 4 and 5 registers with the server;
4. a download that a restart interrupted (State Downloading) resumes from the persisted
   URI, offset and ETag;
5. a trial boot runs the health check (registration within a deadline and/or a
   command), then :meth:`SlotStore.confirm` and Update Result 1 — or
   :meth:`SlotStore.revert`, a "reboot" into the old slot and Update Result 8 with /3/0/3
   the old version.

Why an attempt failed goes beyond Update Result: the agent records the reason in its
private object /33600/0 "fotakit Update Diagnostics" (:mod:`fotakit.agent.diagnostics`,
docs/agent-guide.md), whenever a download, verification, installation or trial boot fails
and when a restart cut an update short. Failures that Object 5 decides by itself (an
invalid URI, an unsupported protocol, an abandoned push) get the Update Result's meaning.

The update flow (docs/agent-guide.md, "The update flow"): pull (:class:`Downloader`) or push
(Block1 writes on /5/0/0) write the inactive slot while a
:class:`~fotakit.packages.StreamingPackageVerifier` checks the bytes as they arrive, so a
package that is not signed by a trust anchor, is for another device class, or is older
than the anti-rollback counter fails on its envelope, before the payload is fetched
(Update Result 5 or 6). A verified slot is Object 5 "Downloaded"; nothing is scheduled
yet. Execute /5/0/2 runs the installer hook on the verified image, marks the slot
pending and reboots.

"Reboot" stops the client (without De-register by default: a device that power-cycles
does not de-register either, and its next Register replaces the old registration; TS
Core §6.2.1 does not forbid either, see OMA#300), then boots again in-process — or, with
``reexec``, ends :meth:`Agent.wait_stopped` with ``"reboot"`` so the CLI can
``os.execv`` itself.

State on disk (all written with fsync + atomic rename, :mod:`fotakit.agent.persist`)::

    data_dir/boot.json      the A/B boot state (slots.py)
    data_dir/slots/{a,b}/   the slots' images and descriptions
    data_dir/object5.json   the Object 5 snapshot, written on every change before notify
    data_dir/download.json  the pull progress (URI, offset, ETag, total), every 64 KiB
    data_dir/diagnostics.json  the last update failure (/33600/0)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from fotakit.agent.config import AgentConfig
from fotakit.agent.diagnostics import UpdateDiagnostics
from fotakit.agent.download import Downloader, DownloadError, DownloadProgress
from fotakit.agent.fsm import GIVEN_RESULTS, Trigger
from fotakit.agent.health import (
    AllOf,
    AlwaysHealthy,
    CommandHealthCheck,
    HealthCheck,
    RegistrationHealthCheck,
    run_check,
)
from fotakit.agent.installer import CommandInstaller, Installer, InstallFailed, NullInstaller
from fotakit.agent.object5 import (
    FirmwareSnapshot,
    FirmwareUpdateInstance,
    NotEnoughStorage,
    PushSink,
)
from fotakit.agent.persist import (
    CorruptStateError,
    atomic_write_bytes,
    atomic_write_json,
    read_bytes,
    read_json,
    remove_stale_temp_files,
)
from fotakit.agent.slots import (
    REASON_CRASH_LOOP,
    REASON_HEALTH_CHECK,
    REASON_IMAGE_DAMAGED,
    OutcomeKind,
    SlotError,
    SlotFull,
    SlotState,
    SlotStore,
    SlotWriter,
)
from fotakit.client import (
    ClientConfig,
    EventKind,
    LwM2MClient,
    LwM2MObject,
    RegistrationEvent,
)
from fotakit.client.objects.connectivity import (
    ConnectivityInstance,
    ConnectivitySource,
    LinuxConnectivitySource,
    SimulatedConnectivitySource,
)
from fotakit.client.objects.device import (
    DeviceInfo,
    DeviceInstance,
    DeviceStatusSource,
    LinuxDeviceStatus,
    SimulatedDeviceStatus,
)
from fotakit.lwm2m.objects import (
    CONNECTIVITY_MONITORING,
    DEVICE,
    FIRMWARE_UPDATE,
    DeliveryMethod,
    FailurePhase,
    State,
    UpdateProtocol,
    UpdateResult,
)
from fotakit.packages import (
    PackageError,
    StreamingPackageVerifier,
    TrustStore,
    VerifiedPackage,
    verify_package,
)

_log = logging.getLogger("fotakit.agent")

#: Download progress is persisted (after an fsync of the slot) at most every this many bytes.
PROGRESS_INTERVAL: Final = 64 * 1024
#: Bounded event queue (the oldest events go first when nobody reads).
EVENT_QUEUE_SIZE: Final = 4096
#: How long a reboot waits so what was just sent (the 2.04 of an Execute /3/0/4, the
#: notification of State 3 Updating) leaves the socket before the client stops.
REBOOT_DELAY: Final = 0.05
#: Polling sources (Linux interfaces, /proc/meminfo) are re-read this often (seconds) so
#: observers of /3/0/10 or /4/0/2 hear about changes.
STATUS_REFRESH: Final = 60.0
_REFEED_CHUNK: Final = 64 * 1024
_DOWNLOAD_RESULTS: Final = GIVEN_RESULTS[Trigger.DOWNLOAD_FAILED]
_MAX_REBOOTS_PER_START: Final = 10_000
#: The Update Results that report a failed attempt (Object 5 1.2: 2-9; 10 Cancelled and 11
#: Deferred are decisions, not failures).
_FAILURES: Final = frozenset(UpdateResult(r) for r in range(2, 10))
#: What each failure result means (the Update Result description of the registry's 5.xml):
#: the text of a failure Object 5 decided by itself, without the agent knowing more.
_RESULT_TEXT: Final = {
    UpdateResult.NOT_ENOUGH_FLASH: "not enough flash memory for the new firmware package",
    UpdateResult.OUT_OF_RAM: "out of RAM during the download",
    UpdateResult.CONNECTION_LOST: "connection lost during the download",
    UpdateResult.INTEGRITY_CHECK_FAILURE: "integrity check failure of the downloaded package",
    UpdateResult.UNSUPPORTED_PACKAGE_TYPE: "unsupported package type",
    UpdateResult.INVALID_URI: "invalid URI",
    UpdateResult.UPDATE_FAILED: "firmware update failed",
    UpdateResult.UNSUPPORTED_PROTOCOL: "unsupported protocol",
}


class AgentEventKind(enum.StrEnum):
    BOOTED = "booted"  # slot, version, trial, trial_boot
    REGISTERED = "registered"
    REGISTRATION_FAILED = "registration_failed"  # code, diagnostic, detail (then retried)
    STATE = "state"  # Object 5 state/result changed (persisted)
    PROGRESS = "progress"  # download progress persisted (offset, total)
    RESUMED = "resumed"  # a pull continues from a persisted offset (offset, uri)
    DOWNLOADED = "downloaded"  # the inactive slot holds a verified package
    FAILED = "failed"  # a download/verification/installation failed (result)
    TRIAL = "trial"  # health check running on a trial boot
    CONFIRMED = "confirmed"
    REVERTED = "reverted"
    REBOOTING = "rebooting"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """Something the agent did; ``detail`` is JSON-serialisable (the CLI logs it)."""

    kind: AgentEventKind
    detail: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind.value, "at": round(self.at, 3), **self.detail}


class _VerifyingSink:
    """The inactive slot as a download sink, with the package verified as bytes arrive.

    Bytes are fed to the :class:`StreamingPackageVerifier` in order; a retransmitted or
    re-fetched range (offset below what was fed) is written again but not fed twice. A
    write past the fed end (out of order; only a push can do that) stops streaming
    verification, and :meth:`verify` then checks the whole slot file instead.
    """

    def __init__(self, writer: SlotWriter, make_verifier: Callable[[], StreamingPackageVerifier]):
        self.writer = writer
        self._make = make_verifier
        self.verifier = make_verifier()
        self.fed = 0
        self.sequential = True
        self.error: PackageError | None = None

    def write(self, offset: int, data: bytes) -> None:
        self.writer.write(offset, data)
        if not self.sequential:
            return
        end = offset + len(data)
        if offset > self.fed:
            self.sequential = False
            return
        if end > self.fed:
            self.verifier.feed(bytes(data[self.fed - offset :]))
            self.fed = end

    def truncate(self, size: int) -> None:
        self.writer.truncate(size)
        if size < self.fed:
            self.refeed(size)

    def refeed(self, size: int) -> None:
        """Restart verification with the first ``size`` bytes already in the slot file."""
        self.verifier = self._make()
        self.fed = 0
        self.sequential = True
        with open(self.writer.path, "rb") as f:
            for _ in range(size // _REFEED_CHUNK + 2):
                if self.fed >= size:
                    break
                chunk = f.read(min(_REFEED_CHUNK, size - self.fed))
                if not chunk:
                    break
                self.verifier.feed(chunk)
                self.fed += len(chunk)

    def verify(self, trust: TrustStore, **checks: Any) -> VerifiedPackage:
        if self.sequential and self.fed == self.writer.size:
            return self.verifier.finish()
        return verify_package(self.writer.path, trust, **checks)


class _PushSink:
    """A Block1 push (PUT /5/0/0) straight into the inactive slot (PushSink protocol)."""

    def __init__(self, agent: Agent, sink: _VerifyingSink) -> None:
        self.agent = agent
        self.sink = sink

    def write_block(self, num: int, block_size: int, data: bytes) -> None:
        try:
            self.sink.write(num * block_size, data)
        except SlotFull as exc:
            raise NotEnoughStorage(exc.capacity) from exc
        except PackageError as exc:
            # Keep taking blocks (the server is mid-transfer); report at finish().
            if self.sink.error is None:
                self.sink.error = exc
            self.sink.sequential = False

    def finish(self, total_size: int) -> None:
        self.sink.writer.truncate(total_size)
        self.agent._spawn(self.agent._finish_push(self.sink), "push-verify")

    def abort(self) -> None:
        self.sink.writer.close()
        self.agent._discard_slot()


class Agent:
    """One device agent (see the module docstring). Python API::

        agent = Agent(load_config("agent.toml"))
        await agent.start()          # boots, registers; updates run in the background
        event = await agent.events.get()
        await agent.stop()

    ``connectivity`` / ``device_status`` override the sources the config names (the
    fleet simulator passes simulated ones it drives); ``installer`` the installer hook.
    ``reexec`` makes a reboot end :meth:`wait_stopped` with ``"reboot"`` instead of
    booting again in-process.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        connectivity: ConnectivitySource | None = None,
        device_status: DeviceStatusSource | None = None,
        trust: TrustStore | None = None,
        installer: Installer | None = None,
        reexec: bool = False,
    ) -> None:
        self.config = config
        self.reexec = reexec
        self.trust = trust if trust is not None else config.trust_store()
        if not len(self.trust):
            _log.warning("no trust anchors configured: every package will be refused (5)")
        if installer is None:
            command = config.installer.command
            installer = (
                CommandInstaller(command, timeout=config.installer.timeout)
                if command is not None
                else NullInstaller()
            )
        self.installer = installer
        if connectivity is None:
            connectivity = (
                SimulatedConnectivitySource()
                if config.connectivity == "simulated"
                else LinuxConnectivitySource()
            )
        if device_status is None:
            device_status = (
                SimulatedDeviceStatus()
                if config.connectivity == "simulated"
                else LinuxDeviceStatus()
            )
        self.connectivity_source = connectivity
        self.device_status = device_status
        self.events: asyncio.Queue[AgentEvent] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._listeners: list[Callable[[AgentEvent], None]] = []
        self.boots = 0
        self._client: LwM2MClient | None = None
        self._slots: SlotStore | None = None
        self.firmware: FirmwareUpdateInstance | None = None
        self.device: DeviceInstance | None = None
        self.connectivity: ConnectivityInstance | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pull_task: asyncio.Task[None] | None = None
        self._push: _PushSink | None = None
        self._downloader: Downloader | None = None
        self._stopped = asyncio.Event()
        self._stop_reason = "stopped"
        self._running = False
        self._reboot_task: asyncio.Task[None] | None = None
        self._last_progress_saved = -1
        self.diagnostics: UpdateDiagnostics | None = None
        self._last_result = UpdateResult.INITIAL
        self._explained = False  # a failure being reported was recorded with its reason

    # -- public state ---------------------------------------------------------------------
    @property
    def client(self) -> LwM2MClient:
        if self._client is None:
            raise RuntimeError("agent not started")
        return self._client

    @property
    def slots(self) -> SlotStore:
        if self._slots is None:
            raise RuntimeError("agent not started")
        return self._slots

    @property
    def running_version(self) -> str:
        """The firmware version of the slot this boot runs (/3/0/3)."""
        return self.slots.running.version or self.config.initial_version

    @property
    def running(self) -> bool:
        return self._running

    def add_listener(self, listener: Callable[[AgentEvent], None]) -> None:
        """Call ``listener`` with every event (the CLI logs them)."""
        self._listeners.append(listener)

    def _emit(self, kind: AgentEventKind, **detail: Any) -> None:
        event = AgentEvent(kind, detail)
        _log.info("%s %s", kind.value, detail)
        if self.events.full():
            self.events.get_nowait()
        self.events.put_nowait(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                _log.exception("agent event listener failed")

    async def wait_for(
        self,
        kind: AgentEventKind,
        where: Callable[[AgentEvent], bool] = lambda _e: True,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> AgentEvent:
        """The next event of ``kind`` matching ``where`` from :attr:`events` (others are
        consumed); TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if event.kind is kind and where(event):
                    return event

    # -- paths ------------------------------------------------------------------------------
    @property
    def _object5_file(self) -> Path:
        return self.config.data_dir / "object5.json"

    @property
    def _download_file(self) -> Path:
        return self.config.data_dir / "download.json"

    @property
    def _diagnostics_file(self) -> Path:
        return self.config.data_dir / "diagnostics.json"

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Boot once: slots, Object 5 restore, register, resume, trial check."""
        if self._running:
            raise RuntimeError("agent already running")
        self._stopped.clear()
        await self._boot()

    async def stop(self, *, deregister: bool = True) -> None:
        """Stop the client (De-register by default) and every background task."""
        if self._reboot_task is not None and self._reboot_task is not asyncio.current_task():
            self._reboot_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reboot_task
        await self._shutdown(deregister=deregister)
        self._stop_reason = "stopped"
        self._emit(AgentEventKind.STOPPED, reason="stopped")
        self._stopped.set()

    async def wait_stopped(self) -> str:
        """Until the agent stopped: ``"stopped"``, or ``"reboot"`` (reexec mode)."""
        await self._stopped.wait()
        return self._stop_reason

    async def reboot(self, reason: str = "requested") -> None:
        """Restart the agent as a device restarts its firmware (see the module docstring)."""
        self._emit(AgentEventKind.REBOOTING, reason=reason)
        await self._shutdown(deregister=self.config.deregister_on_reboot)
        if self.reexec:
            self._stop_reason = "reboot"
            self._stopped.set()
            return
        await self._boot()

    def request_reboot(self, reason: str, delay: float = 0.0) -> None:
        """Reboot from inside a request handler or background task (non-blocking)."""
        if self._reboot_task is not None and not self._reboot_task.done():
            return
        loop = asyncio.get_running_loop()

        async def later() -> None:
            if delay:
                await asyncio.sleep(delay)
            await self.reboot(reason)

        self._reboot_task = loop.create_task(later(), name="fotakit-agent-reboot")

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _shutdown(self, *, deregister: bool) -> None:
        self._running = False
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._pull_task = None
        if self._downloader is not None:
            await self._downloader.close()
            self._downloader = None
        if self._push is not None:
            self._push.sink.writer.close()
            self._push = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.stop(deregister=deregister)
            self._client = None

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(
            coro, name=f"fotakit-agent-{name}"
        )
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                _log.error("agent task %s failed", name, exc_info=t.exception())

        task.add_done_callback(done)
        return task

    # -- one boot ------------------------------------------------------------------------------
    async def _boot(self) -> None:
        cfg = self.config
        self.boots += 1
        if self.boots > _MAX_REBOOTS_PER_START:
            raise RuntimeError("too many reboots in one process")
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(cfg.data_dir)
        slots = SlotStore.initialise(
            cfg.data_dir,
            version=cfg.initial_version,
            sequence=cfg.initial_sequence,
            max_trial_boots=cfg.max_trial_boots,
            slot_capacity=cfg.slot_capacity,
        )
        decision = slots.boot()
        self._slots = slots
        raw = read_bytes(self._object5_file)
        snapshot = None
        if raw is not None:
            try:
                snapshot = FirmwareSnapshot.from_json(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise CorruptStateError(self._object5_file, str(exc)) from exc
        self.diagnostics = UpdateDiagnostics(self._diagnostics_file)
        self._last_result = snapshot.result if snapshot is not None else UpdateResult.INITIAL
        self.firmware = FirmwareUpdateInstance(self, snapshot=snapshot)
        if self.device is None:  # made once: they survive reboots with their sources
            self.device = DeviceInstance(
                DeviceInfo(
                    manufacturer=cfg.device.manufacturer,
                    model_number=cfg.device.model,
                    serial_number=cfg.device.serial,
                    hardware_version=cfg.device.hardware_version,
                    supported_bindings="U",
                ),
                reboot=self._reboot_execute,
                status=self.device_status,
                firmware_version=lambda: self.running_version,
            )
        if self.connectivity is None:
            self.connectivity = ConnectivityInstance(self.connectivity_source)
        client = LwM2MClient(
            ClientConfig(
                endpoint=cfg.endpoint,
                server_uri=cfg.server_uri,
                lifetime=cfg.lifetime,
                lwm2m_version=cfg.lwm2m_version,
                local_host=cfg.local_host,
                local_port=cfg.local_port,
                transport=cfg.transport,
                queue_mode=cfg.queue_mode,
                advertise_formats=cfg.advertise_formats,
            ),
            [
                LwM2MObject(DEVICE, {0: self.device}),
                LwM2MObject(CONNECTIVITY_MONITORING, {0: self.connectivity}),
                LwM2MObject(FIRMWARE_UPDATE, {0: self.firmware}),
                self.diagnostics.lwm2m_object(),
            ],
        )
        self._client = client
        self._emit(
            AgentEventKind.BOOTED,
            boot=self.boots,
            slot=decision.slot,
            version=self.running_version,
            trial=decision.trial,
            trial_boot=decision.trial_boot,
            state=int(self.firmware.snapshot.state),
            result=int(self.firmware.snapshot.result),
        )
        self._reconcile(decision.trial, decision.outcome)
        client.add_listener(self._registration_event)
        await client.start()
        self._running = True
        if decision.trial:
            self._spawn(self._trial(), "trial")
        else:
            self._resume_download()
        self._spawn(self._refresh_status(), "status")

    async def _refresh_status(self) -> None:
        """Re-read polling sources periodically (a simulated source notifies by itself)."""
        for _ in range(10**9):  # ends when the boot's tasks are cancelled
            await asyncio.sleep(STATUS_REFRESH)
            if self.connectivity is not None:
                self.connectivity.refresh()
            if self.device is not None:
                self.device.refresh_status()

    def _registration_event(self, event: RegistrationEvent) -> None:
        if event.kind in (EventKind.REGISTERED, EventKind.REREGISTERED):
            self._emit(
                AgentEventKind.REGISTERED,
                registration=event.registration_id,
                version=self.running_version,
            )
        elif event.kind is EventKind.REGISTRATION_FAILED:
            # The client has logged it at WARNING and retries after its backoff; the
            # event line lets an operator see why without raising the log level.
            self._emit(
                AgentEventKind.REGISTRATION_FAILED,
                code=event.code,
                diagnostic=event.diagnostic,
                detail=event.detail,
            )

    def _reconcile(self, trial: bool, outcome: Any) -> None:
        """Make Object 5 tell the truth about what happened before this boot."""
        fw = self.firmware
        assert fw is not None
        state = fw.snapshot.state
        if outcome is not None:
            if outcome.kind is OutcomeKind.REVERTED:
                self._record_failure(
                    _revert_phase(outcome.reason),
                    f"{outcome.reason}; rolled back to {self.running_version}",
                    outcome.update_result,
                    outcome.version,
                )
            if state is State.UPDATING:
                # a rejected image is dropped (Idle/8), not offered for a retry
                with self._explaining():
                    fw.update_finished(outcome.update_result)
            if outcome.kind is OutcomeKind.REVERTED:
                self._emit(
                    AgentEventKind.REVERTED,
                    reason=outcome.reason,
                    rejected=outcome.version,
                    version=self.running_version,
                    result=int(outcome.update_result),
                )
            else:
                self._emit(AgentEventKind.CONFIRMED, version=outcome.version)
            self.slots.acknowledge_outcome()
        elif state is State.UPDATING and not trial:
            # Killed after Execute but before the slot was marked pending: nothing was
            # installed; the verified image is still there, so the update can be retried.
            self._record_failure(
                FailurePhase.INTERRUPTED,
                "a restart interrupted the update before the image was installed",
                UpdateResult.UPDATE_FAILED,
                fw.snapshot.pkg_version,
            )
            with self._explaining():
                fw.update_finished(UpdateResult.UPDATE_FAILED, retryable=True)

    def _resume_download(self) -> None:
        fw = self.firmware
        assert fw is not None
        if fw.snapshot.state is not State.DOWNLOADING:
            return
        uri = fw.snapshot.package_uri
        progress = self._load_progress()
        # (an interrupted push was already failed with Result 4 by the instance)
        if uri:
            self._pull_task = self._spawn(self._pull(uri, progress), "pull")

    def _load_progress(self) -> DownloadProgress | None:
        try:
            raw = read_json(self._download_file)
            return DownloadProgress.from_json(raw) if isinstance(raw, dict) else None
        except (ValueError, KeyError, TypeError) as exc:
            _log.warning("ignoring unreadable download progress: %s", exc)
            return None

    # -- trial boot ---------------------------------------------------------------------------
    async def _trial(self) -> None:
        decision = self.slots.decision
        assert decision is not None
        self._emit(
            AgentEventKind.TRIAL, version=self.running_version, trial_boot=decision.trial_boot
        )
        problem = await self._health_problem()
        fw = self.firmware
        assert fw is not None
        if problem is None:
            outcome = self.slots.confirm()
            if fw.snapshot.state is State.UPDATING:
                fw.update_finished(UpdateResult.SUCCESS)
            self.slots.acknowledge_outcome()
            self._clear_progress()
            self._emit(AgentEventKind.CONFIRMED, version=outcome.version)
            return
        _log.warning("health check failed: %s", problem)
        self.slots.revert(f"{REASON_HEALTH_CHECK}: {problem}")
        self.request_reboot("revert", delay=REBOOT_DELAY)

    def health_check(self) -> HealthCheck:
        """The configured check: registration within the deadline, then the command."""
        cfg = self.config.health
        checks: list[HealthCheck] = []
        if cfg.registration_deadline is not None:
            checks.append(RegistrationHealthCheck(cfg.registration_deadline, self._registered))
        if cfg.command is not None:
            checks.append(CommandHealthCheck(cfg.command, timeout=cfg.timeout))
        return AllOf(*checks) if checks else AlwaysHealthy()

    async def _registered(self, deadline: float) -> bool:
        try:
            await self.client.wait_registered(deadline)
        except TimeoutError:
            return False
        return True

    async def _health_problem(self) -> str | None:
        """None when the trial image is healthy, else what is wrong."""
        result = await run_check(self.health_check())
        return None if result.ok else result.reason

    # -- Object 3 reboot ---------------------------------------------------------------------
    def _reboot_execute(self, _args: str | None) -> None:
        self.request_reboot("execute /3/0/4", delay=REBOOT_DELAY)

    # -- FirmwareUpdateDelegate ----------------------------------------------------------------
    def supported_protocols(self) -> Sequence[UpdateProtocol]:
        return self.config.protocols

    def delivery_method(self) -> DeliveryMethod:
        return self.config.delivery

    def persist(self, snapshot: FirmwareSnapshot) -> None:
        atomic_write_bytes(self._object5_file, snapshot.to_json().encode("utf-8"))
        self._emit(
            AgentEventKind.STATE,
            state=int(snapshot.state),
            result=int(snapshot.result),
            version=self.running_version if self._slots is not None else None,
        )
        previous, self._last_result = self._last_result, snapshot.result
        if snapshot.result in _FAILURES and snapshot.result is not previous and not self._explained:
            # Object 5 failed the attempt by itself (e.g. Result 7 for a bad URI): the
            # result's meaning is all there is to say.
            self._record_failure(
                _result_phase(snapshot.result),
                _RESULT_TEXT[snapshot.result],
                snapshot.result,
                snapshot.pkg_version,
            )

    # -- update diagnostics (/33600/0) ------------------------------------------------------------
    def _record_failure(
        self, phase: FailurePhase, text: str, result: UpdateResult, version: str | None
    ) -> None:
        """Keep why this attempt failed in /33600/0 (persisted before it is readable)."""
        if self.diagnostics is None:
            return
        self.diagnostics.record_failure(
            phase, text, result=int(result), version=version, at=time.time()
        )
        _log.info("update failure recorded (%s, result %d): %s", phase.value, result, text)

    @contextlib.contextmanager
    def _explaining(self) -> Iterator[None]:
        """Object 5 transitions made inside are failures already recorded with a reason."""
        self._explained = True
        try:
            yield
        finally:
            self._explained = False

    def start_pull(self, uri: str) -> None:
        progress = self._load_progress()
        if progress is not None and progress.uri != uri:
            progress = None
        self._pull_task = self._spawn(self._pull(uri, progress), "pull")

    def open_push(self, size1: int | None) -> PushSink:
        capacity = self.config.slot_capacity
        if size1 is not None and capacity is not None and size1 > capacity:
            raise NotEnoughStorage(capacity)
        self._clear_progress()
        try:
            writer = self.slots.open_inactive(expected_size=size1)
        except SlotFull as exc:
            raise NotEnoughStorage(exc.capacity) from exc
        self._push = _PushSink(self, _VerifyingSink(writer, self._new_verifier))
        return self._push

    def cancel_download(self) -> None:
        if self._pull_task is not None:
            self._pull_task.cancel()
            self._pull_task = None
        self._push = None
        self._discard_slot()

    def discard_image(self) -> None:
        self.cancel_download()

    def start_update(self) -> None:
        self._spawn(self._update(), "update")

    # -- download / verify ---------------------------------------------------------------------
    def _new_verifier(self) -> StreamingPackageVerifier:
        return StreamingPackageVerifier(
            self.trust,
            identity=self.config.device.identity,
            min_sequence=self.slots.highest_sequence,
        )

    def _discard_slot(self) -> None:
        self._clear_progress()
        try:
            self.slots.discard()
        except SlotError as exc:  # e.g. during a trial: nothing of ours to drop
            _log.info("slot not discarded: %s", exc)

    def _clear_progress(self) -> None:
        self._download_file.unlink(missing_ok=True)
        self._last_progress_saved = -1

    def _progress_saver(self, writer: SlotWriter) -> Callable[[DownloadProgress], None]:
        def save(progress: DownloadProgress) -> None:
            if writer.closed:
                return
            writer.fsync()  # the bytes are durable before the offset that claims them
            atomic_write_json(self._download_file, progress.to_json())
            self._last_progress_saved = progress.offset
            self._emit(AgentEventKind.PROGRESS, offset=progress.offset, total=progress.total)

        return save

    async def _pull(self, uri: str, resume: DownloadProgress | None) -> None:
        fw = self.firmware
        assert fw is not None
        cfg = self.config
        slots = self.slots
        writer: SlotWriter | None = None
        sink: _VerifyingSink | None = None
        try:
            resumable = resume is not None and slots.slot(slots.inactive_name).state in (
                SlotState.WRITING,
                SlotState.COMPLETE,
            )
            writer = slots.open_inactive(resume=resumable)
            sink = _VerifyingSink(writer, self._new_verifier)
            if resume is not None and resumable:
                offset = min(resume.offset, writer.size)
                sink.truncate(offset)
                sink.refeed(offset)
                resume = replace(resume, offset=offset)
                self._emit(AgentEventKind.RESUMED, offset=offset, uri=uri)
            else:
                resume = None
            downloader = Downloader(
                transport=cfg.transport,
                adaptive=cfg.adaptive_timers,
                block_size=cfg.block_size,
                max_size=cfg.slot_capacity,
                retries=cfg.download_retries,
                local_host=cfg.local_host,
                on_progress=self._progress_saver(writer),
                progress_interval_bytes=PROGRESS_INTERVAL,
            )
            self._downloader = downloader
            try:
                await downloader.download(uri, sink, resume=resume)
            finally:
                self._downloader = None
                await downloader.close()
            verified = sink.verify(
                self.trust,
                identity=cfg.device.identity,
                min_sequence=slots.highest_sequence,
            )
            writer.finish()
            info = slots.mark_verified(
                slots.describe(verified, pkg_name=verified.manifest.component),
                check_digest=False,
            )
        except asyncio.CancelledError:
            if writer is not None:
                writer.close()
            raise
        except (DownloadError, PackageError, SlotError, OSError) as exc:
            self._download_failed(exc, writer, sink)
            return
        except Exception as exc:  # a bug must not leave Object 5 in Downloading forever
            _log.exception("pull of %s failed unexpectedly", uri)
            self._download_failed(exc, writer, sink)
            return
        self._pull_task = None
        self._emit(AgentEventKind.DOWNLOADED, version=info.version, sequence=info.sequence)
        fw.download_finished(UpdateResult.SUCCESS, pkg_name=info.pkg_name, pkg_version=info.version)
        self._clear_progress()  # only now that Downloaded is persisted

    def _download_failed(
        self, exc: Exception, writer: SlotWriter | None, sink: _VerifyingSink | None = None
    ) -> None:
        fw = self.firmware
        assert fw is not None
        result = _result_of(exc)
        _log.warning("download failed (result %d): %s", result, exc)
        if writer is not None:
            writer.close()
        self._discard_slot()  # Idle: "remove the downloaded firmware image" (object 1.1)
        self._pull_task = None
        self._emit(AgentEventKind.FAILED, result=int(result), error=str(exc))
        # only an authenticated manifest names the version: an unsigned one may lie
        manifest = sink.verifier.manifest if sink is not None else None
        self._record_failure(
            FailurePhase.VERIFY if isinstance(exc, PackageError) else FailurePhase.DOWNLOAD,
            _failure_text(exc),
            result,
            manifest.version if manifest is not None else None,
        )
        with self._explaining():
            fw.download_finished(result)

    async def _finish_push(self, sink: _VerifyingSink) -> None:
        fw = self.firmware
        assert fw is not None
        self._push = None
        slots = self.slots
        try:
            if sink.error is not None:
                raise sink.error
            identity = self.config.device.identity
            minimum = slots.highest_sequence
            if sink.sequential and sink.fed == sink.writer.size:
                verified = sink.verifier.finish()
            else:
                verified = await asyncio.to_thread(
                    verify_package,
                    sink.writer.path,
                    self.trust,
                    identity=identity,
                    min_sequence=minimum,
                )
            sink.writer.finish()
            info = slots.mark_verified(
                slots.describe(verified, pkg_name=verified.manifest.component),
                check_digest=False,
            )
        except (PackageError, SlotError, OSError) as exc:
            self._download_failed(exc, sink.writer, sink)
            return
        except Exception as exc:
            _log.exception("verification of a pushed image failed unexpectedly")
            self._download_failed(exc, sink.writer, sink)
            return
        self._emit(AgentEventKind.DOWNLOADED, version=info.version, sequence=info.sequence)
        fw.download_finished(UpdateResult.SUCCESS, pkg_name=info.pkg_name, pkg_version=info.version)

    # -- install ----------------------------------------------------------------------------------
    async def _update(self) -> None:
        fw = self.firmware
        assert fw is not None
        slots = self.slots
        try:
            await self._install()
            slots.mark_pending()
        except (SlotError, OSError, InstallFailed) as exc:
            _log.warning("update failed: %s", exc)
            self._emit(
                AgentEventKind.FAILED, result=int(UpdateResult.UPDATE_FAILED), error=str(exc)
            )
            self._record_failure(
                FailurePhase.INSTALL,
                f"installation failed: {_failure_text(exc)}",
                UpdateResult.UPDATE_FAILED,
                fw.snapshot.pkg_version,
            )
            with self._explaining():
                fw.update_finished(UpdateResult.UPDATE_FAILED, retryable=True)
            return
        self.request_reboot("update", delay=REBOOT_DELAY)  # let the Updating notification out

    async def _install(self) -> None:
        """Hand the verified inactive slot to the installer hook (InstallFailed: 8)."""
        slots = self.slots
        name = slots.inactive_name
        await self.installer.install(slots.slot(name), slots.image_path(name))


def _result_phase(result: UpdateResult) -> FailurePhase:
    """The /33600/0/4 phase a bare Update Result points at (5 and 6 are verification)."""
    if result in (UpdateResult.INTEGRITY_CHECK_FAILURE, UpdateResult.UNSUPPORTED_PACKAGE_TYPE):
        return FailurePhase.VERIFY
    if result is UpdateResult.UPDATE_FAILED:
        return FailurePhase.INSTALL
    return FailurePhase.DOWNLOAD


def _revert_phase(reason: str) -> FailurePhase:
    """The /33600/0/4 phase of a rollback, from the reason the slot store recorded."""
    if reason.startswith(REASON_HEALTH_CHECK):
        return FailurePhase.HEALTH_CHECK
    if reason.startswith(REASON_CRASH_LOOP):
        return FailurePhase.CRASH_LOOP
    if reason.startswith(REASON_IMAGE_DAMAGED):
        return FailurePhase.IMAGE_DAMAGED
    return FailurePhase.INSTALL


def _failure_text(exc: BaseException) -> str:
    """An exception as a failure reason: its message, or its kind if it has none."""
    return str(exc) or type(exc).__name__


def _result_of(exc: BaseException) -> UpdateResult:
    if isinstance(exc, DownloadError):
        return exc.result
    if isinstance(exc, PackageError):
        return UpdateResult(int(exc.update_result))
    if isinstance(exc, SlotError):
        # a download may only end with 2..7 or 9: a slot in the wrong state is storage
        result = exc.update_result
        return result if result in _DOWNLOAD_RESULTS else UpdateResult.NOT_ENOUGH_FLASH
    if isinstance(exc, OSError):
        return UpdateResult.NOT_ENOUGH_FLASH  # writing the slot failed (disk full, EIO)
    return UpdateResult.CONNECTION_LOST  # anything else: the download did not complete
