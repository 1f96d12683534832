"""Loader for OMA Object Definition Files (DDF, the XML of the LwM2M registry).

The schema is OMA's ``LWM2M.xsd`` / ``LWM2M-v1_1.xsd``: a ``<LWM2M>`` root holding one or
more ``<Object>`` elements, each with ``Name``, ``ObjectID``, ``ObjectURN``,
``LWM2MVersion``, ``ObjectVersion``, ``MultipleInstances``, ``Mandatory`` and
``<Resources>`` of ``<Item ID="..">`` elements (``Name``, ``Operations``,
``MultipleInstances``, ``Mandatory``, ``Type``, ``RangeEnumeration``, ``Units``,
``Description``). Template rules from TS Core 1.1.1 Appendix D: executable resources
carry no type; every other resource has one.

Parsing goes through defusedxml with DTDs, entities and external references refused:
a DDF never needs them, and they are how XML bombs and XXE attacks work. Every problem
raises :class:`DdfError` naming the object, item and element.
"""

from __future__ import annotations

import os
import re
from typing import Final
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as DefusedET
from defusedxml import DefusedXmlException

from fotakit.lwm2m.model import ObjectDef, Operations, ResourceDef, ResourceType
from fotakit.lwm2m.path import MAX_ID

#: Larger documents are refused before parsing (the biggest registry DDFs are ~100 KB).
MAX_DDF_BYTES: Final = 4 * 1024 * 1024

_ID = re.compile(r"0|[1-9][0-9]{0,4}")
_VERSION = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}")
_MULTIPLE: Final = {"single": False, "multiple": True}
_MANDATORY: Final = {"optional": False, "mandatory": True}


class DdfError(ValueError):
    """A DDF document that is not well-formed, unsafe, or breaks the schema."""


def load_ddf(source: str | bytes | os.PathLike[str]) -> list[ObjectDef]:
    """Parse a DDF document into object definitions, in document order.

    ``source`` is the XML itself (``bytes``, or a ``str`` whose first non-blank
    character is ``<``) or the path of a file (any other ``str``, or a path object).
    """
    data = _read(source)
    if len(data) > MAX_DDF_BYTES:
        raise DdfError(f"document is {len(data)} bytes, more than {MAX_DDF_BYTES}")
    try:
        root = DefusedET.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise DdfError(f"unsafe XML refused: {exc}") from exc
    except ParseError as exc:
        raise DdfError(f"not well-formed XML: {exc}") from exc
    if _local(root.tag) != "LWM2M":
        raise DdfError(f"root element is <{_local(root.tag)}>, expected <LWM2M>")
    objects = [_object(el) for el in root if _local(el.tag) == "Object"]
    if not objects:
        raise DdfError("<LWM2M> holds no <Object>")
    seen: set[int] = set()
    for obj in objects:
        if obj.id in seen:
            raise DdfError(f"Object {obj.id}: defined twice in one document")
        seen.add(obj.id)
    return objects


