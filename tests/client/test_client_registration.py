"""Registration Interface, client side: Register, Update timing, re-register, De-register."""

from __future__ import annotations

import dataclasses

import pytest
from aiocoap.numbers.codes import Code

from fotakit.client import ClientConfig, EventKind, LwM2MClient, LwM2MObject, SimpleInstance
from fotakit.client.client import advertised_version
from fotakit.client.config import default_update_margin
from fotakit.lwm2m.linkformat import parse_links
from fotakit.lwm2m.objects import builtin_registry
from fotakit.lwm2m.registration import parse_register, parse_update


async def test_register_sends_query_and_object_links(rd, make_client):
    client = make_client(endpoint="dev-reg", lifetime=120)
    await client.start()
    reg_id = await client.wait_registered(5.0)
    msg = await rd.next("register")
    params = parse_register(msg.query, msg.payload)
    assert params.endpoint == "dev-reg"
    assert params.lifetime == 120
    assert params.lwm2m_version == "1.1"
    assert params.binding == "U"
    assert not params.queue_mode
    assert msg.content_format == 40
    assert msg.confirmable
    instances = params.instances
    assert 0 not in instances, "Security must never be registered"
    assert instances[1] == [0] and instances[3] == [0]
    assert reg_id == msg.location[-1] == client.registration_id
    assert msg.remote.endswith(f":{client.port}")
    # one bare content format, the plainest root link every server parses (TS §6.2.1)
    assert params.content_formats == (112,)
    assert msg.payload.startswith(b'</>;rt="oma.lwm2m";ct=112,')


@pytest.mark.parametrize(
    ("formats", "root"),
    [
        ((110,), b'</>;rt="oma.lwm2m";ct=110,'),
        ((110, 112), b'</>;rt="oma.lwm2m";ct="110 112",'),
        ((), b"</1>;ver=1.1,"),  # no ct: no root link at all
    ],
)
async def test_advertised_formats_are_configurable(rd, make_client, formats, root):
    client = make_client(advertise_formats=formats)
    await client.start()
    await client.wait_registered(5.0)
    msg = await rd.next("register")
    assert msg.payload.startswith(root), msg.payload
    assert parse_register(msg.query, msg.payload).content_formats == formats


async def test_a_1_0_client_sends_no_ct_by_default(rd, make_client):
    client = make_client(lwm2m_version="1.0")
    await client.start()
    await client.wait_registered(5.0)
    msg = await rd.next("register")
    assert b"ct=" not in msg.payload and b"oma.lwm2m" not in msg.payload


@pytest.mark.parametrize(
    ("formats", "message"),
    [
        ((40,), "not one this client serves"),  # link-format is no data format
        ((99999,), "not one this client serves"),
        ((112, 112), "listed twice"),
        ((True,), "not an integer"),
    ],
)
def test_advertised_formats_must_be_ones_the_client_serves(formats, message):
    with pytest.raises(ValueError, match=message):
        ClientConfig(endpoint="x", advertise_formats=formats)


async def test_register_1_0_with_queue_mode_uses_uq_binding(rd, make_client):
    client = make_client(lwm2m_version="1.0", queue_mode=True)
    await client.start()
    await client.wait_registered(5.0)
    msg = await rd.next("register")
    assert "b=UQ" in msg.query and "Q" not in msg.query
    params = parse_register(msg.query, msg.payload)
    assert params.queue_mode and params.lwm2m_version == "1.0"


async def test_register_1_1_queue_mode_sends_q_parameter(rd, make_client):
    client = make_client(queue_mode=True)
    await client.start()
    await client.wait_registered(5.0)
    msg = await rd.next("register")
    assert "Q" in msg.query and "b=U" in msg.query


async def test_registered_event_carries_the_registration_id(registered):
    event = await registered.wait_event(EventKind.REGISTERED, 5.0)
    assert event.registration_id == registered.registration_id


async def test_update_is_sent_before_the_lifetime_ends(rd, make_client):
    client = make_client(lifetime=3)
    await client.start()
    await client.wait_registered(5.0)
    registered_at = (await rd.next("register")).at
    await client.wait_event(EventKind.UPDATED, 6.0)
    update = await rd.next("update")
    elapsed = update.at - registered_at
    assert 0 < elapsed < 3.0, "the Update must arrive before the 3 s lifetime ends"
    assert update.location == ("rd", client.registration_id)
    assert update.payload == b"" and update.query == []
    # and the next one follows the first, again within one lifetime
    await client.wait_event(EventKind.UPDATED, 6.0)
    second = await rd.next("update")
    assert 0 < second.at - update.at < 3.0


