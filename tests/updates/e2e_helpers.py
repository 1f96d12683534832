"""Helpers for the end-to-end update tests: a server with the repository, and a fleet.

Everything is real: :class:`LwM2MServer` on loopback with the firmware repository's
``/fw`` mounted on the same port (as ``fotakit server`` runs it), HTTP delivery on a TCP
port, and :class:`fotakit.agent.Agent` devices, each with its own data directory, A/B
slots and simulated radio. Waiting is always on an event with a time bound, never a sleep.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: shared helpers

import event_helpers
from fotakit.agent.config import AgentConfig, DeviceConfig, HealthConfig
from fotakit.agent.runtime import Agent, AgentEvent, AgentEventKind
from fotakit.client.objects.connectivity import SimulatedConnectivitySource
from fotakit.coap import TransportParams
from fotakit.lwm2m.objects import DeliveryMethod
from fotakit.packages import PrivateKey, TrustStore, build_package_in_memory
from fotakit.repository import PackageRecord, Repository
from fotakit.repository.coap import coap_resources
from fotakit.repository.http import HttpServer, create_http_app, serve_http
from fotakit.server import Event, LwM2MServer, Registered, ServerConfig

WAIT = 20.0
VENDOR = "example.com"
CLASS = "sensor-v2"
#: Server-side CoAP timers for loopback: a lost datagram is retried after 0.3 s.
FAST = TransportParams(
    ack_timeout=0.3, ack_random_factor=1.0, max_retransmit=3, request_timeout=10.0
)
#: The agents' timers (a pull fetches a block per exchange).
AGENT_TRANSPORT = TransportParams(
    ack_timeout=0.3, ack_random_factor=1.0, max_retransmit=3, request_timeout=10.0
)

E = TypeVar("E", bound=Event)


def payload_of(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def server_config(db_url: str, repository: Repository, **overrides: Any) -> ServerConfig:
    """Loopback, ephemeral port, fast timers, Register rate limit raised for a fleet that
    registers from one source address, ``/fw`` mounted."""
    params: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "db_url": db_url,
        "transport": FAST,
        "expiry_grace": 1.0,
        "max_register_rate": 10_000.0,
        "register_burst": 10_000,
        "extra_resources": tuple(coap_resources(repository)),
    }
    params.update(overrides)
    return ServerConfig(**params)


async def next_event(
    events: Any,
    kind: type[E],
    where: Callable[[E], bool] = lambda _e: True,
    timeout: float = WAIT,  # noqa: ASYNC109
) -> E:
    """:func:`event_helpers.next_event` with this module's default bound."""
    return await event_helpers.next_event(events, kind, where, timeout)


@dataclass
class Site:
    """One server process's worth of parts: LwM2M server (+ /fw), HTTP delivery."""

    server: LwM2MServer
    repository: Repository
    http: HttpServer
    key: PrivateKey

    @property
    def coap_base(self) -> str:
        return f"coap://127.0.0.1:{self.server.port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"

    def publish(
        self, payload: bytes, *, version: str, sequence: int, class_name: str = CLASS
    ) -> PackageRecord:
        return self.repository.add(
            sign(payload, self.key, version=version, sequence=sequence, class_name=class_name)
        )


def publish_package(
    repo_dir: Path, db_url: str, key: PrivateKey, payload: bytes, *, version: str, sequence: int
) -> PackageRecord:
    """Sign ``payload`` and store it in the repository at ``repo_dir`` (for tests whose
    servers run in other processes and open that repository themselves)."""
    repository = Repository(repo_dir, db_url, trust_for(key))
    try:
        return repository.add(sign(payload, key, version=version, sequence=sequence))
    finally:
        repository.close()


def sign(
    payload: bytes, key: PrivateKey, *, version: str, sequence: int, class_name: str = CLASS
) -> bytes:
    """A signed package of the test fleet's vendor and (by default) device class."""
    return build_package_in_memory(
        payload,
        version=version,
        vendor_domain=VENDOR,
        class_name=class_name,
        sequence=sequence,
        key=key,
    )


