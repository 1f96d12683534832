"""The client's object tree and the Device Management operations on it, without CoAP.

TS Core 1.1.1 §6.3 (Device Management and Service Enablement interface): Read, Discover,
Write (replace / partial update), Execute, Create, Delete. Each operation checks the
object definition first (unknown object, instance or resource: 4.04; an operation the
resource does not allow: 4.05; payload that does not fit the target path: 4.00) and only
then calls the device code in :mod:`fotakit.client.instance`.

The Security object (0) is never reachable through this interface (TS §6.3: it is
accessible only to the Bootstrap server), so it answers 4.04 like an unknown object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

from fotakit.client.instance import LwM2MObject, ObjectInstance, ResourceValue
from fotakit.lwm2m.errors import BadRequest, MethodNotAllowed, NotFound
from fotakit.lwm2m.model import EMPTY_INSTANCE, Content, ObjectDef, ResourceDef, Value
from fotakit.lwm2m.path import Path

#: Objects the DM interface never exposes (Security, OSCORE).
HIDDEN_OBJECTS = frozenset({0, 21})

# TS Core 1.1.1 §5.4.5 Execute arguments: `0='value',1,2='x'` — a digit, optionally a
# quoted value with no single quote inside.
_EXECUTE_ARGS = re.compile(r"[0-9](='[^']*')?(,[0-9](='[^']*')?)*")


def parse_execute_args(payload: bytes) -> str | None:
    """Validate an Execute payload; empty means "no arguments" (None). Bad text: 4.00."""
    if not payload:
        return None
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("Execute arguments are not UTF-8") from None
    if not _EXECUTE_ARGS.fullmatch(text):
        raise BadRequest(f"malformed Execute arguments {text[:40]!r}")
    return text


class ObjectTree:
    """The objects a client exposes, addressed by :class:`Path`."""

    def __init__(self, objects: Iterable[LwM2MObject] = ()) -> None:
        self._objects: dict[int, LwM2MObject] = {}
        for obj in objects:
            self.add(obj)

    def add(self, obj: LwM2MObject) -> None:
        self._objects[obj.id] = obj

    def get(self, object_id: int) -> LwM2MObject | None:
        return self._objects.get(object_id)

    def __iter__(self) -> Iterator[LwM2MObject]:
        return iter(sorted(self._objects.values(), key=lambda o: o.id))

    @property
    def objects(self) -> Mapping[int, LwM2MObject]:
        return dict(sorted(self._objects.items()))

    # -- lookups ------------------------------------------------------------------------
    def object(self, path: Path) -> LwM2MObject:
        if path.is_root:
            raise MethodNotAllowed("operation not allowed on the root path")
        assert path.object_id is not None
        obj = self._objects.get(path.object_id)
        if obj is None or path.object_id in HIDDEN_OBJECTS:
            raise NotFound(f"no object {path.object_id}")
        return obj

    def instance(self, path: Path) -> tuple[LwM2MObject, ObjectInstance]:
        obj = self.object(path)
        assert path.instance_id is not None
        instance = obj.instance(path.instance_id)
        if instance is None:
            raise NotFound(f"no instance {path.parent() if path.depth > 2 else path}")
        return obj, instance

    def resource(self, path: Path) -> tuple[ResourceDef, ObjectInstance]:
        """Definition and instance of the existing resource at (or above) ``path``."""
        obj, instance = self.instance(path)
        assert path.resource_id is not None
        rdef = obj.definition.resource(path.resource_id)
        if rdef is None or path.resource_id not in set(instance.resource_ids()):
            raise NotFound(f"no resource {path.resource_path()}")
        return rdef, instance

    def resource_def(self, path: Path) -> ResourceDef | None:
        """The definition for a depth >= 3 path, if its object is known."""
        obj = self._objects.get(path.object_id) if path.object_id is not None else None
        if obj is None or path.resource_id is None:
            return None
        return obj.definition.resource(path.resource_id)

    # -- Read (TS §6.3.1) -----------------------------------------------------------------
    def read(self, path: Path) -> Content:
        content: Content = {}
        if path.depth == 1:
            obj = self.object(path)
            for instance_id, instance in obj.instances.items():
                self._read_instance(obj.definition, Path(obj.id, instance_id), instance, content)
            return content
        if path.depth == 2:
            obj, instance = self.instance(path)
            self._read_instance(obj.definition, path, instance, content)
            return content
        rdef, instance = self.resource(path)
        if not rdef.readable:
            raise MethodNotAllowed(f"{path.resource_path()} is not readable")
        assert path.resource_id is not None
        value = instance.read(path.resource_id)
        _put(content, path.resource_path(), rdef, value)
        if path.depth == 4:
            picked = content.get(path)
            if picked is None:
                raise NotFound(f"no resource instance {path}")
            return {path: picked}
        return content

    def _read_instance(
        self, definition: ObjectDef, path: Path, instance: ObjectInstance, content: Content
    ) -> None:
        before = len(content)
        for resource_id in instance.resource_ids():
            rdef = definition.resource(resource_id)
            if rdef is None or not rdef.readable:
                continue
            _put(content, path.child(resource_id), rdef, instance.read(resource_id))
        if len(content) == before:
            content[path] = EMPTY_INSTANCE

    # -- Write (TS §6.3.3) ----------------------------------------------------------------
    def write(self, path: Path, content: Content, *, replace: bool) -> None:
        """Write ``content`` at ``path``. Every check runs before the first value is set."""
        if path.depth < 2:
            raise MethodNotAllowed("Write is allowed on instances and resources only")
        obj, instance = self.instance(path)
        updates = self._group_for_write(obj, instance, path, content)
        if path.depth == 4:
            replace = False  # a resource instance write never drops its siblings
        for resource_id, value in updates.items():
            instance.write(resource_id, value, replace)

    def _group_for_write(
        self, obj: LwM2MObject, instance: ObjectInstance, path: Path, content: Content
    ) -> dict[int, ResourceValue]:
        present = set(instance.resource_ids())
        updates: dict[int, ResourceValue] = {}
        for item_path, value in content.items():
            if not item_path.startswith(path) and not (
                path.depth == 4 and item_path == path.resource_path()
            ):
                raise BadRequest(f"payload path {item_path} is outside {path}")
            if item_path.depth == 2 and value is EMPTY_INSTANCE:
                continue
            if item_path.depth < 3:
                raise BadRequest(f"payload path {item_path} is not a resource")
            assert item_path.resource_id is not None
            rdef = obj.definition.resource(item_path.resource_id)
            if rdef is None:
                raise NotFound(f"no resource {item_path.resource_path()}")
            if path.depth >= 3 and item_path.resource_id not in present:
                raise NotFound(f"no resource {item_path.resource_path()}")
            if not rdef.writable:
                raise MethodNotAllowed(f"{item_path.resource_path()} is not writable")
            _add_value(updates, rdef, item_path, value)
        if path.depth >= 3 and not updates:
            raise BadRequest(f"payload has no value for {path}")
        return updates

    # -- Execute (TS §6.3.5) --------------------------------------------------------------
    def executable(self, path: Path) -> ObjectInstance:
        """The instance whose resource ``path`` may be executed (checks only)."""
        if path.depth != 3:
            raise MethodNotAllowed("Execute is allowed on resources only")
        rdef, instance = self.resource(path)
        if not rdef.executable:
            raise MethodNotAllowed(f"{path} is not executable")
        return instance

    # -- Create / Delete (TS §6.3.6, §6.3.7) ------------------------------------------------
    def create(self, path: Path, content: Content) -> Path:
        """Create an instance from ``content`` (which may name the new instance ID)."""
        if path.depth != 1:
            raise MethodNotAllowed("Create is allowed on objects only")
        obj = self.object(path)
        if obj.factory is None:
            raise MethodNotAllowed(f"object {obj.id} does not support Create")
        ids = {p.instance_id for p in content if p.depth >= 2}
        if len(ids) > 1:
            raise BadRequest("Create names more than one instance")
        if any(not p.startswith(path) or p.depth < 2 for p in content):
            raise BadRequest(f"payload is not an instance of {path}")
        instance_id = ids.pop() if ids else obj.free_instance_id()
        assert instance_id is not None
        if obj.instance(instance_id) is not None:
            raise BadRequest(f"instance {path.child(instance_id)} already exists")
        if not obj.definition.multiple and obj.instances:
            raise BadRequest(f"object {obj.id} is single-instance and has its instance")
        updates: dict[int, ResourceValue] = {}
        for item_path, value in content.items():
            if item_path.depth < 3:
                continue
            assert item_path.resource_id is not None
            rdef = obj.definition.resource(item_path.resource_id)
            if rdef is None:
                raise NotFound(f"no resource {item_path.resource_path()}")
            _add_value(updates, rdef, item_path, value)
        instance = obj.factory(instance_id)
        for resource_id, resource_value in updates.items():
            instance.write(resource_id, resource_value, True)
        obj.add_instance(instance_id, instance)
        return path.child(instance_id)

    def delete(self, path: Path) -> None:
        if path.depth != 2:
            raise MethodNotAllowed("Delete is allowed on object instances only")
        obj, _ = self.instance(path)
        if not obj.deletable:
            raise MethodNotAllowed(f"instances of object {obj.id} cannot be deleted")
        assert path.instance_id is not None
        obj.remove_instance(path.instance_id)

    # -- Discover helper (TS §6.3.2) -------------------------------------------------------
    def resource_dimension(self, path: Path) -> int | None:
        """Number of resource instances of a multi-instance resource (link ``dim``)."""
        rdef, instance = self.resource(path)
        if not rdef.multiple or not rdef.readable:
            return None
        assert path.resource_id is not None
        value = instance.read(path.resource_id)
        return len(value) if isinstance(value, dict) else None


def _put(content: Content, rpath: Path, rdef: ResourceDef, value: ResourceValue) -> None:
    if isinstance(value, dict):
        for ri, item in sorted(value.items()):
            content[rpath.child(ri)] = item
    else:
        content[rpath] = value


def _add_value(
    updates: dict[int, ResourceValue], rdef: ResourceDef, item_path: Path, value: Value
) -> None:
    if value is EMPTY_INSTANCE:
        raise BadRequest(f"no value for {item_path}")
    if rdef.multiple:
        if item_path.depth != 4:
            raise BadRequest(f"{item_path} is multi-instance: values need instance IDs")
        assert item_path.resource_instance_id is not None
        bucket = updates.setdefault(rdef.id, {})
        assert isinstance(bucket, dict)
        bucket[item_path.resource_instance_id] = value
    else:
        if item_path.depth != 3:
            raise BadRequest(f"{item_path.resource_path()} is single-instance")
        updates[rdef.id] = value
