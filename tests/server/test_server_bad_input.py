"""Garbage in, a precise CoAP error out; the server keeps serving and stores nothing bad."""

from __future__ import annotations

import asyncio
import logging
import os

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_fakes import FakeDevice, RawPeer, make_config

from fotakit.coap import FastSite, create_endpoint
from fotakit.lwm2m.objects import builtin_registry
from fotakit.server import LwM2MServer


async def registered_endpoints(server: LwM2MServer) -> list[str]:
    return [rec.endpoint for rec in await server.store.list_registrations()]


async def test_malformed_datagrams_are_dropped_and_the_server_keeps_serving(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "good")
    peer = RawPeer()
    try:
        for data in (
            b"",
            b"\x00",
            b"\xff" * 40,
            os.urandom(300),
            b"\x40\x02\x00\x01\xff",
            b"\x48\x02\x00\x01" + b"\xee" * 8 + b"\xd0",
        ):
            peer.send_raw(server.port, data)
        # A well-formed request sent after the garbage is still answered.
        mid = peer.send(server.port, Code.POST, ("rd",), ["ep=after", "lt=60"], b"</3/0>")
        response = await asyncio.wait_for(peer.response_to(mid), 5)
        assert response.code == Code.CREATED
    finally:
        peer.close()
    assert (await device.update(server.port)).code == Code.CHANGED
    assert sorted(await registered_endpoints(server)) == ["after", "good"]


@pytest.mark.parametrize(
    ("code", "path", "expected"),
    [
        (Code.POST, ("foo",), Code.NOT_FOUND),
        (Code.GET, ("rd", "x", "y"), Code.METHOD_NOT_ALLOWED),
        (Code.POST, ("rd", "x", "y"), Code.NOT_FOUND),
        (Code.GET, ("rd",), Code.METHOD_NOT_ALLOWED),
        (Code.PUT, ("rd",), Code.METHOD_NOT_ALLOWED),
        (Code.DELETE, ("rd",), Code.METHOD_NOT_ALLOWED),
        (Code.PUT, ("rd", "abc"), Code.METHOD_NOT_ALLOWED),
        (Code.GET, ("rd", "abc"), Code.METHOD_NOT_ALLOWED),
    ],
)
async def test_unknown_paths_and_wrong_methods_get_precise_codes(
    server: LwM2MServer, device: FakeDevice, code: Code, path: tuple[str, ...], expected: Code
) -> None:
    response = await device.send(server.port, code, path, ["ep=x"], b"</3/0>")
    assert response.code == expected
    assert await registered_endpoints(server) == []


@pytest.mark.parametrize(
    ("query", "payload", "expected"),
    [
        (["ep=bad", "lt=60"], b"<<<not link format", Code.BAD_REQUEST),
        (["ep=bad", "lt=60"], b"\xff\xfe\x00", Code.BAD_REQUEST),
        (["ep=bad", "lt=60"], b"</3/0/0/1/2>", Code.BAD_REQUEST),
        (["lt=60"], b"</3/0>", Code.BAD_REQUEST),
        (["ep=bad", "lt=-5"], b"</3/0>", Code.BAD_REQUEST),
        (["ep=bad", "lt=60", "lwm2m=9.9"], b"</3/0>", Code.PRECONDITION_FAILED),
        (["ep=bad", "lwm2m=1.1", "b=UQ"], b"</3/0>", Code.BAD_REQUEST),
        (["ep=" + "e" * 256], b"</3/0>", Code.BAD_REQUEST),
    ],
)
async def test_bad_register_requests_get_precise_codes_and_store_nothing(
    server: LwM2MServer,
    device: FakeDevice,
    query: list[str],
    payload: bytes,
    expected: Code,
) -> None:
    response = await device.send(server.port, Code.POST, ("rd",), query, payload)
    assert response.code == expected
    assert await registered_endpoints(server) == []