@contextlib.asynccontextmanager
async def running_site(
    root: Path, db_url: str, key: PrivateKey, **server_overrides: Any
) -> AsyncIterator[Site]:
    """Repository in ``root/repository`` on ``db_url``, server and HTTP delivery started."""
    trust = TrustStore()
    trust.add(None, key.public_key())
    repository = await asyncio.to_thread(Repository, root / "repository", db_url, trust)
    server = LwM2MServer(server_config(db_url, repository, **server_overrides))
    await server.start()
    http = await serve_http(create_http_app(repository), "127.0.0.1", 0)
    try:
        yield Site(server, repository, http, key)
    finally:
        await http.stop()
        await server.stop()
        await asyncio.to_thread(repository.close)


@dataclass
class Fleet:
    """Many agents in this process; counts what each did (installs, downloads, pushes)."""

    root: Path
    trust: TrustStore
    agents: dict[str, Agent] = field(default_factory=dict)
    radios: dict[str, SimulatedConnectivitySource] = field(default_factory=dict)
    installs: collections.Counter[str] = field(default_factory=collections.Counter)
    confirmed: collections.Counter[str] = field(default_factory=collections.Counter)
    reverted: collections.Counter[str] = field(default_factory=collections.Counter)
    downloaded: collections.Counter[str] = field(default_factory=collections.Counter)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def make(
        self,
        endpoint: str,
        server_port: int,
        *,
        version: str = "1.0.0",
        rssi: int = -70,
        link_quality: int = 20,
        health_command: tuple[str, ...] | None = None,
        queue_mode: bool = False,
        delivery: DeliveryMethod = DeliveryMethod.BOTH,
        lifetime: int = 60,
        registration_deadline: float = 5.0,
    ) -> Agent:
        config = AgentConfig(
            endpoint=endpoint,
            server_uri=f"coap://127.0.0.1:{server_port}",
            data_dir=self.root / endpoint,
            lifetime=lifetime,
            local_host="127.0.0.1",
            initial_version=version,
            device=DeviceConfig(
                manufacturer="fotakit tests", vendor_domain=VENDOR, class_name=CLASS
            ),
            delivery=delivery,
            health=HealthConfig(
                command=health_command, timeout=10.0, registration_deadline=registration_deadline
            ),
            transport=AGENT_TRANSPORT,
            connectivity="simulated",
            queue_mode=queue_mode,
        )
        radio = SimulatedConnectivitySource()
        radio.set(radio_signal_strength=rssi, link_quality=link_quality)
        agent = Agent(config, connectivity=radio, trust=self.trust)
        agent.add_listener(lambda e, ep=endpoint: self._count(ep, e))
        self.agents[endpoint] = agent
        self.radios[endpoint] = radio
        return agent

    def _count(self, endpoint: str, event: AgentEvent) -> None:
        if event.kind is AgentEventKind.TRIAL:
            self.installs[endpoint] += 1
        elif event.kind is AgentEventKind.CONFIRMED:
            self.confirmed[endpoint] += 1
        elif event.kind is AgentEventKind.REVERTED:
            self.reverted[endpoint] += 1
        elif event.kind is AgentEventKind.DOWNLOADED:
            self.downloaded[endpoint] += 1
        self.changed.set()

    async def start(self, server: LwM2MServer, endpoints: Iterable[str]) -> None:
        """Start these agents and wait until each has registered (bounded)."""
        wanted = set(endpoints)
        async with server.subscribe() as events:
            await asyncio.gather(*(self.agents[ep].start() for ep in wanted))
            missing = {ep for ep in wanted if server.get(ep) is None}
            async with asyncio.timeout(WAIT + len(wanted) * 0.2):
                while missing:
                    ev = await events.get()
                    if isinstance(ev, Registered):
                        missing.discard(ev.endpoint)

    async def stop(self) -> None:
        for agent in list(self.agents.values()):
            if agent.running:
                with contextlib.suppress(Exception):
                    await agent.stop(deregister=False)

    async def wait(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:  # noqa: ASYNC109
        """Until ``predicate()`` holds, re-checked after each agent event (bounded)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def versions(self) -> dict[str, str]:
        return {ep: a.running_version for ep, a in self.agents.items() if a.running}


def make_service(site: Site, db_url: str, **kwargs: Any) -> Any:
    """An UpdateService on ``site`` (not started); CoAP and HTTP delivery URIs set."""
    from fotakit.updates.engine_packages import BaseUris
    from fotakit.updates.service import UpdateService

    params: dict[str, Any] = {
        "node_id": "node-a",
        "base_uris": BaseUris(coap=site.coap_base, http=site.http_base),
        "tick_s": 0.2,
        "lease_s": 5.0,
        "resync_s": 2.0,
        "op_timeout_s": 15.0,
        "poll_s": 3.0,
    }
    params.update(kwargs)
    return UpdateService(site.server, site.repository, db_url, **params)


async def wait_job(service: Any, job_id: str, timeout: float = WAIT) -> Any:  # noqa: ASYNC109
    """Until the job is terminal (re-checked after each logged event); its record."""
    async with service.subscribe() as queue, asyncio.timeout(timeout):
        while True:
            record = await service.job(job_id)
            if record is not None and record.terminal:
                return record
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.get(), 1.0)


def trust_for(key: PrivateKey) -> TrustStore:
    trust = TrustStore()
    trust.add(None, key.public_key())
    return trust


async def wait_campaign(
    service: Any,
    campaign_id: str,
    states: Iterable[str],
    timeout: float = WAIT,  # noqa: ASYNC109
) -> Any:
    """Until the campaign row is in one of ``states`` (re-checked after each logged
    event, at least every 0.5 s); its record."""
    wanted = set(states)
    async with service.subscribe() as queue, asyncio.timeout(timeout):
        while True:
            record = await service.get_campaign(campaign_id)
            if record is not None and record.state in wanted:
                return record
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.get(), 0.5)


async def all_events(service: Any, **filters: Any) -> list[Any]:
    """Every stored event matching ``filters`` (paged)."""
    out: list[Any] = []
    after = 0
    for _ in range(10_000):
        page = await service.events(after_id=after, limit=1000, **filters)
        out.extend(page)
        if len(page) < 1000:
            return out
        after = page[-1].id
    return out


def delivery_methods(events: Iterable[Any]) -> dict[str, str]:
    """Per endpoint, the delivery the job chose and carried out (pull or push): the
    ``delivery`` event's choice, confirmed by the write_uri / push command logged after."""
    choice: dict[str, str] = {}
    done: dict[str, str] = {}
    for ev in events:
        if ev.kind == "delivery":
            choice[ev.endpoint] = ev.details["choice"]
        elif ev.kind == "command" and ev.details.get("command") in ("write_uri", "push"):
            done[ev.endpoint] = "pull" if ev.details["command"] == "write_uri" else "push"
    return {ep: c for ep, c in choice.items() if done.get(ep) == c}


FOTAKIT = str(Path(sys.executable).with_name("fotakit"))
LISTENING = re.compile(r"server listening on 127\.0\.0\.1:(\d+)")


class ServerProcess:
    """A ``fotakit server`` process; its stderr lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.lines: list[str] = []
        self._new = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while raw := await self.proc.stderr.readline():
            self.lines.append(raw.decode(errors="replace"))
            self._new.set()
        self._new.set()

    async def wait_for(self, pattern: re.Pattern[str], timeout: float = 30) -> re.Match[str]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    match = pattern.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                if self.proc.returncode is not None or self._reader.done():
                    raise AssertionError(f"{self.name} exited:\n" + "".join(self.lines[-40:]))
                self._new.clear()
                await self._new.wait()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 5)


@contextlib.asynccontextmanager
async def fotakit_server(
    db_url: str, repository: Path, node_id: str, port: int = 0, *extra: str
) -> AsyncIterator[tuple[ServerProcess, int]]:
    """``fotakit server`` (with the update service) as a real process; (process, port).

    ``extra``: more command-line options. Its HTTP side takes any free port."""
    proc = await asyncio.create_subprocess_exec(
        FOTAKIT,
        "server",
        "--port", str(port),
        "--db", db_url,
        "--repository", str(repository),
        "--node-id", node_id,
        "--ack-timeout", "0.3",
        "--max-retransmit", "3",
        "--request-timeout", "10",
        "--register-rate", "1000",
        "--register-burst", "1000",
        "--log-level", "INFO",
        "--http-port", "0",
        *extra,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    server = ServerProcess(proc, node_id)
    try:
        port = int((await server.wait_for(LISTENING)).group(1))
        yield server, port
    finally:
        await server.stop()


def start_campaign_in_store(
    store: Any, spec: Any, endpoints: Iterable[str], global_rate: Any = None
) -> str:
    """What an operator's "start" does, written straight to the database (no server in
    this process): the campaign row with its started snapshot. Returns its ID.

    ``global_rate`` (a BucketConfig): the fleet-wide bucket the servers run with; the
    starts decided here take their tokens from it, as ``UpdateService.start_campaign``
    does in a server."""
    import time

    from fotakit.updates.campaign import Campaign
    from fotakit.updates.engine_campaigns import _DbBucket
    from fotakit.updates.targets import DeviceView

    limiters = [] if global_rate is None else [_DbBucket(store, global_rate)]
    rec = store.create_campaign(spec.to_json(), name=spec.name)
    campaign = Campaign(rec.id, spec)
    campaign.start(time.time(), [DeviceView(endpoint=ep) for ep in endpoints], limiters=limiters)
    store.set_campaign_state(rec.id, "running", expected_rev=rec.rev, snapshot=campaign.snapshot())
    return str(rec.id)


def first_starts(store: Any, campaign_ids: Iterable[str]) -> dict[str, float]:
    """Endpoint -> time of its job's first logged ``-> starting`` (from the shared store)."""
    first: dict[str, float] = {}
    for cid in campaign_ids:
        for job in store.list_jobs(campaign_id=cid):
            events = store.list_events(job_id=job.id, limit=10_000)
            starting = [e for e in events if e.details.get("to") == "starting"]
            assert starting, f"{job.endpoint}: no '-> starting' in {[e.kind for e in events]}"
            first[job.endpoint] = starting[0].at
    return first


