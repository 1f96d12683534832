"""Object 1 "LwM2M Server": the registration settings the server may change (TS E.2).

/1/0/1 Lifetime and /1/0/7 Binding are writable by the server; a change is pushed to
the server with an Update (TS Core 1.1.1 §6.2.2: "the client MUST send an Update ...
when ... Lifetime or Binding ... changes"). Executing /1/0/8 Registration Update Trigger
makes the client send an Update right away. /1/0/2 and /1/0/3 are the default pmin/pmax
for observations without their own.
"""

from __future__ import annotations

from collections.abc import Callable

from fotakit.client.config import ClientConfig
from fotakit.client.instance import ExecuteResult, LwM2MObject, ObjectInstance, ResourceValue
from fotakit.lwm2m.errors import BadRequest, MethodNotAllowed, NotFound
from fotakit.lwm2m.model import ObjectDef, Value

SHORT_SERVER_ID = 0
LIFETIME = 1
DEFAULT_MIN_PERIOD = 2
DEFAULT_MAX_PERIOD = 3
NOTIFICATION_STORING = 6
BINDING = 7
REGISTRATION_UPDATE_TRIGGER = 8

_BINDING_LETTERS = frozenset("UTSNQ")

#: Asks the client for a Registration Update (after a Lifetime/Binding write, or /1/0/8).
UpdateRequester = Callable[[], None]


class ServerInstance(ObjectInstance):
    """The server account the client registers with; values start from the config."""

    def __init__(self, config: ClientConfig, request_update: UpdateRequester | None = None) -> None:
        super().__init__()
        self.request_update = request_update
        self.values: dict[int, Value] = {
            SHORT_SERVER_ID: config.short_server_id,
            LIFETIME: config.lifetime,
            # 0: no default pmin / pmax (TS E.2 "0 if absent"; a pmax of 0 is ignored)
            DEFAULT_MIN_PERIOD: 0,
            DEFAULT_MAX_PERIOD: 0,
            NOTIFICATION_STORING: True,
            BINDING: config.binding,
        }

    @property
    def lifetime(self) -> int:
        value = self.values[LIFETIME]
        assert isinstance(value, int)
        return value

    @property
    def binding(self) -> str:
        return str(self.values[BINDING])

    @property
    def default_pmin(self) -> int | None:
        value = self.values.get(DEFAULT_MIN_PERIOD)
        return value if isinstance(value, int) and value > 0 else None

    @property
    def default_pmax(self) -> int | None:
        value = self.values.get(DEFAULT_MAX_PERIOD)
        return value if isinstance(value, int) and value > 0 else None

    def resource_ids(self) -> list[int]:
        return sorted({*self.values, REGISTRATION_UPDATE_TRIGGER})

    def read(self, resource_id: int) -> ResourceValue:
        if resource_id not in self.values:
            raise NotFound(f"resource {resource_id} not present")
        return self.values[resource_id]

    def write(self, resource_id: int, value: ResourceValue, replace: bool) -> None:
        if isinstance(value, dict):
            raise BadRequest("Server object resources are single-instance")
        if resource_id == SHORT_SERVER_ID:
            raise MethodNotAllowed("Short Server ID is read-only")
        if resource_id in (LIFETIME, DEFAULT_MIN_PERIOD, DEFAULT_MAX_PERIOD):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise BadRequest(f"resource {resource_id} needs a non-negative integer")
        if resource_id == BINDING:
            if not isinstance(value, str) or not value or not set(value) <= _BINDING_LETTERS:
                raise BadRequest(f"binding {value!r} is not made of U, T, S, N, Q")
        old = self.values.get(resource_id)
        self.values[resource_id] = value
        if old != value:
            self.notify_changed(resource_id)
            if resource_id in (LIFETIME, BINDING) and self.request_update is not None:
                self.request_update()

    def execute(self, resource_id: int, args: str | None) -> ExecuteResult:
        if resource_id != REGISTRATION_UPDATE_TRIGGER:
            raise MethodNotAllowed(f"resource {resource_id} is not executable here")
        if self.request_update is not None:
            self.request_update()
        return None


def server_object(definition: ObjectDef, instance: ServerInstance) -> LwM2MObject:
    """Object 1 with the single server account as instance 0."""
    return LwM2MObject(definition, {0: instance})
