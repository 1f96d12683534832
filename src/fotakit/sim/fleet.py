"""The fleet simulator: N real device agents in one process, behind impaired links.

Each simulated device is a real :class:`fotakit.agent.runtime.Agent` — its own data
directory with A/B slots, Object 5 state machine, package verification against the trust
anchor, health check on trial boots — talking real CoAP over real UDP sockets. Nothing
about the LwM2M exchanges is faked; only the radio is:

- **Addresses.** Device *i* binds its sockets to its own loopback address
  (:func:`device_host`: ``127.0.1.2``, ``127.0.1.3``, ... 250 per /24), so the server
  sees every device at a distinct source host, as it would in the field, and its
  per-source-host Register rate limit (20/s, burst 50 by default) never throttles a
  fleet that starts at once.
- **Links.** The device's traffic goes through a :class:`~fotakit.sim.relay.UdpRelay`
  that applies its :class:`~fotakit.sim.profiles.LinkProfile` (RTT, jitter, loss,
  bandwidth, outages). There is *one relay per link profile*, not one per device: a
  relay keeps one session (lanes, RNGs, an upstream socket) per client address anyway,
  so per-device relays would only add a listening socket and a reader per device (two
  thousand descriptors and readers for a thousand devices instead of a handful). Each
  session's upstream socket binds to the device's own host (``upstream_host``), so the
  server still sees 127.0.x.y per device, and outages are per source host
  (:meth:`UdpRelay.outage_for` with ``host=``), so one device can drop off while the
  others on its profile carry on.
- **Downloads.** The agent's LwM2M client talks to the relay. A pull download would go
  to the Package URI the server wrote, straight to the server and around the relay; the
  simulated agent rewrites a CoAP URI that names the server's address to the relay's
  (same path), so pulled blocks cross the impaired link too. The devices offer CoAP pull
  only (/5/0/8), because HTTP cannot cross a UDP relay. A URI naming any other host is
  fetched as written (not impaired).
- **Radio figures.** Object 4 reports the profile's bearer, signal strength, link
  quality and SNR (a :class:`SimulatedConnectivitySource`), which is what the server's
  delivery choice reads: ``poor`` devices (-115 dBm) are pulled, not pushed.
- **Failure injection** (device sets chosen by ``seed``): ``fail_health`` — a share of
  devices whose health check fails on a trial boot, i.e. on any *new* image (the old
  image is never on trial), so they revert and report Update Result 8;
  ``offline_mid_download`` — a share that lose their link for ``outage_s`` seconds the
  moment Object 5 enters Downloading (Write of the URI accepted, or the first pushed
  block), once per run.

Python API::

    async with FleetSimulator(SimConfig(devices=50, server="coap://127.0.0.1:5683",
                                        trust=Path("signer.pub.pem"))) as sim:
        print(sim.summary().to_json())

Limits: one event loop drives every agent and relay, so a few hundred devices are the
practical range on one core (200 register in well under a minute); CoAP only (no DTLS);
the server must be reachable on loopback for per-device source addresses (another host:
the relays' upstream sockets bind wherever the OS chooses).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import shutil
import socket
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from fotakit.agent.config import AgentConfig, DeviceConfig, HealthConfig
from fotakit.agent.download import DownloadProgress
from fotakit.agent.health import AllOf, HealthCheck, HealthResult
from fotakit.agent.runtime import Agent, AgentEvent, AgentEventKind
from fotakit.client.objects.connectivity import ConnectivityStatus, SimulatedConnectivitySource
from fotakit.lwm2m.objects import DeliveryMethod, State, UpdateProtocol, UpdateResult
from fotakit.packages import KeyFileError, TrustStore
from fotakit.sim.profiles import PROFILES, LinkProfile, assign_profiles, check_profile, chosen
from fotakit.sim.relay import UdpRelay

_log = logging.getLogger("fotakit.sim")

MAX_DEVICES: Final = 250 * 250
"""At most this many devices (one loopback address each, see :func:`device_host`)."""
START_CONCURRENCY: Final = 64
"""Agents booting at once (each boot reads and writes its data directory)."""
STOP_TIMEOUT: Final = 5.0
"""Seconds a device gets to De-register when the simulator stops (then it just stops)."""
HEALTH_FAILURE: Final = "simulated: the new image fails its self-test"


class SimError(RuntimeError):
    """The simulator could not start (bad configuration, devices that never registered)."""


def device_host(index: int) -> str:
    """Device ``index``'s own loopback address: 127.0.1.2 .. 127.0.1.251, 127.0.2.2, ..."""
    if not 0 <= index < MAX_DEVICES:
        raise ValueError(f"device index {index} out of range 0..{MAX_DEVICES - 1}")
    return f"127.0.{1 + index // 250}.{2 + index % 250}"


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to simulate (the ``fotakit sim`` options; see docs/simulator.md)."""

    devices: int
    server: str = "coap://127.0.0.1:5683"
    trust: Path | TrustStore | None = None
    """The signer's public key (PEM file or directory), or a ready :class:`TrustStore`.
    None: no anchor, every package is refused with Update Result 5."""
    profile: str = "mixed"
    data_dir: Path = Path("sim-data")
    prefix: str = "sim"
    device_class: str = "sensor-v2"
    vendor_domain: str = "example.com"
    firmware_version: str = "1.0.0"
    manufacturer: str = "fotakit sim"
    model: str | None = None
    """/3/0/1 Model Number, which the server takes as the device class campaigns target
    (None: ``device_class``)."""
    timezone: str = "UTC"
    lifetime: int = 300
    seed: int = 2026
    fail_health: float = 0.0
    offline_mid_download: float = 0.0
    outage_s: float = 8.0
    queue_mode: float = 0.0
    """Share of devices that register in queue mode (binding UQ)."""
    registration_timeout: float | None = None
    """How long :meth:`FleetSimulator.start` waits for every device to register
    (None: 30 s + 0.1 s per device)."""
    registration_deadline: float = 60.0
    """The agents' health check: a trial image must register within this many seconds."""
    reset: bool = False
    """Delete each device's data directory first (a factory-fresh fleet)."""
    outages: bool = True
    """Run the profiles' periodic outages (off: only injected ones)."""
    extra_profiles: tuple[LinkProfile, ...] = ()
    """Profiles of your own, usable by name in ``profile`` (they may shadow built-ins)."""

    def known_profiles(self) -> dict[str, LinkProfile]:
        """The built-in profiles plus :attr:`extra_profiles`, by name."""
        return {**PROFILES, **{p.name: p for p in self.extra_profiles}}

    def check(self) -> None:
        """ValueError naming the first bad field."""
        if not 0 < self.devices <= MAX_DEVICES:
            raise ValueError(f"devices: must be in 1..{MAX_DEVICES}, got {self.devices}")
        check_profile(self.profile, self.known_profiles())
        for name in ("fail_health", "offline_mid_download", "queue_mode"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: must be a share in 0..1, got {value}")
        if self.outage_s <= 0:
            raise ValueError(f"outage_s: must be > 0, got {self.outage_s}")
        if self.lifetime < 1:
            raise ValueError(f"lifetime: must be >= 1 s, got {self.lifetime}")
        if not self.prefix or any(c in self.prefix for c in "/\\\x00") or self.prefix[0] == ".":
            raise ValueError(f"prefix: not usable in a file name: {self.prefix!r}")
        server_address(self.server)


def server_address(uri: str) -> tuple[str, int]:
    """(host, port) of a ``coap://`` server URI; ValueError explaining what is wrong."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"server: not a URI: {uri!r} ({exc})") from None
    if parts.scheme != "coap":
        raise ValueError(f"server: must be a coap:// URI, got {uri!r}")
    if not parts.hostname:
        raise ValueError(f"server: no host in {uri!r}")
    return parts.hostname, port or 5683


async def _resolve(host: str, port: int) -> str:
    """The server's IP address (IPv4 preferred: the devices' own addresses are IPv4)."""
    loop = asyncio.get_running_loop()
    error: OSError | None = None
    for family in (socket.AF_INET, socket.AF_UNSPEC):
        try:
            infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
        except OSError as exc:
            error = exc
            continue
        if infos:
            return str(infos[0][4][0])
    raise SimError(f"cannot resolve the server host {host!r}: {error}")


class _FailingCheck:
    async def check(self) -> HealthResult:
        return HealthResult(False, HEALTH_FAILURE)


class SimAgent(Agent):
    """The real agent, with the two things a simulated device does differently: its pull
    downloads go through its relay, and (for ``fail_health`` devices) its health check
    fails on every trial boot."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        rewrite_uri: Callable[[str], str],
        fails_health: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        self._rewrite_uri = rewrite_uri
        self.fails_health = fails_health

    async def _pull(self, uri: str, resume: DownloadProgress | None) -> None:
        await super()._pull(self._rewrite_uri(uri), resume)

    def health_check(self) -> HealthCheck:
        check = super().health_check()
        return AllOf(check, _FailingCheck()) if self.fails_health else check


