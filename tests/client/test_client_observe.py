"""Observe, notifications and notification attributes (TS §6.4, §5.1.2; RFC 7641).

Timings are small (pmin/pmax of 1 s) and the assertions are about order and bounds, with
generous upper limits for a loaded machine.
"""

from __future__ import annotations

import asyncio
import socket

from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import ACK, CON, NON, RST

from fotakit.lwm2m.codecs import ContentFormat, decode
from fotakit.lwm2m.path import Path

TEST = 3442


class Observer:
    """The server side of one observation, via aiocoap's client observation API."""

    def __init__(self, rd, path: str, **options) -> None:
        self.request = rd.ctx.request(rd.dm(Code.GET, path, observe=0, **options))
        self._iter = None
        self.loop = asyncio.get_running_loop()

    async def first(self) -> Message:
        response = await asyncio.wait_for(self.request.response, 5.0)
        self.started = self.loop.time()
        self._iter = self.request.observation.__aiter__()
        return response

    async def next(self, within: float = 5.0) -> tuple[Message, float]:
        message = await asyncio.wait_for(self._iter.__anext__(), within)
        return message, self.loop.time()


async def test_observe_resource_notifies_on_change(rd, dm_client, test_object):
    obs = Observer(rd, f"/{TEST}/0/1")
    first = await obs.first()
    assert first.code == Code.CONTENT and first.payload == b"42"
    assert first.opt.observe is not None
    test_object.instance.set(1, 43)
    message, _ = await obs.next()
    assert message.payload == b"43"
    assert message.opt.observe > first.opt.observe
    test_object.instance.set(1, 44)
    second, _ = await obs.next()
    assert second.payload == b"44" and second.opt.observe > message.opt.observe
    assert second.mtype == CON, "notifications are confirmable by default"


async def test_unchanged_value_does_not_notify(rd, dm_client, test_object):
    obs = Observer(rd, f"/{TEST}/0/1")
    await obs.first()
    test_object.instance.set(1, 42)  # same value: SimpleInstance does not even report it
    test_object.instance.notify_changed(1)  # a report without a change is filtered too
    test_object.instance.set(1, 50)
    message, _ = await obs.next()
    assert message.payload == b"50"


async def test_observe_instance_notifies_on_any_resource_change(
    rd, dm_client, test_object, registry
):
    obs = Observer(rd, f"/{TEST}/0")
    first = await obs.first()
    assert first.opt.content_format == ContentFormat.SENML_CBOR
    test_object.instance.set(0, "changed")
    message, _ = await obs.next()
    content = decode(int(message.opt.content_format), Path(TEST, 0), message.payload, registry)
    assert content[Path(TEST, 0, 0)] == "changed"


async def test_observe_keeps_the_accepted_format(rd, dm_client, test_object):
    obs = Observer(rd, f"/{TEST}/0", accept=ContentFormat.SENML_JSON)
    first = await obs.first()
    assert first.opt.content_format == ContentFormat.SENML_JSON
    test_object.instance.set(1, 1)
    message, _ = await obs.next()
    assert message.opt.content_format == ContentFormat.SENML_JSON


async def test_pmin_delays_and_coalesces_notifications(rd, dm_client, test_object):
    assert (await rd.request(Code.PUT, f"/{TEST}/0/1", query=["pmin=1"])).code == Code.CHANGED
    obs = Observer(rd, f"/{TEST}/0/1")
    await obs.first()
    test_object.instance.set(1, 1)
    test_object.instance.set(1, 2)
    message, at = await obs.next()
    assert at - obs.started >= 0.9, "nothing before pmin"
    assert message.payload == b"2", "the value at the end of pmin, changes coalesced"


async def test_pmax_notifies_without_change(rd, dm_client):
    assert (await rd.request(Code.PUT, f"/{TEST}/0", query=["pmax=1"])).code == Code.CHANGED
    obs = Observer(rd, f"/{TEST}/0/1")
    await obs.first()
    first, at1 = await obs.next(within=5.0)
    second, at2 = await obs.next(within=5.0)
    assert first.payload == second.payload == b"42"
    assert 0.9 <= at1 - obs.started < 4.0, "pmax inherited from the instance"
    assert 0.9 <= at2 - at1 < 4.0


async def test_default_pmax_comes_from_the_server_object(rd, dm_client):
    assert (await rd.request(Code.PUT, "/1/0/3", b"1", content_format=0)).code == Code.CHANGED
    obs = Observer(rd, f"/{TEST}/0/9")
    await obs.first()
    message, at = await obs.next(within=5.0)
    assert message.payload == b"7" and at - obs.started >= 0.9


async def test_gt_and_lt_notify_only_on_crossing(rd, dm_client, test_object):
    query = ["gt=50", "lt=10"]
    assert (await rd.request(Code.PUT, f"/{TEST}/0/1", query=query)).code == Code.CHANGED
    obs = Observer(rd, f"/{TEST}/0/1")
    await obs.first()  # 42: between the thresholds
    test_object.instance.set(1, 45)  # no crossing
    test_object.instance.set(1, 55)  # crosses gt upwards
    message, _ = await obs.next()
    assert message.payload == b"55"
    test_object.instance.set(1, 60)  # still above
    test_object.instance.set(1, 5)  # crosses both downwards
    message, _ = await obs.next()
    assert message.payload == b"5"


