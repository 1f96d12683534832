"""Maintenance windows in the device's own time zone (IANA names via :mod:`zoneinfo`), pure.

The server enforces windows itself — it only starts (and executes) updates inside them —
rather than relying on the client (docs/operator-guide.md, "Campaigns").

A window is a list of rules, each "these weekdays, from HH:MM to HH:MM local time"::

    Mon-Fri 01:00-05:00; Sat,Sun 22:00-06:00; 12:00-12:30

Days are ``Mon`` .. ``Sun`` (ranges may wrap: ``Fri-Mon``); no days means every day. A
rule whose end is not after its start crosses midnight: it opens on the listed day and
closes on the next one. ``24:00`` is allowed as an end. Times are local *wall-clock*
times, so across DST changes a window keeps its wall-clock bounds: on the spring-forward
day the skipped hour is simply absent (a 02:00-03:00 window does not open in
Europe/Berlin that night; 01:00-05:00 lasts three real hours), on the autumn day the
repeated hour counts twice (01:00-05:00 lasts five).

``now`` is epoch seconds (UTC). A device without a zone uses the campaign default (UTC
unless set). An unknown zone raises :class:`UnknownTimeZone`; a bad spec raises
:class:`WindowSpecError` — both ``ValueError`` s naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DAY_NAMES",
    "MaintenanceWindow",
    "UnknownTimeZone",
    "WindowRule",
    "WindowSpecError",
    "resolve_zone",
    "window_from_json",
]

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_INDEX = {name.lower(): i for i, name in enumerate(DAY_NAMES)}
_MINUTES_PER_DAY = 24 * 60
_HORIZON_DAYS = 15  # a weekly rule opens within 8 days; 15 covers a DST-skipped occurrence
_RULE_RE = re.compile(
    r"^\s*(?:(?P<days>[A-Za-z][A-Za-z,\- ]*?)\s+)?"
    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$"
)


class WindowSpecError(ValueError):
    """A maintenance window spec is invalid; ``field`` names the offending part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownTimeZone(ValueError):
    """The time zone name is not a known IANA zone; ``field`` names where it came from."""

    def __init__(self, name: object, field: str = "tz") -> None:
        super().__init__(f"{field}: unknown time zone {name!r}")
        self.field = field
        self.name = name


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def resolve_zone(name: str | None, default: str = "UTC", *, field: str = "tz") -> ZoneInfo:
    """The zone ``name`` (``default`` when None); :class:`UnknownTimeZone` if unknown."""
    chosen = default if name is None else name
    if not isinstance(chosen, str) or not chosen or chosen != chosen.strip():
        raise UnknownTimeZone(chosen, field)
    try:
        return _zone(chosen)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # ValueError: malformed key
        raise UnknownTimeZone(chosen, field) from exc


def _parse_minutes(text: str, field: str, *, allow_24: bool) -> int:
    hh, mm = text.split(":")
    hours, minutes = int(hh), int(mm)
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        raise WindowSpecError(field, f"invalid time {text!r}")
    return hours * 60 + minutes