def worst_window(
    starts: Iterable[float], rate_per_minute: float, burst: int, slack: float
) -> float:
    """How far the busiest window of ``starts`` beats a token bucket (<= 0: it never does).

    A bucket of ``burst`` refilled at ``rate_per_minute`` allows at most
    ``burst + rate * (span + slack)`` starts in any window of ``span`` seconds; ``slack``
    covers the delay between a token taken and the start being logged."""
    times = sorted(starts)
    rate_s = rate_per_minute / 60.0
    return max(
        (j - i + 1) - (burst + rate_s * (times[j] - times[i] + slack))
        for i in range(len(times))
        for j in range(i, len(times))
    )


async def first_match(waits: list[Any]) -> re.Match[str]:
    """The first of several :meth:`ServerProcess.wait_for` to match; the others cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()  # type: ignore[no-any-return]
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t


async def kill(server: ServerProcess) -> None:
    """SIGKILL: the power cut."""
    if server.proc.returncode is None:
        server.proc.kill()
        await asyncio.wait_for(server.proc.wait(), WAIT)


def explain_store(store: Any, campaign_id: str) -> str:
    """For a failure message: counters and the tail of each unfinished job's log."""
    lines = [f"counters {store.get_counters(campaign_id)}"]
    for job in store.list_jobs(campaign_id=campaign_id):
        if job.terminal:
            continue
        lines.append(f"JOB {job.endpoint} {job.state} {job.reason} owner={job.owner}")
        for e in store.list_events(job_id=job.id, limit=10_000)[-12:]:
            details = {k: v for k, v in e.details.items() if k != "facts"}
            fw = (e.details.get("facts") or {}).get("fw_state")
            lines.append(f"    {e.at % 1000:.2f} {e.kind} {str(details)[:150]} {fw}")
    return "\n".join(lines)