@dataclass(eq=False)
class SimDevice:
    """One simulated device."""

    index: int
    endpoint: str
    host: str
    profile: LinkProfile
    fails_health: bool
    goes_offline: bool
    agent: SimAgent
    radio: SimulatedConnectivitySource
    relay: UdpRelay
    queue_mode: bool = False
    outages: int = 0
    """Link outages this device has had (injected and periodic)."""
    offline_injected: bool = False
    registered_at: float | None = None

    @property
    def version(self) -> str:
        """The firmware version it runs (/3/0/3)."""
        try:
            return self.agent.running_version
        except RuntimeError:  # not started
            return self.agent.config.initial_version

    @property
    def state(self) -> int | None:
        """Object 5 State (/5/0/3); None before the first boot."""
        fw = self.agent.firmware
        return None if fw is None else int(fw.snapshot.state)

    @property
    def result(self) -> int | None:
        """Object 5 Update Result (/5/0/5); None before the first boot."""
        fw = self.agent.firmware
        return None if fw is None else int(fw.snapshot.result)

    @property
    def registered(self) -> bool:
        """Registered with the server right now (as far as the device knows)."""
        if not self.agent.running:
            return False
        try:
            return self.agent.client.registered
        except RuntimeError:  # between two boots
            return False


def state_name(value: int | None) -> str:
    """Object 5 State as a word: idle, downloading, downloaded, updating."""
    if value is None:
        return "unknown"
    try:
        return State(value).name.lower()
    except ValueError:
        return str(value)


