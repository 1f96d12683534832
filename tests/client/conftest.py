"""A small, real test-side LwM2M server for the client tests (not fotakit.server).

``RdServer`` is an aiocoap site on 127.0.0.1 with the Registration Interface resources:
``POST /rd`` (Register: answers 2.01 with Location-Path ``rd/<n>``), ``POST /rd/<n>``
(Update: 2.04, or 4.04 for unknown or forgotten registrations), ``DELETE /rd/<n>``
(De-register: 2.02). It records every message in an asyncio queue, and sends DM requests
to the address and port the Register came from.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiocoap
import pytest
from aiocoap import Message
from aiocoap import resource as coap_resource
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import CON

from fotakit.client import ClientConfig, LwM2MClient, LwM2MObject, SimpleInstance
from fotakit.coap import TransportParams, create_endpoint
from fotakit.lwm2m.model import ObjectDef, Operations, ResourceDef, ResourceType

FAST = TransportParams(
    ack_timeout=0.5, ack_random_factor=1.0, max_retransmit=2, request_timeout=5.0
)


@dataclass
class Recorded:
    """One Registration Interface message the server received."""

    kind: str  # "register", "update", "deregister"
    location: tuple[str, ...]
    query: list[str]
    payload: bytes
    content_format: int | None
    remote: str
    confirmable: bool
    at: float = field(default_factory=lambda: asyncio.get_running_loop().time())


class _Rd(coap_resource.Resource, coap_resource.PathCapable):  # type: ignore[misc]
    def __init__(self, server: RdServer) -> None:
        super().__init__()
        self.server = server

    async def render(self, request: Message) -> Message:
        path = tuple(request.opt.uri_path)
        srv = self.server
        if path == ("rd",) and request.code == Code.POST:
            endpoint = next((q[3:] for q in request.opt.uri_query if q.startswith("ep=")), None)
            if endpoint not in srv.endpoints:
                # a stray Register (e.g. a retransmission from another test run that used
                # this port before) must not hijack the test's client address
                return Message(code=Code.FORBIDDEN)
            code = srv.register_codes.pop(0) if srv.register_codes else Code.CREATED
            srv.counter += 1
            location = ("rd", f"{srv.counter}{uuid.uuid4().hex[:6]}")
            srv.issued.add(location)
            srv.record("register", location, request)
            if code != Code.CREATED:
                return Message(code=code)
            srv.active.add(location)
            srv.remote = request.remote.hostinfo
            return Message(code=Code.CREATED, location_path=location)
        if path not in srv.issued and path != ("rd",):
            return Message(code=Code.NOT_FOUND)  # stray: not from this test's clients
        if len(path) == 2 and path[0] == "rd" and request.code == Code.POST:
            srv.record("update", path, request)
            if srv.update_codes:
                return Message(code=srv.update_codes.pop(0))
            return Message(code=Code.CHANGED if path in srv.active else Code.NOT_FOUND)
        if len(path) == 2 and path[0] == "rd" and request.code == Code.DELETE:
            srv.record("deregister", path, request)
            if path not in srv.active:
                return Message(code=Code.NOT_FOUND)
            srv.active.discard(path)
            return Message(code=Code.DELETED)
        return Message(code=Code.NOT_FOUND)


class RdServer:
    """The test-side server. ``register_codes`` / ``update_codes`` script failure answers."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[Recorded] = asyncio.Queue()
        self.history: list[Recorded] = []
        self.active: set[tuple[str, ...]] = set()
        self.counter = 0
        self.register_codes: list[Code] = []
        self.update_codes: list[Code] = []
        self.remote: str | None = None
        self.endpoints: set[str] = set()
        self.issued: set[tuple[str, ...]] = set()
        self.ctx: aiocoap.Context | None = None
        self.port = 0

    async def start(self) -> None:
        self.ctx, self.port = await create_endpoint(_Rd(self), "127.0.0.1", 0)

    async def close(self) -> None:
        if self.ctx is not None:
            await self.ctx.shutdown()

    @property
    def uri(self) -> str:
        return f"coap://127.0.0.1:{self.port}"

    def record(self, kind: str, location: tuple[str, ...], request: Message) -> None:
        cf = request.opt.content_format
        item = Recorded(
            kind,
            location,
            list(request.opt.uri_query),
            bytes(request.payload),
            int(cf) if cf is not None else None,
            request.remote.hostinfo,
            request.mtype == CON,
        )
        self.history.append(item)
        self.messages.put_nowait(item)

    async def next(self, kind: str, within: float = 5.0) -> Recorded:
        """The next recorded message of ``kind`` (others are skipped)."""
        async with asyncio.timeout(within):
            while True:
                item = await self.messages.get()
                if item.kind == kind:
                    return item

    def forget(self) -> None:
        """Drop every registration (as a restarted server would): Updates get 4.04."""
        self.active.clear()

    def dm(
        self,
        code: Code,
        path: str,
        payload: bytes = b"",
        *,
        query: Sequence[str] = (),
        **options: Any,
    ) -> Message:
        assert self.remote is not None, "no client registered"
        msg = Message(code=code, uri=f"coap://{self.remote}{path}", payload=payload, **options)
        if query:
            msg.opt.uri_query = list(query)
        return msg

    async def request(
        self,
        code: Code,
        path: str,
        payload: bytes = b"",
        *,
        query: Sequence[str] = (),
        within: float = 10.0,
        **options: Any,
    ) -> Message:
        """Send one DM request to the registered client and return its response."""
        assert self.ctx is not None
        msg = self.dm(code, path, payload, query=query, **options)
        response: Message = await asyncio.wait_for(self.ctx.request(msg).response, within)
        return response


