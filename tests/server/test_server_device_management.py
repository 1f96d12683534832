"""Device management (TS Core 1.1.1 §6.3) and content-format negotiation, end to end."""

from __future__ import annotations

import asyncio

import pytest
from aiocoap.numbers.codes import Code
from server_fakes import FakeDevice, RawPeer

from fotakit.lwm2m.attributes import NotificationAttributes
from fotakit.lwm2m.codecs import ContentFormat
from fotakit.lwm2m.path import Path
from fotakit.server import (
    DeviceError,
    DeviceUnreachable,
    LwM2MServer,
    NotRegistered,
    RequestTimeout,
)

SENML_PAYLOAD = b'</>;rt="oma.lwm2m";ct="110 112",</1/0>,</3/0>,</5/0>'
SENML_JSON_ONLY = b'</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</5/0>'


async def test_read_of_a_single_resource_returns_its_value(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "dev1")
    assert await server.read_value("dev1", "/3/0/0") == "fotakit test device"
    assert await server.read_value("dev1", Path(3, 0, 9)) == 87
    gets = [s for s in device.seen if s.method == "GET"]
    assert [s.path for s in gets] == [Path(3, 0, 0), Path(3, 0, 9)]


async def test_read_of_an_instance_returns_all_its_resources(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "dev1", payload=SENML_PAYLOAD)
    content = await server.read("dev1", "/5/0")
    assert content == {Path(5, 0, 1): "", Path(5, 0, 3): 0, Path(5, 0, 5): 0}


async def test_device_error_codes_are_raised_with_the_code(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "dev1")
    with pytest.raises(DeviceError) as not_found:
        await server.read("dev1", "/9/0/0")
    assert not_found.value.code == "4.04"
    device.state.failures[("POST", Path(5, 0, 2))] = Code.METHOD_NOT_ALLOWED
    with pytest.raises(DeviceError) as not_allowed:
        await server.execute("dev1", "/5/0/2")
    assert not_allowed.value.code == "4.05"


async def test_request_to_a_silent_client_times_out(server: LwM2MServer) -> None:
    silent = RawPeer()
    try:
        mid = silent.send(server.port, Code.POST, ("rd",), ["ep=mute", "lt=60"], b"</3/0>")
        response = await asyncio.wait_for(silent.response_to(mid), 5)
        assert response.code == Code.CREATED
        with pytest.raises(RequestTimeout):
            await asyncio.wait_for(server.read("mute", "/3/0/0"), 10)
        # It was retransmitted (CON) before giving up, and nothing was answered.
        first = await asyncio.wait_for(silent.receive(), 5)
        assert first.code == Code.GET
    finally:
        silent.close()


async def test_request_to_a_closed_port_raises_device_unreachable(server: LwM2MServer) -> None:
    gone = await FakeDevice.start(server.config.registry, {})
    await gone.register(server.port, "gone")
    await gone.stop()  # the registration stays, the socket is closed (ICMP unreachable)
    with pytest.raises((DeviceUnreachable, RequestTimeout)):
        await asyncio.wait_for(server.read("gone", "/3/0/0"), 10)


async def test_read_of_unknown_endpoint_raises_not_registered(server: LwM2MServer) -> None:
    with pytest.raises(NotRegistered):
        await server.read("nobody", "/3/0/0")


async def test_write_replace_sends_put_and_partial_update_sends_post(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "dev1", payload=SENML_PAYLOAD)
    await server.write("dev1", "/5/0/1", "coap://127.0.0.1/fw.bin")
    assert device.state.values[Path(5, 0, 1)] == "coap://127.0.0.1/fw.bin"
    await server.write("dev1", "/1/0", {Path(1, 0, 1): 600}, replace=False)
    puts = [s for s in device.seen if s.method == "PUT"]
    posts = [s for s in device.seen if s.method == "POST" and s.path == Path(1, 0)]
    assert puts[0].path == Path(5, 0, 1) and puts[0].content_format == ContentFormat.SENML_CBOR
    assert len(posts) == 1 and posts[0].content_format == ContentFormat.SENML_CBOR
    assert device.state.values[Path(1, 0, 1)] == 600


async def test_write_of_an_opaque_resource_is_sent_as_octet_stream(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "dev1", payload=SENML_PAYLOAD)
    image = bytes(range(256)) * 4
    await server.write("dev1", "/5/0/0", image)
    put = [s for s in device.seen if s.method == "PUT"][-1]
    assert put.content_format == ContentFormat.OPAQUE and put.payload == image


