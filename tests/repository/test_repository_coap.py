"""CoAP delivery: Block2 random access, Size2, ETag, error codes, counters (RFC 7959)."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.optiontypes import BlockOption
from repo_helpers import BuildFn, payload_of, skip_or_fail

from coap_tap import CoapTap
from fotakit.coap import FastSite, create_endpoint
from fotakit.packages import TrustStore, verify_package
from fotakit.repository import Form, PackageRecord, Repository
from fotakit.repository.coap import (
    COAP_ETAG_LENGTH,
    FirmwareResource,
    coap_etag,
    coap_resources,
)
from fotakit.server import LwM2MServer, ServerConfig

Block = BlockOption.BlockwiseTuple
TIMEOUT = 10.0


@pytest.fixture(params=["site", "fast-site"])
async def coap_port(repo: Repository, request: pytest.FixtureRequest) -> AsyncIterator[int]:
    """``/fw`` mounted in a plain aiocoap Site and in a FastSite: both must behave alike."""
    site = aiocoap.resource.Site() if request.param == "site" else FastSite()
    for path, resource in coap_resources(repo):
        if isinstance(site, FastSite):
            site.add_fast_resource(path[0], resource)
        else:
            site.add_resource(path, resource)
    ctx, port = await create_endpoint(site, "127.0.0.1", 0)
    try:
        yield port
    finally:
        await ctx.shutdown()


@pytest.fixture
async def client() -> AsyncIterator[aiocoap.Context]:
    ctx = await aiocoap.Context.create_client_context()
    try:
        yield ctx
    finally:
        await ctx.shutdown()


@pytest.fixture
def package(repo: Repository, build: BuildFn) -> tuple[PackageRecord, bytes]:
    data = build(payload_of(100_000), version="3.0.0")
    return repo.add(data), data


async def _get(
    client: aiocoap.Context,
    uri: str,
    *,
    block: BlockOption.BlockwiseTuple | None = None,
    code: Code = Code.GET,
    etag: bytes | None = None,
    blockwise: bool = False,
) -> aiocoap.Message:
    request = aiocoap.Message(code=code, uri=uri)
    if block is not None:
        request.opt.block2 = block
    if etag is not None:
        request.opt.etags = (etag,)
    return await asyncio.wait_for(
        client.request(request, handle_blockwise=blockwise).response, TIMEOUT
    )


def _uri(port: int, record: PackageRecord, form: Form = Form.PACKAGE) -> str:
    return record.coap_uri("127.0.0.1", port, form)


async def test_aiocoap_client_downloads_both_forms_byte_for_byte(
    coap_port: int,
    client: aiocoap.Context,
    package: tuple[PackageRecord, bytes],
    trust: TrustStore,
    tmp_path: Path,
) -> None:
    record, data = package
    whole = await _get(client, _uri(coap_port, record), blockwise=True)
    payload = await _get(client, _uri(coap_port, record, Form.PAYLOAD), blockwise=True)
    assert whole.code == Code.CONTENT and whole.payload == data
    assert payload.payload == data[record.payload_offset :]
    downloaded = tmp_path / "download.suit"
    downloaded.write_bytes(whole.payload)
    assert verify_package(downloaded, trust).manifest.version == "3.0.0"


async def test_any_block_of_any_size_can_be_fetched_in_any_order(
    coap_port: int, client: aiocoap.Context, package: tuple[PackageRecord, bytes]
) -> None:
    record, data = package
    uri = _uri(coap_port, record)
    for number, szx in [(57, 4), (0, 6), (3, 0), (97, 6), (1, 5), (200, 2)]:
        response = await _get(client, uri, block=Block(number, 0, szx))
        size = 1 << (szx + 4)
        expected = data[number * size : (number + 1) * size]
        assert response.code == Code.CONTENT
        assert response.payload == expected
        assert response.opt.block2 == Block(number, (number + 1) * size < len(data), szx)
        assert response.opt.size2 == (len(data) if number == 0 else None)
        assert response.opt.etag == bytes.fromhex(record.sha256)[:COAP_ETAG_LENGTH]
        assert response.opt.content_format == 42


async def test_the_last_block_is_short_and_has_no_more_flag(
    coap_port: int, client: aiocoap.Context, package: tuple[PackageRecord, bytes]
) -> None:
    record, data = package
    last = (len(data) - 1) // 1024
    response = await _get(client, _uri(coap_port, record), block=Block(last, 0, 6))
    assert response.payload == data[last * 1024 :]
    assert response.opt.block2.more is False


async def test_payload_form_blocks_are_offset_into_the_package(
    coap_port: int, client: aiocoap.Context, package: tuple[PackageRecord, bytes]
) -> None:
    record, data = package
    payload = data[record.payload_offset :]
    response = await _get(client, _uri(coap_port, record, Form.PAYLOAD), block=Block(5, 0, 6))
    assert response.payload == payload[5 * 1024 : 6 * 1024]
    first = await _get(client, _uri(coap_port, record, Form.PAYLOAD), block=Block(0, 0, 6))
    assert first.opt.size2 == len(payload)
    assert response.opt.etag == bytes.fromhex(record.payload_sha256)[:COAP_ETAG_LENGTH]
    assert response.opt.etag == coap_etag(record, Form.PAYLOAD) == first.opt.etag
    assert response.opt.etag != coap_etag(record, Form.PACKAGE)


async def test_size2_is_in_the_first_block_and_wherever_the_client_asks_for_it(
    coap_port: int, client: aiocoap.Context, package: tuple[PackageRecord, bytes]
) -> None:
    """RFC 7959 §4: a size indication in the first block, and a size request (Size2 = 0
    in the request) answered in any block; not repeated on every block."""
    record, data = package
    uri = _uri(coap_port, record)
    unasked = await _get(client, uri)  # no Block2 in the request: block 0 of 1024 bytes
    assert unasked.opt.block2 == Block(0, 1, 6) and unasked.opt.size2 == len(data)
    middle = await _get(client, uri, block=Block(7, 0, 6))
    assert middle.opt.size2 is None
    asked = aiocoap.Message(code=Code.GET, uri=uri, block2=Block(7, 0, 6), size2=0)
    answer = await asyncio.wait_for(client.request(asked, handle_blockwise=False).response, TIMEOUT)
    assert answer.opt.size2 == len(data) and answer.payload == data[7 * 1024 : 8 * 1024]


async def test_a_middle_block_costs_at_most_13_bytes_besides_its_payload_and_token(
    coap_port: int, client: aiocoap.Context, package: tuple[PackageRecord, bytes]
) -> None:
    """On the wire, through a tap: a whole download by aiocoap's client. A middle block's
    response carries the 4-byte header, the client's token, ETag (1 + 2 bytes: the same on
    every block, as aiocoap's and libcoap's clients and the agent's resume require,
    RFC 7959 §2.4), Content-Format (1 + 1: libcoap's client requires it on every block),
    Block2 (1 + 2 past block 15) and the payload marker: 13 bytes. Size2 and an 8-byte ETag
    on every block made it 23. The whole download (requests included) costs at most
    1.045 bytes per package byte (docs/benchmarks.md, B6)."""
    record, data = package
    async with CoapTap(("127.0.0.1", coap_port)) as tap:
        uri = record.coap_uri("127.0.0.1", tap.address[1])
        whole = await _get(client, uri, blockwise=True)
    assert whole.payload == data
    responses = [s for s in tap.seen if not s.up]
    blocks = [s.message.opt.block2 for s in responses]
    assert [b.block_number for b in blocks] == list(range(-(-len(data) // 1024)))
    etags = {s.message.opt.etag for s in responses}
    formats = {s.message.opt.content_format for s in responses}
    assert etags == {coap_etag(record, Form.PACKAGE)} and formats == {42}
    middle = [s for s in responses[16:] if s.message.opt.block2.more]
    assert middle
    for seen in middle:
        message = seen.message
        overhead = seen.size - len(message.payload) - len(message.token)
        assert overhead <= 13, (message, overhead)
        assert message.opt.size2 is None and message.opt.max_age is None
    total = sum(s.size for s in tap.seen)
    assert total / len(data) <= 1.045, total / len(data)


async def test_a_reserved_szx_7_gets_1024_byte_blocks(
    coap_port: int, client: aiocoap.Context, package: tuple[PackageRecord, bytes]
) -> None:
    record, data = package
    response = await _get(client, _uri(coap_port, record), block=Block(2, 0, 7))
    assert response.opt.block2.size_exponent == 6
    assert response.payload == data[2048:3072]


async def test_a_block_past_the_end_is_a_bad_request(
    coap_port: int, client: aiocoap.Context, package: tuple[PackageRecord, bytes]
) -> None:
    record, data = package
    past = (len(data) + 255) // 256
    response = await _get(client, _uri(coap_port, record), block=Block(past, 0, 4))
    assert response.code == Code.BAD_REQUEST


async def test_a_matching_etag_gets_2_03_valid_and_another_package_a_new_etag(
    coap_port: int,
    client: aiocoap.Context,
    repo: Repository,
    build: BuildFn,
    package: tuple[PackageRecord, bytes],
) -> None:
    record, _ = package
    first = await _get(client, _uri(coap_port, record), block=Block(0, 0, 6))
    valid = await _get(client, _uri(coap_port, record), etag=first.opt.etag)
    assert valid.code == Code.VALID and valid.payload == b""
    assert valid.opt.etag == first.opt.etag

    newer = repo.add(build(payload_of(100_000, seed=9), version="3.0.1"))
    changed = await _get(client, _uri(coap_port, newer), etag=first.opt.etag)
    assert changed.code == Code.CONTENT
    assert changed.opt.etag != first.opt.etag


@pytest.mark.parametrize(
    "path", ["/fw/0123456789abcdef", "/fw/nothex", "/fw/0123456789abcdef/other", "/fw"]
)
async def test_unknown_packages_and_paths_get_4_04(
    coap_port: int, client: aiocoap.Context, path: str
) -> None:
    response = await _get(client, f"coap://127.0.0.1:{coap_port}{path}")
    assert response.code == Code.NOT_FOUND


@pytest.mark.parametrize("method", [Code.POST, Code.PUT, Code.DELETE])
async def test_methods_other_than_get_get_4_05(
    coap_port: int,
    client: aiocoap.Context,
    package: tuple[PackageRecord, bytes],
    method: Code,
) -> None:
    record, _ = package
    response = await _get(client, _uri(coap_port, record), code=method)
    assert response.code == Code.METHOD_NOT_ALLOWED


async def test_a_download_counts_when_its_last_block_is_served(
    coap_port: int,
    client: aiocoap.Context,
    repo: Repository,
    package: tuple[PackageRecord, bytes],
) -> None:
    record, data = package
    await _get(client, _uri(coap_port, record), block=Block(3, 0, 6))
    assert (repo.get(record.id).downloads, repo.get(record.id).bytes_served) == (0, 1024)
    await _get(client, _uri(coap_port, record), blockwise=True)
    await _get(client, _uri(coap_port, record, Form.PAYLOAD), blockwise=True)
    got = repo.get(record.id)
    assert got.downloads == 2
    assert got.bytes_served == 1024 + len(data) + record.payload_size


async def test_fw_shares_the_lwm2m_servers_port(
    repo: Repository,
    sqlite_url: str,
    client: aiocoap.Context,
    package: tuple[PackageRecord, bytes],
) -> None:
    record, data = package
    config = ServerConfig(port=0, db_url=sqlite_url, extra_resources=tuple(coap_resources(repo)))
    async with LwM2MServer(config) as server:
        got = await _get(client, _uri(server.port, record), blockwise=True)
        register = aiocoap.Message(
            code=Code.POST,
            uri=f"coap://127.0.0.1:{server.port}/rd?ep=shared-port&lt=60",
            payload=b"</3/0>",
            content_format=40,
        )
        registered = await asyncio.wait_for(client.request(register).response, TIMEOUT)
    assert got.payload == data
    assert registered.code == Code.CREATED


async def test_libcoap_client_downloads_the_package_with_1024_byte_blocks(
    coap_port: int,
    package: tuple[PackageRecord, bytes],
    trust: TrustStore,
    tmp_path: Path,
) -> None:
    tool = shutil.which("coap-client-notls")
    if tool is None:
        skip_or_fail("coap-client-notls (Debian libcoap3-bin) is not installed")
    record, data = package
    out = tmp_path / "libcoap.suit"
    proc = await asyncio.create_subprocess_exec(
        str(tool),
        "-b",
        "1024",
        "-B",
        "20",
        "-o",
        str(out),
        _uri(coap_port, record),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    assert hashlib.sha256(out.read_bytes()).hexdigest() == record.sha256
    assert out.read_bytes() == data
    assert verify_package(out, trust).manifest.version == "3.0.0"


async def test_a_package_deleted_after_being_served_gets_4_04_and_its_file_is_let_go(
    repo: Repository, package: tuple[PackageRecord, bytes], client: aiocoap.Context
) -> None:
    record, data = package
    ((path, resource),) = coap_resources(repo)
    site = aiocoap.resource.Site()
    site.add_resource(path, resource)
    ctx, port = await create_endpoint(site, "127.0.0.1", 0)
    try:
        first = await _get(client, _uri(port, record), block=Block(1, 0, 6))
        assert first.payload == data[1024:2048]
        assert resource._files  # served blocks come from a file kept open
        repo.delete(record.id)
        again = await _get(client, _uri(port, record), block=Block(2, 0, 6))
        assert again.code == Code.NOT_FOUND
        assert record.id not in resource._files
    finally:
        await ctx.shutdown()
        resource.close()


def test_fast_path_answers_cached_blocks_and_declines_everything_else(
    repo: Repository, package: tuple[PackageRecord, bytes]
) -> None:
    record, data = package
    ((_, resource),) = coap_resources(repo)
    assert isinstance(resource, FirmwareResource)
    repo.lookup(record.id)  # now in the repository's memory cache

    def request(code: Code = Code.GET, **options: object) -> aiocoap.Message:
        return aiocoap.Message(code=code, **options)

    answer = resource.render_now(request(block2=Block(3, False, 6)), [record.id])
    assert answer is not None and answer.code == Code.CONTENT
    assert answer.payload == data[3 * 1024 : 4 * 1024]
    assert answer.opt.block2 == Block(3, True, 6)
    # declined: the ordinary route answers these (with their errors)
    assert resource.render_now(request(Code.POST), [record.id]) is None
    assert resource.render_now(request(observe=0), [record.id]) is None
    assert resource.render_now(request(), ["0" * 64]) is None
    assert resource.render_now(request(), [record.id, "nope"]) is None
    assert resource.render_now(request(block2=Block(10_000, False, 6)), [record.id]) is None


async def test_a_block_request_with_an_unrecognised_critical_option_gets_4_02(
    coap_port: int, client: aiocoap.Context, package: tuple[PackageRecord, bytes]
) -> None:
    # RFC 7252 §5.4.1: 65001 is odd (critical) and unknown: no 2.05 with the block.
    record, _ = package
    request = aiocoap.Message(code=Code.GET, uri=_uri(coap_port, record))
    request.opt.block2 = Block(0, 0, 4)
    request.opt.add_option(OptionNumber(65001).create_option(decode=b"\x01"))
    response = await asyncio.wait_for(
        client.request(request, handle_blockwise=False).response, TIMEOUT
    )
    assert response.code == Code.BAD_OPTION
    assert response.opt.block2 is None
