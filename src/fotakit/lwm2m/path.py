"""LwM2M paths: ``/`` ``/5`` ``/5/0`` ``/5/0/3`` ``/5/0/8/1``.

TS Core 1.1.1 §6.1 and §7.4: an object, object instance, resource or resource instance is
addressed by up to four 16-bit IDs. ID 65535 (MAX_ID) is reserved and never a valid
address component, so the valid range of every component is 0..65534.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

MAX_ID: Final = 65534
_SEGMENT = re.compile(r"0|[1-9][0-9]{0,4}")


class InvalidPath(ValueError):
    """A path string or component that is not a valid LwM2M path (answer 4.00 / 4.04)."""


@dataclass(frozen=True, slots=True)
class Path:
    """An LwM2M path of depth 0 (root) to 4 (resource instance).

    Components after the first ``None`` must be ``None``: ``Path(3, None, 1)`` is invalid.
    """

    object_id: int | None = None
    instance_id: int | None = None
    resource_id: int | None = None
    resource_instance_id: int | None = None

    def __post_init__(self) -> None:
        seen_none = False
        for part in (self.object_id, self.instance_id, self.resource_id, self.resource_instance_id):
            if part is None:
                seen_none = True
                continue
            if seen_none:
                raise InvalidPath(f"component after an absent one in {self._raw()}")
            if not isinstance(part, int) or isinstance(part, bool) or not 0 <= part <= MAX_ID:
                raise InvalidPath(f"component {part!r} is not an ID in 0..{MAX_ID}")

    def _raw(self) -> str:
        return repr((self.object_id, self.instance_id, self.resource_id, self.resource_instance_id))

    # -- construction ------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> Path:
        """Parse ``"/5/0/3"`` (a leading slash is required; ``"/"`` is the root)."""
        if not isinstance(text, str) or not text.startswith("/"):
            raise InvalidPath(f"path must start with '/': {text!r}")
        if text == "/":
            return cls()
        parts = text[1:].split("/")
        return cls.from_segments(parts)

    @classmethod
    def from_segments(cls, segments: list[str] | tuple[str, ...]) -> Path:
        """Build from CoAP Uri-Path segments, e.g. ``("5", "0", "3")``."""
        if len(segments) > 4:
            raise InvalidPath(f"too many components ({len(segments)} > 4)")
        ids: list[int] = []
        for seg in segments:
            if not _SEGMENT.fullmatch(seg):
                raise InvalidPath(f"not a decimal ID: {seg!r}")
            ids.append(int(seg))
        return cls(*ids)

    # -- queries -------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """0 root, 1 object, 2 object instance, 3 resource, 4 resource instance."""
        for depth, part in enumerate(
            (self.object_id, self.instance_id, self.resource_id, self.resource_instance_id)
        ):
            if part is None:
                return depth
        return 4

    @property
    def is_root(self) -> bool:
        return self.depth == 0

    @property
    def is_object(self) -> bool:
        return self.depth == 1

    @property
    def is_object_instance(self) -> bool:
        return self.depth == 2

    @property
    def is_resource(self) -> bool:
        return self.depth == 3

    @property
    def is_resource_instance(self) -> bool:
        return self.depth == 4

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(
            p
            for p in (self.object_id, self.instance_id, self.resource_id, self.resource_instance_id)
            if p is not None
        )

    @property
    def segments(self) -> tuple[str, ...]:
        """CoAP Uri-Path segments."""
        return tuple(str(p) for p in self.ids)

    def parent(self) -> Path:
        ids = self.ids
        if not ids:
            raise InvalidPath("the root has no parent")
        return Path(*ids[:-1])

    def child(self, child_id: int) -> Path:
        if self.depth == 4:
            raise InvalidPath("a resource instance has no children")
        ids: tuple[int, ...] = (*self.ids, child_id)  # one tuple: mypy can't count *a, b
        return Path(*ids)

    def resource_path(self) -> Path:
        """The resource this path is or lies in (depth >= 3 required)."""
        if self.depth < 3:
            raise InvalidPath(f"{self} is not a resource or resource instance")
        return Path(*self.ids[:3])

    def startswith(self, prefix: Path) -> bool:
        """True if ``prefix`` is this path or one of its ancestors."""
        p = prefix.ids
        return self.ids[: len(p)] == p

    # Ordering compares the ID tuples, so an ancestor sorts before its descendants and
    # paths of different depths compare (a dataclass order would compare None with int).
    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Path):
            return NotImplemented
        return self.ids < other.ids

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Path):
            return NotImplemented
        return self.ids <= other.ids

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Path):
            return NotImplemented
        return self.ids > other.ids

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Path):
            return NotImplemented
        return self.ids >= other.ids

    def __str__(self) -> str:
        return "/" + "/".join(self.segments)

    def __repr__(self) -> str:
        return f"Path({str(self)!r})"


ROOT: Final = Path()