@pytest.fixture
async def rd() -> AsyncIterator[RdServer]:
    server = RdServer()
    await server.start()
    yield server
    await server.close()


ClientFactory = Callable[..., LwM2MClient]


@pytest.fixture
async def make_client(rd: RdServer) -> AsyncIterator[ClientFactory]:
    """Build clients pointed at ``rd``; every one is stopped after the test."""
    made: list[LwM2MClient] = []

    def factory(objects: Sequence[Any] = (), **overrides: Any) -> LwM2MClient:
        settings: dict[str, Any] = dict(
            endpoint=f"dev-{uuid.uuid4().hex[:12]}", server_uri=rd.uri, lifetime=300, transport=FAST
        )
        settings.update(overrides)
        rd.endpoints.add(settings["endpoint"])
        client = LwM2MClient(ClientConfig(**settings), objects=list(objects))
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.stop(deregister=False)


@pytest.fixture
async def registered(rd: RdServer, make_client: ClientFactory) -> LwM2MClient:
    """A started client (LwM2M 1.1, default objects) registered with ``rd``."""
    client = make_client()
    await client.start()
    await client.wait_registered(5.0)
    return client


# -- a test object with one resource of every kind ---------------------------------------------


TEST_OBJECT_ID = 3442


def _r(rid: int, name: str, ops: str, rtype: ResourceType, multiple: bool = False) -> ResourceDef:
    return ResourceDef(rid, name, Operations(ops), rtype, multiple=multiple)


TEST_OBJECT = ObjectDef(
    TEST_OBJECT_ID,
    "fotakit test object",
    version="1.1",
    multiple=True,
    resources={
        r.id: r
        for r in (
            _r(0, "String", "RW", ResourceType.STRING),
            _r(1, "Integer", "RW", ResourceType.INTEGER),
            _r(2, "Float", "RW", ResourceType.FLOAT),
            _r(3, "Boolean", "RW", ResourceType.BOOLEAN),
            _r(4, "Opaque", "RW", ResourceType.OPAQUE),
            _r(5, "Time", "RW", ResourceType.TIME),
            _r(7, "Integers", "RW", ResourceType.INTEGER, multiple=True),
            _r(8, "Execute", "E", ResourceType.NONE),
            _r(9, "Read Only", "R", ResourceType.INTEGER),
            _r(10, "Write Only", "W", ResourceType.STRING),
            _r(11, "Optional", "RW", ResourceType.STRING),
        )
    },
)


def sample_values() -> dict[int, Any]:
    from datetime import UTC, datetime

    return {
        0: "hello",
        1: 42,
        2: 1.5,
        3: True,
        4: b"\x00\x01",
        5: datetime(2026, 1, 1, tzinfo=UTC),
        7: {0: 10, 1: 20},
        9: 7,
        10: "secret",
    }


class TestObject:
    """The test object plus a log of Execute calls."""

    def __init__(self) -> None:
        self.executed: list[str | None] = []
        self.instance = SimpleInstance(sample_values(), {8: self.executed.append})
        self.object = LwM2MObject(TEST_OBJECT, {0: self.instance}, factory=self._new)

    def _new(self, instance_id: int) -> SimpleInstance:
        return SimpleInstance({}, {8: self.executed.append})


@pytest.fixture
def test_object() -> TestObject:
    return TestObject()


@pytest.fixture
async def dm_client(
    rd: RdServer,
    make_client: ClientFactory,
    test_object: TestObject,
) -> LwM2MClient:
    """A registered 1.1 client serving the test object as /3442/0."""
    client = make_client([test_object.object])
    await client.start()
    await client.wait_registered(5.0)
    return client


@pytest.fixture
def registry() -> Any:
    """The built-in objects plus the test object (for encoding and decoding payloads)."""
    from fotakit.lwm2m.objects import builtin_registry

    reg = builtin_registry()
    reg.add(TEST_OBJECT)
    return reg
