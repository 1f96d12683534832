"""What the single-value formats (text/plain, opaque, application/cbor) share.

TS Core 1.1.1 §7.4.1-§7.4.3 and 1.2 §7.4.7: these formats carry exactly one value, that of
the resource or resource instance the request targets. A multi-instance resource as a
whole cannot travel in them: that, like any target a format cannot represent, raises
UnsupportedFormat (4.06 Not Acceptable / 4.15), not a plain CodecError (4.00).
"""

from __future__ import annotations

from collections.abc import Mapping

from fotakit.lwm2m.codecs.base import CodecError, UnsupportedFormat
from fotakit.lwm2m.codecs.values import check_content, check_shape, resource_def
from fotakit.lwm2m.model import ObjectRegistry, ResourceDef, Value
from fotakit.lwm2m.path import Path


def target(root: Path, registry: ObjectRegistry, format_name: str) -> ResourceDef | None:
    """Check ``root`` can carry one value in ``format_name``; its definition if known."""
    if root.depth < 3:
        raise UnsupportedFormat(
            f"{format_name} carries one resource value; {root} is not a resource"
        )
    rdef = resource_def(registry, root)
    if rdef is not None and root.depth == 3 and rdef.multiple:
        raise UnsupportedFormat(f"{format_name} cannot carry multi-instance resource {root}")
    check_shape(root, rdef)
    return rdef


def only_value(root: Path, content: Mapping[Path, Value], format_name: str) -> Value:
    """The one value in ``content``, which must sit exactly at ``root``."""
    check_content(root, content)
    if len(content) != 1 or root not in content:
        paths = ", ".join(str(p) for p in list(content)[:3])
        raise CodecError(f"{format_name} carries exactly one value at {root}; got [{paths}]")
    return content[root]