def result_name(value: int | None) -> str:
    """Update Result as ``"<code> <name>"``, e.g. ``"8 update_failed"``."""
    if value is None:
        return "unknown"
    try:
        return f"{value} {UpdateResult(value).name.lower()}"
    except ValueError:
        return str(value)


@dataclass
class SimSummary:
    """Counts over the fleet (see :meth:`FleetSimulator.summary`)."""

    devices: int
    registered: int
    by_version: dict[str, int]
    by_profile: dict[str, int]
    by_state: dict[str, int]
    """Object 5 State: idle, downloading, downloaded, updating."""
    by_result: dict[str, int]
    """Last Object 5 Update Result, as ``"<code> <name>"`` (e.g. ``"8 update_failed"``)."""
    fails_health: int
    goes_offline: int
    offline_injected: int

    def to_json(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "registered": self.registered,
            "by_version": dict(self.by_version),
            "by_profile": dict(self.by_profile),
            "by_state": dict(self.by_state),
            "by_result": dict(self.by_result),
            "fails_health": self.fails_health,
            "goes_offline": self.goes_offline,
            "offline_injected": self.offline_injected,
        }


DeviceListener = Callable[[SimDevice, AgentEvent], None]


@dataclass
class _Runtime:
    relays: dict[str, UdpRelay] = field(default_factory=dict)
    timers: set[asyncio.TimerHandle] = field(default_factory=set)