async def test_execute_sends_post_with_arguments(server: LwM2MServer, device: FakeDevice) -> None:
    await device.register(server.port, "dev1")
    await server.execute("dev1", "/3/0/4")
    await server.execute("dev1", "/5/0/2", "0='</5/0>'")
    posts = [s for s in device.seen if s.method == "POST"]
    assert [(s.path, s.payload) for s in posts] == [
        (Path(3, 0, 4), b""),
        (Path(5, 0, 2), b"0='</5/0>'"),
    ]


async def test_discover_returns_links(server: LwM2MServer, device: FakeDevice) -> None:
    await device.register(server.port, "dev1")
    links = await server.discover("dev1", "/5/0")
    assert [link.target for link in links] == ["/5/0/1", "/5/0/3", "/5/0/5"]
    assert device.seen[-1].accept == ContentFormat.LINK


async def test_write_attributes_sends_query_without_payload(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "dev1")
    await server.write_attributes("dev1", "/5/0/3", NotificationAttributes(pmin=1, pmax=60))
    seen = device.seen[-1]
    assert seen.method == "PUT" and seen.payload == b""
    assert sorted(seen.query) == ["pmax=60", "pmin=1"]


async def test_create_returns_the_location_and_delete_sends_delete(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "dev1", payload=SENML_PAYLOAD)
    created = await server.create("dev1", "/1", {Path(1, 1, 1): 120})
    assert created == Path(1, 1)
    await server.delete("dev1", created)
    assert device.seen[-1].method == "DELETE" and device.seen[-1].path == Path(1, 1)


@pytest.mark.parametrize(
    ("version", "payload", "path", "expected"),
    [
        ("1.0", b"</3/0>", "/3/0/0", ContentFormat.TEXT),
        ("1.0", b"</3/0>", "/3/0", ContentFormat.TLV),
        ("1.1", SENML_PAYLOAD, "/3/0/0", ContentFormat.SENML_CBOR),
        ("1.1", SENML_JSON_ONLY, "/3/0", ContentFormat.SENML_JSON),
        ("1.1", b"</3/0>", "/3/0/0", ContentFormat.TEXT),
        ("1.1", b"</3/0>", "/3/0", ContentFormat.TLV),
    ],
)
async def test_read_accept_follows_version_and_advertised_formats(
    server: LwM2MServer,
    device: FakeDevice,
    version: str,
    payload: bytes,
    path: str,
    expected: ContentFormat,
) -> None:
    await device.register(server.port, "dev1", version=version, payload=payload)
    content = await server.read("dev1", path)
    assert device.seen[-1].accept == expected
    assert content[Path(3, 0, 0)] == "fotakit test device"


async def test_tlv_only_1_0_client_is_asked_again_in_tlv_after_refusing_text(
    server: LwM2MServer, device: FakeDevice
) -> None:
    device.state.refused_formats.add(int(ContentFormat.TEXT))
    await device.register(server.port, "dev1", version="1.0", payload=b"</3/0>")
    assert await server.read_value("dev1", "/3/0/0") == "fotakit test device"
    assert [s.accept for s in device.seen[-2:]] == [ContentFormat.TEXT, ContentFormat.TLV]
    await server.write("dev1", "/3/0/15", "Europe/Paris")
    assert [s.content_format for s in device.seen[-2:]] == [ContentFormat.TEXT, ContentFormat.TLV]
    assert device.state.values[Path(3, 0, 15)] == "Europe/Paris"


async def test_explicit_text_refused_by_a_1_0_client_is_not_retried(
    server: LwM2MServer, device: FakeDevice
) -> None:
    device.state.refused_formats.add(int(ContentFormat.TEXT))
    await device.register(server.port, "dev1", version="1.0", payload=b"</3/0>")
    with pytest.raises(DeviceError) as info:
        await server.read("dev1", "/3/0/0", format=ContentFormat.TEXT)
    assert info.value.code == "4.06"
    assert len([s for s in device.seen if s.method == "GET"]) == 1


async def test_explicit_format_wins_over_negotiation(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "dev1", payload=SENML_PAYLOAD)
    value = await server.read("dev1", "/3/0/9", format=ContentFormat.TEXT)
    assert device.seen[-1].accept == ContentFormat.TEXT
    assert value == {Path(3, 0, 9): 87}