def test_default_update_margin_is_bounded():
    assert default_update_margin(0) == 0
    assert default_update_margin(2) == 1.0
    assert default_update_margin(300) == 30.0
    assert default_update_margin(30) == 5.0
    for lt in (1, 5, 10, 60, 86400):
        assert 0 < default_update_margin(lt) <= lt / 2


async def test_explicit_update_with_objects_changed_carries_payload(rd, registered):
    await rd.next("register")
    assert await registered.update(objects_changed=True)
    update = await rd.next("update")
    links = parse_links(update.payload.decode())
    targets = {link.target for link in links}
    assert "/3/0" in targets and "/1/0" in targets and "/0/0" not in targets
    params = parse_update(update.query, update.payload)
    assert params.objects is not None


async def test_update_answered_4_04_makes_the_client_register_again(rd, registered):
    first = await rd.next("register")
    rd.forget()
    assert not await registered.update()
    event = await registered.wait_event(EventKind.REREGISTERED, 5.0)
    again = await rd.next("register")
    assert again.location != first.location
    assert event.registration_id == again.location[-1] == registered.registration_id


async def test_failed_register_is_retried_with_backoff(rd, make_client):
    rd.register_codes = [Code.INTERNAL_SERVER_ERROR, Code.FORBIDDEN]
    client = make_client(register_retry_initial=0.1, register_retry_max=0.4)
    await client.start()
    failed = await client.wait_event(EventKind.REGISTRATION_FAILED, 5.0)
    assert failed.code == "5.00" and "5.00" in failed.detail
    await client.wait_registered(5.0)
    attempts = [m for m in rd.history if m.kind == "register"]
    assert len(attempts) == 3
    gap1 = attempts[1].at - attempts[0].at
    gap2 = attempts[2].at - attempts[1].at
    assert gap1 >= 0.09 and gap2 >= 0.19, "the second wait doubles the first"


async def test_register_gives_up_after_max_attempts(rd, make_client):
    rd.register_codes = [Code.FORBIDDEN] * 5
    client = make_client(
        register_retry_initial=0.05, register_retry_max=0.05, max_register_attempts=2
    )
    await client.start()
    await client.wait_event(EventKind.REGISTRATION_FAILED, 5.0)
    await client.wait_event(EventKind.REGISTRATION_FAILED, 5.0)
    final = await client.wait_event(EventKind.REGISTRATION_FAILED, 5.0)
    assert "gave up after 2 attempts" in final.detail
    assert len([m for m in rd.history if m.kind == "register"]) == 2
    assert not client.registered


async def test_register_to_a_silent_server_times_out_and_reports(make_client):
    import socket

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    try:
        port = sink.getsockname()[1]
        client = make_client(
            server_uri=f"coap://127.0.0.1:{port}",
            transport=rd_fast(timeout=0.6),
            register_retry_initial=5.0,
            register_retry_max=5.0,
        )
        await client.start()
        event = await client.wait_event(EventKind.REGISTRATION_FAILED, 5.0)
        assert "timed out" in event.detail or "failed" in event.detail
    finally:
        sink.close()


def rd_fast(timeout: float):
    from fotakit.coap import TransportParams

    return TransportParams(
        ack_timeout=0.2, ack_random_factor=1.0, max_retransmit=1, request_timeout=timeout
    )


async def test_stop_deregisters(rd, registered):
    reg = await rd.next("register")
    await registered.stop()
    dereg = await rd.next("deregister")
    assert dereg.location == reg.location
    assert not rd.active
    event = await registered.wait_event(EventKind.DEREGISTERED, 1.0)
    assert event.registration_id == reg.location[-1]


async def test_stop_without_deregister_leaves_the_registration(rd, registered):
    await registered.stop(deregister=False)
    assert len(rd.active) == 1
    assert all(m.kind != "deregister" for m in rd.history)


