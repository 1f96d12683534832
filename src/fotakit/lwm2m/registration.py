"""The Registration Interface wire format: Register and Update (TS Core 1.1.1 §5.3, §6.2).

Register is ``POST /rd?ep=..&lt=..&lwm2m=..&b=..&sms=..[&Q]`` with a link-format payload
listing the client's objects and instances; Update is ``POST /rd/<id>?lt&b&sms[&Q]`` with
an optional payload. This module parses both (server side) and builds both (client
side) with the same rules, so the two can never disagree.

Rules and the choices made where the spec leaves room:
- ``ep`` is mandatory, 1..255 UTF-8 bytes (:data:`MAX_ENDPOINT_BYTES`, a fotakit limit
  that fits URNs such as ``urn:imei:...`` with room to spare) and no control characters.
- ``lt`` defaults to 86400 s and is a decimal integer in 0..2**32-1 (the wire format;
  the server then applies its own narrower bounds, ``ServerConfig.min_lifetime`` ..
  ``max_lifetime``, docs/operator-guide.md).
- ``lwm2m`` is 1.0, 1.1 or 1.2; anything else answers 4.12 (:class:`UnsupportedVersion`).
  Absent, it is taken as 1.0 (a 1.0 client may omit it).
- ``b`` defaults to ``U``. LwM2M 1.0 allows only U, UQ, S, SQ, US, UQS, with Q meaning
  queue mode. From 1.1 ``b`` is a set of the letters U, T, S, N; Q is refused inside it
  and queue mode is the value-less ``Q`` parameter.
- ``sms`` is an MSISDN: optional ``+`` and up to 15 digits.
- Unknown parameters are ignored (forward compatibility); a known one given twice is
  refused, since either choice could be wrong.
- The payload must be UTF-8 link format. ``</path>;rt="oma.lwm2m"`` sets the root path
  and its ``ct`` lists the content formats the client supports. Every other link must
  be an object or object instance under the root path; ``ver`` must look like 1.1.
  Links to /0 and /21 are dropped (they "MUST NOT be part of the Registration").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from fotakit.lwm2m.errors import BadRequest, PreconditionFailed
from fotakit.lwm2m.linkformat import (
    NOT_REGISTERED,
    Link,
    LinkFormatError,
    format_links,
    parse_links,
    root_link,
)
from fotakit.lwm2m.path import InvalidPath, Path

SUPPORTED_VERSIONS: Final = ("1.0", "1.1", "1.2")
DEFAULT_LIFETIME: Final = 86400
DEFAULT_BINDING: Final = "U"
MAX_ENDPOINT_BYTES: Final = 255
MAX_LIFETIME: Final = 2**32 - 1
#: Register payloads beyond this are refused (hundreds of objects fit in far less).
MAX_PAYLOAD_BYTES: Final = 64 * 1024
BINDINGS_1_0: Final = frozenset({"U", "UQ", "S", "SQ", "US", "UQS"})
TRANSPORTS: Final = "UTSN"

_KNOWN: Final = frozenset({"ep", "lt", "lwm2m", "b", "sms", "Q"})
_LIFETIME = re.compile(r"[0-9]{1,10}")
_SMS = re.compile(r"\+?[0-9]{1,15}")
_VER = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RegistrationError(BadRequest):
    """A Register or Update request that breaks the wire format (answered 4.00)."""


class UnsupportedVersion(PreconditionFailed):
    """A Register with an LwM2M version this server does not speak (answered 4.12)."""


@dataclass(frozen=True, slots=True)
class RegisterParams:
    """Everything a Register request carries.

    ``binding`` holds the transport letters only (``U``, ``US``, ``UN`` ...); queue mode
    is ``queue_mode`` for every version. ``objects`` holds the object and instance links
    relative to ``root_path`` (``/3/0``, ``/5`` with ``ver``).
    """

    endpoint: str
    lifetime: int = DEFAULT_LIFETIME
    lwm2m_version: str = "1.0"
    binding: str = DEFAULT_BINDING
    queue_mode: bool = False
    sms: str | None = None
    objects: list[Link] = field(default_factory=list)
    root_path: str = "/"
    content_formats: tuple[int, ...] = ()

    @property
    def instances(self) -> dict[int, list[int]]:
        """Object ID -> instance IDs, from :attr:`objects`."""
        return instances_of(self.objects)

    @property
    def object_versions(self) -> dict[int, str]:
        """Object ID -> object version, for objects that declared ``ver``."""
        return versions_of(self.objects)


@dataclass(frozen=True, slots=True)
class UpdateParams:
    """What an Update request changes; ``None`` means "not sent, unchanged"."""

    lifetime: int | None = None
    binding: str | None = None
    queue_mode: bool | None = None
    sms: str | None = None
    objects: list[Link] | None = None
    root_path: str | None = None
    content_formats: tuple[int, ...] | None = None


def instances_of(objects: Iterable[Link]) -> dict[int, list[int]]:
    result: dict[int, list[int]] = {}
    for link in objects:
        path = Path.parse(link.target)
        if path.object_id is None:
            continue
        ids = result.setdefault(path.object_id, [])
        if path.instance_id is not None and path.instance_id not in ids:
            ids.append(path.instance_id)
    return {k: sorted(v) for k, v in result.items()}


def versions_of(objects: Iterable[Link]) -> dict[int, str]:
    result: dict[int, str] = {}
    for link in objects:
        path = Path.parse(link.target)
        ver = link.params.get("ver")
        if path.object_id is not None and path.depth == 1 and ver:
            result[path.object_id] = ver
    return result


# -- parsing (server side) -------------------------------------------------------------


def parse_register(query: Sequence[str], payload: bytes) -> RegisterParams:
    """Parse the Uri-Query options and payload of a Register request."""
    params = _query(query)
    if "ep" not in params or params["ep"] is None:
        raise RegistrationError("missing endpoint name (ep)")
    endpoint = _endpoint(params["ep"])
    version = _version(params.get("lwm2m", "1.0"))
    binding, queue = _binding(params.get("b", DEFAULT_BINDING), version)
    if version != "1.0" and "Q" in params:
        queue = True
    objects, root_path, formats = _payload(payload)
    return RegisterParams(
        endpoint=endpoint,
        lifetime=_lifetime(params.get("lt", str(DEFAULT_LIFETIME))),
        lwm2m_version=version,
        binding=binding,
        queue_mode=queue,
        sms=_sms(params["sms"]) if "sms" in params else None,
        objects=objects,
        root_path=root_path,
        content_formats=formats or (),
    )


def parse_update(
    query: Sequence[str], payload: bytes, *, lwm2m_version: str | None = None
) -> UpdateParams:
    """Parse an Update request. ``lwm2m_version`` is the registration's version; without
    it a binding valid in any version is accepted."""
    params = _query(query)
    binding: str | None = None
    queue: bool | None = None
    if "b" in params:
        binding, queue = _binding_any(params["b"], lwm2m_version)
    if "Q" in params and lwm2m_version != "1.0":
        queue = True
    objects: list[Link] | None = None
    root_path: str | None = None
    formats: tuple[int, ...] | None = None
    if payload:
        objects, root_path, formats = _payload(payload)
    return UpdateParams(
        lifetime=_lifetime(params["lt"]) if "lt" in params else None,
        binding=binding,
        queue_mode=queue,
        sms=_sms(params["sms"]) if "sms" in params else None,
        objects=objects,
        root_path=root_path,
        content_formats=formats,
    )


def _query(query: Sequence[str]) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in query:
        if not isinstance(item, str):
            raise RegistrationError("query options must be text")
        name, sep, value = item.partition("=")
        if name not in _KNOWN:
            continue
        if name in params:
            raise RegistrationError(f"query parameter {name!r} given twice")
        if name == "Q":
            if sep:
                raise RegistrationError("queue mode parameter Q takes no value")
            params[name] = None
        elif not sep:
            raise RegistrationError(f"query parameter {name!r} needs a value")
        else:
            params[name] = value
    return params


def _endpoint(value: str) -> str:
    size = len(value.encode("utf-8", "surrogatepass"))
    if size == 0:
        raise RegistrationError("endpoint name (ep) is empty")
    if size > MAX_ENDPOINT_BYTES:
        raise RegistrationError(f"endpoint name is {size} bytes, more than {MAX_ENDPOINT_BYTES}")
    if _CONTROL.search(value):
        raise RegistrationError("endpoint name contains a control character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RegistrationError("endpoint name is not valid Unicode") from None
    return value


def _version(value: str | None) -> str:
    if value not in SUPPORTED_VERSIONS:
        shown = repr(value[:20]) if value is not None else "none"
        raise UnsupportedVersion(
            f"LwM2M version {shown} is not supported ({', '.join(SUPPORTED_VERSIONS)})"
        )
    return value


def _lifetime(value: str | None) -> int:
    if value is None or not _LIFETIME.fullmatch(value) or int(value) > MAX_LIFETIME:
        shown = repr(value[:20]) if value is not None else "none"
        raise RegistrationError(f"lifetime lt={shown} is not an integer in 0..{MAX_LIFETIME}")
    return int(value)


def _sms(value: str | None) -> str:
    if value is None or not _SMS.fullmatch(value):
        raise RegistrationError("sms is not an MSISDN (optional + and up to 15 digits)")
    return value


def _binding(value: str | None, version: str) -> tuple[str, bool]:
    """Transport letters and queue mode from ``b`` (queue only for 1.0)."""
    if value is None:
        raise RegistrationError("binding b needs a value")
    if version == "1.0":
        if value not in BINDINGS_1_0:
            raise RegistrationError(
                f"binding b={value[:20]!r} is not valid for LwM2M 1.0 "
                f"({', '.join(sorted(BINDINGS_1_0))})"
            )
        return value.replace("Q", ""), "Q" in value
    if "Q" in value:
        raise RegistrationError(
            f"binding b={value[:20]!r}: from LwM2M 1.1 queue mode is the Q parameter, not in b"
        )
    if not value or any(c not in TRANSPORTS for c in value) or len(set(value)) != len(value):
        raise RegistrationError(
            f"binding b={value[:20]!r} is not a set of the letters {', '.join(TRANSPORTS)}"
        )
    return value, False


def _binding_any(value: str | None, version: str | None) -> tuple[str, bool | None]:
    if version is not None:
        binding, queue = _binding(value, version)
        return binding, (queue if version == "1.0" else None)
    if value is not None and value in BINDINGS_1_0 and "Q" in value:
        return _binding(value, "1.0")
    binding, _ = _binding(value, "1.1")
    return binding, None


_CACHEABLE_PAYLOAD_BYTES = 2048


def _payload(payload: bytes) -> tuple[list[Link], str, tuple[int, ...] | None]:
    # A fleet registers with a handful of distinct payloads: parse each once. Links are
    # frozen and nobody mutates their params, so sharing them between registrations is
    # safe; the cache is bounded in entries and in the size of what it keeps.
    if len(payload) <= _CACHEABLE_PAYLOAD_BYTES:
        links, root_path, formats = _parse_payload_cached(payload)
        return list(links), root_path, formats
    links_list, root_path, formats = _parse_payload(payload)
    return links_list, root_path, formats


@functools.lru_cache(maxsize=512)
def _parse_payload_cached(payload: bytes) -> tuple[tuple[Link, ...], str, tuple[int, ...] | None]:
    links, root_path, formats = _parse_payload(payload)
    return tuple(links), root_path, formats


def _parse_payload(payload: bytes) -> tuple[list[Link], str, tuple[int, ...] | None]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise RegistrationError(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RegistrationError(f"payload is not UTF-8 (byte {exc.start})") from None
    try:
        links = parse_links(text)
    except LinkFormatError as exc:
        raise RegistrationError(f"payload: {exc.message}") from None
    root_path = "/"
    formats: tuple[int, ...] | None = None
    roots = [lk for lk in links if "oma.lwm2m" in (lk.params.get("rt") or "").split()]
    if len(roots) > 1:
        raise RegistrationError('payload has more than one rt="oma.lwm2m" link')
    if roots:
        root = roots[0]
        if not root.target.startswith("/"):
            raise RegistrationError(f"root path {root.target[:40]!r} does not start with /")
        root_path = root.target.rstrip("/") or "/"
        formats = _content_formats(root.params.get("ct"))
    objects: list[Link] = []
    seen: set[Path] = set()
    for link in links:
        if roots and link is roots[0]:
            continue
        try:
            path = link.path(root_path)
        except (InvalidPath, LinkFormatError) as exc:
            raise RegistrationError(f"link <{link.target[:40]}>: {exc}") from None
        if path.depth not in (1, 2):
            raise RegistrationError(
                f"link <{link.target[:40]}> is not an object or object instance"
            )
        ver = link.params.get("ver", "1.0")
        if ver is None or not _VER.fullmatch(ver):
            raise RegistrationError(f"link <{link.target[:40]}>: ver is not a version")
        if path.object_id in NOT_REGISTERED or path in seen:
            continue
        seen.add(path)
        objects.append(Link(str(path), dict(link.params)))
    return objects, root_path, formats


def _content_formats(ct: str | None) -> tuple[int, ...] | None:
    if ct is None:
        return None
    numbers = ct.split()
    if not numbers or not all(n.isascii() and n.isdigit() and int(n) <= 65535 for n in numbers):
        raise RegistrationError(f"ct={ct[:40]!r} is not a list of content-format numbers")
    return tuple(int(n) for n in numbers)


# -- building (client side) ------------------------------------------------------------


def _binding_1_0(binding: str, queue: bool) -> str:
    if not queue:
        return binding
    return binding.replace("U", "UQ", 1) if "U" in binding else binding + "Q"


def register_query(params: RegisterParams) -> list[str]:
    """Uri-Query options for a Register request (the inverse of :func:`parse_register`)."""
    query = [
        f"ep={params.endpoint}",
        f"lt={params.lifetime}",
        f"lwm2m={params.lwm2m_version}",
    ]
    if params.lwm2m_version == "1.0":
        query.append(f"b={_binding_1_0(params.binding, params.queue_mode)}")
    else:
        query.append(f"b={params.binding}")
    if params.sms is not None:
        query.append(f"sms={params.sms}")
    if params.queue_mode and params.lwm2m_version != "1.0":
        query.append("Q")
    return query


def update_query(params: UpdateParams, lwm2m_version: str = "1.1") -> list[str]:
    """Uri-Query options for an Update request (only what changes)."""
    query: list[str] = []
    if params.lifetime is not None:
        query.append(f"lt={params.lifetime}")
    if params.binding is not None:
        if lwm2m_version == "1.0":
            query.append(f"b={_binding_1_0(params.binding, bool(params.queue_mode))}")
        else:
            query.append(f"b={params.binding}")
    if params.sms is not None:
        query.append(f"sms={params.sms}")
    if params.queue_mode and lwm2m_version != "1.0":
        query.append("Q")
    return query


def objects_payload(
    objects: Iterable[Link],
    *,
    lwm2m_version: str = "1.1",
    root_path: str = "/",
    content_formats: Iterable[int] = (),
) -> bytes:
    """A Register/Update payload for root-relative object links."""
    formats = list(content_formats)
    links: list[Link] = []
    if root_path.rstrip("/") or formats:
        links.append(root_link(formats, root_path))
    prefix = root_path.rstrip("/")
    quoted = frozenset({"ver"}) if lwm2m_version == "1.0" else frozenset()
    for link in objects:
        links.append(Link(prefix + link.target, dict(link.params), quoted))
    return format_links(links).encode("utf-8")


def register_payload(params: RegisterParams) -> bytes:
    """The link-format payload of a Register request."""
    return objects_payload(
        params.objects,
        lwm2m_version=params.lwm2m_version,
        root_path=params.root_path,
        content_formats=params.content_formats,
    )


def update_payload(params: UpdateParams, lwm2m_version: str = "1.1") -> bytes:
    """The payload of an Update request: empty unless the object list changed."""
    if params.objects is None:
        return b""
    return objects_payload(
        params.objects,
        lwm2m_version=lwm2m_version,
        root_path=params.root_path or "/",
        content_formats=params.content_formats or (),
    )
