"""CoAP requests to LwM2M Device Management operations (TS Core 1.1.1 §6.3, §8.2.x).

One aiocoap resource serves every path on the client's endpoint and maps method and
options to the operation:

=========================================  ==================================  =======
Request                                    Operation                           Success
=========================================  ==================================  =======
GET, Accept: 40                            Discover                            2.05
GET (Observe: 0 starts, 1 cancels)         Read / Observe                      2.05
PUT with Uri-Query and no payload          Write-Attributes                    2.04
PUT with payload                           Write (replace)                     2.04
POST /o/i with payload                     Write (partial update)              2.04
POST /o/i/r                                Execute (payload: arguments)        2.04
POST /o                                    Create                              2.01
DELETE /o/i                                Delete                              2.02
=========================================  ==================================  =======

Errors come from :mod:`fotakit.lwm2m.errors`: 4.00 bad path or payload, 4.04 unknown
target, 4.05 operation not allowed, 4.06 Accept not producible, 4.15 unsupported
Content-Format, 4.08 / 4.13 for block-wise bodies (a 4.13 carries Size1, RFC 7959 §4).

Block1 request bodies (RFC 7959 §2.3) take one of two routes, chosen per block in
:meth:`DmResource.needs_blockwise_assembly`:

- a PUT on a resource whose instance returns a writer from ``block_writer`` is
  *streamed*: each block goes to the writer as it arrives and is answered 2.31 Continue
  (2.04 for the last), echoing Block1 — nothing is held in RAM
  (:mod:`fotakit.client.block1`);
- anything else is reassembled in RAM by aiocoap (2.31 per block, then ``render`` sees
  the whole request), up to ``max_body_size`` bytes: a Size1 or a block beyond that is
  answered 4.13 with Size1 giving the limit, so RAM per transfer stays bounded.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from aiocoap import Message
from aiocoap import resource as coap_resource
from aiocoap.numbers.codes import Code

from fotakit.client.attributes import AttributeStore
from fotakit.client.block1 import Block1, BlockWriter
from fotakit.client.formats import choose_format, encode_content
from fotakit.client.observe import ObservationManager
from fotakit.client.tree import ObjectTree, parse_execute_args
from fotakit.lwm2m.attributes import NotificationAttributes
from fotakit.lwm2m.codecs import CodecError, ContentFormat, UnsupportedFormat, decode
from fotakit.lwm2m.errors import (
    BadRequest,
    LwM2MError,
    MethodNotAllowed,
    RequestEntityTooLarge,
    UnsupportedContentFormat,
)
from fotakit.lwm2m.linkformat import discover_links, format_links
from fotakit.lwm2m.model import Content, ObjectRegistry, ResourceType
from fotakit.lwm2m.path import InvalidPath, Path

_log = logging.getLogger(__name__)

_NUMERIC = frozenset({ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.FLOAT})
# Diagnostic payloads stay short: they may have to fit one datagram with the header.
_MAX_DIAGNOSTIC = 128

#: The largest request body aiocoap may reassemble in RAM for a non-streamed Write.
DEFAULT_MAX_BODY_SIZE = 64 * 1024


def request_path(request: Message) -> Path:
    try:
        return Path.from_segments(tuple(request.opt.uri_path))
    except InvalidPath as exc:
        raise BadRequest(f"not an LwM2M path: {exc}") from None


def error_response(exc: LwM2MError) -> Message:
    response = Message(code=exc.code, payload=exc.message.encode("utf-8")[:_MAX_DIAGNOSTIC])
    if isinstance(exc, RequestEntityTooLarge) and exc.size1 is not None:
        response.opt.size1 = exc.size1  # RFC 7959 §2.9.3: tell the sender the limit
    return response


def request_block1(request: Message) -> Block1 | None:
    """The request's Block1 option and payload as a :class:`Block1` (None: no Block1)."""
    option = request.opt.block1
    if option is None:
        return None
    return Block1(
        num=option.block_number,
        more=bool(option.more),
        szx=option.size_exponent,
        payload=bytes(request.payload),
        size1=request.opt.size1,
    )


