"""Helpers for the Object 5 tests: a real file-backed delegate and a running agent.

:class:`FileDelegate` is a real (small) implementation of ``FirmwareUpdateDelegate``: a
pushed image goes into a file with ``os.pwrite`` at ``num * block_size``, exactly as a
slot writer would; it records what it was asked to do so tests can assert on it.
:func:`running_device` starts a real :class:`LwM2MServer` and a real
:class:`LwM2MClient` carrying /5/0 on loopback. Waiting is on events, never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiocoap
import aiocoap.resource
from aiocoap import Message
from aiocoap.numbers.codes import Code

from fotakit.agent.object5 import (
    FirmwareSnapshot,
    FirmwareUpdateInstance,
    NotEnoughStorage,
    firmware_object,
)
from fotakit.client import ClientConfig, LwM2MClient
from fotakit.coap import TransportParams, create_endpoint
from fotakit.lwm2m.objects import DeliveryMethod, UpdateProtocol
from fotakit.server import LwM2MServer, ServerConfig

WAIT = 10.0
TRANSPORT = TransportParams(
    ack_timeout=0.5, ack_random_factor=1.0, max_retransmit=3, request_timeout=30.0
)


class FilePushSink:
    """Writes pushed blocks into ``path`` (created on open), bounded by ``capacity``."""

    def __init__(self, delegate: FileDelegate, path: Path, capacity: int) -> None:
        self.delegate = delegate
        self.path = path
        self.capacity = capacity
        self.fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)

    def write_block(self, num: int, block_size: int, data: bytes) -> None:
        offset = num * block_size
        if offset + len(data) > self.capacity:
            raise NotEnoughStorage(self.capacity)
        assert self.fd is not None
        os.pwrite(self.fd, data, offset)
        self.delegate.writes.append((num, block_size, len(data)))

    def finish(self, total_size: int) -> None:
        assert self.fd is not None
        os.ftruncate(self.fd, total_size)
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = None
        self.delegate.finished.put_nowait(total_size)

    def abort(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.path.unlink(missing_ok=True)
        self.delegate.calls.append("abort")
        self.delegate.aborted.set()


@dataclass
class FileDelegate:
    """The device side of /5/0 for tests: pushes land in ``image``; the rest is recorded."""

    image: Path
    capacity: int = 1 << 20
    method: DeliveryMethod = DeliveryMethod.BOTH
    protocols: Sequence[UpdateProtocol] = (UpdateProtocol.COAP, UpdateProtocol.HTTP)
    calls: list[str] = field(default_factory=list)
    pulls: list[str] = field(default_factory=list)
    writes: list[tuple[int, int, int]] = field(default_factory=list)
    persisted: list[FirmwareSnapshot] = field(default_factory=list)
    finished: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    aborted: asyncio.Event = field(default_factory=asyncio.Event)
    sink: FilePushSink | None = None

    def supported_protocols(self) -> Sequence[UpdateProtocol]:
        return self.protocols

    def delivery_method(self) -> DeliveryMethod:
        return self.method

    def start_pull(self, uri: str) -> None:
        self.pulls.append(uri)
        self.calls.append("start_pull")

    def open_push(self, size1: int | None) -> FilePushSink:
        self.calls.append("open_push")
        if size1 is not None and size1 > self.capacity:
            raise NotEnoughStorage(self.capacity)
        self.sink = FilePushSink(self, self.image, self.capacity)
        return self.sink

    def cancel_download(self) -> None:
        self.calls.append("cancel_download")

    def discard_image(self) -> None:
        self.calls.append("discard_image")

    def start_update(self) -> None:
        self.calls.append("start_update")

    def persist(self, snapshot: FirmwareSnapshot) -> None:
        self.persisted.append(snapshot)


@dataclass
class Device:
    """A running server + client pair with /5/0 on the client."""

    server: LwM2MServer
    client: LwM2MClient
    fw: FirmwareUpdateInstance
    delegate: FileDelegate
    endpoint: str

    @property
    def uri(self) -> str:
        """The client's own CoAP address (raw requests go here)."""
        return f"coap://127.0.0.1:{self.client.port}"


@contextlib.asynccontextmanager
async def running_device(
    db_url: str,
    delegate: FileDelegate,
    *,
    endpoint: str = "fw-device",
    max_body_size: int = 64 * 1024,
    push_timeout: float | None = 300.0,
) -> AsyncIterator[Device]:
    server = LwM2MServer(
        ServerConfig(host="127.0.0.1", port=0, db_url=db_url, transport=TRANSPORT, expiry_grace=0.0)
    )
    await server.start()
    try:
        fw = FirmwareUpdateInstance(delegate, push_timeout=push_timeout)
        config = ClientConfig(
            endpoint=endpoint,
            server_uri=f"coap://127.0.0.1:{server.port}",
            lifetime=120,
            transport=TRANSPORT,
            max_body_size=max_body_size,
        )
        client = LwM2MClient(config, [firmware_object(fw)])
        await client.start()
        try:
            await client.wait_registered(WAIT)
            yield Device(server, client, fw, delegate, endpoint)
        finally:
            await client.stop(deregister=False)
    finally:
        await server.stop()


class RawPeer:
    """A plain aiocoap endpoint on 127.0.0.1 that sends requests without block-wise help."""

    def __init__(self, ctx: aiocoap.Context) -> None:
        self.ctx = ctx

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls) -> AsyncIterator[RawPeer]:
        ctx, _port = await create_endpoint(aiocoap.resource.Site(), "127.0.0.1", 0)
        try:
            yield cls(ctx)
        finally:
            await ctx.shutdown()

    async def put_block(
        self,
        uri: str,
        num: int,
        more: bool,
        szx: int,
        payload: bytes,
        *,
        size1: int | None = None,
        content_format: int | None = 42,
    ) -> Message:
        msg = Message(
            code=Code.PUT,
            uri=uri,
            payload=payload,
            block1=(num, more, szx),
            transport_tuning=TRANSPORT.tuning(),
        )
        if content_format is not None:
            msg.opt.content_format = content_format
        if size1 is not None:
            msg.opt.size1 = size1
        request = self.ctx.request(msg, handle_blockwise=False)
        response: Message = await asyncio.wait_for(request.response, WAIT)
        return response


def block(image: bytes, num: int, szx: int = 6) -> tuple[bytes, bool]:
    """Block ``num`` of ``image`` at size ``2**(szx+4)`` and whether more follow."""
    size = 1 << (szx + 4)
    chunk = image[num * size : (num + 1) * size]
    return chunk, (num + 1) * size < len(image)
