"""/33600/0 "fotakit Update Diagnostics" on the agent: the last update failure, in words.

Object 5 can only say *that* an update failed (Update Result 2-9); the agent knows *why*
(the health check's own words, the package error, a crash loop). :class:`UpdateDiagnostics`
serves that reason as object 33600 (:mod:`fotakit.lwm2m.objects.diagnostics`,
docs/agent-guide.md "Update diagnostics") and keeps it in ``data_dir/diagnostics.json``
(written with :func:`~fotakit.agent.persist.atomic_write_json`, so a power cut leaves the
old record or the new one), so the reason of a failure that ended in a reboot (a
rollback) is still there when the server reads it after the reboot.

Only the last failure is kept: it answers "why did *this* attempt fail", and it stays
until the next failure replaces it (a later success does not clear it; its time and
version tell which attempt it belongs to).

Unlike the boot state, a damaged ``diagnostics.json`` does not stop the agent: nothing
unsafe follows from forgetting a failure text, so the agent logs a WARNING and starts
with an empty record, which the next failure overwrites.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from fotakit.agent.persist import CorruptStateError, atomic_write_json, read_json
from fotakit.client import LwM2MObject, ObjectInstance, ResourceValue
from fotakit.lwm2m.errors import NotFound
from fotakit.lwm2m.objects import UPDATE_DIAGNOSTICS, DiagnosticsResource, FailurePhase

_log = logging.getLogger(__name__)

#: A failure text is bounded so one odd exception cannot grow the state file or a Read
#: without end (a few lines of a health check's output fit easily).
MAX_TEXT_CHARS: Final = 1024


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """One failed update attempt (the values of /33600/0)."""

    text: str = ""
    at: float = 0.0  # POSIX seconds
    result: int = 0
    version: str = ""
    phase: FailurePhase = FailurePhase.NONE

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["phase"] = self.phase.value
        return data

    @classmethod
    def from_json(cls, data: Any, path: Path) -> FailureRecord:
        if not isinstance(data, dict):
            raise CorruptStateError(path, "not a JSON object")
        try:
            record = cls(
                text=data["text"],
                at=float(data["at"]),
                result=data["result"],
                version=data["version"],
                phase=FailurePhase(data["phase"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptStateError(path, f"bad failure record: {exc!r}") from None
        if not isinstance(record.text, str) or not isinstance(record.version, str):
            raise CorruptStateError(path, "text and version must be strings")
        if isinstance(record.result, bool) or not isinstance(record.result, int):
            raise CorruptStateError(path, "result must be an integer")
        return record


class UpdateDiagnostics(ObjectInstance):
    """/33600/0, backed by ``path`` (``data_dir/diagnostics.json``)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.file = path
        self.record = FailureRecord()
        try:
            raw = read_json(path)
            if raw is not None:
                self.record = FailureRecord.from_json(raw, path)
        except CorruptStateError as exc:
            _log.warning("%s: the last update failure is forgotten", exc)

    def lwm2m_object(self) -> LwM2MObject:
        return LwM2MObject(UPDATE_DIAGNOSTICS, {0: self})

    def record_failure(
        self, phase: FailurePhase, text: str, *, result: int, version: str | None, at: float
    ) -> FailureRecord:
        """Replace the last failure with this one: persisted first, then observers told."""
        if len(text) > MAX_TEXT_CHARS:
            text = text[: MAX_TEXT_CHARS - 3] + "..."
        record = FailureRecord(text=text, at=at, result=result, version=version or "", phase=phase)
        atomic_write_json(self.file, record.to_json())
        self.record = record
        self.notify_changed()
        return record

    # -- LwM2M ---------------------------------------------------------------------------
    def resource_ids(self) -> list[int]:
        return [int(r) for r in DiagnosticsResource]

    def read(self, resource_id: int) -> ResourceValue:
        r = self.record
        if resource_id == DiagnosticsResource.LAST_FAILURE_TEXT:
            return r.text
        if resource_id == DiagnosticsResource.LAST_FAILURE_TIME:
            return datetime.fromtimestamp(int(r.at), UTC)
        if resource_id == DiagnosticsResource.UPDATE_RESULT:
            return r.result
        if resource_id == DiagnosticsResource.FIRMWARE_VERSION:
            return r.version
        if resource_id == DiagnosticsResource.FAILURE_PHASE:
            return r.phase.value
        raise NotFound(f"/33600/0/{resource_id} does not exist")
