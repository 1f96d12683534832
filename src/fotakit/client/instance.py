"""The object model device code implements: objects holding instances holding resources.

TS Core 1.1.1 §6.1 (objects, object instances, resources, resource instances). Device code
subclasses :class:`ObjectInstance` (or uses :class:`SimpleInstance`) and puts instances in
an :class:`LwM2MObject`. The runtime checks the object definition (existence, allowed
operations) before it calls an instance, so ``read``/``write``/``execute`` only see
requests that the definition allows; they raise a :class:`fotakit.lwm2m.errors.LwM2MError`
subclass to refuse one (e.g. ``MethodNotAllowed`` in the wrong state), which the runtime
answers with that error's CoAP code.

``notify_changed(resource_id)`` is how device code tells the runtime a value changed: it
feeds Observe (TS Core §6.4 "Information Reporting"). Observe may coalesce changes that
come faster than ``pmin`` into one notification of the latest value; a change every
observer must see (a State transition of Object 5) is reported with
``must_deliver=True``: the runtime then snapshots the value at once and sends each such
snapshot, in order, ``pmin`` apart.

``block_writer(resource_id)`` lets an instance receive a Block1 Write of a large resource
(a firmware image) block by block instead of reassembled in RAM: see
:mod:`fotakit.client.block1`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol, TypeAlias

from fotakit.client.block1 import BlockWriter
from fotakit.lwm2m.errors import BadRequest, MethodNotAllowed, NotFound
from fotakit.lwm2m.model import ObjectDef, Value
from fotakit.lwm2m.path import Path

#: The value of one resource: a single value, or resource-instance ID -> value for a
#: multi-instance resource.
ResourceValue: TypeAlias = Value | dict[int, Value]

#: What an Execute handler may return: nothing, or an awaitable the runtime awaits before
#: answering 2.04 (to answer only once the action has been accepted).
ExecuteResult: TypeAlias = Awaitable[None] | None

ExecuteHandler: TypeAlias = Callable[[str | None], ExecuteResult]


class ChangeListener(Protocol):
    """Called by an instance when one of its resources (or the whole instance) changed.

    ``must_deliver`` asks for the value as it is now to reach every observer (no pmin
    coalescing); it is passed only when True, so a plain ``Callable[[Path], None]``
    still works for ordinary changes.
    """

    def __call__(self, path: Path, must_deliver: bool = ..., /) -> None: ...


class ObjectInstance:
    """One object instance. Override the operations the object needs.

    The defaults: no resources, ``read`` answers 4.04, ``write`` and ``execute`` 4.05.
    """

    def __init__(self) -> None:
        self._path: Path | None = None
        self._listener: ChangeListener | None = None

    # -- binding to the runtime -------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """``/object/instance`` once added to an :class:`LwM2MObject`, else None."""
        return self._path

    def _attach(self, path: Path, listener: ChangeListener | None) -> None:
        self._path = path
        self._listener = listener

    def notify_changed(self, resource_id: int | None = None, *, must_deliver: bool = False) -> None:
        """Tell observers that ``resource_id`` (or, with None, the instance) changed.

        With ``must_deliver`` the value read *now* is queued for every observation of it
        (or of the instance or object above it) and sent even if later changes follow
        within ``pmin``: call it right after the value changed, once per transition.
        """
        if self._path is None or self._listener is None:
            return
        target = self._path if resource_id is None else self._path.child(resource_id)
        if must_deliver:
            self._listener(target, True)
        else:
            self._listener(target)

    # -- operations device code overrides ----------------------------------------------
    def resource_ids(self) -> Iterable[int]:
        """IDs of the resources this instance currently has (Read of the instance, Discover)."""
        return ()

    def read(self, resource_id: int) -> ResourceValue:
        raise NotFound(f"resource {resource_id} not present")

    def write(self, resource_id: int, value: ResourceValue, replace: bool) -> None:
        """Write a value; ``replace`` False merges resource instances (partial update)."""
        raise MethodNotAllowed(f"resource {resource_id} is not writable")

    def execute(self, resource_id: int, args: str | None) -> ExecuteResult:
        raise MethodNotAllowed(f"resource {resource_id} is not executable")

    def block_writer(self, resource_id: int) -> BlockWriter | None:
        """Opt in to a streamed Block1 Write of ``resource_id`` (None: reassemble in RAM).

        Asked for every block of a Block1 PUT on the resource; the writer returned gets
        the blocks (:mod:`fotakit.client.block1`). The definition's checks (the
        resource exists and is writable) have passed before this is called.
        """
        return None


class SimpleInstance(ObjectInstance):
    """An instance that keeps its values in memory; writes replace them, Execute calls a
    handler. Reading an executable resource is refused by the runtime before it gets here.
    """

    def __init__(
        self,
        values: Mapping[int, ResourceValue] | None = None,
        execute_handlers: Mapping[int, ExecuteHandler] | None = None,
    ) -> None:
        super().__init__()
        self.values: dict[int, ResourceValue] = {
            rid: dict(v) if isinstance(v, dict) else v for rid, v in (values or {}).items()
        }
        self.execute_handlers: dict[int, ExecuteHandler] = dict(execute_handlers or {})

    def resource_ids(self) -> Iterable[int]:
        return sorted(set(self.values) | set(self.execute_handlers))

    def read(self, resource_id: int) -> ResourceValue:
        try:
            value = self.values[resource_id]
        except KeyError:
            raise NotFound(f"resource {resource_id} not present") from None
        return dict(value) if isinstance(value, dict) else value

    def write(self, resource_id: int, value: ResourceValue, replace: bool) -> None:
        old = self.values.get(resource_id)
        if isinstance(value, dict) and isinstance(old, dict) and not replace:
            merged = dict(old)
            merged.update(value)
            value = merged
        elif isinstance(value, dict):
            value = dict(value)
        changed = old != value
        self.values[resource_id] = value
        if changed:
            self.notify_changed(resource_id)

    def set(self, resource_id: int, value: ResourceValue) -> None:
        """Device-side update of a value (not a server Write): stores and notifies."""
        self.write(resource_id, value, replace=True)

    def execute(self, resource_id: int, args: str | None) -> ExecuteResult:
        handler = self.execute_handlers.get(resource_id)
        if handler is None:
            raise MethodNotAllowed(f"resource {resource_id} has no execute handler")
        return handler(args)


#: Builds a new instance for a Create operation, given the instance ID.
InstanceFactory: TypeAlias = Callable[[int], ObjectInstance]


class LwM2MObject:
    """An object (definition plus its instances) as the client exposes it.

    ``factory`` enables Create (TS Core §6.3.6); without it Create answers 4.05.
    ``deletable`` enables Delete of instances.
    """

    def __init__(
        self,
        definition: ObjectDef,
        instances: Mapping[int, ObjectInstance] | None = None,
        *,
        factory: InstanceFactory | None = None,
        deletable: bool | None = None,
    ) -> None:
        self.definition = definition
        self.factory = factory
        self.deletable = factory is not None if deletable is None else deletable
        self._instances: dict[int, ObjectInstance] = {}
        self._listener: ChangeListener | None = None
        for instance_id, instance in (instances or {}).items():
            self.add_instance(instance_id, instance)

    @property
    def id(self) -> int:
        return self.definition.id

    @property
    def instances(self) -> Mapping[int, ObjectInstance]:
        return dict(sorted(self._instances.items()))

    def instance(self, instance_id: int) -> ObjectInstance | None:
        return self._instances.get(instance_id)

    def add_instance(self, instance_id: int, instance: ObjectInstance) -> None:
        if instance_id in self._instances:
            raise BadRequest(f"instance /{self.id}/{instance_id} already exists")
        if not self.definition.multiple and self._instances:
            raise BadRequest(f"object {self.id} is single-instance")
        instance._attach(Path(self.id, instance_id), self._listener)
        self._instances[instance_id] = instance

    def remove_instance(self, instance_id: int) -> ObjectInstance:
        try:
            instance = self._instances.pop(instance_id)
        except KeyError:
            raise NotFound(f"no instance /{self.id}/{instance_id}") from None
        instance._attach(Path(self.id, instance_id), None)
        return instance

    def free_instance_id(self) -> int:
        """The lowest unused instance ID (for a Create that does not name one)."""
        candidate = 0
        while candidate in self._instances:
            candidate += 1
        return candidate

    def _set_listener(self, listener: ChangeListener | None) -> None:
        self._listener = listener
        for instance_id, instance in self._instances.items():
            instance._attach(Path(self.id, instance_id), listener)