def _format_minutes(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_days(text: str | None, field: str) -> frozenset[int]:
    if text is None or not text.strip():
        return frozenset(range(7))
    days: set[int] = set()
    for item in text.replace(" ", "").split(","):
        if not item:
            raise WindowSpecError(field, f"empty day in {text!r}")
        first, _, last = item.partition("-")
        try:
            a = _DAY_INDEX[first.lower()]
            b = _DAY_INDEX[last.lower()] if last else a
        except KeyError:
            raise WindowSpecError(
                field, f"unknown day in {item!r} (use {', '.join(DAY_NAMES)})"
            ) from None
        i = a
        for _ in range(7):  # a range may wrap past Sunday: Fri-Mon
            days.add(i)
            if i == b:
                break
            i = (i + 1) % 7
    return frozenset(days)


def _format_days(days: frozenset[int]) -> str:
    """``Mon-Fri,Sun``: runs of consecutive days (no wrap) as ranges."""
    parts: list[str] = []
    ordered = sorted(days)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        first, last = DAY_NAMES[ordered[i]], DAY_NAMES[ordered[j]]
        parts.append(first if i == j else f"{first}-{last}")
        i = j + 1
    return ",".join(parts)


@dataclass(frozen=True, slots=True)
class WindowRule:
    """Open on ``days`` (0 = Monday) from ``start`` to ``end`` minutes after local midnight.

    ``end <= start`` means the rule crosses midnight (closes on the next day at ``end``);
    ``start == end`` is refused (ambiguous); ``end`` may be 1440 (24:00).
    """

    days: frozenset[int]
    start: int
    end: int

    def __post_init__(self) -> None:
        if not self.days or not self.days <= frozenset(range(7)):
            raise WindowSpecError("window.days", "must be a non-empty set of weekdays 0..6")
        if not 0 <= self.start < _MINUTES_PER_DAY:
            raise WindowSpecError("window.start", "must be within 00:00..23:59")
        if not 0 <= self.end <= _MINUTES_PER_DAY:
            raise WindowSpecError("window.end", "must be within 00:00..24:00")
        if self.start == self.end:
            raise WindowSpecError("window.end", "must differ from start (empty window)")

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start

    def is_open_at(self, weekday: int, minute: float) -> bool:
        """Open at local ``weekday`` / ``minute`` after midnight (seconds as a fraction)?"""
        if not self.crosses_midnight:
            return weekday in self.days and self.start <= minute < self.end
        return (weekday in self.days and minute >= self.start) or (
            (weekday - 1) % 7 in self.days and minute < self.end
        )

    def __str__(self) -> str:
        prefix = "" if len(self.days) == 7 else _format_days(self.days) + " "
        return f"{prefix}{_format_minutes(self.start)}-{_format_minutes(self.end)}"


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A union of :class:`WindowRule` s, evaluated in a device's local wall-clock time."""

    rules: tuple[WindowRule, ...]

    def __post_init__(self) -> None:
        if not self.rules:
            raise WindowSpecError("window", "needs at least one rule")

    @classmethod
    def parse(cls, text: str) -> MaintenanceWindow:
        """Parse ``"Mon-Fri 01:00-05:00; Sat 22:00-02:00"`` (rules separated by ``;``)."""
        if not isinstance(text, str) or not text.strip():
            raise WindowSpecError("window", "must be a non-empty string")
        rules: list[WindowRule] = []
        for i, part in enumerate(text.split(";")):
            field = f"window[{i}]"
            m = _RULE_RE.match(part)
            if m is None:
                raise WindowSpecError(field, f"expected '[days] HH:MM-HH:MM', got {part.strip()!r}")
            rules.append(
                WindowRule(
                    _parse_days(m["days"], field),
                    _parse_minutes(m["start"], field, allow_24=False),
                    _parse_minutes(m["end"], field, allow_24=True),
                )
            )
        return cls(tuple(rules))

    def __str__(self) -> str:
        return "; ".join(str(r) for r in self.rules)

    def to_json(self) -> str:
        return str(self)

    @classmethod
    def from_json(cls, data: object) -> MaintenanceWindow:
        if not isinstance(data, str):
            raise WindowSpecError("window", "must be a string like 'Mon-Fri 01:00-05:00'")
        return cls.parse(data)

    def is_open(self, now: float, tz: str | None = None, *, default_tz: str = "UTC") -> bool:
        """Is the window open at ``now`` (epoch s) in zone ``tz`` (``default_tz`` if None)?"""
        return self._open_in(now, resolve_zone(tz, default_tz))

    def next_open(
        self, now: float, tz: str | None = None, *, default_tz: str = "UTC"
    ) -> float | None:
        """The first instant ``>= now`` at which the window is open (``now`` if open now).

        None if it does not open within 15 days (it always does for a valid spec, short of
        a zone that skips the only open hour every week).
        """
        zone = resolve_zone(tz, default_tz)
        if self._open_in(now, zone):
            return now
        best: float | None = None
        for t in self._edges(now, zone):
            if t > now and (best is None or t < best) and self._open_in(t, zone):
                best = t
        return best

    def _open_in(self, now: float, zone: ZoneInfo) -> bool:
        local = datetime.fromtimestamp(now, zone)
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        weekday = local.weekday()
        return any(rule.is_open_at(weekday, minute) for rule in self.rules)

    def _edges(self, now: float, zone: ZoneInfo) -> Iterable[float]:
        """Every instant in the horizon where the window may go from closed to open.

        Local wall-clock time runs continuously except at offset changes, so the window can
        only open where the wall clock reaches a rule's start (either fold of an ambiguous
        time) or at an offset change (the end of a DST gap).
        """
        start_day = datetime.fromtimestamp(now, zone).date() - timedelta(days=1)
        starts = {rule.start for rule in self.rules}
        for d in range(_HORIZON_DAYS + 1):
            day = start_day + timedelta(days=d)
            for minute in starts:
                naive = datetime.combine(day, dtime(minute // 60, minute % 60))
                for fold in (0, 1):
                    yield naive.replace(tzinfo=zone, fold=fold).timestamp()
        yield from _offset_changes(now, now + (_HORIZON_DAYS + 1) * 86400.0, zone)


def _offset(t: float, zone: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(t, UTC).astimezone(zone).utcoffset()


def _offset_changes(lo: float, hi: float, zone: ZoneInfo) -> Iterable[float]:
    """The instants in ``[lo, hi]`` where the zone's UTC offset changes (to the second)."""
    step = 3600.0
    t = lo
    before = _offset(t, zone)
    while t < hi:
        nxt = min(t + step, hi)
        after = _offset(nxt, zone)
        if after != before:
            a, b = t, nxt  # offset(a) == before, offset(b) != before
            for _ in range(40):
                if b - a <= 0.5:
                    break
                mid = (a + b) / 2
                if _offset(mid, zone) == before:
                    a = mid
                else:
                    b = mid
            yield float(round(b))
        t, before = nxt, after


def window_from_json(data: object) -> MaintenanceWindow | None:
    """``None`` or a window string, as stored in a campaign spec."""
    return None if data is None else MaintenanceWindow.from_json(data)
