"""Interop harness: third-party LwM2M/CoAP peers as subprocesses, awaited without sleeps.

The peers in ``tests/interop/peers/`` print one JSON object per line on stdout and read
commands on stdin. :class:`NodePeer` starts one with an asyncio subprocess, collects every
line it prints, and lets a test *await* the event it expects, with a timeout — never a
sleep. A peer is always killed at teardown, and a failed expectation shows everything the
peer printed (stdout and stderr), which is what one needs to debug an interop failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path as FsPath
from typing import Any, TypeVar

import pytest

from fotakit.server import Event, LwM2MServer, ServerConfig
from fotakit.server.events import Subscription

PEERS_DIR = FsPath(__file__).parent / "peers"
NODELIB_DIR = PEERS_DIR / "node_modules" / "lwm2m-node-lib"

# How long to wait for one expected line, unless the test says otherwise.
DEFAULT_TIMEOUT = 10.0

JsonEvent = dict[str, Any]
E = TypeVar("E", bound=Event)


def node_missing_reason() -> str | None:
    """Why the Node peers cannot run here, or None if they can."""
    if shutil.which("node") is None:
        return "interop: `node` is not on PATH (install Node.js >= 18)"
    if not NODELIB_DIR.is_dir():
        return f"interop: {NODELIB_DIR} is missing (run `npm ci --prefix tests/interop/peers`)"
    return None


class PeerError(AssertionError):
    """An expected line did not come (or the peer died); carries the peer's output."""