async def test_st_needs_a_step_from_the_last_notified_value(rd, dm_client, test_object):
    assert (await rd.request(Code.PUT, f"/{TEST}/0/1", query=["st=10"])).code == Code.CHANGED
    obs = Observer(rd, f"/{TEST}/0/1")
    await obs.first()  # 42
    test_object.instance.set(1, 47)
    test_object.instance.set(1, 51)  # 9 from 42: still nothing
    test_object.instance.set(1, 52)  # 10 from 42
    message, _ = await obs.next()
    assert message.payload == b"52"


async def test_removing_an_attribute_restores_plain_change_notifications(
    rd, dm_client, test_object
):
    assert (await rd.request(Code.PUT, f"/{TEST}/0/1", query=["st=100"])).code == Code.CHANGED
    assert (await rd.request(Code.PUT, f"/{TEST}/0/1", query=["st"])).code == Code.CHANGED
    obs = Observer(rd, f"/{TEST}/0/1")
    await obs.first()
    test_object.instance.set(1, 43)
    message, _ = await obs.next()
    assert message.payload == b"43"


async def test_non_confirmable_notifications_when_configured(rd, make_client, test_object):
    client = make_client([test_object.object], confirmable_notifications=False)
    await client.start()
    await client.wait_registered(5.0)
    obs = Observer(rd, f"/{TEST}/0/1")
    await obs.first()
    test_object.instance.set(1, 7)
    message, _ = await obs.next()
    assert message.mtype == NON and message.payload == b"7"


async def test_observe_unknown_path_is_not_found_and_not_kept(rd, dm_client):
    obs = Observer(rd, f"/{TEST}/9/1")
    first = await obs.first()
    assert first.code == Code.NOT_FOUND
    await dm_client.observations.wait_for_count(0, 2.0)


class RawPeer(asyncio.DatagramProtocol):
    """A bare UDP CoAP peer, for exact control of tokens and Observe values."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[Message] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr) -> None:
        self.received.put_nowait(Message.decode(data))


async def test_get_with_observe_1_cancels_the_observation(rd, dm_client, test_object):
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(
        RawPeer, local_addr=("127.0.0.1", 0), family=socket.AF_INET
    )
    try:
        target = ("127.0.0.1", dm_client.port)

        def send(mid: int, observe: int) -> None:
            msg = Message(code=Code.GET, uri_path=(str(TEST), "0", "1"), observe=observe)
            msg.mtype, msg.mid, msg.token = CON, mid, b"tok1"
            transport.sendto(msg.encode(), target)

        send(1, 0)
        first = await asyncio.wait_for(peer.received.get(), 5.0)
        assert first.mtype == ACK and first.opt.observe is not None and first.payload == b"42"
        await dm_client.observations.wait_for_count(1, 2.0)
        send(2, 1)
        answer = await asyncio.wait_for(peer.received.get(), 5.0)
        assert answer.code == Code.CONTENT and answer.opt.observe is None
        await dm_client.observations.wait_for_count(0, 5.0)
    finally:
        transport.close()


async def test_deleting_the_observed_instance_ends_the_observation_with_4_04(
    rd, dm_client, test_object
):
    test_object.object.add_instance(1, type(test_object.instance)({1: 1}))
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(
        RawPeer, local_addr=("127.0.0.1", 0), family=socket.AF_INET
    )
    try:
        msg = Message(code=Code.GET, uri_path=(str(TEST), "1", "1"), observe=0)
        msg.mtype, msg.mid, msg.token = CON, 7, b"tok2"
        transport.sendto(msg.encode(), ("127.0.0.1", dm_client.port))
        first = await asyncio.wait_for(peer.received.get(), 5.0)
        assert first.code == Code.CONTENT and first.opt.observe is not None
        assert (await rd.request(Code.DELETE, f"/{TEST}/1")).code == Code.DELETED
        last = await asyncio.wait_for(peer.received.get(), 5.0)
        assert last.token == b"tok2" and last.code == Code.NOT_FOUND
        assert last.opt.observe is None, "an error notification is the last one"
        await dm_client.observations.wait_for_count(0, 5.0)
    finally:
        transport.close()


async def test_rst_to_a_notification_cancels_the_observation(rd, dm_client, test_object):
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(
        RawPeer, local_addr=("127.0.0.1", 0), family=socket.AF_INET
    )
    try:
        msg = Message(code=Code.GET, uri_path=(str(TEST), "0", "1"), observe=0)
        msg.mtype, msg.mid, msg.token = CON, 9, b"tok3"
        transport.sendto(msg.encode(), ("127.0.0.1", dm_client.port))
        await asyncio.wait_for(peer.received.get(), 5.0)
        await dm_client.observations.wait_for_count(1, 2.0)
        test_object.instance.set(1, 99)
        notification = await asyncio.wait_for(peer.received.get(), 5.0)
        assert notification.mtype == CON and notification.payload == b"99"
        rst = Message(code=Code.EMPTY)
        rst.mtype, rst.mid = RST, notification.mid
        transport.sendto(rst.encode(), ("127.0.0.1", dm_client.port))
        await dm_client.observations.wait_for_count(0, 5.0)
    finally:
        transport.close()


async def test_observe_with_link_format_accept_is_a_plain_discover(rd, dm_client):
    obs = Observer(rd, f"/{TEST}/0", accept=ContentFormat.LINK)
    first = await obs.first()
    assert first.code == Code.CONTENT and first.opt.content_format == ContentFormat.LINK
    assert first.opt.observe is None
    await dm_client.observations.wait_for_count(0, 2.0)