class DeviceManagement:
    """The DM operations of one client, on its object tree. Knows nothing of sockets."""

    def __init__(
        self,
        tree: ObjectTree,
        registry: ObjectRegistry,
        attributes: AttributeStore,
        observations: ObservationManager,
        lwm2m_version: str,
        *,
        on_objects_changed: Callable[[], None] | None = None,
        on_request: Callable[[], None] | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        self.max_body_size = max_body_size
        self.tree = tree
        self.registry = registry
        self.attributes = attributes
        self.observations = observations
        self.lwm2m_version = lwm2m_version
        self._on_objects_changed = on_objects_changed
        self._on_request = on_request

    # -- entry point ---------------------------------------------------------------------
    async def handle(self, request: Message) -> tuple[Message, Content | None]:
        """Answer ``request``; also returns the content read (to seed an observation)."""
        if self._on_request is not None:
            self._on_request()
        path = request_path(request)
        code = request.code
        if code == Code.GET:
            if request.opt.accept == ContentFormat.LINK:
                return self.discover(path), None
            return self.read(path, request.opt.accept)
        if code == Code.PUT:
            if not request.payload and request.opt.uri_query:
                return self.write_attributes(path, list(request.opt.uri_query)), None
            return self.write(path, request, replace=True), None
        if code == Code.POST:
            if path.depth == 1:
                return self.create(path, request), None
            if path.depth == 2:
                return self.write(path, request, replace=False), None
            if path.depth == 3:
                return await self.execute(path, request.payload), None
            raise MethodNotAllowed(f"POST is not defined on {path}")
        if code == Code.DELETE:
            self.tree.delete(path)
            self.attributes.drop_under(path)
            self.observations.removed(path)
            self._objects_changed()
            return Message(code=Code.DELETED), None
        raise MethodNotAllowed(f"method {code} is not an LwM2M operation")

    # -- operations ------------------------------------------------------------------------
    def read(self, path: Path, accept: int | None) -> tuple[Message, Content]:
        content = self.tree.read(path)
        fmt, payload = self.render(path, content, accept)
        return Message(code=Code.CONTENT, payload=payload, content_format=fmt), content

    def render(self, path: Path, content: Content, accept: int | None) -> tuple[int, bytes]:
        fmt = choose_format(path, accept, self.registry, self.lwm2m_version)
        payload = encode_content(fmt, path, content, self.registry, requested=accept is not None)
        return fmt, payload

    def render_current(self, path: Path, fmt: int) -> tuple[Content, bytes]:
        """Read ``path`` again for a notification in the observation's format."""
        content = self.tree.read(path)
        return content, encode_content(fmt, path, content, self.registry, requested=True)

    def discover(self, path: Path) -> Message:
        self.tree.object(path)  # 4.05 on the root, 4.04 on an unknown or hidden object
        assert path.object_id is not None
        shape: dict[int, dict[int, int | None]] = {}
        obj = self.tree.object(Path(path.object_id))
        for instance_id, instance in obj.instances.items():
            resources: dict[int, int | None] = {}
            for resource_id in instance.resource_ids():
                if obj.definition.resource(resource_id) is None:
                    continue
                resources[resource_id] = self.tree.resource_dimension(
                    Path(obj.id, instance_id, resource_id)
                )
            shape[instance_id] = resources
        attrs = dict(self.attributes.all)
        if path.depth == 3:
            # Discover on a resource shows what governs it, inherited levels included.
            attrs[path] = self.attributes.effective(path)
        links = discover_links(path, shape, attrs)
        payload = format_links(links).encode("utf-8")
        return Message(code=Code.CONTENT, payload=payload, content_format=ContentFormat.LINK)

    def write(self, path: Path, request: Message, *, replace: bool) -> Message:
        if path.depth < 2:
            raise MethodNotAllowed(f"Write is not defined on {path}")
        self.tree.instance(path)  # unknown targets are 4.04 before payload problems
        content = self._decode(path, request)
        self.tree.write(path, content, replace=replace)
        return Message(code=Code.CHANGED)

    def block_writer(self, request: Message) -> BlockWriter | None:
        """The writer that streams this Block1 PUT, if its target opted in (else None)."""
        if request.code != Code.PUT or request.opt.block1 is None:
            return None
        try:
            path = request_path(request)
            if path.depth != 3:
                return None
            rdef, instance = self.tree.resource(path)
        except LwM2MError:
            return None  # the ordinary route answers the error
        if not rdef.writable:
            return None
        assert path.resource_id is not None
        return instance.block_writer(path.resource_id)

    def write_block(self, request: Message, writer: BlockWriter) -> Message:
        """Hand one block of a streamed Write to ``writer``; 2.31 Continue or 2.04."""
        if self._on_request is not None:
            self._on_request()
        block = request_block1(request)
        assert block is not None
        block.check()
        fmt = request.opt.content_format
        writer.write_block(block, int(fmt) if fmt is not None else None)
        code = Code.CONTINUE if block.more else Code.CHANGED
        return Message(code=code, block1=(block.num, block.more, block.szx))

    async def execute(self, path: Path, payload: bytes) -> Message:
        instance = self.tree.executable(path)
        args = parse_execute_args(payload)
        assert path.resource_id is not None
        result = instance.execute(path.resource_id, args)
        if inspect.isawaitable(result):
            await result
        return Message(code=Code.CHANGED)

    def create(self, path: Path, request: Message) -> Message:
        obj = self.tree.object(path)
        if obj.factory is None:
            raise MethodNotAllowed(f"object {obj.id} does not support Create")
        content = self._decode(path, request) if request.payload else {}
        created = self.tree.create(path, content)
        self._objects_changed()
        return Message(code=Code.CREATED, location_path=created.segments)

    def write_attributes(self, path: Path, query: list[str]) -> Message:
        if path.is_root:
            raise MethodNotAllowed("Write-Attributes is not defined on the root")
        # the target must exist: 4.04 otherwise
        if path.depth == 1:
            self.tree.object(path)
        elif path.depth == 2:
            self.tree.instance(path)
        else:
            self.tree.resource(path)
        request = NotificationAttributes.parse_query(query)
        if any(v is not None for v in (request.gt, request.lt, request.st)):
            rdef = self.tree.resource_def(path) if path.depth >= 3 else None
            if rdef is None or rdef.type not in _NUMERIC:
                raise BadRequest("gt, lt and st apply to numeric resources only")
        self.attributes.write(path, request)
        self.observations.attributes_changed(path)
        return Message(code=Code.CHANGED)

    # -- helpers ---------------------------------------------------------------------------
    def _decode(self, path: Path, request: Message) -> Content:
        fmt = request.opt.content_format
        if fmt is None:
            raise BadRequest("a payload needs a Content-Format")
        if int(fmt) == ContentFormat.LINK:
            raise UnsupportedContentFormat("link-format carries no resource values")
        try:
            return decode(int(fmt), path, request.payload, self.registry)
        except UnsupportedFormat as exc:
            raise UnsupportedContentFormat(str(exc)) from None
        except CodecError as exc:
            raise BadRequest(f"payload does not decode: {exc}") from None

    def _objects_changed(self) -> None:
        if self._on_objects_changed is not None:
            self._on_objects_changed()


class DmResource(coap_resource.ObservableResource, coap_resource.PathCapable):  # type: ignore[misc]
    """The aiocoap root resource: every request goes to :class:`DeviceManagement`."""

    def __init__(self, dm: DeviceManagement) -> None:
        super().__init__()
        self.dm = dm
        # request object -> observation waiting for its first response (aiocoap passes
        # the same message to add_observation and then to render)
        self._starting: dict[int, Any] = {}
        # request object -> how render answers a Block1 request that aiocoap does not
        # reassemble: the writer that streams it, or the 4.13 it gets
        self._unassembled: dict[int, BlockWriter | RequestEntityTooLarge] = {}

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        """False for Block1 requests that are streamed or too large (see module doc)."""
        if request.opt.block1 is None:
            return True
        writer = self.dm.block_writer(request)
        if writer is not None:
            self._unassembled[id(request)] = writer
            return False
        limit = self.dm.max_body_size
        size1 = request.opt.size1
        end = request.opt.block1.start + len(request.payload)
        if (size1 is not None and size1 > limit) or end > limit:
            self._unassembled[id(request)] = RequestEntityTooLarge(
                f"request body exceeds {limit} B", size1=limit
            )
            return False
        return True

    async def add_observation(self, request: Message, server_observation: Any) -> None:
        try:
            path = request_path(request)
        except BadRequest:
            path = None
        if path is None or request.code != Code.GET or request.opt.accept == ContentFormat.LINK:
            # aiocoap needs every observation accepted; deregistering before the first
            # response makes that response the last one (no Observe option).
            server_observation.accept(lambda: None)
            server_observation.deregister()
            return
        fmt = request.opt.accept
        try:
            if fmt is None:
                fmt = choose_format(path, None, self.dm.registry, self.dm.lwm2m_version)
        except LwM2MError:
            fmt = None
        observation = self.dm.observations.add(
            path, int(fmt) if fmt is not None else 0, server_observation
        )
        self._starting[id(request)] = observation

    async def render(self, request: Message) -> Message:
        observation = self._starting.pop(id(request), None)
        unassembled = self._unassembled.pop(id(request), None)
        try:
            if isinstance(unassembled, RequestEntityTooLarge):
                raise unassembled
            if unassembled is not None:
                return self.dm.write_block(request, unassembled)
            response, content = await self.dm.handle(request)
        except LwM2MError as exc:
            return error_response(exc)
        except Exception:
            _log.exception("DM request %s %s failed", request.code, request.opt.uri_path)
            return Message(code=Code.INTERNAL_SERVER_ERROR, payload=b"client error")
        if observation is not None and content is not None and response.code.is_successful():
            observation.fmt = int(response.opt.content_format or observation.fmt)
            observation.started(content)
        return response
