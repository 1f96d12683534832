"""fotakit against lwm2m-node-lib 1.4.0 (Telefónica's Node.js LwM2M stack), both ways.

* An lwm2m-node-lib *client* (``peers/nodelib_client.js``) registers with the fotakit
  server, which then reads, writes, executes, observes and sees it de-register. The peer
  says LwM2M 1.0 but speaks only text: it answers without a Content-Format option, and
  node-coap 0.22 underneath silently drops (no ACK, no answer) any request whose Accept or
  Content-Format is not in its small table (0, 40, 41, 42, 47, 50, 60 and the configured
  1541) — TLV 11542 included. The server's content-format negotiation must cope.
* The fotakit *client* registers with an lwm2m-node-lib *server*
  (``peers/nodelib_server.js``), which reads, writes, executes and observes it.

Each peer prints JSON lines; the tests await the line they expect, with a timeout.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from fotakit.agent.config import AgentConfig
from fotakit.agent.runtime import Agent, AgentEventKind
from fotakit.client import ClientConfig, LwM2MClient, TransportParams
from fotakit.client.objects import DeviceInfo, DeviceInstance, device_object
from fotakit.lwm2m.codecs import ContentFormat
from fotakit.lwm2m.linkformat import parse_links
from fotakit.lwm2m.objects import builtin_registry
from fotakit.lwm2m.path import Path
from fotakit.packages import TrustStore
from fotakit.server import Deregistered, LwM2MServer, Notification, Registered, Updated

pytestmark = pytest.mark.interop

# conftest's NodePeer and ServerEvents (conftest is pytest's to import, not ours).
NodePeer = Any
ServerEvents = Any
JsonEvent = dict[str, Any]
StartPeer = Callable[..., Awaitable[NodePeer]]
T = TypeVar("T")

# One operation end to end (node-coap adds up to 500 ms before a piggybacked answer).
OP_TIMEOUT = 5.0


async def within(call: Coroutine[Any, Any, T], peer: NodePeer) -> T:
    """Await one server operation; past OP_TIMEOUT fail with what the peer saw."""
    try:
        return await asyncio.wait_for(call, OP_TIMEOUT)
    except TimeoutError:
        raise AssertionError(
            f"no answer within {OP_TIMEOUT}s (a request lwm2m-node-lib dropped has no "
            f"'request' line below)\n{peer.transcript()}"
        ) from None


# -- lwm2m-node-lib client -> fotakit server ----------------------------------------------


async def registered_nodelib_client(
    server: LwM2MServer, node_peers: StartPeer, server_events: ServerEvents, endpoint: str
) -> tuple[NodePeer, JsonEvent]:
    """Start an lwm2m-node-lib client and wait until both sides agree it is registered.

    The peer opens its listening socket only after the Register response arrived, so no
    request may be sent to it before it says ``registered``.
    """
    peer = await node_peers(
        "nodelib_client.js", "127.0.0.1", str(server.port), endpoint, "60", name=endpoint
    )
    await server_events.next(Registered, endpoint)
    registered = await peer.expect("registered")
    return peer, registered


async def test_nodelib_client_registers_as_lwm2m_1_0_with_its_objects(
    server: LwM2MServer, server_events: ServerEvents, node_peers: StartPeer
) -> None:
    _, registered = await registered_nodelib_client(
        server, node_peers, server_events, "nodelib-reg"
    )
    reg = server.registrations["nodelib-reg"]
    assert reg.lwm2m_version == "1.0"
    assert reg.lifetime == 60
    assert reg.binding == "U"
    assert reg.object_ids() == {1, 3, 5}
    assert reg.registration_id == registered["location"].removeprefix("rd/")
    assert reg.port == registered["local_port"]


# None: the format the server negotiates by itself, the case that matters. TEXT: forced
# text/plain, which isolates the rest of the exchange from the negotiation.
FORMATS = [
    pytest.param(None, id="negotiated"),
    pytest.param(ContentFormat.TEXT, id="explicit-text"),
]


async def read_one(
    server: LwM2MServer, peer: NodePeer, endpoint: str, path: str, fmt: ContentFormat | None
) -> object:
    p = Path.parse(path)
    content = await within(server.read(endpoint, p, format=fmt), peer)
    assert set(content) == {p}, content
    return content[p]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_server_reads_nodelib_client(
    server: LwM2MServer,
    server_events: ServerEvents,
    node_peers: StartPeer,
    fmt: ContentFormat | None,
) -> None:
    ep = "nodelib-read"
    peer, _ = await registered_nodelib_client(server, node_peers, server_events, ep)
    assert await read_one(server, peer, ep, "/3/0/0", fmt) == "lwm2m-node-lib"
    assert await read_one(server, peer, ep, "/3/0/3", fmt) == "1.0.0"
    assert await read_one(server, peer, ep, "/3/0/9", fmt) == 87
    assert await read_one(server, peer, ep, "/5/0/3", fmt) == 0
    seen = await peer.expect("read", path="/3/0/0")
    assert seen["value"] == "lwm2m-node-lib"


@pytest.mark.parametrize("fmt", FORMATS)
async def test_server_write_reaches_nodelib_client(
    server: LwM2MServer,
    server_events: ServerEvents,
    node_peers: StartPeer,
    fmt: ContentFormat | None,
) -> None:
    ep = "nodelib-write"
    peer, _ = await registered_nodelib_client(server, node_peers, server_events, ep)
    uri = "coap://127.0.0.1:5683/fw/app-2.0.0.bin"
    await within(server.write(ep, Path.parse("/5/0/1"), uri, format=fmt), peer)
    written = await peer.expect("write", path="/5/0/1")
    # lwm2m-node-lib stores the payload bytes as the new value: only text survives.
    assert written["value"] == uri
    assert await read_one(server, peer, ep, "/5/0/1", fmt) == uri


async def test_server_execute_reaches_nodelib_client_with_arguments(
    server: LwM2MServer, server_events: ServerEvents, node_peers: StartPeer
) -> None:
    ep = "nodelib-exec"
    peer, _ = await registered_nodelib_client(server, node_peers, server_events, ep)
    await within(server.execute(ep, Path.parse("/5/0/2"), "0='fast'"), peer)
    executed = await peer.expect("execute", path="/5/0/2")
    assert executed["args"] == "0='fast'"
    request = await peer.expect("request", method="POST", path="/5/0/2")
    assert bytes.fromhex(request["payload_hex"]) == b"0='fast'"


@pytest.mark.parametrize("fmt", FORMATS)
async def test_server_observes_nodelib_client_and_gets_each_change(
    server: LwM2MServer,
    server_events: ServerEvents,
    node_peers: StartPeer,
    fmt: ContentFormat | None,
) -> None:
    ep = "nodelib-obs"
    path = Path.parse("/3/0/9")
    peer, _ = await registered_nodelib_client(server, node_peers, server_events, ep)
    obs = await within(server.observe(ep, path, format=fmt), peer)
    assert not obs.ended, obs.end_reason
    assert obs.initial == {path: 87}
    first = await server_events.next(Notification, ep)
    assert first.initial
    assert first.content == {path: 87}
    for level in (55, 54):
        peer.send(f"set /3/0/9 {level}")
        await peer.expect("set", path="/3/0/9", value=str(level))
        note = await server_events.next(Notification, ep)
        assert note.observation_id == obs.id
        assert note.content == {path: level}


async def test_nodelib_client_update_from_a_new_port_moves_its_address(
    server: LwM2MServer, server_events: ServerEvents, node_peers: StartPeer
) -> None:
    # lwm2m-node-lib sends each Update from a fresh socket and listens there afterwards.
    ep = "nodelib-update"
    peer, registered = await registered_nodelib_client(server, node_peers, server_events, ep)
    peer.send("update")
    updated = await server_events.next(Updated, ep)
    moved = await peer.expect("updated")
    assert updated.previous.port == registered["local_port"]
    assert updated.registration.port == moved["local_port"]
    assert updated.registration.registration_id == updated.previous.registration_id
    value = await read_one(server, peer, ep, "/3/0/0", ContentFormat.TEXT)
    assert value == "lwm2m-node-lib"


async def test_nodelib_client_deregisters(
    server: LwM2MServer, server_events: ServerEvents, node_peers: StartPeer
) -> None:
    ep = "nodelib-bye"
    peer, _ = await registered_nodelib_client(server, node_peers, server_events, ep)
    peer.send("deregister")
    gone = await server_events.next(Deregistered, ep)
    await peer.expect("deregistered")
    assert gone.registration.endpoint == ep
    assert ep not in server.registrations


# -- fotakit client -> lwm2m-node-lib server ----------------------------------------------

FAST = TransportParams(
    ack_timeout=1.0, ack_random_factor=1.0, max_retransmit=2, request_timeout=5.0
)


@dataclass
class Device:
    """A fotakit client with a Device object whose Reboot records its arguments."""

    client: LwM2MClient
    device: DeviceInstance
    reboots: asyncio.Queue[str | None]


@pytest.fixture
async def nodelib_server(node_peers: StartPeer) -> AsyncIterator[tuple[NodePeer, int]]:
    """An lwm2m-node-lib server writing text/plain, and its port."""
    peer = await node_peers("nodelib_server.js", "0", env={"NODELIB_WRITE_FORMAT": "text/plain"})
    listening = await peer.expect("listening")
    yield peer, int(listening["port"])


@asynccontextmanager
async def fotakit_device(port: int, endpoint: str, version: str) -> AsyncIterator[Device]:
    reboots: asyncio.Queue[str | None] = asyncio.Queue()
    registry = builtin_registry()
    definition = registry.get(3)
    assert definition is not None
    device = DeviceInstance(
        DeviceInfo(manufacturer="fotakit-interop", firmware_version="1.2.3"),
        reboot=reboots.put_nowait,
    )
    config = ClientConfig(
        endpoint=endpoint,
        server_uri=f"coap://127.0.0.1:{port}",
        lifetime=60,
        lwm2m_version=version,
        transport=FAST,
        # lwm2m-node-lib's server sends its requests through node-coap's proxy, which
        # forwards a CON notification but never ACKs it to us; aiocoap would then hold
        # every later message to that server (NSTART=1) behind the retransmissions.
        confirmable_notifications=False,
    )
    client = LwM2MClient(config, objects=[device_object(definition, device)], registry=registry)
    await client.start()
    try:
        yield Device(client, device, reboots)
    finally:
        await client.stop()


@pytest.mark.parametrize("version", ["1.0", "1.1"])
async def test_fotakit_client_registers_with_nodelib_server(
    nodelib_server: tuple[NodePeer, int], version: str
) -> None:
    peer, port = nodelib_server
    endpoint = f"fotakit-reg-{version}"
    async with fotakit_device(port, endpoint, version) as dev:
        await dev.client.wait_registered(OP_TIMEOUT)
        registration = await peer.expect("registration", endpoint=endpoint)
        assert registration["version"] == version
        assert registration["lifetime"] == "60"
        assert registration["port"] == dev.client.port
        links = {link.target for link in parse_links(registration["payload"])}
        assert {"/1/0", "/3/0"} <= links
        assert "/0/0" not in links  # TS Core 1.1.1 §6.2.1: no Security instances
        if version == "1.1":  # the plainest root link: one bare content format
            assert registration["payload"].startswith('</>;rt="oma.lwm2m";ct=112,')
        assert await dev.client.update()
        await peer.expect("update", endpoint=endpoint)
    await peer.expect("deregistration", endpoint=endpoint)
    listed = await peer.command("list")
    assert endpoint not in {d["name"] for d in listed["value"]}


async def test_fotakit_agent_registers_with_nodelib_server_with_its_own_object(
    nodelib_server: tuple[NodePeer, int], tmp_path: pathlib.Path
) -> None:
    # The agent's Register carries Objects 4 and 5 and the vendor object 33600 (Update
    # Diagnostics, docs/agent-guide.md) behind one bare ct=112.
    peer, port = nodelib_server
    config = AgentConfig(
        endpoint="fotakit-agent",
        server_uri=f"coap://127.0.0.1:{port}",
        data_dir=tmp_path / "agent",
        local_host="127.0.0.1",
        transport=FAST,
        connectivity="simulated",
    )
    agent = Agent(config, trust=TrustStore())
    await agent.start()
    try:
        registration = await peer.expect("registration", endpoint="fotakit-agent")
        assert registration["payload"].startswith('</>;rt="oma.lwm2m";ct=112,')
        links = {link.target for link in parse_links(registration["payload"])}
        assert {"/3/0", "/4/0", "/5/0", "/33600/0"} <= links
        await agent.wait_for(AgentEventKind.REGISTERED, timeout=OP_TIMEOUT)
    finally:
        await agent.stop()
    await peer.expect("deregistration", endpoint="fotakit-agent")


async def test_fotakit_client_reports_the_registration_id_nodelib_assigned(
    nodelib_server: tuple[NodePeer, int],
) -> None:
    # lwm2m-node-lib answers Register with ONE Location-Path option "rd/<id>" (a slash
    # inside the segment) instead of two, "rd" and "<id>"; the ID is still "<id>".
    peer, port = nodelib_server
    async with fotakit_device(port, "fotakit-id", "1.1") as dev:
        registration_id = await dev.client.wait_registered(OP_TIMEOUT)
        registration = await peer.expect("registration", endpoint="fotakit-id")
        assert registration_id == str(registration["id"])
        assert dev.client.registration_id == str(registration["id"])


@pytest.mark.parametrize("version", ["1.0", "1.1"])
async def test_nodelib_server_reads_writes_executes_and_observes_fotakit_client(
    nodelib_server: tuple[NodePeer, int], version: str
) -> None:
    peer, port = nodelib_server
    ep = f"fotakit-dm-{version}"
    async with fotakit_device(port, ep, version) as dev:
        await dev.client.wait_registered(OP_TIMEOUT)
        await peer.expect("registration", endpoint=ep)

        read = await peer.command("read", ep=ep, path="/3/0/0")
        assert read["ok"], read
        assert read["value"] == dev.device.read(0) == "fotakit-interop"
        read = await peer.command("read", ep=ep, path="/3/0/3")
        assert read["value"] == "1.2.3"

        wrote = await peer.command("write", ep=ep, path="/3/0/15", value="Europe/Madrid")
        assert wrote["ok"], wrote
        assert dev.device.info.timezone == "Europe/Madrid"
        read = await peer.command("read", ep=ep, path="/3/0/15")
        assert read["value"] == "Europe/Madrid"

        executed = await peer.command("execute", ep=ep, path="/3/0/4", args="5")
        assert executed["ok"], executed
        assert await asyncio.wait_for(dev.reboots.get(), OP_TIMEOUT) == "5"

        # node-coap 0.22 (under lwm2m-node-lib) drops a notification unless its Observe
        # number is greater than the last one, starting from 0 — so it drops aiocoap's
        # first answer, which RFC 7641 lets carry Observe=0. The observation still holds:
        # the peer's result is then the first *change*.
        peer.send({"id": "obs", "op": "observe", "ep": ep, "path": "/3/0/3"})
        await dev.client.observations.wait_for_count(1, OP_TIMEOUT)
        dev.device.set_firmware_version("1.2.4")
        observed = await peer.expect("result", id="obs")
        assert observed["ok"], observed
        assert observed["value"] in ("1.2.3", "1.2.4")
        if observed["value"] == "1.2.3":
            first = await peer.expect("notification", endpoint=ep, path="/3/0/3")
            assert first["value"] == "1.2.4"
        dev.device.set_firmware_version("2.0.0")
        note = await peer.expect("notification", endpoint=ep, path="/3/0/3")
        assert note["value"] == "2.0.0"


async def test_nodelib_server_gets_4_04_for_a_missing_object(
    nodelib_server: tuple[NodePeer, int],
) -> None:
    peer, port = nodelib_server
    async with fotakit_device(port, "fotakit-404", "1.1") as dev:
        await dev.client.wait_registered(OP_TIMEOUT)
        await peer.expect("registration", endpoint="fotakit-404")
        missing = await peer.command("read", ep="fotakit-404", path="/3303/0/5700")
        assert not missing["ok"]
        assert missing["code"] == "4.04"


async def test_nodelib_default_legacy_text_write_is_refused_with_4_15_and_changes_nothing(
    node_peers: StartPeer,
) -> None:
    # Out of the box lwm2m-node-lib writes with Content-Format 1541, the pre-release code
    # of text/plain from LwM2M 1.0 drafts; fotakit answers 4.15 rather than guess.
    peer = await node_peers("nodelib_server.js", "0")
    port = int((await peer.expect("listening"))["port"])
    async with fotakit_device(port, "fotakit-1541", "1.0") as dev:
        await dev.client.wait_registered(OP_TIMEOUT)
        await peer.expect("registration", endpoint="fotakit-1541")
        refused = await peer.command("write", ep="fotakit-1541", path="/3/0/15", value="Asia/Tokyo")
        assert not refused["ok"]
        assert refused["code"] == "4.15"
        assert dev.device.info.timezone == "UTC"
        still = await peer.command("read", ep="fotakit-1541", path="/3/0/15")
        assert still["value"] == "UTC"
