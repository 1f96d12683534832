"""Which devices a campaign updates: the target selection spec and its matching, pure.

A :class:`TargetSpec` names devices by up to four criteria, all AND-ed: a device class
(vendor/class ids as in the package manifest, or a class name), the exact firmware version
the device runs now (/3/0/3 — compared exactly, never as a substring or prefix: 1.1.1 is not
1.1.10), tags (the device must carry every one), and
an explicit list of endpoints. A :class:`DeviceView` is what the server knows about one
device; :meth:`TargetSpec.matches` decides membership.

:class:`SelectionMode` says when membership is decided: ``snapshot`` fixes the members when
the campaign starts; ``continuous`` also admits devices that register later (optionally up
to a cap) — like hawkBit's dynamic rollouts and AWS IoT continuous jobs; a continuous
campaign without a cap never finishes by itself.

Bad specs raise :class:`TargetSpecError` (a ``ValueError``) naming the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "DeviceClass",
    "DeviceView",
    "SelectionMode",
    "SpecError",
    "TargetSpec",
    "TargetSpecError",
]

_MAX_TEXT = 255


class SpecError(ValueError):
    """A campaign or target spec field is invalid; ``field`` names it (dotted path)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TargetSpecError(SpecError):
    """A field of a :class:`TargetSpec` is invalid."""


class SelectionMode(StrEnum):
    """When campaign membership is decided."""

    SNAPSHOT = "snapshot"
    """Members are the matching devices known when the campaign starts; no one joins later."""
    CONTINUOUS = "continuous"
    """Devices that match later (new registrations, changed tags) join, up to the cap."""


def _text(value: object, name: str, error: type[SpecError] = TargetSpecError) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise error(name, f"must be a non-empty string of at most {_MAX_TEXT} characters")
    if value != value.strip():
        raise error(name, "must not start or end with whitespace")
    return value


def _opt_text(value: object, name: str) -> str | None:
    return None if value is None else _text(value, name)


@dataclass(frozen=True, slots=True)
class DeviceClass:
    """A device class: the vendor and class ids of the package manifest, or a class name.

    Ids and name are AND-ed when more than one is given; at least one is required.
    """

    vendor_id: str | None = None
    class_id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        _opt_text(self.vendor_id, "target.device_class.vendor_id")
        _opt_text(self.class_id, "target.device_class.class_id")
        _opt_text(self.name, "target.device_class.name")
        if self.vendor_id is None and self.class_id is None and self.name is None:
            raise TargetSpecError(
                "target.device_class", "give at least one of vendor_id, class_id, name"
            )

    def matches(self, view: DeviceView) -> bool:
        return (
            (self.vendor_id is None or self.vendor_id == view.vendor_id)
            and (self.class_id is None or self.class_id == view.class_id)
            and (self.name is None or self.name == view.class_name)
        )

    def to_json(self) -> dict[str, Any]:
        return {"vendor_id": self.vendor_id, "class_id": self.class_id, "name": self.name}

    @classmethod
    def from_json(cls, data: object) -> DeviceClass:
        if not isinstance(data, Mapping):
            raise TargetSpecError("target.device_class", "must be an object")
        _no_unknown(data, {"vendor_id", "class_id", "name"}, "target.device_class")
        return cls(data.get("vendor_id"), data.get("class_id"), data.get("name"))


@dataclass(frozen=True, slots=True)
class DeviceView:
    """What the server knows about one device, as far as targeting and windows need it.

    ``firmware_version`` is /3/0/3 (None when unknown: such a device never matches a
    ``current_version`` criterion); ``tz`` is an IANA time zone name or None (the campaign's
    default zone applies).
    """

    endpoint: str
    vendor_id: str | None = None
    class_id: str | None = None
    class_name: str | None = None
    firmware_version: str | None = None
    tags: frozenset[str] = frozenset()
    tz: str | None = None


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """Devices selected by class, exact current version, tags and/or endpoints (AND-ed).

    At least one criterion is required: a campaign over "everything" must say so by class.
    ``tags``: the device must carry all of them. ``endpoints``: an explicit list (no
    duplicates).
    """

    device_class: DeviceClass | None = None
    current_version: str | None = None
    tags: frozenset[str] = field(default_factory=frozenset)
    endpoints: tuple[str, ...] | None = None
    _endpoint_index: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.device_class is not None and not isinstance(self.device_class, DeviceClass):
            raise TargetSpecError("target.device_class", "must be a DeviceClass")
        _opt_text(self.current_version, "target.current_version")
        if not isinstance(self.tags, frozenset):
            raise TargetSpecError("target.tags", "must be a frozenset of strings")
        for tag in self.tags:
            _text(tag, "target.tags")
        if self.endpoints is not None:
            if not isinstance(self.endpoints, tuple):
                raise TargetSpecError("target.endpoints", "must be a tuple of strings")
            if not self.endpoints:
                raise TargetSpecError("target.endpoints", "must not be empty when given")
            seen: set[str] = set()
            for i, ep in enumerate(self.endpoints):
                _text(ep, f"target.endpoints[{i}]")
                if ep in seen:
                    raise TargetSpecError(f"target.endpoints[{i}]", f"duplicate endpoint {ep!r}")
                seen.add(ep)
        if (
            self.device_class is None
            and self.current_version is None
            and not self.tags
            and self.endpoints is None
        ):
            raise TargetSpecError(
                "target", "give at least one of device_class, current_version, tags, endpoints"
            )
        object.__setattr__(self, "_endpoint_index", frozenset(self.endpoints or ()))

    def matches(self, view: DeviceView) -> bool:
        """True when ``view`` satisfies every criterion given."""
        if self.endpoints is not None and view.endpoint not in self._endpoint_index:
            return False
        if self.device_class is not None and not self.device_class.matches(view):
            return False
        if self.current_version is not None and view.firmware_version != self.current_version:
            return False
        return self.tags <= view.tags

    def select(self, views: Iterable[DeviceView]) -> list[DeviceView]:
        """The matching views, first occurrence of each endpoint kept."""
        out: list[DeviceView] = []
        seen: set[str] = set()
        for view in views:
            if view.endpoint not in seen and self.matches(view):
                seen.add(view.endpoint)
                out.append(view)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "device_class": None if self.device_class is None else self.device_class.to_json(),
            "current_version": self.current_version,
            "tags": sorted(self.tags),
            "endpoints": None if self.endpoints is None else list(self.endpoints),
        }

    @classmethod
    def from_json(cls, data: object) -> TargetSpec:
        if not isinstance(data, Mapping):
            raise TargetSpecError("target", "must be an object")
        _no_unknown(data, {"device_class", "current_version", "tags", "endpoints"}, "target")
        dc = data.get("device_class")
        tags = data.get("tags") or []
        if not isinstance(tags, list):
            raise TargetSpecError("target.tags", "must be a list of strings")
        endpoints = data.get("endpoints")
        if endpoints is not None and not isinstance(endpoints, list):
            raise TargetSpecError("target.endpoints", "must be a list of strings")
        return cls(
            device_class=None if dc is None else DeviceClass.from_json(dc),
            current_version=data.get("current_version"),
            tags=frozenset(tags),
            endpoints=None if endpoints is None else tuple(endpoints),
        )


def _no_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise TargetSpecError(f"{where}.{unknown[0]}", "unknown field")
