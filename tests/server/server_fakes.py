"""A minimal test-side LwM2M device: a plain aiocoap site that answers GET/PUT/POST/DELETE.

It is deliberately not the fotakit client runtime: the server tests must not depend on
it. Values are kept per resource path and encoded with the format the server asked for
(Accept), so the tests see exactly what the server negotiated. Every request is logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiocoap
import aiocoap.resource
from aiocoap.numbers.codes import Code

from fotakit.coap import TransportParams, create_endpoint
from fotakit.lwm2m import codecs
from fotakit.lwm2m.codecs import ContentFormat
from fotakit.lwm2m.model import Content, ObjectRegistry, Value
from fotakit.lwm2m.path import Path
from fotakit.server import Event, ServerConfig

WAIT = 5.0
FAST = TransportParams(
    ack_timeout=0.2, ack_random_factor=1.0, max_retransmit=1, request_timeout=2.0
)

DEVICE_VALUES: dict[Path, Value] = {
    Path(3, 0, 0): "fotakit test device",
    Path(3, 0, 3): "1.0.0",
    Path(3, 0, 9): 87,
    Path(5, 0, 1): "",
    Path(5, 0, 3): 0,
    Path(5, 0, 5): 0,
    Path(1, 0, 1): 300,
}


def make_config(db_url: str, **overrides: object) -> ServerConfig:
    params: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "db_url": db_url,
        "transport": FAST,
        "expiry_grace": 0.0,
    }
    params.update(overrides)
    return ServerConfig(**params)  # type: ignore[arg-type]


async def next_of(events: object, kind: type[Event]) -> Event:
    """The next event of ``kind`` (others are skipped), bounded in time."""

    async def find() -> Event:
        for _ in range(100):
            ev: Event = await events.get()  # type: ignore[attr-defined]
            if isinstance(ev, kind):
                return ev
        raise AssertionError(f"no {kind.__name__} among 100 events")

    return await asyncio.wait_for(find(), WAIT)


@dataclass
class Seen:
    """One request the device received."""

    method: str
    path: Path
    payload: bytes
    content_format: int | None
    accept: int | None
    query: tuple[str, ...]
    observe: int | None


@dataclass
class DeviceState:
    registry: ObjectRegistry
    values: dict[Path, Value]
    seen: list[Seen] = field(default_factory=list)
    observers: dict[Path, set[Any]] = field(default_factory=dict)
    failures: dict[tuple[str, Path], Code] = field(default_factory=dict)
    on_request: Callable[[Seen], None] | None = None
    next_instance: int = 1
    # Formats this device does not implement: Accept → 4.06, Content-Format → 4.15.
    refused_formats: set[int] = field(default_factory=set)
    observation_ended: asyncio.Event = field(default_factory=asyncio.Event)


class DeviceResource(aiocoap.resource.ObservableResource, aiocoap.resource.PathCapable):  # type: ignore[misc]
    """Answers every path under the device's root."""

    def __init__(self, state: DeviceState) -> None:
        super().__init__()
        self.state = state

    def _record(self, request: aiocoap.Message, method: str) -> Path:
        path = Path.from_segments(tuple(request.opt.uri_path))
        seen = Seen(
            method=method,
            path=path,
            payload=bytes(request.payload),
            content_format=request.opt.content_format,
            accept=request.opt.accept,
            query=tuple(request.opt.uri_query),
            observe=request.opt.observe,
        )
        self.state.seen.append(seen)
        if self.state.on_request is not None:
            self.state.on_request(seen)
        return path

    async def add_observation(self, request: aiocoap.Message, serverobservation: Any) -> None:
        path = Path.from_segments(tuple(request.opt.uri_path))
        observers = self.state.observers.setdefault(path, set())
        observers.add(serverobservation)

        def cancelled() -> None:
            observers.discard(serverobservation)
            self.state.observation_ended.set()

        serverobservation.accept(cancelled)

    def _content(self, path: Path) -> Content:
        return {p: v for p, v in self.state.values.items() if p.startswith(path)}

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        path = self._record(request, "GET")
        failure = self.state.failures.get(("GET", path))
        if failure is not None:
            return aiocoap.Message(code=failure, payload=b"refused")
        if request.opt.accept in self.state.refused_formats:
            return aiocoap.Message(code=Code.NOT_ACCEPTABLE)
        content = self._content(path)
        if not content:
            return aiocoap.Message(code=Code.NOT_FOUND)
        if request.opt.accept == ContentFormat.LINK:
            links = ",".join(f"<{p}>" for p in sorted(content))
            return aiocoap.Message(payload=links.encode(), content_format=40)
        fmt = request.opt.accept if request.opt.accept is not None else int(ContentFormat.TEXT)
        payload = codecs.encode(fmt, path, content, self.state.registry)
        return aiocoap.Message(payload=payload, content_format=fmt)

    async def render_put(self, request: aiocoap.Message) -> aiocoap.Message:
        path = self._record(request, "PUT")
        failure = self.state.failures.get(("PUT", path))
        if failure is not None:
            return aiocoap.Message(code=failure)
        if request.opt.content_format in self.state.refused_formats:
            return aiocoap.Message(code=Code.UNSUPPORTED_CONTENT_FORMAT)
        if request.opt.content_format is not None and request.payload:
            decoded = codecs.decode(
                request.opt.content_format, path, bytes(request.payload), self.state.registry
            )
            self.state.values.update(decoded)
        return aiocoap.Message(code=Code.CHANGED)

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        path = self._record(request, "POST")
        failure = self.state.failures.get(("POST", path))
        if failure is not None:
            return aiocoap.Message(code=failure)
        if path.depth == 2 and request.opt.content_format is not None and request.payload:
            decoded = codecs.decode(
                request.opt.content_format, path, bytes(request.payload), self.state.registry
            )
            self.state.values.update(decoded)  # Write partial update
        if path.depth == 1:  # Create
            instance = self.state.next_instance
            self.state.next_instance += 1
            return aiocoap.Message(
                code=Code.CREATED, location_path=(str(path.object_id), str(instance))
            )
        return aiocoap.Message(code=Code.CHANGED)

    async def render_delete(self, request: aiocoap.Message) -> aiocoap.Message:
        self._record(request, "DELETE")
        return aiocoap.Message(code=Code.DELETED)


