"""Write-Attributes storage with inheritance (TS Core 1.1.1 §5.1.2, §6.3.4).

Attributes are attached to an object, an object instance, a resource or a resource
instance. The attributes that govern an observation of a path are those of the path and of
every level above it, the most specific level winning, on top of the Server object's
Default Minimum/Maximum Period (/1/x/2, /1/x/3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fotakit.lwm2m.attributes import NAMES, InvalidAttributes, NotificationAttributes
from fotakit.lwm2m.path import Path

DefaultsProvider = Callable[[], NotificationAttributes]


class AttributeStore:
    """The attributes written per path; combines them into the effective set."""

    def __init__(self, defaults: DefaultsProvider | None = None) -> None:
        self._attrs: dict[Path, NotificationAttributes] = {}
        self._defaults = defaults

    def write(self, path: Path, request: NotificationAttributes) -> NotificationAttributes:
        """Apply a Write-Attributes request at ``path``; invalid combinations raise 4.00."""
        current = self._attrs.get(path, NotificationAttributes())
        updated = current.merged(request)
        if updated.is_empty:
            self._attrs.pop(path, None)
        else:
            self._attrs[path] = updated
        return updated

    def at(self, path: Path) -> NotificationAttributes | None:
        return self._attrs.get(path)

    @property
    def all(self) -> Mapping[Path, NotificationAttributes]:
        return dict(self._attrs)

    def drop_under(self, prefix: Path) -> None:
        """Forget attributes of a deleted instance and everything below it."""
        for path in [p for p in self._attrs if p.startswith(prefix)]:
            del self._attrs[path]

    def effective(self, path: Path) -> NotificationAttributes:
        """Attributes for ``path``: defaults, then each level down to ``path`` overriding.

        An inherited value that would make the set invalid (an object-level ``pmax`` below
        a resource-level ``pmin``) is dropped: the more specific level wins.
        """
        levels: list[NotificationAttributes] = []
        if self._defaults is not None:
            levels.append(self._defaults())
        levels.extend(
            attrs
            for depth in range(1, path.depth + 1)
            if (attrs := self._attrs.get(Path(*path.ids[:depth]))) is not None
        )
        chosen: dict[str, int | float] = {}
        dropped: set[str] = set()
        for attrs in reversed(levels):  # most specific first
            for name in NAMES:
                value = getattr(attrs, name)
                if value is None or name in chosen or name in dropped:
                    continue
                trial = {**chosen, name: value}
                try:
                    _build(trial)
                except InvalidAttributes:
                    dropped.add(name)
                    continue
                chosen = trial
        return _build(chosen)


def _build(values: dict[str, int | float]) -> NotificationAttributes:
    return NotificationAttributes(**values)  # type: ignore[arg-type]
