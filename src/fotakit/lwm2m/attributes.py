"""Notification attributes for Write-Attributes and Observe (TS Core 1.1.1 §5.1.2).

``pmin``/``pmax`` (seconds between notifications), ``gt``/``lt`` (notify on crossing a
threshold), ``st`` (notify on a change of at least this step), ``epmin``/``epmax``
(sampling periods, 1.1+). Write-Attributes carries them as Uri-Query options such as
``pmin=10``; a name without a value (``pmin``) removes the attribute.

Rules checked here (§5.1.2): periods and ``st`` are non-negative; ``pmin <= pmax`` and
``epmin <= epmax`` when both are set; ``lt < gt`` and ``lt + 2*st < gt`` when those are
set. :func:`should_notify` and :func:`next_deadline` are the pure decision rules the
client runtime applies; they have no clock of their own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Final

from fotakit.lwm2m.errors import BadRequest

NAMES: Final = ("pmin", "pmax", "gt", "lt", "st", "epmin", "epmax")
_INT_NAMES: Final = frozenset({"pmin", "pmax", "epmin", "epmax"})
_INT = re.compile(r"[0-9]{1,10}")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?")


class InvalidAttributes(BadRequest):
    """A Write-Attributes query or attribute set that breaks §5.1.2 (answered 4.00)."""


@dataclass(frozen=True, slots=True)
class NotificationAttributes:
    """Attributes attached to an object, instance or resource.

    ``unset`` names attributes a Write-Attributes request removes (``?pmin``); it is
    only meaningful for a request being :meth:`merged` into the stored attributes.
    """

    pmin: int | None = None
    pmax: int | None = None
    gt: float | None = None
    lt: float | None = None
    st: float | None = None
    epmin: int | None = None
    epmax: int | None = None
    unset: frozenset[str] = field(default=frozenset())

    def __post_init__(self) -> None:
        for name in self.unset:
            if name not in NAMES:
                raise InvalidAttributes(f"unknown attribute {name!r}")
            if getattr(self, name) is not None:
                raise InvalidAttributes(f"attribute {name!r} is both set and removed")
        for name in NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidAttributes(f"{name} must be a number, not {value!r}")
            if not math.isfinite(value):
                raise InvalidAttributes(f"{name} must be finite")
            if name in _INT_NAMES and not isinstance(value, int):
                raise InvalidAttributes(f"{name} must be a whole number of seconds")
            if (name in _INT_NAMES or name == "st") and value < 0:
                raise InvalidAttributes(f"{name} must not be negative")
        self._check_relations()

    def _check_relations(self) -> None:
        if self.pmin is not None and self.pmax is not None and self.pmin > self.pmax:
            raise InvalidAttributes(f"pmin {self.pmin} is greater than pmax {self.pmax}")
        if self.epmin is not None and self.epmax is not None and self.epmin > self.epmax:
            raise InvalidAttributes(f"epmin {self.epmin} is greater than epmax {self.epmax}")
        if self.lt is not None and self.gt is not None:
            if not self.lt < self.gt:
                raise InvalidAttributes(f"lt {self.lt} must be less than gt {self.gt}")
            if self.st is not None and not self.lt + 2 * self.st < self.gt:
                raise InvalidAttributes(
                    f"lt + 2*st ({self.lt} + 2*{self.st}) must be less than gt {self.gt}"
                )

    # -- wire format -------------------------------------------------------------
    @classmethod
    def parse_query(cls, query: Iterable[str]) -> NotificationAttributes:
        """Parse Uri-Query options like ``["pmin=10", "gt=3.5", "pmax"]``.

        Unknown or repeated attributes and malformed numbers raise
        :class:`InvalidAttributes`.
        """
        values: dict[str, int | float] = {}
        unset: set[str] = set()
        for item in query:
            name, sep, text = item.partition("=")
            if name not in NAMES:
                raise InvalidAttributes(f"unknown attribute {name[:40]!r}")
            if name in values or name in unset:
                raise InvalidAttributes(f"attribute {name!r} given twice")
            if not sep:
                unset.add(name)
                continue
            values[name] = _number(name, text)
        try:
            return cls(**values, unset=frozenset(unset))  # type: ignore[arg-type]
        except TypeError as exc:  # pragma: no cover - names are checked above
            raise InvalidAttributes(str(exc)) from exc

    def to_params(self) -> dict[str, str | None]:
        """Attributes as link-format parameters (value-less for removals), in spec order."""
        params: dict[str, str | None] = {}
        for name in NAMES:
            value = getattr(self, name)
            if value is not None:
                params[name] = _format(value)
            elif name in self.unset:
                params[name] = None
        return params

    def to_query(self) -> list[str]:
        """Uri-Query options for Write-Attributes / Observe (``pmin=10``, ``pmax``)."""
        return [
            name if value is None else f"{name}={value}" for name, value in self.to_params().items()
        ]

    # -- combination ---------------------------------------------------------------
    def merged(self, other: NotificationAttributes) -> NotificationAttributes:
        """These attributes updated by a Write-Attributes request ``other``.

        Values set in ``other`` replace ours, names in ``other.unset`` are removed, the
        rest stays. The result is validated as a whole (so ``pmin`` above an existing
        ``pmax`` is refused) and has an empty ``unset``.
        """
        changes: dict[str, int | float | None] = {}
        for name in NAMES:
            if name in other.unset:
                changes[name] = None
            elif getattr(other, name) is not None:
                changes[name] = getattr(other, name)
        return replace(self, **changes, unset=frozenset())  # type: ignore[arg-type]

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self) if f.name in NAMES)


def _number(name: str, text: str) -> int | float:
    if name in _INT_NAMES:
        if not _INT.fullmatch(text):
            raise InvalidAttributes(f"{name}={text[:40]!r} is not a non-negative integer")
        return int(text)
    if not _FLOAT.fullmatch(text):
        raise InvalidAttributes(f"{name}={text[:40]!r} is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise InvalidAttributes(f"{name}={text[:40]!r} is out of range")
    return value


def _format(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def should_notify(
    old_value: object,
    new_value: object,
    seconds_since_last: float,
    attrs: NotificationAttributes,
) -> bool:
    """Whether a notification is due now (TS 1.1.1 §5.1.2).

    ``old_value`` is the value last notified (``None`` before the first notification),
    ``seconds_since_last`` the time since that notification. Nothing is sent before
    ``pmin``; once ``pmax`` has passed one is sent even without a change. In between, a
    numeric value with ``gt``/``lt``/``st`` notifies on crossing ``gt`` or ``lt`` or on a
    change of at least ``st``; any other value notifies when it changed.
    """
    if attrs.pmin is not None and seconds_since_last < attrs.pmin:
        return False
    if attrs.pmax is not None and attrs.pmax > 0 and seconds_since_last >= attrs.pmax:
        return True
    if old_value is None:
        return new_value is not None
    if old_value == new_value:
        return False
    numeric = _numeric(old_value) and _numeric(new_value)
    if not numeric or (attrs.gt is None and attrs.lt is None and attrs.st is None):
        return True
    assert isinstance(old_value, int | float) and isinstance(new_value, int | float)
    if attrs.gt is not None and (old_value > attrs.gt) != (new_value > attrs.gt):
        return True
    if attrs.lt is not None and (old_value < attrs.lt) != (new_value < attrs.lt):
        return True
    return attrs.st is not None and abs(new_value - old_value) >= attrs.st


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def next_deadline(last_notified_at: float, attrs: NotificationAttributes) -> float | None:
    """When ``pmax`` forces the next notification (same clock as the argument), or None."""
    if attrs.pmax is None or attrs.pmax <= 0:
        return None
    return last_notified_at + attrs.pmax


def earliest_notification(last_notified_at: float, attrs: NotificationAttributes) -> float:
    """The first moment ``pmin`` allows another notification."""
    return last_notified_at + (attrs.pmin or 0)