class FakeDevice:
    """A device endpoint: serves its resources and sends Register/Update/De-register."""

    def __init__(self, ctx: aiocoap.Context, port: int, state: DeviceState) -> None:
        self.ctx = ctx
        self.port = port
        self.state = state
        self.location: str | None = None

    @classmethod
    async def start(cls, registry: ObjectRegistry, values: dict[Path, Value]) -> FakeDevice:
        state = DeviceState(registry=registry, values=dict(values))
        ctx, port = await create_endpoint(DeviceResource(state), "127.0.0.1", 0)
        return cls(ctx, port, state)

    async def stop(self) -> None:
        await self.ctx.shutdown()

    @property
    def seen(self) -> list[Seen]:
        return self.state.seen

    def set(self, path: Path, value: Value) -> None:
        """Change a value and notify its observers."""
        self.state.values[path] = value
        for observation in list(self.state.observers.get(path, ())):
            observation.trigger()

    def observer_count(self, path: Path) -> int:
        return len(self.state.observers.get(path, ()))

    async def send(
        self,
        server_port: int,
        code: Code,
        path: tuple[str, ...],
        query: list[str] | None = None,
        payload: bytes = b"",
    ) -> aiocoap.Message:
        msg = aiocoap.Message(code=code, uri=f"coap://127.0.0.1:{server_port}", payload=payload)
        msg.opt.uri_path = path
        if query:
            msg.opt.uri_query = tuple(query)
        if payload:
            msg.opt.content_format = 40
        response: aiocoap.Message = await self.ctx.request(msg).response
        return response

    async def register(
        self,
        server_port: int,
        endpoint: str,
        *,
        lifetime: int = 300,
        version: str = "1.1",
        binding: str = "U",
        queue: bool = False,
        payload: bytes = b"</1/0>,</3/0>,</5/0>",
    ) -> aiocoap.Message:
        query = [f"ep={endpoint}", f"lt={lifetime}", f"lwm2m={version}", f"b={binding}"]
        if queue:
            query.append("Q")
        response = await self.send(server_port, Code.POST, ("rd",), query, payload)
        if response.code == Code.CREATED:
            self.location = "/".join(response.opt.location_path)
        return response

    async def update(
        self, server_port: int, query: list[str] | None = None, payload: bytes = b""
    ) -> aiocoap.Message:
        assert self.location is not None
        return await self.send(
            server_port, Code.POST, tuple(self.location.split("/")), query, payload
        )

    async def deregister(self, server_port: int) -> aiocoap.Message:
        assert self.location is not None
        return await self.send(server_port, Code.DELETE, tuple(self.location.split("/")))


class RawPeer:
    """A bare UDP socket that speaks CoAP only when told to (for silence and garbage)."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self._mid = 1000

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, server_port: int, data: bytes) -> None:
        self.sock.sendto(data, ("127.0.0.1", server_port))

    def send(
        self,
        server_port: int,
        code: Code,
        path: tuple[str, ...],
        query: list[str] | None = None,
        payload: bytes = b"",
        *,
        extra_options: tuple[tuple[int, bytes], ...] = (),
        confirmable: bool = True,
    ) -> int:
        from aiocoap.numbers.optionnumbers import OptionNumber
        from aiocoap.numbers.types import Type

        self._mid += 1
        msg = aiocoap.Message(code=code, payload=payload)
        msg.mtype = Type.CON if confirmable else Type.NON
        for number, value in extra_options:
            msg.opt.add_option(OptionNumber(number).create_option(decode=value))
        msg.mid = self._mid
        msg.token = self._mid.to_bytes(2, "big")
        msg.opt.uri_path = path
        if query:
            msg.opt.uri_query = tuple(query)
        self.send_raw(server_port, msg.encode())
        return self._mid

    async def receive(self) -> aiocoap.Message:
        import asyncio

        data = await asyncio.get_running_loop().sock_recv(self.sock, 65535)
        return aiocoap.Message.decode(data)

    async def response_to(self, mid: int) -> aiocoap.Message:
        """The response to the request with message ID ``mid`` (skipping anything else)."""
        for _ in range(50):
            msg = await self.receive()
            if msg.mid == mid and msg.code.is_response():
                return msg
        raise AssertionError(f"no response to mid {mid}")