async def test_bad_update_is_refused_and_keeps_the_registration(
    server: LwM2MServer, device: FakeDevice
) -> None:
    await device.register(server.port, "dev1", lifetime=120)
    before = server.get("dev1")
    response = await device.update(server.port, ["lt=abc"])
    assert response.code == Code.BAD_REQUEST
    response = await device.update(server.port, [], b"<<<")
    assert response.code == Code.BAD_REQUEST
    assert server.get("dev1") == before
    stored = await server.store.get_registration(before.registration_id if before else "")
    assert stored is not None and stored.lifetime == 120


async def test_ten_kilobyte_endpoint_name_is_refused_and_nothing_stored(
    server: LwM2MServer,
) -> None:
    peer = RawPeer()
    try:
        # aiocoap reads at most 4 KiB per datagram: a 10 KB Register arrives truncated
        # and is dropped as malformed, or (if it fits) refused with 4.00. Either way no
        # registration appears and the server answers the next request.
        peer.send(server.port, Code.POST, ("rd",), ["ep=" + "x" * 10_000, "lt=60"], b"</3/0>")
        mid = peer.send(server.port, Code.POST, ("rd",), ["ep=" + "y" * 3000], b"</3/0>")
        response = await asyncio.wait_for(peer.response_to(mid), 5)
        assert response.code == Code.BAD_REQUEST
        mid = peer.send(server.port, Code.POST, ("rd",), ["ep=fine"], b"</3/0>")
        response = await asyncio.wait_for(peer.response_to(mid), 5)
        assert response.code == Code.CREATED
    finally:
        peer.close()
    assert await registered_endpoints(server) == ["fine"]


async def test_register_flood_from_one_address_is_rate_limited(sqlite_url: str) -> None:
    server = LwM2MServer(make_config(sqlite_url, max_register_rate=0.5, register_burst=3))
    await server.start()
    device = await FakeDevice.start(builtin_registry(), {})
    try:
        codes = []
        for i in range(6):
            response = await device.register(server.port, f"flood{i}")
            codes.append(response.code)
            if response.code == Code.SERVICE_UNAVAILABLE:
                assert response.opt.max_age is not None and response.opt.max_age >= 1
        assert codes[:3] == [Code.CREATED] * 3
        assert codes[3:] == [Code.SERVICE_UNAVAILABLE] * 3
        assert len(await registered_endpoints(server)) == 3
        # Another source host is not affected (only loopback here: a different port of
        # the same host shares the bucket, which is the point).
        other = await FakeDevice.start(builtin_registry(), {})
        try:
            assert (await other.register(server.port, "other")).code == Code.SERVICE_UNAVAILABLE
        finally:
            await other.stop()
    finally:
        await device.stop()
        await server.stop()


_query_item = st.one_of(
    st.sampled_from(["ep=fz", "lt=60", "lwm2m=1.1", "lwm2m=1.0", "b=U", "b=UQ", "Q", "sms=+1"]),
    st.text(max_size=30).filter(lambda t: "\x00" not in t),
)
_payload = st.one_of(
    st.binary(max_size=200),
    st.lists(
        st.sampled_from(
            [
                "</3/0>",
                "</1/0>",
                '</>;rt="oma.lwm2m";ct=110',
                "<",
                ";",
                ",",
                "</5>;ver=1.1",
                "</65535/0>",
                "</a/b>",
            ]
        ),
        max_size=6,
    ).map(lambda parts: ",".join(parts).encode()),
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.lists(_query_item, max_size=6), _payload), min_size=1, max_size=12))
def test_fuzzed_register_requests_never_crash_or_corrupt(
    tmp_path_factory: pytest.TempPathFactory,
    requests: list[tuple[list[str], bytes]],
) -> None:
    db = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/fz.db"

    async def scenario() -> None:
        server = LwM2MServer(make_config(db, max_register_rate=1000, register_burst=1000))
        await server.start()
        device = await FakeDevice.start(builtin_registry(), {})
        try:
            for query, payload in requests:
                response = await asyncio.wait_for(
                    device.send(server.port, Code.POST, ("rd",), query, payload), 5
                )
                assert response.code in (
                    Code.CREATED,
                    Code.BAD_REQUEST,
                    Code.PRECONDITION_FAILED,
                ), (query, payload, response)
            stored = await server.store.list_registrations()
            assert sorted(r.endpoint for r in stored) == sorted(server.registrations)
            assert (await device.register(server.port, "afterwards")).code == Code.CREATED
        finally:
            await device.stop()
            await server.stop()

    asyncio.run(scenario())


