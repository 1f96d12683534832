"""Push of a firmware image to /5/0/0 by Block1 (RFC 7959), streamed to a real file.

The server's own Write (aiocoap does the Block1 transfer) and raw aiocoap requests with
hand-made Block1 options (retransmitted block 0, gaps, Size1, a block-size change) drive a
real LwM2MClient carrying FirmwareUpdateInstance; the pushed bytes land in a file through
FileDelegate (agent_helpers), which is what the assertions read.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from agent_helpers import WAIT, Device, FileDelegate, RawPeer, block, running_device
from aiocoap.numbers.codes import Code
from hypothesis import given, settings
from hypothesis import strategies as st

from fotakit.client.block1 import Block1, StreamedBody
from fotakit.lwm2m.errors import BadRequest, RequestEntityIncomplete, RequestEntityTooLarge
from fotakit.lwm2m.objects import DeliveryMethod, State, UpdateResult
from fotakit.lwm2m.objects.paths import FIRMWARE_PACKAGE
from fotakit.server import DeviceError

EP = "fw-device"


def image_of(size: int) -> bytes:
    return os.urandom(size)


def package_uri(dev: Device) -> str:
    return f"{dev.uri}/5/0/0"


async def push_raw(
    peer: RawPeer, dev: Device, image: bytes, nums: list[int], szx: int = 6
) -> list[Code]:
    codes = []
    for num in nums:
        payload, more = block(image, num, szx)
        response = await peer.put_block(
            package_uri(dev), num, more, szx, payload, size1=len(image) if num == 0 else None
        )
        codes.append(response.code)
    return codes


@pytest.fixture
def delegate(tmp_path: Path) -> FileDelegate:
    return FileDelegate(tmp_path / "image.bin", capacity=256 * 1024)


async def test_push_of_200_kib_by_server_write_arrives_byte_identical(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    image = image_of(200 * 1024)
    async with running_device(sqlite_url, delegate) as dev:
        assert dev.server.format_for(EP, FIRMWARE_PACKAGE, writing=True) == 42
        await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE, image), 60)
        total = await asyncio.wait_for(delegate.finished.get(), WAIT)
        assert total == len(image)
        assert delegate.image.read_bytes() == image
        # streamed: the sink got every 1 KiB block on its own, nothing was reassembled
        assert len(delegate.writes) == 200
        assert {size for _num, size, _n in delegate.writes} == {1024}
        assert dev.fw.state is State.DOWNLOADING  # the runtime verifies, then reports
        dev.fw.download_finished(UpdateResult.SUCCESS)
        assert dev.fw.state is State.DOWNLOADED


async def test_blocks_reach_the_sink_before_the_last_block_is_sent(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    image = image_of(8 * 1024 + 100)
    async with running_device(sqlite_url, delegate) as dev, RawPeer.open() as peer:
        for num in range(8):
            payload, more = block(image, num)
            response = await peer.put_block(package_uri(dev), num, more, 6, payload)
            assert response.code == Code.CONTINUE
            assert response.opt.block1.block_number == num and response.opt.block1.more
            assert response.opt.block1.size_exponent == 6
            # the bytes are in the file already, before any later block was sent
            assert delegate.image.read_bytes()[: (num + 1) * 1024] == image[: (num + 1) * 1024]
        assert delegate.finished.empty()
        payload, more = block(image, 8)
        assert not more
        response = await peer.put_block(package_uri(dev), 8, False, 6, payload)
        assert response.code == Code.CHANGED
        assert response.opt.block1.block_number == 8 and not response.opt.block1.more
        assert await asyncio.wait_for(delegate.finished.get(), WAIT) == len(image)
        assert delegate.image.read_bytes() == image


async def test_retransmitted_block_0_neither_restarts_nor_corrupts(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    image = image_of(6 * 1024 + 7)
    async with running_device(sqlite_url, delegate) as dev, RawPeer.open() as peer:
        codes = await push_raw(peer, dev, image, [0, 1, 2, 0, 3, 0, 1, 2, 3, 4, 5])
        assert codes == [Code.CONTINUE] * 11
        assert delegate.calls.count("open_push") == 1  # one transfer, never restarted
        codes = await push_raw(peer, dev, image, [6])
        assert codes == [Code.CHANGED]
        assert await asyncio.wait_for(delegate.finished.get(), WAIT) == len(image)
        assert delegate.image.read_bytes() == image
        assert dev.fw.state is State.DOWNLOADING and dev.fw.result is UpdateResult.INITIAL
        # a late duplicate of the last block is acknowledged again and changes nothing
        assert await push_raw(peer, dev, image, [6]) == [Code.CHANGED]
        assert delegate.finished.empty()


async def test_different_block_0_during_a_push_answers_4_00(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    image = image_of(4 * 1024)
    other = image_of(4 * 1024)
    async with running_device(sqlite_url, delegate) as dev, RawPeer.open() as peer:
        await push_raw(peer, dev, image, [0, 1])
        payload, more = block(other, 0)
        response = await peer.put_block(package_uri(dev), 0, more, 6, payload)
        assert response.code == Code.BAD_REQUEST
        assert dev.fw.state is State.DOWNLOADING
        assert await push_raw(peer, dev, image, [2, 3]) == [Code.CONTINUE, Code.CHANGED]
        assert delegate.image.read_bytes() == image


async def test_gap_in_blocks_answers_4_08_and_the_push_can_go_on(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    image = image_of(5 * 1024)
    async with running_device(sqlite_url, delegate) as dev, RawPeer.open() as peer:
        assert await push_raw(peer, dev, image, [0, 1]) == [Code.CONTINUE] * 2
        assert await push_raw(peer, dev, image, [3]) == [Code.REQUEST_ENTITY_INCOMPLETE]
        assert dev.fw.state is State.DOWNLOADING
        assert await push_raw(peer, dev, image, [2, 3, 4]) == [Code.CONTINUE] * 2 + [Code.CHANGED]
        assert delegate.image.read_bytes() == image


async def test_block_without_a_push_in_progress_answers_4_08(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    image = image_of(3 * 1024)
    async with running_device(sqlite_url, delegate) as dev, RawPeer.open() as peer:
        assert await push_raw(peer, dev, image, [1]) == [Code.REQUEST_ENTITY_INCOMPLETE]
        assert dev.fw.state is State.IDLE
        assert "open_push" not in delegate.calls


async def test_size1_beyond_capacity_answers_4_13_with_size1(
    sqlite_url: str, tmp_path: Path
) -> None:
    delegate = FileDelegate(tmp_path / "image.bin", capacity=4096)
    image = image_of(10 * 1024)
    async with running_device(sqlite_url, delegate) as dev, RawPeer.open() as peer:
        payload, more = block(image, 0)
        response = await peer.put_block(package_uri(dev), 0, more, 6, payload, size1=len(image))
        assert response.code == Code.REQUEST_ENTITY_TOO_LARGE
        assert response.opt.size1 == 4096
        assert (dev.fw.state, dev.fw.result) == (State.IDLE, UpdateResult.NOT_ENOUGH_FLASH)
        # the server's own Write sees the same answer
        with pytest.raises(DeviceError) as info:
            await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE, image), WAIT)
        assert info.value.code == "4.13"


async def test_write_beyond_capacity_without_size1_answers_4_13(
    sqlite_url: str, tmp_path: Path
) -> None:
    delegate = FileDelegate(tmp_path / "image.bin", capacity=3000)
    image = image_of(5 * 1024)
    async with running_device(sqlite_url, delegate) as dev, RawPeer.open() as peer:
        codes = []
        for num in range(4):
            payload, more = block(image, num)
            response = await peer.put_block(package_uri(dev), num, more, 6, payload)
            codes.append(response.code)
        assert codes[:2] == [Code.CONTINUE] * 2
        assert codes[2] == Code.REQUEST_ENTITY_TOO_LARGE
        assert (dev.fw.state, dev.fw.result) == (State.IDLE, UpdateResult.NOT_ENOUGH_FLASH)
        assert "abort" in delegate.calls and not delegate.image.exists()
        assert codes[3] == Code.REQUEST_ENTITY_INCOMPLETE  # that push is over


async def test_block_size_change_mid_transfer_lands_bytes_at_the_right_offset(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    image = image_of(4 * 1024 + 300)
    async with running_device(sqlite_url, delegate) as dev, RawPeer.open() as peer:
        assert await push_raw(peer, dev, image, [0, 1], szx=6) == [Code.CONTINUE] * 2
        # switch to 512-byte blocks: 2 KiB in is block 4 at SZX 5
        codes = await push_raw(peer, dev, image, [4, 5, 6, 7, 8], szx=5)
        assert codes == [Code.CONTINUE] * 4 + [Code.CHANGED]
        assert await asyncio.wait_for(delegate.finished.get(), WAIT) == len(image)
        assert delegate.image.read_bytes() == image


async def test_push_with_wrong_content_format_answers_4_15(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    image = image_of(2 * 1024)
    async with running_device(sqlite_url, delegate) as dev, RawPeer.open() as peer:
        payload, more = block(image, 0)
        response = await peer.put_block(package_uri(dev), 0, more, 6, payload, content_format=0)
        assert response.code == Code.UNSUPPORTED_CONTENT_FORMAT
        assert dev.fw.state is State.IDLE


async def test_cancel_during_a_push_aborts_it_and_later_blocks_get_4_08(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    image = image_of(3 * 1024)
    async with running_device(sqlite_url, delegate) as dev, RawPeer.open() as peer:
        await push_raw(peer, dev, image, [0])
        await asyncio.wait_for(dev.server.execute(EP, "/5/0/10"), WAIT)
        assert (dev.fw.state, dev.fw.result) == (State.IDLE, UpdateResult.CANCELLED)
        assert "abort" in delegate.calls and not delegate.image.exists()
        assert await push_raw(peer, dev, image, [1]) == [Code.REQUEST_ENTITY_INCOMPLETE]


async def test_push_while_pull_in_progress_answers_4_00(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    image = image_of(2 * 1024)
    async with running_device(sqlite_url, delegate) as dev, RawPeer.open() as peer:
        await asyncio.wait_for(dev.server.write(EP, "/5/0/1", "coap://127.0.0.1:5683/fw/x"), WAIT)
        assert await push_raw(peer, dev, image, [0]) == [Code.BAD_REQUEST]
        assert dev.fw.state is State.DOWNLOADING and "open_push" not in delegate.calls


async def test_unstreamed_block1_body_beyond_max_body_size_answers_4_13(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    """Resources that do not stream are reassembled in RAM, but only up to the cap."""
    async with (
        running_device(sqlite_url, delegate, max_body_size=2048) as dev,
        RawPeer.open() as peer,
    ):
        uri = f"{dev.uri}/5/0/1"
        text = b"coap://127.0.0.1/" + b"a" * 3000
        response = await peer.put_block(uri, 0, True, 6, text[:1024], size1=len(text))
        assert response.code == Code.REQUEST_ENTITY_TOO_LARGE
        assert response.opt.size1 == 2048
        response = await peer.put_block(uri, 2, True, 6, text[2048:3072], content_format=0)
        assert response.code == Code.REQUEST_ENTITY_TOO_LARGE
        assert dev.fw.state is State.IDLE


async def test_push_abandoned_by_the_server_times_out_with_result_4(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    image = image_of(3 * 1024)
    async with (
        running_device(sqlite_url, delegate, push_timeout=0.3) as dev,
        RawPeer.open() as peer,
    ):
        assert await push_raw(peer, dev, image, [0, 1]) == [Code.CONTINUE] * 2
        await asyncio.wait_for(delegate.aborted.wait(), WAIT)
        assert (dev.fw.state, dev.fw.result) == (State.IDLE, UpdateResult.CONNECTION_LOST)
        assert not delegate.image.exists()
        # the server starts over from block 0: a new push
        assert await push_raw(peer, dev, image, [0, 1, 2]) == [Code.CONTINUE] * 2 + [Code.CHANGED]
        assert delegate.image.read_bytes() == image


async def test_push_to_a_pull_only_device_answers_4_05(sqlite_url: str, tmp_path: Path) -> None:
    delegate = FileDelegate(tmp_path / "image.bin", method=DeliveryMethod.PULL_ONLY)
    image = image_of(2 * 1024)
    async with running_device(sqlite_url, delegate) as dev, RawPeer.open() as peer:
        assert await push_raw(peer, dev, image, [0]) == [Code.METHOD_NOT_ALLOWED]
        with pytest.raises(DeviceError) as info:
            await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE, b"small"), WAIT)
        assert info.value.code == "4.05"
        assert (dev.fw.state, dev.fw.result) == (State.IDLE, UpdateResult.INITIAL)


# -- the byte-range bookkeeping on its own (no sockets) ----------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_streamed_body_lands_every_accepted_block_at_its_offset(data: st.DataObject) -> None:
    """Random re-sends, gaps and block-size changes: what is accepted is the image."""
    size = data.draw(st.integers(min_value=1, max_value=3000))
    image = bytes((i * 7 + 3) % 256 for i in range(size))
    body = StreamedBody()
    stored = bytearray(size)
    for _ in range(data.draw(st.integers(min_value=0, max_value=80))):
        szx = data.draw(st.integers(min_value=0, max_value=6))
        bsize = 1 << (szx + 4)
        num = data.draw(st.integers(min_value=0, max_value=(size - 1) // bsize))
        payload = image[num * bsize : (num + 1) * bsize]
        blk = Block1(num, (num + 1) * bsize < size, szx, payload)
        try:
            body.check(blk)
        except RequestEntityIncomplete:
            assert blk.offset > body.received
            continue
        stored[blk.offset : blk.end] = payload
        body.accept(blk)
        assert bytes(stored[: body.received]) == image[: body.received]
    if body.complete:
        assert body.total == size and bytes(stored) == image


def test_streamed_body_refuses_what_rfc_7959_forbids() -> None:
    body = StreamedBody(capacity=2048)
    with pytest.raises(RequestEntityTooLarge) as info:
        body.check(Block1(0, True, 6, b"x" * 1024, size1=4096))
    assert info.value.size1 == 2048
    with pytest.raises(BadRequest):
        body.check(Block1(0, True, 6, b"x" * 1000))  # M=1 needs a full block
    with pytest.raises(BadRequest):
        body.check(Block1(0, False, 7, b"x"))  # BERT is not for UDP
    body.check(Block1(0, True, 6, b"x" * 1024))
    body.accept(Block1(0, True, 6, b"x" * 1024))
    with pytest.raises(RequestEntityTooLarge):
        body.check(Block1(2, False, 6, b"x" * 10))  # past capacity (and a gap)
    body.accept(Block1(1, False, 6, b"x" * 10))
    assert body.complete and body.total == 1034
    with pytest.raises(BadRequest):
        body.check(Block1(1, False, 6, b"x" * 20))  # a second, different last block
