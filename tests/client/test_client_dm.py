"""Device Management operations served by the client, and their error codes (TS §6.3)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiocoap.numbers.codes import Code

from fotakit.lwm2m.codecs import ContentFormat, decode, encode
from fotakit.lwm2m.linkformat import parse_links
from fotakit.lwm2m.model import Content
from fotakit.lwm2m.objects import builtin_registry
from fotakit.lwm2m.path import Path

TEST = 3442


def decoded(response, root: str, registry) -> Content:
    return decode(int(response.opt.content_format), Path.parse(root), response.payload, registry)


# -- Read -----------------------------------------------------------------------------------------


async def test_read_single_resource_defaults_to_text_plain(rd, dm_client):
    response = await rd.request(Code.GET, f"/{TEST}/0/1")
    assert response.code == Code.CONTENT
    assert response.opt.content_format == ContentFormat.TEXT
    assert response.payload == b"42"


async def test_read_opaque_resource_defaults_to_octet_stream(rd, dm_client):
    response = await rd.request(Code.GET, f"/{TEST}/0/4")
    assert response.opt.content_format == ContentFormat.OPAQUE
    assert response.payload == b"\x00\x01"


async def test_read_instance_1_1_defaults_to_senml_cbor(rd, dm_client, registry):
    response = await rd.request(Code.GET, f"/{TEST}/0")
    assert response.code == Code.CONTENT
    assert response.opt.content_format == ContentFormat.SENML_CBOR
    content = decoded(response, f"/{TEST}/0", registry)
    assert content[Path(TEST, 0, 0)] == "hello"
    assert content[Path(TEST, 0, 7, 1)] == 20
    assert Path(TEST, 0, 10) not in content, "write-only resources are not read"
    assert Path(TEST, 0, 8) not in content, "executable resources are not read"


async def test_read_instance_1_0_defaults_to_tlv(rd, make_client, test_object, registry):
    client = make_client([test_object.object], lwm2m_version="1.0")
    await client.start()
    await client.wait_registered(5.0)
    response = await rd.request(Code.GET, f"/{TEST}/0")
    assert response.opt.content_format == ContentFormat.TLV
    assert decoded(response, f"/{TEST}/0", registry)[Path(TEST, 0, 1)] == 42


@pytest.mark.parametrize(
    "fmt",
    [
        ContentFormat.SENML_JSON,
        ContentFormat.SENML_CBOR,
        ContentFormat.TLV,
        ContentFormat.LWM2M_CBOR,
    ],
)
async def test_read_object_honours_accept(rd, dm_client, fmt, registry):
    response = await rd.request(Code.GET, f"/{TEST}", accept=fmt)
    assert response.code == Code.CONTENT
    assert response.opt.content_format == fmt
    content = decoded(response, f"/{TEST}", registry)
    assert content[Path(TEST, 0, 2)] == 1.5
    assert content[Path(TEST, 0, 5)] == datetime(2026, 1, 1, tzinfo=UTC)


async def test_read_resource_instance(rd, dm_client):
    response = await rd.request(Code.GET, f"/{TEST}/0/7/1")
    assert response.code == Code.CONTENT
    assert response.payload == b"20"


async def test_read_device_object_firmware_version_and_time(rd, dm_client):
    assert (await rd.request(Code.GET, "/3/0/3")).payload == b"0.0.0"
    response = await rd.request(Code.GET, "/3/0/13")
    now = datetime.now(UTC).timestamp()
    assert abs(int(response.payload) - now) < 60
    assert (await rd.request(Code.GET, "/3/0/16")).payload == b"U"


async def test_read_text_of_an_instance_is_not_acceptable(rd, dm_client):
    response = await rd.request(Code.GET, f"/{TEST}/0", accept=ContentFormat.TEXT)
    assert response.code == Code.NOT_ACCEPTABLE


async def test_read_with_unknown_accept_is_not_acceptable(rd, dm_client):
    response = await rd.request(Code.GET, f"/{TEST}/0/1", accept=50)
    assert response.code == Code.NOT_ACCEPTABLE


@pytest.mark.parametrize(
    "path",
    ["/9999", f"/{TEST}/5", f"/{TEST}/0/6", f"/{TEST}/0/11", f"/{TEST}/0/7/9", "/0", "/0/0/0"],
)
async def test_read_unknown_target_is_not_found(rd, dm_client, path):
    assert (await rd.request(Code.GET, path)).code == Code.NOT_FOUND


@pytest.mark.parametrize("path", [f"/{TEST}/0/8", f"/{TEST}/0/10", "/"])
async def test_read_of_non_readable_is_method_not_allowed(rd, dm_client, path):
    assert (await rd.request(Code.GET, path)).code == Code.METHOD_NOT_ALLOWED


@pytest.mark.parametrize("path", ["/abc", "/3/x/1", "/3/00", "/3/65535", "/1/2/3/4/5"])
async def test_malformed_path_is_bad_request(rd, dm_client, path):
    assert (await rd.request(Code.GET, path)).code == Code.BAD_REQUEST


# -- Discover -------------------------------------------------------------------------------------


async def test_discover_object_lists_instances_resources_and_dim(rd, dm_client):
    response = await rd.request(Code.GET, f"/{TEST}", accept=ContentFormat.LINK)
    assert response.code == Code.CONTENT
    assert response.opt.content_format == ContentFormat.LINK
    links = {link.target: link.params for link in parse_links(response.payload.decode())}
    assert f"/{TEST}" in links and f"/{TEST}/0" in links
    assert links[f"/{TEST}/0/7"] == {"dim": "2"}
    assert f"/{TEST}/0/8" in links and f"/{TEST}/0/6" not in links


async def test_discover_resource_shows_inherited_attributes(rd, dm_client):
    assert (await rd.request(Code.PUT, f"/{TEST}/0", query=["pmax=60"])).code == Code.CHANGED
    assert (
        await rd.request(Code.PUT, f"/{TEST}/0/1", query=["pmin=5", "gt=50"])
    ).code == Code.CHANGED
    response = await rd.request(Code.GET, f"/{TEST}/0/1", accept=ContentFormat.LINK)
    (link,) = parse_links(response.payload.decode())
    assert link.target == f"/{TEST}/0/1"
    assert link.params == {"pmin": "5", "pmax": "60", "gt": "50"}
    response = await rd.request(Code.GET, f"/{TEST}/0", accept=ContentFormat.LINK)
    links = {link.target: link.params for link in parse_links(response.payload.decode())}
    assert links[f"/{TEST}/0"] == {"pmax": "60"}


async def test_discover_unknown_instance_is_not_found(rd, dm_client):
    response = await rd.request(Code.GET, f"/{TEST}/3", accept=ContentFormat.LINK)
    assert response.code == Code.NOT_FOUND


# -- Write ----------------------------------------------------------------------------------------


async def test_write_text_replaces_a_resource(rd, dm_client, test_object):
    response = await rd.request(Code.PUT, f"/{TEST}/0/0", b"world", content_format=0)
    assert response.code == Code.CHANGED
    assert test_object.instance.values[0] == "world"


async def test_partial_update_keeps_other_resource_instances(rd, dm_client, test_object, registry):
    payload = encode(
        ContentFormat.SENML_JSON,
        Path(TEST, 0),
        {Path(TEST, 0, 7, 5): 50, Path(TEST, 0, 1): -1},
        registry,
    )
    response = await rd.request(
        Code.POST, f"/{TEST}/0", payload, content_format=ContentFormat.SENML_JSON
    )
    assert response.code == Code.CHANGED
    assert test_object.instance.values[7] == {0: 10, 1: 20, 5: 50}
    assert test_object.instance.values[1] == -1


async def test_replace_of_multi_instance_resource_drops_old_instances(
    rd, dm_client, test_object, registry
):
    payload = encode(ContentFormat.TLV, Path(TEST, 0, 7), {Path(TEST, 0, 7, 3): 3}, registry)
    response = await rd.request(Code.PUT, f"/{TEST}/0/7", payload, content_format=ContentFormat.TLV)
    assert response.code == Code.CHANGED
    assert test_object.instance.values[7] == {3: 3}


async def test_write_read_only_resource_is_method_not_allowed(rd, dm_client, test_object):
    response = await rd.request(Code.PUT, f"/{TEST}/0/9", b"1", content_format=0)
    assert response.code == Code.METHOD_NOT_ALLOWED
    assert test_object.instance.values[9] == 7


async def test_write_instance_with_a_read_only_resource_changes_nothing(
    rd, dm_client, test_object, registry
):
    content = {Path(TEST, 0, 0): "new", Path(TEST, 0, 9): 99}
    payload = encode(ContentFormat.SENML_CBOR, Path(TEST, 0), content, registry)
    response = await rd.request(
        Code.POST, f"/{TEST}/0", payload, content_format=ContentFormat.SENML_CBOR
    )
    assert response.code == Code.METHOD_NOT_ALLOWED
    assert test_object.instance.values[0] == "hello", "all-or-nothing"


async def test_write_malformed_payload_is_bad_request(rd, dm_client, test_object):
    response = await rd.request(Code.PUT, f"/{TEST}/0/1", b"forty-two", content_format=0)
    assert response.code == Code.BAD_REQUEST
    assert test_object.instance.values[1] == 42


async def test_write_unsupported_content_format(rd, dm_client):
    response = await rd.request(Code.PUT, f"/{TEST}/0/0", b"x", content_format=50)
    assert response.code == Code.UNSUPPORTED_CONTENT_FORMAT


async def test_write_without_content_format_is_bad_request(rd, dm_client):
    response = await rd.request(Code.PUT, f"/{TEST}/0/0", b"x")
    assert response.code == Code.BAD_REQUEST


async def test_write_payload_for_another_path_is_bad_request(rd, dm_client, test_object, registry):
    payload = encode(ContentFormat.SENML_JSON, Path(TEST, 0, 1), {Path(TEST, 0, 1): 5}, registry)
    response = await rd.request(
        Code.PUT, f"/{TEST}/0/0", payload, content_format=ContentFormat.SENML_JSON
    )
    assert response.code == Code.BAD_REQUEST
    assert test_object.instance.values[0] == "hello"


async def test_write_unknown_instance_is_not_found(rd, dm_client):
    response = await rd.request(Code.PUT, f"/{TEST}/4/0", b"x", content_format=0)
    assert response.code == Code.NOT_FOUND


async def test_write_device_current_time_moves_the_clock(rd, dm_client):
    response = await rd.request(Code.PUT, "/3/0/13", b"1000000000", content_format=0)
    assert response.code == Code.CHANGED
    read = int((await rd.request(Code.GET, "/3/0/13")).payload)
    assert 1000000000 <= read < 1000000000 + 60


async def test_block1_write_of_8_kib_opaque(rd, dm_client, test_object):
    image = bytes(range(256)) * 32
    response = await rd.request(
        Code.PUT, f"/{TEST}/0/4", image, content_format=ContentFormat.OPAQUE
    )
    assert response.code == Code.CHANGED
    assert test_object.instance.values[4] == image


async def test_block1_answers_continue_for_each_block(rd, dm_client, test_object):
    from aiocoap import Message
    from aiocoap.optiontypes import BlockOption

    image = b"\xa5" * 1500
    codes = []
    for num in range(2):
        chunk = image[num * 1024 : (num + 1) * 1024]
        msg = rd.dm(Code.PUT, f"/{TEST}/0/4", chunk, content_format=ContentFormat.OPAQUE)
        msg.opt.block1 = BlockOption.BlockwiseTuple(num, num == 0, 6)
        assert isinstance(msg, Message)
        response = await rd.ctx.request(msg, handle_blockwise=False).response
        codes.append(response.code)
    assert codes == [Code.CONTINUE, Code.CHANGED]
    assert test_object.instance.values[4] == image


# -- Execute --------------------------------------------------------------------------------------


async def test_execute_passes_arguments(rd, dm_client, test_object):
    response = await rd.request(Code.POST, f"/{TEST}/0/8", b"0='a',1")
    assert response.code == Code.CHANGED
    response = await rd.request(Code.POST, f"/{TEST}/0/8")
    assert response.code == Code.CHANGED
    assert test_object.executed == ["0='a',1", None]


async def test_execute_with_malformed_arguments_is_bad_request(rd, dm_client, test_object):
    response = await rd.request(Code.POST, f"/{TEST}/0/8", b"not args")
    assert response.code == Code.BAD_REQUEST
    assert test_object.executed == []


@pytest.mark.parametrize("path", [f"/{TEST}/0/1", f"/{TEST}/0/9", f"/{TEST}/0/7/0"])
async def test_execute_on_non_executable_is_method_not_allowed(rd, dm_client, path):
    assert (await rd.request(Code.POST, path)).code == Code.METHOD_NOT_ALLOWED


async def test_execute_reboot_calls_the_device_hook(rd, make_client):
    from fotakit.client.objects import DeviceInstance, device_object

    calls: list[str | None] = []
    device = device_object(builtin_registry().get(3), DeviceInstance(reboot=calls.append))
    client = make_client([device])
    await client.start()
    await client.wait_registered(5.0)
    assert (await rd.request(Code.POST, "/3/0/4")).code == Code.CHANGED
    assert calls == [None]
    assert (await rd.request(Code.POST, "/3/0/5")).code == Code.NOT_FOUND


# -- Create / Delete ------------------------------------------------------------------------------


async def test_create_then_delete_an_instance(rd, dm_client, test_object, registry):
    await rd.next("register")
    payload = encode(
        ContentFormat.SENML_CBOR,
        Path(TEST),
        {Path(TEST, 3, 0): "created", Path(TEST, 3, 1): 3},
        registry,
    )
    response = await rd.request(
        Code.POST, f"/{TEST}", payload, content_format=ContentFormat.SENML_CBOR
    )
    assert response.code == Code.CREATED
    assert tuple(response.opt.location_path) == (str(TEST), "3")
    assert (await rd.request(Code.GET, f"/{TEST}/3/0")).payload == b"created"
    update = await rd.next("update")
    assert f"</{TEST}/3>".encode() in update.payload, "new instance announced by Update"
    again = await rd.request(
        Code.POST, f"/{TEST}", payload, content_format=ContentFormat.SENML_CBOR
    )
    assert again.code == Code.BAD_REQUEST, "instance exists"
    assert (await rd.request(Code.DELETE, f"/{TEST}/3")).code == Code.DELETED
    assert (await rd.request(Code.GET, f"/{TEST}/3")).code == Code.NOT_FOUND
    assert (await rd.request(Code.DELETE, f"/{TEST}/3")).code == Code.NOT_FOUND
    update = await rd.next("update")
    assert f"</{TEST}/3>".encode() not in update.payload


async def test_create_on_object_without_factory_is_method_not_allowed(rd, dm_client):
    response = await rd.request(Code.POST, "/3", b"", content_format=ContentFormat.SENML_CBOR)
    assert response.code == Code.METHOD_NOT_ALLOWED


@pytest.mark.parametrize("path", ["/3/0", f"/{TEST}", f"/{TEST}/0/1", "/"])
async def test_delete_outside_deletable_instances_is_method_not_allowed(rd, dm_client, path):
    assert (await rd.request(Code.DELETE, path)).code == Code.METHOD_NOT_ALLOWED


# -- Write-Attributes -----------------------------------------------------------------------------


async def test_write_attributes_validates(rd, dm_client):
    ok = await rd.request(Code.PUT, f"/{TEST}/0/1", query=["pmin=1", "pmax=10", "st=2"])
    assert ok.code == Code.CHANGED
    for query in (["pmin=20"], ["bogus=1"], ["pmin=-1"], ["gt=1", "lt=5"]):
        response = await rd.request(Code.PUT, f"/{TEST}/0/1", query=query)
        assert response.code == Code.BAD_REQUEST, query
    response = await rd.request(Code.PUT, f"/{TEST}/0/0", query=["gt=1"])
    assert response.code == Code.BAD_REQUEST, "gt on a string resource"
    response = await rd.request(Code.PUT, f"/{TEST}/0/6", query=["pmin=1"])
    assert response.code == Code.NOT_FOUND


async def test_unknown_method_is_method_not_allowed(rd, dm_client):
    assert (await rd.request(Code.FETCH, f"/{TEST}/0")).code == Code.METHOD_NOT_ALLOWED


async def test_async_execute_handler_is_awaited_before_the_answer(rd, make_client):
    from fotakit.client import LwM2MObject, SimpleInstance
    from fotakit.lwm2m.model import ObjectDef, Operations, ResourceDef, ResourceType

    done: list[str] = []

    async def slow(args: str | None) -> None:
        await asyncio.sleep(0)  # yields once: the answer must still come after this
        done.append("finished")

    definition = ObjectDef(
        9100, "exec", resources={0: ResourceDef(0, "go", Operations.E, ResourceType.NONE)}
    )
    client = make_client([LwM2MObject(definition, {0: SimpleInstance({}, {0: slow})})])
    await client.start()
    await client.wait_registered(5.0)
    assert (await rd.request(Code.POST, "/9100/0/0")).code == Code.CHANGED
    assert done == ["finished"]
