"""The LwM2M object model: object and resource definitions, values, and a registry.

TS Core 1.1.1 Appendix C (data types) and the OMA DDF schema (LWM2M.xsd): each object has
an ID, a name, an instance multiplicity and mandatory flag, and resources that carry an ID,
name, operations (R, W, RW, E or none), type, multiplicity, mandatory flag, range and units.

Values travel through the codecs as a flat :data:`Content` mapping from resource or
resource-instance :class:`Path` to a Python value (see :data:`Value`), the shape SenML
uses. A multi-instance resource is a set of depth-4 paths; a single resource is one depth-3
path. Object instances with no resources in the payload are represented by an entry whose
value is :data:`EMPTY_INSTANCE` at the depth-2 path.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from fotakit.lwm2m.path import Path


class ResourceType(enum.Enum):
    """Resource data types (TS Core Appendix C)."""

    STRING = "String"
    INTEGER = "Integer"
    UNSIGNED_INTEGER = "Unsigned Integer"
    FLOAT = "Float"
    BOOLEAN = "Boolean"
    OPAQUE = "Opaque"
    TIME = "Time"
    OBJLNK = "Objlnk"
    CORELNK = "Corelnk"
    NONE = "none"  # executable resources carry no value

    @classmethod
    def from_ddf(cls, text: str) -> ResourceType:
        key = text.strip().lower().replace(" ", "")
        for member in cls:
            if member.value.lower().replace(" ", "") == key:
                return member
        if key == "":
            return cls.NONE
        raise ValueError(f"unknown resource type {text!r}")


class Operations(enum.Enum):
    """Allowed operations on a resource (DDF ``<Operations>``)."""

    NONE = ""
    R = "R"
    W = "W"
    RW = "RW"
    E = "E"

    @property
    def readable(self) -> bool:
        return "R" in self.value

    @property
    def writable(self) -> bool:
        return "W" in self.value

    @property
    def executable(self) -> bool:
        return self is Operations.E

    @classmethod
    def from_ddf(cls, text: str) -> Operations:
        text = text.strip().upper()
        return cls(text) if text else cls.NONE


@dataclass(frozen=True, slots=True)
class ObjLink:
    """An Objlnk value: ``object_id:instance_id`` (TS Core Appendix C)."""

    object_id: int
    instance_id: int

    def __post_init__(self) -> None:
        for part in (self.object_id, self.instance_id):
            if not 0 <= part <= 65535:
                raise ValueError(f"Objlnk component {part} out of 0..65535")

    def __str__(self) -> str:
        return f"{self.object_id}:{self.instance_id}"

    @classmethod
    def parse(cls, text: str) -> ObjLink:
        obj, sep, inst = text.partition(":")
        if not sep or not obj.isdigit() or not inst.isdigit():
            raise ValueError(f"not an Objlnk: {text!r}")
        return cls(int(obj), int(inst))


class _EmptyInstance:
    """Marker value: an object instance with no resources listed (e.g. Create with none)."""

    _instance: _EmptyInstance | None = None

    def __new__(cls) -> _EmptyInstance:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "EMPTY_INSTANCE"


EMPTY_INSTANCE: Final = _EmptyInstance()

#: A resource value. TIME is a timezone-aware :class:`datetime`; UNSIGNED_INTEGER and
#: INTEGER are ``int``; CORELNK is ``str`` (link-format text); OPAQUE is ``bytes``.
Value = str | int | float | bool | bytes | datetime | ObjLink | _EmptyInstance

#: Decoded or to-be-encoded content: resource / resource-instance paths to values.
Content = dict[Path, Value]


@dataclass(frozen=True, slots=True)
class ResourceDef:
    """A resource definition (one ``<Item>`` of a DDF file)."""

    id: int
    name: str
    operations: Operations
    type: ResourceType
    multiple: bool = False
    mandatory: bool = False
    range: str = ""
    units: str = ""
    description: str = ""

    @property
    def readable(self) -> bool:
        return self.operations.readable

    @property
    def writable(self) -> bool:
        return self.operations.writable

    @property
    def executable(self) -> bool:
        return self.operations.executable


@dataclass(frozen=True, slots=True)
class ObjectDef:
    """An object definition (one ``<Object>`` of a DDF file)."""

    id: int
    name: str
    version: str = "1.0"
    multiple: bool = False
    mandatory: bool = False
    urn: str = ""
    lwm2m_version: str = "1.0"
    description: str = ""
    resources: Mapping[int, ResourceDef] = field(default_factory=dict)

    def resource(self, resource_id: int) -> ResourceDef | None:
        return self.resources.get(resource_id)


class ObjectRegistry:
    """Object definitions by ID. Later registrations of the same ID replace earlier ones."""

    def __init__(self, objects: Iterable[ObjectDef] = ()) -> None:
        self._objects: dict[int, ObjectDef] = {}
        for obj in objects:
            self.add(obj)

    def add(self, obj: ObjectDef) -> None:
        self._objects[obj.id] = obj

    def get(self, object_id: int) -> ObjectDef | None:
        return self._objects.get(object_id)

    def resource(self, path: Path) -> ResourceDef | None:
        """The definition of the resource at or above ``path`` (depth >= 3), if known."""
        if path.depth < 3 or path.object_id is None or path.resource_id is None:
            return None
        obj = self._objects.get(path.object_id)
        return obj.resources.get(path.resource_id) if obj else None

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._objects

    def __iter__(self) -> Iterator[ObjectDef]:
        return iter(sorted(self._objects.values(), key=lambda o: o.id))

    def __len__(self) -> int:
        return len(self._objects)