class NodePeer:
    """One running Node peer script; stdout lines are parsed as JSON events."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.events: list[JsonEvent] = []  # every event, in arrival order
        self._unclaimed: list[JsonEvent] = []  # not yet returned by expect()
        self._stderr: list[str] = []
        self._changed = asyncio.Event()
        self._eof = False
        self._ids = itertools.count(1)
        assert proc.stdout is not None and proc.stderr is not None
        self._tasks = [
            asyncio.create_task(self._read_stdout(proc.stdout)),
            asyncio.create_task(self._read_stderr(proc.stderr)),
        ]

    @classmethod
    async def start(
        cls, script: str, *args: str, env: Mapping[str, str] | None = None, name: str | None = None
    ) -> NodePeer:
        node = shutil.which("node")
        assert node is not None
        # Node's own warnings (mongoose's circular requires inside lwm2m-node-lib) are
        # noise in a transcript; a caller can turn them back on through ``env``.
        full_env = {**os.environ, "NODE_NO_WARNINGS": "1"}
        full_env.update(env or {})
        proc = await asyncio.create_subprocess_exec(
            node,
            str(PEERS_DIR / script),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(PEERS_DIR),
            env=full_env,
        )
        return cls(name or script, proc)

    async def _read_stdout(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").strip()
            if not text:
                continue
            try:
                event = json.loads(text)
            except json.JSONDecodeError:
                event = {"event": "unparsed", "line": text}
            if not isinstance(event, dict):
                event = {"event": "unparsed", "line": text}
            self.events.append(event)
            self._unclaimed.append(event)
            self._changed.set()
        self._eof = True
        self._changed.set()

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self._stderr.append(line.decode("utf-8", "replace").rstrip())
            del self._stderr[:-200]  # keep the tail only

    def send(self, line: str | Mapping[str, Any]) -> None:
        """Write one command line to the peer's stdin."""
        text = line if isinstance(line, str) else json.dumps(dict(line))
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")

    async def expect(
        self,
        event: str,
        where: Callable[[JsonEvent], bool] | None = None,
        within: float = DEFAULT_TIMEOUT,
        **fields: Any,
    ) -> JsonEvent:
        """The first not yet claimed event named ``event`` whose ``fields`` match, awaited
        for at most ``within`` seconds.

        ``where`` can add any other condition. Events that do not match stay available to
        later calls, so the order in which a peer prints unrelated lines does not matter.
        """

        def matches(ev: JsonEvent) -> bool:
            if ev.get("event") != event:
                return False
            if any(ev.get(k) != v for k, v in fields.items()):
                return False
            return where is None or where(ev)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            for ev in self._unclaimed:
                if matches(ev):
                    self._unclaimed.remove(ev)
                    return ev
            for ev in self._unclaimed:
                if ev.get("event") == "error":
                    raise PeerError(
                        f"{self.name} reported an error while waiting for "
                        f"{event} {fields}: {ev}\n{self.transcript()}"
                    )
            if self._eof:
                raise PeerError(
                    f"{self.name} exited (rc={self.proc.returncode}) before "
                    f"{event} {fields}\n{self.transcript()}"
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise PeerError(
                    f"{self.name}: no {event} {fields} within {within}s\n{self.transcript()}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def command(self, op: str, within: float = DEFAULT_TIMEOUT, **args: Any) -> JsonEvent:
        """Send a JSON command with a fresh id and await its ``result`` line."""
        cmd_id = next(self._ids)
        self.send({"id": cmd_id, "op": op, **args})
        return await self.expect("result", id=cmd_id, within=within)

    def transcript(self) -> str:
        out = "\n".join(json.dumps(ev) for ev in self.events[-60:])
        err = "\n".join(self._stderr[-40:])
        return f"--- {self.name} stdout ---\n{out}\n--- {self.name} stderr ---\n{err}"

    async def close(self) -> None:
        """Kill the peer and reap it; safe to call twice."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- fixtures --------------------------------------------------------------------------

# CI sets this so that a missing peer is a failure, not a silent skip.
REQUIRE_ENV = "FOTAKIT_REQUIRE_INTEROP"


def skip_or_fail(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason} (and {REQUIRE_ENV} is set)", pytrace=False)
    pytest.skip(reason)


def coap_client_missing_reason() -> str | None:
    if shutil.which(COAP_CLIENT) is None:
        return f"interop: `{COAP_CLIENT}` is not on PATH (apt-get install libcoap3-bin)"
    return None


COAP_CLIENT = "coap-client-notls"


@pytest.fixture
async def node_peers() -> AsyncIterator[Callable[..., Awaitable[NodePeer]]]:
    """A factory ``await start(script, *args, env=..., name=...)``; kills every peer after."""
    reason = node_missing_reason()
    if reason:
        skip_or_fail(reason)
    started: list[NodePeer] = []

    async def start(
        script: str, *args: str, env: Mapping[str, str] | None = None, name: str | None = None
    ) -> NodePeer:
        peer = await NodePeer.start(script, *args, env=env, name=name)
        started.append(peer)
        return peer

    try:
        yield start
    finally:
        for peer in started:
            await peer.close()


@pytest.fixture
def coap_client() -> str:
    """Absolute path of libcoap's ``coap-client-notls``."""
    reason = coap_client_missing_reason()
    if reason:
        skip_or_fail(reason)
    path = shutil.which(COAP_CLIENT)
    assert path is not None
    return path


@pytest.fixture
def db_url(tmp_path: FsPath) -> str:
    return f"sqlite:///{tmp_path / 'fotakit.db'}"


# -- the fotakit server under test -------------------------------------------------------


@pytest.fixture
async def server(db_url: str) -> AsyncIterator[LwM2MServer]:
    """A fotakit LwM2M server on an ephemeral loopback port, with a fresh SQLite store."""
    srv = LwM2MServer(ServerConfig(host="127.0.0.1", port=0, db_url=db_url))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


class ServerEvents:
    """The server's events since the fixture subscribed, awaited by kind and endpoint."""

    def __init__(self, subscription: Subscription) -> None:
        self._sub = subscription

    async def next(self, kind: type[E], endpoint: str, within: float = DEFAULT_TIMEOUT) -> E:
        """The next event of ``kind`` for ``endpoint``; events in between are dropped."""

        async def wait() -> E:
            while True:
                event = await self._sub.get()
                if isinstance(event, kind) and event.endpoint == endpoint:
                    return event

        try:
            return await asyncio.wait_for(wait(), within)
        except TimeoutError:
            raise AssertionError(f"no {kind.__name__} for {endpoint!r} within {within}s") from None


@pytest.fixture
async def server_events(server: LwM2MServer) -> AsyncIterator[ServerEvents]:
    async with server.subscribe() as subscription:
        yield ServerEvents(subscription)
