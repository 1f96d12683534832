"""CoRE Link Format (RFC 6690) as LwM2M uses it: Register/Update payloads and Discover.

Parsing wraps aiocoap's ``aiocoap.util.linkformat`` (its vendored RFC 5988 parser),
which handles quoted and unquoted values and value-less attributes. Formatting is our
own because aiocoap quotes every value, while LwM2M 1.1+ writes numbers bare
(``</5>;ver=1.1``, ``ct=110``, ``pmin=10``) and 1.0 quotes ``ver`` (TS 1.0.2 §5.3.1).

LwM2M specifics (TS Core 1.1.1):
- §6.2.1 Register payload: ``</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</5>;ver=1.2,</5/0>``;
  the root link is needed only for an alternate root path or extra content formats;
  objects 0 (Security) and 21 (OSCORE) MUST NOT be listed.
- §5.4.1 Discover answer: links for the object, its instances and resources, with the
  attributes attached to each (``pmin``, ``gt`` ...) and ``dim`` for multi-instance
  resources.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from aiocoap.util import linkformat as _aiocoap_linkformat

from fotakit.lwm2m.attributes import NotificationAttributes
from fotakit.lwm2m.errors import BadRequest, NotFound
from fotakit.lwm2m.path import Path

#: Objects that never appear in a Register or Update payload (TS 1.1.1 §6.2.1).
NOT_REGISTERED: Final = frozenset({0, 21})

_NAME = re.compile(r"[A-Za-z0-9!#$&+\-.^_`|~*]+")
_BARE_VALUE = re.compile(r"[A-Za-z0-9.\-_+]+")
# RFC 6690 §3 defines these as quoted strings; quote them even when they look like tokens.
_ALWAYS_QUOTED: Final = frozenset({"rt", "if", "anchor", "title", "rel", "rev"})


class LinkFormatError(BadRequest):
    """Text that is not CoRE link format (answered 4.00 Bad Request)."""


@dataclass(frozen=True)
class Link:
    """One link: ``<target>;name=value;flag``. A value of ``None`` is a value-less attribute.

    ``quoted`` names attributes to write as quoted strings even when the value is a
    bare token (``ver`` for LwM2M 1.0); it does not take part in equality.
    """

    target: str
    params: dict[str, str | None] = field(default_factory=dict, hash=False)
    quoted: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def path(self, root_path: str = "/") -> Path:
        """The LwM2M path of the target, after removing ``root_path`` (e.g. ``/lwm2m``)."""
        target = self.target
        root = root_path.rstrip("/")
        if root:
            if target != root and not target.startswith(root + "/"):
                raise LinkFormatError(f"link {target!r} is outside root path {root_path!r}")
            target = target[len(root) :] or "/"
        return Path.parse(target)

    def __str__(self) -> str:
        return format_links([self])


def parse_links(text: str) -> list[Link]:
    """Parse link-format text. Empty (or blank) text is an empty list.

    Attribute names are case-insensitive (RFC 8288 §3) and returned in lower case; when
    an attribute repeats, the first value is kept.
    """
    if not text.strip():
        return []
    try:
        parsed = _aiocoap_linkformat.parse(text)
    except Exception as exc:  # aiocoap raises its vendored ParseException
        raise LinkFormatError(f"not CoRE link format: {exc.args[-1] if exc.args else exc}") from exc
    links: list[Link] = []
    for raw in parsed.links:
        target = str(raw.href).strip()
        if not target:
            raise LinkFormatError("link with an empty target <>")
        params: dict[str, str | None] = {}
        for name, value in raw.attr_pairs:
            key = str(name).lower()
            if key not in params:
                params[key] = None if value is None else _unescape(str(value))
        links.append(Link(target, params))
    return links


def _unescape(value: str) -> str:
    # aiocoap already turned \" into "; the only other escape we write is \\.
    return value.replace("\\\\", "\\")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_links(links: Iterable[Link]) -> str:
    """Serialize links, comma-separated, with bare tokens where LwM2M writes them."""
    out: list[str] = []
    for link in links:
        if (
            not link.target
            or any(c in link.target for c in "<>")
            or link.target != (link.target.strip())
        ):
            raise ValueError(f"link target {link.target!r} cannot be written")
        parts = [f"<{link.target}>"]
        for name, value in link.params.items():
            if not _NAME.fullmatch(name):
                raise ValueError(f"link attribute name {name!r} is not a token")
            if value is None:
                parts.append(name)
            elif name in _ALWAYS_QUOTED or name in link.quoted or not _BARE_VALUE.fullmatch(value):
                parts.append(f"{name}={_quote(value)}")
            else:
                parts.append(f"{name}={value}")
        out.append(";".join(parts))
    return ",".join(out)


def _join(root_path: str, path: Path) -> str:
    root = root_path.rstrip("/")
    return f"{root}{path}" if not path.is_root else (root or "/")


def root_link(content_formats: Iterable[int] = (), root_path: str = "/") -> Link:
    """``</>;rt="oma.lwm2m"`` with ``ct`` listing the client's extra content formats."""
    params: dict[str, str | None] = {"rt": "oma.lwm2m"}
    formats = [str(int(f)) for f in content_formats]
    if formats:
        params["ct"] = " ".join(formats)  # one value is bare, several are quoted
    return Link(root_path.rstrip("/") or "/", params)