async def test_register_with_an_unrecognised_critical_option_is_refused(
    server: LwM2MServer,
) -> None:
    # RFC 7252 §5.4.1: option 65001 is odd, hence critical, and nobody registered it.
    peer = RawPeer()
    try:
        unknown = ((65001, b"\x01"),)
        mid = peer.send(
            server.port, Code.POST, ("rd",), ["ep=crit", "lt=60"], b"</3/0>", extra_options=unknown
        )
        response = await asyncio.wait_for(peer.response_to(mid), 5)
        assert response.code == Code.BAD_OPTION
        assert b"65001" in response.payload
        # A NON request with it is rejected: no answer. The CON Register sent after it is
        # the first thing answered, and only that one registers.
        peer.send(
            server.port,
            Code.POST,
            ("rd",),
            ["ep=crit-non", "lt=60"],
            b"</3/0>",
            extra_options=unknown,
            confirmable=False,
        )
        mid = peer.send(server.port, Code.POST, ("rd",), ["ep=plain", "lt=60"], b"</3/0>")
        first = await asyncio.wait_for(peer.receive(), 5)
        assert (first.mid, first.code) == (mid, Code.CREATED)
        # An elective unknown option (even number) is ignored, as §5.4.1 says.
        mid = peer.send(
            server.port,
            Code.POST,
            ("rd",),
            ["ep=elective", "lt=60"],
            b"</3/0>",
            extra_options=((65000, b"\x01"),),
        )
        assert (await asyncio.wait_for(peer.response_to(mid), 5)).code == Code.CREATED
    finally:
        peer.close()
    assert sorted(await registered_endpoints(server)) == ["elective", "plain"]


class _AlwaysContent:
    """A fast-path resource that serves everything at once (like /fw's blocks)."""

    def render_now(self, request: aiocoap.Message, subpath: object) -> aiocoap.Message:
        return aiocoap.Message(code=Code.CONTENT, payload=b"block")


async def test_fast_path_refuses_a_request_with_an_unrecognised_critical_option() -> None:
    site = FastSite()
    site.add_fast_resource("fw", _AlwaysContent())
    ctx, port = await create_endpoint(site, "127.0.0.1", 0)
    peer = RawPeer()
    try:
        mid = peer.send(port, Code.GET, ("fw", "x"), extra_options=((65001, b"\x01"),))
        response = await asyncio.wait_for(peer.response_to(mid), 5)
        assert response.code == Code.BAD_OPTION
        mid = peer.send(port, Code.GET, ("fw", "x"), extra_options=((1, b"\x01"),))
        assert (await asyncio.wait_for(peer.response_to(mid), 5)).code == Code.BAD_OPTION
        mid = peer.send(port, Code.GET, ("fw", "x"))
        assert (await asyncio.wait_for(peer.response_to(mid), 5)).code == Code.CONTENT
    finally:
        peer.close()
        await ctx.shutdown()