def _read(source: str | bytes | os.PathLike[str]) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and source.lstrip("\ufeff \t\r\n").startswith("<"):
        return source.encode("utf-8")
    try:
        with open(source, "rb") as f:
            # Read one byte more than allowed so an oversized file is detected, not cut.
            return f.read(MAX_DDF_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        raise DdfError(f"cannot read {os.fspath(source)!r}: {reason}") from exc


def _local(tag: object) -> str:
    """The tag without a ``{namespace}`` prefix (some DDFs declare a default namespace)."""
    text = tag if isinstance(tag, str) else ""
    return text.rsplit("}", 1)[-1]


def _child(parent: Element, name: str) -> Element | None:
    for el in parent:
        if _local(el.tag) == name:
            return el
    return None


def _text(parent: Element, name: str, where: str, *, required: bool) -> str:
    el = _child(parent, name)
    if el is None:
        if required:
            raise DdfError(f"{where}: missing <{name}>")
        return ""
    return "".join(el.itertext()).strip()


def _parse_id(text: str, where: str, what: str) -> int:
    if not _ID.fullmatch(text) or int(text) > MAX_ID:
        raise DdfError(f"{where}: {what} {text!r} is not an ID in 0..{MAX_ID}")
    return int(text)


def _choice(text: str, table: dict[str, bool], where: str, name: str) -> bool:
    try:
        return table[text.lower()]
    except KeyError:
        allowed = " or ".join(k.capitalize() for k in table)
        raise DdfError(f"{where}: <{name}> is {text!r}, expected {allowed}") from None


def _version(text: str, where: str, name: str) -> str:
    if not text:
        return "1.0"  # both elements are optional in the 1.0 schema
    if not _VERSION.fullmatch(text):
        raise DdfError(f"{where}: <{name}> {text!r} is not a version like 1.1")
    return text


def _object(el: Element) -> ObjectDef:
    raw_id = _text(el, "ObjectID", "Object", required=True)
    object_id = _parse_id(raw_id, "Object", "<ObjectID>")
    where = f"Object {object_id}"
    name = _text(el, "Name", where, required=True)
    if not name:
        raise DdfError(f"{where}: <Name> is empty")
    resources_el = _child(el, "Resources")
    if resources_el is None:
        raise DdfError(f"{where}: missing <Resources>")
    resources: dict[int, ResourceDef] = {}
    for item in resources_el:
        if _local(item.tag) != "Item":
            raise DdfError(f"{where}: unexpected <{_local(item.tag)}> in <Resources>")
        res = _item(item, where)
        if res.id in resources:
            raise DdfError(f"{where} Item {res.id}: resource ID defined twice")
        resources[res.id] = res
    return ObjectDef(
        id=object_id,
        name=name,
        version=_version(_text(el, "ObjectVersion", where, required=False), where, "ObjectVersion"),
        multiple=_choice(
            _text(el, "MultipleInstances", where, required=True),
            _MULTIPLE,
            where,
            "MultipleInstances",
        ),
        mandatory=_choice(
            _text(el, "Mandatory", where, required=True), _MANDATORY, where, "Mandatory"
        ),
        urn=_text(el, "ObjectURN", where, required=False),
        lwm2m_version=_version(
            _text(el, "LWM2MVersion", where, required=False), where, "LWM2MVersion"
        ),
        description=_text(el, "Description1", where, required=False),
        resources=resources,
    )


def _item(item: Element, obj_where: str) -> ResourceDef:
    raw_id = item.get("ID")
    if raw_id is None:
        raise DdfError(f"{obj_where}: <Item> without an ID attribute")
    resource_id = _parse_id(raw_id.strip(), obj_where, "Item ID")
    where = f"{obj_where} Item {resource_id}"
    name = _text(item, "Name", where, required=True)
    if not name:
        raise DdfError(f"{where}: <Name> is empty")
    raw_ops = _text(item, "Operations", where, required=True)
    try:
        operations = Operations.from_ddf(raw_ops)
    except ValueError:
        raise DdfError(f"{where}: <Operations> {raw_ops!r} is not R, W, RW, E or empty") from None
    raw_type = _text(item, "Type", where, required=True)
    try:
        rtype = ResourceType.from_ddf(raw_type)
    except ValueError:
        raise DdfError(f"{where}: <Type> {raw_type!r} is not an LwM2M data type") from None
    multiple = _choice(
        _text(item, "MultipleInstances", where, required=True),
        _MULTIPLE,
        where,
        "MultipleInstances",
    )
    if operations is Operations.E and rtype is not ResourceType.NONE:
        raise DdfError(f"{where}: executable resource has <Type> {raw_type!r}, must be empty")
    if operations is not Operations.E and rtype is ResourceType.NONE:
        raise DdfError(f"{where}: <Type> is empty but the resource is not executable")
    return ResourceDef(
        id=resource_id,
        name=name,
        operations=operations,
        type=rtype,
        multiple=multiple,
        mandatory=_choice(
            _text(item, "Mandatory", where, required=True), _MANDATORY, where, "Mandatory"
        ),
        range=_text(item, "RangeEnumeration", where, required=False),
        units=_text(item, "Units", where, required=False),
        description=_text(item, "Description", where, required=False),
    )
