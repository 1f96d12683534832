"""The LwM2M client runtime: one UDP endpoint that registers and serves the server.

TS Core 1.1.1 §6.2 (Registration) and §6.3/§6.4 (Device Management, Information
Reporting), §6.5 / §8.3 (queue mode). The client binds one aiocoap context (via
:func:`fotakit.coap.create_endpoint`) and uses it both to send Register/Update and to serve
DM requests, so the server reaches us at the address and port our Register came from.

Queue mode (TS §6.5). With ``queue_mode`` the Register announces ``Q`` (``b=UQ`` in 1.0)
and the server queues its requests until it hears from us. In this runtime "sleeping"
does not close the socket: the client keeps answering whatever arrives. What the runtime
does model is the awake window: after each message it sends or receives it is *awake*
for ``awake_window`` seconds (MAX_TRANSMIT_WAIT by default), then reports
``EventKind.SLEEPING`` and :attr:`LwM2MClient.awake` turns False until the next message
(the next Update at the latest). A simulator may use that to drop traffic on an impaired
link; a real device would power its radio down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import aiocoap

from fotakit.client.attributes import AttributeStore
from fotakit.client.config import ClientConfig
from fotakit.client.dispatch import DeviceManagement, DmResource
from fotakit.client.events import EventHub, EventKind, EventListener, RegistrationEvent
from fotakit.client.instance import LwM2MObject
from fotakit.client.objects.device import DeviceInfo, DeviceInstance, device_object
from fotakit.client.objects.security import security_object
from fotakit.client.objects.server import ServerInstance, server_object
from fotakit.client.observe import ObservationManager
from fotakit.client.registration import Registrar, Settings
from fotakit.client.tree import ObjectTree
from fotakit.coap import create_endpoint
from fotakit.lwm2m.attributes import NotificationAttributes
from fotakit.lwm2m.linkformat import Link, links_for_objects
from fotakit.lwm2m.model import ObjectDef, ObjectRegistry
from fotakit.lwm2m.path import Path

_log = logging.getLogger(__name__)

SECURITY_ID = 0
SERVER_ID = 1
DEVICE_ID = 3


def _version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


#: Objects whose versions are numbered after the TS they came with (Security 1.1 and
#: Server 1.1 belong to LwM2M 1.1, 1.2 to 1.2), so the TS version names the object version.
_VERSIONED_WITH_THE_TS = frozenset({0, 1})


def advertised_version(definition: ObjectDef, lwm2m_version: str) -> str:
    """The object version a client speaking ``lwm2m_version`` announces (TS §6.2.1 ``ver``).

    An object definition says which LwM2M version its object version needs (the DDF's
    ``LWM2MVersion``: Server 1.2 needs LwM2M 1.2). A client speaking an older LwM2M must
    not claim it: it announces the version of that object belonging to its own LwM2M
    version (Security and Server) or 1.0 (the others, whose 1.1+ versions all need LwM2M
    1.1), and serves the resources that version knows.
    """
    if _version_key(definition.lwm2m_version) <= _version_key(lwm2m_version):
        return definition.version
    if definition.id in _VERSIONED_WITH_THE_TS:
        return lwm2m_version
    return "1.0"


class LwM2MClient:
    """One LwM2M client: objects, a UDP endpoint, a registration with one server."""

    def __init__(
        self,
        config: ClientConfig,
        objects: Iterable[LwM2MObject] = (),
        registry: ObjectRegistry | None = None,
    ) -> None:
        if registry is None:
            from fotakit.lwm2m.objects import builtin_registry

            registry = builtin_registry()
        objects = list(objects)
        self.config = config
        # Our own registry: the caller's definitions plus those of the objects we serve.
        self.registry = ObjectRegistry([*registry, *(o.definition for o in objects)])
        self._events = EventHub()
        self.tree = ObjectTree(objects)
        self._add_core_objects()
        self.attributes = AttributeStore(self._default_attributes)
        self.observations = ObservationManager(
            self.attributes,
            lambda path, fmt: self.dm.render_current(path, fmt),
            confirmable=config.confirmable_notifications,
            on_sent=self._touch,
        )
        self.dm = DeviceManagement(
            self.tree,
            self.registry,
            self.attributes,
            self.observations,
            config.lwm2m_version,
            on_objects_changed=self._objects_changed,
            on_request=self._touch,
            max_body_size=config.max_body_size,
        )
        for obj in self.tree.objects.values():
            obj._set_listener(self._value_changed)
        self._context: aiocoap.Context | None = None
        self._port: int | None = None
        self._registrar: Registrar | None = None
        self._task: asyncio.Task[None] | None = None
        self._sleep_timer: asyncio.TimerHandle | None = None
        self.awake = False

    # -- objects ----------------------------------------------------------------------------
    def _add_core_objects(self) -> None:
        def needed(object_id: int) -> bool:
            return self.tree.get(object_id) is None and self.registry.get(object_id) is not None

        if needed(SECURITY_ID):
            definition = self.registry.get(SECURITY_ID)
            assert definition is not None
            self.tree.add(security_object(definition, self.config))
        if needed(SERVER_ID):
            definition = self.registry.get(SERVER_ID)
            assert definition is not None
            self.tree.add(server_object(definition, ServerInstance(self.config)))
        if needed(DEVICE_ID):
            definition = self.registry.get(DEVICE_ID)
            assert definition is not None
            info = DeviceInfo(supported_bindings=self.config.binding)
            self.tree.add(device_object(definition, DeviceInstance(info)))
        server = self.server_instance
        if server is not None and server.request_update is None:
            server.request_update = lambda: self.request_update()

    @property
    def objects(self) -> dict[int, LwM2MObject]:
        return dict(self.tree.objects)

    @property
    def server_instance(self) -> ServerInstance | None:
        obj = self.tree.get(SERVER_ID)
        instance = obj.instance(0) if obj is not None else None
        return instance if isinstance(instance, ServerInstance) else None

    def _settings(self) -> Settings:
        server = self.server_instance
        if server is None:
            return Settings(self.config.lifetime, self.config.binding)
        return Settings(server.lifetime, server.binding)

    def _default_attributes(self) -> NotificationAttributes:
        server = self.server_instance
        if server is None:
            return NotificationAttributes()
        pmin, pmax = server.default_pmin, server.default_pmax
        if pmin is not None and pmax is not None and pmin > pmax:
            pmax = None
        return NotificationAttributes(pmin=pmin, pmax=pmax)

    def registration_links(self) -> list[Link]:
        """The object links of the Register/Update payload (/0 and /21 left out)."""
        instances = {o.id: list(o.instances) for o in self.tree.objects.values()}
        versions = {
            o.id: version
            for o in self.tree.objects.values()
            if (version := advertised_version(o.definition, self.config.lwm2m_version)) != "1.0"
        }
        return links_for_objects(
            instances, versions=versions, lwm2m_version=self.config.lwm2m_version
        )

    def _value_changed(self, path: Path, must_deliver: bool = False) -> None:
        self.observations.changed(path, must_deliver)

    def _objects_changed(self) -> None:
        for obj in self.tree.objects.values():
            obj._set_listener(self._value_changed)
        self.request_update(objects_changed=True)

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("client not started")
        return self._port

    @property
    def registration_id(self) -> str | None:
        return self._registrar.registration_id if self._registrar else None

    @property
    def registered(self) -> bool:
        return self._registrar is not None and self._registrar.registered

    @property
    def events(self) -> asyncio.Queue[RegistrationEvent]:
        """Registration events, oldest first (bounded: the oldest go when it is full)."""
        return self._events.queue

    async def wait_event(self, kind: EventKind, timeout: float) -> RegistrationEvent:  # noqa: ASYNC109
        """The next event of ``kind`` from :attr:`events`, skipping (consuming) others."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self._events.queue.get()
                if event.kind is kind:
                    return event

    def add_listener(self, listener: EventListener) -> None:
        self._events.add_listener(listener)

    def remove_listener(self, listener: EventListener) -> None:
        self._events.remove_listener(listener)

    async def start(self) -> None:
        """Bind the endpoint and start registering (await :meth:`wait_registered`)."""
        if self._task is not None:
            raise RuntimeError("client already started")
        self._context, self._port = await create_endpoint(
            DmResource(self.dm), self.config.local_host, self.config.local_port
        )
        self._registrar = Registrar(
            self._context,
            self.config,
            self._events,
            self.registration_links,
            self._settings,
            self.config.content_formats,
            on_sent=self._touch,
        )
        self._task = asyncio.create_task(
            self._registrar.run(), name=f"lwm2m-registration-{self.config.endpoint}"
        )
        self._task.add_done_callback(self._registration_ended)

    def _registration_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            _log.error(
                "registration loop of %s died", self.config.endpoint, exc_info=task.exception()
            )

    async def wait_registered(self, timeout: float) -> str:  # noqa: ASYNC109
        """The registration ID, once registered; TimeoutError after ``timeout`` seconds."""
        if self._registrar is None:
            raise RuntimeError("client not started")
        return await self._registrar.wait_registered(timeout)

    async def update(self, objects_changed: bool = False) -> bool:
        """Send a Registration Update now; True if the server answered 2.04."""
        if self._registrar is None:
            raise RuntimeError("client not started")
        return await self._registrar.update(objects_changed=objects_changed)

    def request_update(self, *, objects_changed: bool = False) -> None:
        """Have the registration loop send an Update soon (non-blocking)."""
        if self._registrar is not None:
            self._registrar.request_update(objects_changed=objects_changed)

    async def stop(self, deregister: bool = True) -> None:
        """De-register (unless told not to), end observations and close the endpoint."""
        if self._registrar is not None:
            self._registrar.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if deregister and self._registrar is not None:
            await self._registrar.deregister()
        self.observations.close()
        if self._sleep_timer is not None:
            self._sleep_timer.cancel()
            self._sleep_timer = None
        if self._context is not None:
            await self._context.shutdown()
            self._context = None

    async def __aenter__(self) -> LwM2MClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- queue mode -------------------------------------------------------------------------------
    def _touch(self) -> None:
        """A message went out or came in: a queue-mode client is awake for a while."""
        if not self.config.queue_mode:
            self.awake = True
            return
        self.awake = True
        if self._sleep_timer is not None:
            self._sleep_timer.cancel()
        loop = asyncio.get_running_loop()
        self._sleep_timer = loop.call_later(self.config.awake_seconds, self._fall_asleep)

    def _fall_asleep(self) -> None:
        self._sleep_timer = None
        self.awake = False
        self._events.emit(EventKind.SLEEPING, self.registration_id)