async def test_writing_lifetime_sends_an_update_with_lt(rd, registered):
    await rd.next("register")
    response = await rd.request(Code.PUT, "/1/0/1", b"77", content_format=0)
    assert response.code == Code.CHANGED
    update = await rd.next("update")
    assert update.query == ["lt=77"]
    await registered.wait_event(EventKind.UPDATED, 5.0)
    assert (await rd.request(Code.GET, "/1/0/1")).payload == b"77"


async def test_registration_update_trigger_sends_an_update(rd, registered):
    await rd.next("register")
    response = await rd.request(Code.POST, "/1/0/8")
    assert response.code == Code.CHANGED
    update = await rd.next("update")
    assert update.location[-1] == registered.registration_id


async def test_client_config_rejects_nonsense():
    with pytest.raises(ValueError):
        ClientConfig(endpoint="")
    with pytest.raises(ValueError):
        ClientConfig(endpoint="x", lifetime=-1)
    with pytest.raises(ValueError):
        ClientConfig(endpoint="x", register_retry_initial=2, register_retry_max=1)
    with pytest.raises(RuntimeError):
        _ = LwM2MClient(ClientConfig(endpoint="x")).port


async def test_writing_binding_sends_an_update_with_b(rd, registered):
    await rd.next("register")
    response = await rd.request(Code.PUT, "/1/0/7", b"UT", content_format=0)
    assert response.code == Code.CHANGED
    update = await rd.next("update")
    assert update.query == ["b=UT"]


async def test_writing_a_bad_binding_is_bad_request(rd, registered):
    response = await rd.request(Code.PUT, "/1/0/7", b"XYZ", content_format=0)
    assert response.code == Code.BAD_REQUEST
    assert (await rd.request(Code.GET, "/1/0/7")).payload == b"U"


async def test_register_payload_declares_object_versions(rd, make_client):
    client = make_client(lwm2m_version="1.1")
    await client.start()
    await client.wait_registered(5.0)
    text = (await rd.next("register")).payload.decode()
    # Server 1.2 needs LwM2M 1.2: a 1.1 client announces Server 1.1
    assert "</1>;ver=1.1" in text and "ver=1.2,</1" not in text
    assert "</1/0>" in text and "</3/0>" in text and "</0" not in text


async def test_a_1_0_client_claims_no_object_version_newer_than_lwm2m_1_0(rd, make_client):
    device = builtin_registry().get(3)
    assert device is not None
    user = dataclasses.replace(device, id=32769, version="2.0", lwm2m_version="1.0")
    client = make_client([LwM2MObject(user, {0: SimpleInstance({0: "x"})})], lwm2m_version="1.0")
    await client.start()
    await client.wait_registered(5.0)
    text = (await rd.next("register")).payload.decode()
    assert '</32769>;ver="2.0"' in text, "1.0 quotes ver"
    assert text.count("ver=") == 1, text
    assert "</1/0>" in text and "</3/0>" in text and "</0" not in text


def test_advertised_version_follows_the_lwm2m_version_an_object_needs() -> None:
    registry = builtin_registry()
    server, device = registry.get(1), registry.get(3)
    assert server is not None and device is not None
    assert advertised_version(server, "1.2") == "1.2"
    assert advertised_version(server, "1.1") == "1.1"
    assert advertised_version(device, "1.1") == device.version
    assert advertised_version(device, "1.0") == "1.0"
    user = dataclasses.replace(device, id=32769, version="2.0", lwm2m_version="1.0")
    assert advertised_version(user, "1.0") == "2.0"


async def test_explicit_update_margin_sets_when_the_update_goes(rd, make_client):
    client = make_client(lifetime=4, update_margin=3.0)
    await client.start()
    await client.wait_registered(5.0)
    registered_at = (await rd.next("register")).at
    update = await rd.next("update", within=6.0)
    assert 0.7 <= update.at - registered_at < 3.0, "due at lifetime - margin = 1 s"


async def test_failed_update_is_retried(rd, make_client):
    rd.update_codes = [Code.INTERNAL_SERVER_ERROR]
    client = make_client(lifetime=2, register_retry_initial=0.1)
    await client.start()
    await client.wait_registered(5.0)
    failed = await client.wait_event(EventKind.UPDATE_FAILED, 5.0)
    assert "5.00" in failed.detail or "Internal" in failed.detail
    updated = await client.wait_event(EventKind.UPDATED, 5.0)
    assert updated.at > failed.at
    assert client.registration_id == updated.registration_id
    assert len([m for m in rd.history if m.kind == "register"]) == 1