def _block1(num: int, more: bool, szx: int) -> tuple[tuple[int, bytes], ...]:
    """A raw Block1 option (RFC 7959 §2.2: NUM, M, SZX in 0 to 4 bytes, minimal length)."""
    value = num << 4 | int(more) << 3 | szx
    return ((27, value.to_bytes((value.bit_length() + 7) // 8, "big")),)


REGISTER_BODY = b",".join(b"</3/%d>" % i for i in range(12))  # 85 bytes


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        # RFC 7959 §2.5: a gap (block 2 after block 0) is 4.08.
        (
            [(0, True, 0, REGISTER_BODY[:16]), (2, False, 0, REGISTER_BODY[32:])],
            Code.REQUEST_ENTITY_INCOMPLETE,
        ),
        # A block > 0 with no block 0 before it.
        ([(3, False, 0, REGISTER_BODY[48:])], Code.REQUEST_ENTITY_INCOMPLETE),
        # The block size grows mid-transfer (RFC 7959 §2.3 lets a client only lower it).
        (
            [
                (0, True, 0, REGISTER_BODY[:16]),
                (1, True, 0, REGISTER_BODY[16:32]),
                (1, False, 1, REGISTER_BODY[32:]),
            ],
            Code.REQUEST_ENTITY_INCOMPLETE,
        ),
        # SZX 7 is reserved over UDP; NUM has at most 20 bits.
        ([(0, True, 7, REGISTER_BODY[:16])], Code.BAD_REQUEST),
        ([(1 << 20, False, 0, REGISTER_BODY[:16])], Code.BAD_REQUEST),
        # A non-final block whose payload is not the block size.
        ([(0, True, 1, REGISTER_BODY[:16])], Code.BAD_REQUEST),
    ],
)
async def test_inconsistent_block1_register_gets_rfc_7959_codes(
    server: LwM2MServer, blocks: list[tuple[int, bool, int, bytes]], expected: Code
) -> None:
    peer = RawPeer()
    try:
        for i, (num, more, szx, chunk) in enumerate(blocks):
            mid = peer.send(
                server.port,
                Code.POST,
                ("rd",),
                ["ep=blocky", "lt=60"],
                chunk,
                extra_options=_block1(num, more, szx),
            )
            response = await asyncio.wait_for(peer.response_to(mid), 5)
            if i < len(blocks) - 1:
                assert response.code == Code.CONTINUE
        assert response.code == expected
    finally:
        peer.close()
    assert await registered_endpoints(server) == []


async def test_block1_register_may_lower_the_block_size_and_registers(server: LwM2MServer) -> None:
    peer = RawPeer()
    try:
        # 32-byte block 0, then 16-byte blocks from offset 32 on (RFC 7959 §2.3).
        blocks = [(0, True, 1, REGISTER_BODY[:32])] + [
            (n, (n + 1) * 16 < len(REGISTER_BODY), 0, REGISTER_BODY[n * 16 : (n + 1) * 16])
            for n in range(2, -(-len(REGISTER_BODY) // 16))
        ]
        for num, more, szx, chunk in blocks:
            mid = peer.send(
                server.port,
                Code.POST,
                ("rd",),
                ["ep=lowered", "lt=60"],
                chunk,
                extra_options=_block1(num, more, szx),
            )
            response = await asyncio.wait_for(peer.response_to(mid), 5)
        assert response.code == Code.CREATED
    finally:
        peer.close()
    assert await registered_endpoints(server) == ["lowered"]


def _bad_utf8_datagrams() -> list[bytes]:
    """Well-framed CoAP requests whose Uri-Path or Uri-Query is not UTF-8, and non-CoAP."""
    return [
        b"\x40\x02\x00\x01\xb1\xff",  # CON POST, Uri-Path 0xff
        b"\x50\x01\x00\x02\xb2\xc3\x28",  # NON GET, Uri-Path with a broken sequence
        b"\x40\x02\x00\x03\xb2rd\x42\xfe\xfe",  # CON POST /rd, Uri-Query 0xfefe
        b"\x40\x02\x00\x04\xf0",  # option delta 15 without the payload marker: unparsable
        b"\x80\x01\x00\x05",  # CoAP version 2: unparsable
    ]


async def test_malformed_datagrams_are_counted_and_logged_without_tracebacks(
    server: LwM2MServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    datagrams = _bad_utf8_datagrams()
    peer = RawPeer()
    try:
        for i in range(200):
            peer.send_raw(server.port, datagrams[i % len(datagrams)])
        # Datagrams on loopback arrive in order: once this Register is answered, all the
        # garbage before it has been through the server.
        mid = peer.send(server.port, Code.POST, ("rd",), ["ep=after-garbage", "lt=60"], b"</3/0>")
        response = await asyncio.wait_for(peer.response_to(mid), 5)
        assert response.code == Code.CREATED
    finally:
        peer.close()
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(loud) <= 3, [r.getMessage() for r in loud]
    assert all(r.exc_info is None and "Traceback" not in r.getMessage() for r in caplog.records)
    assert "malformed" in loud[0].getMessage()
    assert server.malformed_datagrams == 200
    assert await registered_endpoints(server) == ["after-garbage"]
