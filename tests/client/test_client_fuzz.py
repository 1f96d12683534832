"""Garbage in, a precise 2.xx or 4.xx out: random requests never crash the client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiocoap import Message
from aiocoap.numbers.codes import Code
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fotakit.client import ClientConfig, LwM2MClient, LwM2MObject, SimpleInstance
from fotakit.coap import TransportParams, create_endpoint
from fotakit.lwm2m.model import ObjectDef, Operations, ResourceDef, ResourceType
from fotakit.lwm2m.objects import builtin_registry

FUZZ_OBJECT = ObjectDef(
    3442,
    "fuzz",
    multiple=True,
    resources={
        0: ResourceDef(0, "s", Operations.RW, ResourceType.STRING),
        1: ResourceDef(1, "i", Operations.RW, ResourceType.INTEGER),
        4: ResourceDef(4, "o", Operations.RW, ResourceType.OPAQUE),
        7: ResourceDef(7, "m", Operations.RW, ResourceType.INTEGER, multiple=True),
        8: ResourceDef(8, "e", Operations.E, ResourceType.NONE),
        9: ResourceDef(9, "r", Operations.R, ResourceType.FLOAT),
    },
)

METHODS = [Code.GET, Code.PUT, Code.POST, Code.DELETE, Code.FETCH, Code.PATCH, Code.iPATCH]
SEGMENTS = st.one_of(
    st.sampled_from(["0", "1", "3", "4", "7", "8", "9", "3442", "65535", "x", "", "01"]),
    st.text(max_size=6),
)
FORMATS = st.one_of(
    st.none(),
    st.sampled_from([0, 40, 42, 60, 110, 112, 11542, 11543, 11544, 1542, 1543]),
    st.integers(0, 65535),
)
QUERY = st.lists(
    st.one_of(
        st.sampled_from(["pmin=1", "pmax=2", "gt=5", "lt=1", "st=1", "pmin", "epmin=1"]),
        st.text(max_size=10),
    ),
    max_size=3,
)


class Rig:
    """A client and a plain CoAP requester in one private event loop, kept across examples."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.client: LwM2MClient | None = None
        self.requester: Any = None

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 20.0))

    async def start(self) -> None:
        from aiocoap import resource

        fuzz = LwM2MObject(
            FUZZ_OBJECT,
            {0: SimpleInstance({0: "s", 1: 1, 4: b"o", 7: {0: 1}, 9: 0.5}, {8: lambda a: None})},
            factory=lambda i: SimpleInstance({}),
        )
        # registration goes to a site that answers nothing useful: the DM side is under test
        self.requester, port = await create_endpoint(resource.Site(), "127.0.0.1", 0)
        transport = TransportParams(
            ack_timeout=0.5, ack_random_factor=1.0, max_retransmit=1, request_timeout=3.0
        )
        self.client = LwM2MClient(
            ClientConfig(
                endpoint="fuzz",
                server_uri=f"coap://127.0.0.1:{port}",
                transport=transport,
                register_retry_initial=30.0,
                register_retry_max=30.0,
            ),
            objects=[fuzz],
            registry=builtin_registry(),
        )
        await self.client.start()

    async def stop(self) -> None:
        assert self.client is not None
        await self.client.stop(deregister=False)
        await self.requester.shutdown()


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    rig = Rig()
    rig.run(rig.start())
    yield rig
    rig.run(rig.stop())
    rig.loop.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(METHODS),
    segments=st.lists(SEGMENTS, max_size=5),
    payload=st.binary(max_size=48),
    content_format=FORMATS,
    accept=FORMATS,
    query=QUERY,
    observe=st.sampled_from([None, None, 1]),
)
def test_random_requests_get_2xx_or_4xx(
    rig, method, segments, payload, content_format, accept, query, observe
):
    assert rig.client is not None
    msg = Message(code=method, uri=f"coap://127.0.0.1:{rig.client.port}/", payload=payload)
    msg.opt.uri_path = tuple(segments)
    if query:
        msg.opt.uri_query = tuple(query)
    if content_format is not None:
        msg.opt.content_format = content_format
    if accept is not None:
        msg.opt.accept = accept
    if observe is not None and method == Code.GET:
        msg.opt.observe = observe

    async def exchange() -> Message:
        response: Message = await rig.requester.request(msg).response
        return response

    response = rig.run(exchange())
    assert response.code.is_successful() or response.code.class_ == 4, (
        f"{method} {segments} cf={content_format} accept={accept} -> {response.code}"
    )


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from([Code.PUT, Code.POST]),
    path=st.sampled_from(
        [
            "/3442",
            "/3442/0",
            "/3442/0/0",
            "/3442/0/1",
            "/3442/0/4",
            "/3442/0/7",
            "/3442/0/7/0",
            "/3442/0/8",
            "/1/0/1",
            "/1/0/7",
            "/3/0/13",
        ]
    ),
    payload=st.one_of(st.binary(max_size=64), st.text(max_size=32).map(str.encode)),
    content_format=st.sampled_from([0, 42, 60, 110, 112, 11542, 11543, 11544]),
)
def test_random_payloads_to_real_targets_get_2xx_or_4xx(rig, method, path, payload, content_format):
    assert rig.client is not None
    msg = Message(
        code=method,
        uri=f"coap://127.0.0.1:{rig.client.port}{path}",
        payload=payload,
        content_format=content_format,
    )

    async def exchange() -> Message:
        response: Message = await rig.requester.request(msg).response
        return response

    response = rig.run(exchange())
    assert response.code.is_successful() or response.code.class_ == 4, (
        f"{method} {path} cf={content_format} {payload!r} -> {response.code}"
    )


def test_client_still_serves_after_the_fuzzing(rig):
    assert rig.client is not None
    msg = Message(code=Code.GET, uri=f"coap://127.0.0.1:{rig.client.port}/3/0/0")

    async def exchange() -> Message:
        response: Message = await rig.requester.request(msg).response
        return response

    response = rig.run(exchange())
    assert response.code == Code.CONTENT