def links_for_objects(
    instances: Mapping[int, Iterable[int]],
    *,
    versions: Mapping[int, str] | None = None,
    lwm2m_version: str = "1.1",
    content_formats: Iterable[int] = (),
    root_path: str = "/",
) -> list[Link]:
    """The object links of a Register (or Update) payload.

    ``instances`` maps each supported object ID to its instance IDs (empty when the
    object is supported but has no instance). ``versions`` gives object versions
    other than 1.0; ``ver`` is quoted for LwM2M 1.0 and bare from 1.1. Objects 0 and 21
    are left out. The root link is added when ``root_path`` is not ``/`` or
    ``content_formats`` is not empty.
    """
    versions = versions or {}
    formats = list(content_formats)
    links: list[Link] = []
    if root_path.rstrip("/") or formats:
        links.append(root_link(formats, root_path))
    quoted = frozenset({"ver"}) if lwm2m_version == "1.0" else frozenset()
    for object_id in sorted(instances):
        if object_id in NOT_REGISTERED:
            continue
        ids = sorted(set(instances[object_id]))
        version = versions.get(object_id, "1.0")
        if version != "1.0":
            links.append(Link(_join(root_path, Path(object_id)), {"ver": version}, quoted))
        elif not ids:
            links.append(Link(_join(root_path, Path(object_id))))
        links.extend(Link(_join(root_path, Path(object_id, i))) for i in ids)
    return links


#: What exists under one object: instance ID -> resource ID -> number of resource
#: instances (``dim``) for a multi-instance resource, ``None`` for a single one.
ObjectTree = Mapping[int, Mapping[int, int | None]]


def discover_links(
    target: Path,
    tree: ObjectTree,
    attributes: Mapping[Path, NotificationAttributes] | None = None,
) -> list[Link]:
    """The answer to Discover on an object, object instance or resource (TS 1.1.1 §5.4.1).

    ``tree`` describes the object ``target`` lies in; ``attributes`` are the
    Write-Attributes set per path. Raises :class:`NotFound` for a missing instance or
    resource and :class:`BadRequest` for the root or a resource instance.
    """
    if target.depth not in (1, 2, 3) or target.object_id is None:
        raise BadRequest(f"Discover is not defined on {target}")
    attributes = attributes or {}

    def link(path: Path, dim: int | None = None) -> Link:
        params: dict[str, str | None] = {}
        if dim is not None:
            params["dim"] = str(dim)
        attrs = attributes.get(path)
        if attrs is not None:
            params.update(attrs.to_params())
        return Link(str(path), params)

    object_id = target.object_id
    links: list[Link] = []
    if target.depth == 1:
        links.append(link(target))
        selected = sorted(tree)
    else:
        assert target.instance_id is not None
        if target.instance_id not in tree:
            raise NotFound(f"no instance {target.parent() if target.depth == 3 else target}")
        selected = [target.instance_id]
    for inst in selected:
        resources = tree[inst]
        inst_path = Path(object_id, inst)
        if target.depth == 3:
            assert target.resource_id is not None
            if target.resource_id not in resources:
                raise NotFound(f"no resource {target}")
            return [link(target, resources[target.resource_id])]
        links.append(link(inst_path))
        links.extend(link(inst_path.child(r), resources[r]) for r in sorted(resources))
    return links
