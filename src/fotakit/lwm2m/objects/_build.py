"""Compact constructors for the built-in object definitions (keeps each table readable)."""

from __future__ import annotations

from types import MappingProxyType

from fotakit.lwm2m.model import ObjectDef, Operations, ResourceDef, ResourceType

S = ResourceType.STRING
I = ResourceType.INTEGER  # noqa: E741 - mirrors the DDF type column
U = ResourceType.UNSIGNED_INTEGER
F = ResourceType.FLOAT
B = ResourceType.BOOLEAN
O = ResourceType.OPAQUE  # noqa: E741
T = ResourceType.TIME
L = ResourceType.OBJLNK
N = ResourceType.NONE


def res(
    resource_id: int,
    name: str,
    operations: str,
    rtype: ResourceType,
    *,
    multiple: bool = False,
    mandatory: bool = False,
    range: str = "",  # the DDF element is RangeEnumeration
    units: str = "",
    description: str = "",
) -> ResourceDef:
    return ResourceDef(
        id=resource_id,
        name=name,
        operations=Operations.from_ddf(operations),
        type=rtype,
        multiple=multiple,
        mandatory=mandatory,
        range=range,
        units=units,
        description=description,
    )


def obj(
    object_id: int,
    name: str,
    *,
    version: str,
    lwm2m_version: str,
    multiple: bool,
    mandatory: bool,
    description: str,
    resources: list[ResourceDef],
    namespace: str = "oma",
) -> ObjectDef:
    """``namespace`` is the URN label of the object's ID range: ``oma`` for OMA objects,
    ``x`` for vendor objects (OMNA LwM2M registry, "ObjectID Classes")."""
    table = {r.id: r for r in resources}
    if len(table) != len(resources):
        raise ValueError(f"duplicate resource ID in object {object_id}")
    urn = f"urn:oma:lwm2m:{namespace}:{object_id}" + ("" if version == "1.0" else f":{version}")
    return ObjectDef(
        id=object_id,
        name=name,
        version=version,
        multiple=multiple,
        mandatory=mandatory,
        urn=urn,
        lwm2m_version=lwm2m_version,
        description=description,
        resources=MappingProxyType(table),
    )
