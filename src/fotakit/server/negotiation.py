"""Which content format the server asks for (Accept) and writes in, per client.

TS Core 1.0.2 §6.4 says a 1.0 client MUST support TLV; TS Core 1.1.1 §7.4 says a 1.1+
client MUST support text/plain, opaque and link-format, SHOULD support SenML CBOR or SenML
JSON, and SHOULD NOT use TLV. A client lists its optional formats in the ``ct`` attribute
of the root link of its Register payload. The rule, first match wins:

1. an explicit ``format=`` from the caller;
2. LwM2M 1.0: a single value as text/plain (opaque for an Opaque resource: a firmware
   push to /5/0/0 is sent as application/octet-stream by every major stack), everything
   else as TLV. TLV is the only format a 1.0 client MUST support, but stacks of that era
   (lwm2m-node-lib, whose CoAP layer drops requests with an Accept of 11542 it does not
   know) answer single values only in text; a client that refuses text/plain with 4.06 or
   4.15 is asked again in TLV (:func:`fallback_format`);
3. LwM2M 1.1+: an Opaque single resource: opaque;
4. SenML CBOR if advertised, else SenML JSON if advertised, else LwM2M CBOR (1.2) if
   advertised;
5. a single resource or resource instance: text/plain (mandatory for 1.1+);
6. otherwise TLV (every server and client stack still decodes it).

A single resource is a depth-3 path whose definition is not multi-instance, or a depth-4
path. Unknown resources (not in the registry) are treated as single at depth 3.
"""

from __future__ import annotations

from fotakit.lwm2m.codecs import ContentFormat
from fotakit.lwm2m.model import ObjectRegistry, ResourceType
from fotakit.lwm2m.path import Path
from fotakit.server.registrations import Registration


def is_single_value(path: Path, registry: ObjectRegistry) -> bool:
    """True if ``path`` addresses exactly one value."""
    if path.depth == 4:
        return True
    if path.depth != 3:
        return False
    definition = registry.resource(path)
    return definition is None or not definition.multiple


def _is_opaque(path: Path, registry: ObjectRegistry) -> bool:
    definition = registry.resource(path)
    return definition is not None and definition.type is ResourceType.OPAQUE


def choose_format(
    registration: Registration,
    path: Path,
    registry: ObjectRegistry,
    *,
    writing: bool = False,
    explicit: ContentFormat | None = None,
) -> ContentFormat:
    """The content format for a Read's Accept (or a Write's payload) on ``path``."""
    if explicit is not None:
        return explicit
    single = is_single_value(path, registry)
    opaque = single and _is_opaque(path, registry)
    if registration.version < (1, 1):
        if single:
            return ContentFormat.OPAQUE if opaque else ContentFormat.TEXT
        return ContentFormat.TLV
    if opaque:
        return ContentFormat.OPAQUE
    advertised = registration.content_formats
    for candidate in (ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON):
        if int(candidate) in advertised:
            return candidate
    if registration.version >= (1, 2) and int(ContentFormat.LWM2M_CBOR) in advertised:
        return ContentFormat.LWM2M_CBOR
    if single:
        return ContentFormat.TEXT
    return ContentFormat.TLV


def fallback_format(
    registration: Registration, chosen: ContentFormat, code: str
) -> ContentFormat | None:
    """A second format to try after the client refused ``chosen`` with ``code``, if any.

    Only for negotiated (not explicit) formats on 1.0 clients: text/plain refused with 4.06
    Not Acceptable or 4.15 Unsupported Content-Format falls back to TLV, the 1.0 mandatory
    format.
    """
    if registration.version < (1, 1) and chosen is ContentFormat.TEXT and code in ("4.06", "4.15"):
        return ContentFormat.TLV
    return None