class FleetSimulator:
    """N agents behind per-profile relays (see the module docstring)."""

    def __init__(self, config: SimConfig) -> None:
        config.check()
        self.config = config
        self.devices: list[SimDevice] = []
        self._listeners: list[DeviceListener] = []
        self._rt = _Runtime()
        self._started = False
        self._target: tuple[str, int] | None = None
        self.changed = asyncio.Event()
        """Set on every agent event (cleared by whoever waits on it)."""

    # -- public -------------------------------------------------------------------------
    def add_listener(self, listener: DeviceListener) -> None:
        """Call ``listener(device, event)`` for every agent event of every device."""
        self._listeners.append(listener)

    def device(self, endpoint: str) -> SimDevice:
        for dev in self.devices:
            if dev.endpoint == endpoint:
                return dev
        raise KeyError(endpoint)

    @property
    def relays(self) -> dict[str, UdpRelay]:
        """The relay of each link profile in use, by profile name."""
        return dict(self._rt.relays)

    async def start(self) -> None:
        """Start every device and return when all have registered.

        Raises :class:`SimError` naming the devices that did not register within
        ``registration_timeout`` (after stopping everything it started).
        """
        if self._started:
            raise SimError("the simulator is already running")
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """De-register every device (bounded), stop the agents, close the relays."""
        for timer in self._rt.timers:
            timer.cancel()
        self._rt.timers.clear()
        await asyncio.gather(*(self._stop_agent(dev) for dev in self.devices))
        for relay in self._rt.relays.values():
            await relay.stop()
        self._rt.relays.clear()
        self._started = False

    async def __aenter__(self) -> FleetSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def summary(self) -> SimSummary:
        """Counts by running version, profile, Object 5 state and last result."""
        devs = self.devices
        return SimSummary(
            devices=len(devs),
            registered=sum(1 for d in devs if d.registered),
            by_version=dict(sorted(Counter(d.version for d in devs).items())),
            by_profile=dict(sorted(Counter(d.profile.name for d in devs).items())),
            by_state=dict(sorted(Counter(state_name(d.state) for d in devs).items())),
            by_result=dict(sorted(Counter(result_name(d.result) for d in devs).items())),
            fails_health=sum(1 for d in devs if d.fails_health),
            goes_offline=sum(1 for d in devs if d.goes_offline),
            offline_injected=sum(1 for d in devs if d.offline_injected),
        )

    async def wait(self, predicate: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
        """Until ``predicate()`` holds, re-checked after each agent event; TimeoutError
        after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    # -- start ----------------------------------------------------------------------------
    async def _start(self) -> None:
        cfg = self.config
        host, port = server_address(cfg.server)
        self.devices = []
        target_ip = await _resolve(host, port)
        target = (target_ip, port)
        self._target = target
        address = ipaddress.ip_address(target_ip)
        loopback = address.is_loopback and address.version == 4
        listen = target_ip if loopback else "127.0.0.1"
        trust = self._trust()
        profiles = assign_profiles(cfg.devices, cfg.profile, cfg.seed, cfg.known_profiles())
        failing = chosen(cfg.devices, cfg.fail_health, cfg.seed, "fail-health")
        offline = chosen(cfg.devices, cfg.offline_mid_download, cfg.seed, "offline")
        queued = chosen(cfg.devices, cfg.queue_mode, cfg.seed, "queue-mode")

        for profile in dict.fromkeys(profiles):
            imp = profile.impairment()
            relay = UdpRelay(
                target,
                uplink=imp,
                downlink=imp,
                host=listen,
                seed=zlib.crc32(f"{cfg.seed}/{profile.name}".encode()),
                upstream_host=(lambda client: client[0]) if loopback else None,
                # a live device sends at least one Update per lifetime; sockets of
                # finished downloads and of boots before a reboot are closed
                idle_timeout=1.5 * cfg.lifetime + 60,
            )
            try:
                await relay.start()
            except OSError as exc:
                raise SimError(f"cannot open the relay of profile {profile.name}: {exc}") from exc
            self._rt.relays[profile.name] = relay

        for i, profile in enumerate(profiles):
            self.devices.append(
                self._make_device(
                    i, profile, trust, i in failing, i in offline, i in queued, loopback
                )
            )

        semaphore = asyncio.Semaphore(START_CONCURRENCY)

        async def boot(dev: SimDevice) -> None:
            async with semaphore:
                await dev.agent.start()
            if dev.agent.device is not None:
                dev.agent.device.info.timezone = cfg.timezone

        results = await asyncio.gather(*(boot(dev) for dev in self.devices), return_exceptions=True)
        failed = [
            f"{dev.endpoint}: {outcome}"
            for dev, outcome in zip(self.devices, results, strict=True)
            if isinstance(outcome, BaseException)
        ]
        for outcome in results:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancelled, interrupted
        if failed:
            shown = "; ".join(failed[:5]) + (
                f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
            )
            raise SimError(f"{len(failed)} of {len(self.devices)} devices did not start: {shown}")
        for dev in self.devices:
            if dev.profile.outages is not None and cfg.outages:
                self._schedule_outages(dev)
        await self._wait_registered()

    def _trust(self) -> TrustStore:
        trust = self.config.trust
        if trust is None:
            _log.warning("no trust anchor (--trust): every package will be refused (result 5)")
            return TrustStore()
        if isinstance(trust, TrustStore):
            return trust
        try:
            return TrustStore.from_path(trust)
        except (KeyFileError, OSError, ValueError) as exc:
            raise SimError(f"cannot read the trust anchor {trust}: {exc}") from exc

    def _make_device(
        self,
        index: int,
        profile: LinkProfile,
        trust: TrustStore,
        fails_health: bool,
        goes_offline: bool,
        queue_mode: bool,
        loopback: bool,
    ) -> SimDevice:
        cfg = self.config
        endpoint = f"{cfg.prefix}-{index:04d}"
        host = device_host(index) if loopback else "0.0.0.0"
        relay = self._rt.relays[profile.name]
        data_dir = cfg.data_dir / endpoint
        if cfg.reset and data_dir.is_dir():
            shutil.rmtree(data_dir)
        config = AgentConfig(
            endpoint=endpoint,
            server_uri=f"coap://{relay.address[0]}:{relay.address[1]}",
            data_dir=data_dir,
            lifetime=cfg.lifetime,
            local_host=host,
            initial_version=cfg.firmware_version,
            device=DeviceConfig(
                manufacturer=cfg.manufacturer,
                model=cfg.model or cfg.device_class,
                serial=f"SIM{index:06d}",
                vendor_domain=cfg.vendor_domain,
                class_name=cfg.device_class,
            ),
            delivery=DeliveryMethod.BOTH,
            protocols=(UpdateProtocol.COAP,),
            health=HealthConfig(
                command=None, timeout=30.0, registration_deadline=cfg.registration_deadline
            ),
            transport=profile.transport(),
            connectivity="simulated",
            queue_mode=queue_mode,
        )
        r = profile.radio
        radio = SimulatedConnectivitySource(
            ConnectivityStatus(
                bearer=r.bearer,
                available_bearers=(r.bearer,),
                radio_signal_strength=r.rssi_dbm,
                link_quality=r.link_quality,
                ip_addresses=(host,),
                signal_snr=r.snr_db,
                coverage_enhancement_level=r.coverage_enhancement_level,
            )
        )
        agent = SimAgent(
            config,
            rewrite_uri=self._rewriter(relay),
            fails_health=fails_health,
            connectivity=radio,
            trust=trust,
        )
        dev = SimDevice(
            index=index,
            endpoint=endpoint,
            host=host,
            profile=profile,
            fails_health=fails_health,
            goes_offline=goes_offline,
            agent=agent,
            radio=radio,
            relay=relay,
            queue_mode=queue_mode,
        )
        agent.add_listener(lambda event, d=dev: self._on_event(d, event))  # type: ignore[misc]
        return dev

    def _rewriter(self, relay: UdpRelay) -> Callable[[str], str]:
        """Package URIs on the server's address go to the relay instead (same path)."""
        target = self._target
        assert target is not None
        server_host = server_address(self.config.server)[0]
        names = {server_host.lower(), target[0]}

        def rewrite(uri: str) -> str:
            try:
                parts = urlsplit(uri)
                port = parts.port or 5683
            except ValueError:
                return uri  # the agent reports the bad URI itself (result 7)
            host = (parts.hostname or "").lower()
            if parts.scheme != "coap" or host not in names or port != target[1]:
                return uri
            netloc = f"{relay.address[0]}:{relay.address[1]}"
            return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

        return rewrite

    async def _wait_registered(self) -> None:
        n = len(self.devices)
        timeout = self.config.registration_timeout
        if timeout is None:
            timeout = 30.0 + 0.1 * n
        try:
            await self.wait(lambda: all(d.registered for d in self.devices), timeout)
        except TimeoutError:
            missing = [d.endpoint for d in self.devices if not d.registered]
            shown = ", ".join(missing[:20])
            if len(missing) > 20:
                shown += f" and {len(missing) - 20} more"
            raise SimError(
                f"{len(missing)} of {n} devices did not register within {timeout:.0f} s "
                f"with {self.config.server}: {shown}"
            ) from None

    # -- events and outages --------------------------------------------------------------------
    def _on_event(self, dev: SimDevice, event: AgentEvent) -> None:
        if event.kind is AgentEventKind.REGISTERED and dev.registered_at is None:
            dev.registered_at = time.monotonic()
        if (
            event.kind is AgentEventKind.STATE
            and event.detail.get("state") == int(State.DOWNLOADING)
            and dev.goes_offline
            and not dev.offline_injected
        ):
            dev.offline_injected = True
            dev.outages += 1
            _log.info("%s: link down for %.1f s mid-download", dev.endpoint, self.config.outage_s)
            dev.relay.outage_for(self.config.outage_s, host=dev.host)
        for listener in list(self._listeners):
            try:
                listener(dev, event)
            except Exception:
                _log.exception("simulator listener failed")
        self.changed.set()

    def _schedule_outages(self, dev: SimDevice) -> None:
        pattern = dev.profile.outages
        assert pattern is not None
        loop = asyncio.get_running_loop()
        # a seeded phase per device, so the profile's devices do not drop out together
        phase = ((self.config.seed * 7919 + dev.index * 104729) % 1000) / 1000 * pattern.every_s

        def fire() -> None:
            self._rt.timers.discard(handle[0])
            if not self._started:
                return
            dev.outages += 1
            dev.relay.outage_for(pattern.duration_s, host=dev.host)
            handle[0] = loop.call_later(pattern.every_s, fire)
            self._rt.timers.add(handle[0])
            self.changed.set()

        handle = [loop.call_later(phase, fire)]
        self._rt.timers.add(handle[0])

    async def _stop_agent(self, dev: SimDevice) -> None:
        agent = dev.agent
        if not agent.running:
            with contextlib.suppress(Exception):
                await agent.stop(deregister=False)  # a reboot in progress, background tasks
            return
        dev.relay.set_outage(False, host=dev.host)  # let the De-register through
        try:
            await asyncio.wait_for(agent.stop(deregister=True), STOP_TIMEOUT)
        except (TimeoutError, Exception):
            with contextlib.suppress(Exception):
                await agent.stop(deregister=False)
