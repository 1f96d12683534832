"""A/B firmware slots on a Linux directory, with MCUboot's test / confirm / revert rules.

Theory of operation
-------------------
Layout under ``root``::

    boot.json             BootState: the single commit point (written last, atomically)
    slots/a/image         the slot's bytes: a whole signed package, or a bare image
    slots/a/info.json     SlotInfo: state, version, sequence, digest, payload extent
    slots/b/...

The *active* slot holds the confirmed firmware (MCUboot's primary with ``image_ok``); the
other slot is *inactive* and is the only one ever written. An update goes (docs/agent-guide.md,
"The update flow"; the MCUboot design document, "Boot swap types"):

1. :meth:`SlotStore.open_inactive` -> :class:`SlotWriter` (slot state ``writing``: a
   half-written slot is never booted), :meth:`SlotWriter.finish` (``complete``);
2. the runtime verifies the package, :meth:`SlotStore.mark_verified` (``verified``:
   Object 5 "Downloaded");
3. :meth:`SlotStore.mark_pending` on Execute /5/0/2 (MCUboot "test" swap requested);
4. restart; :meth:`SlotStore.boot` counts one *trial boot* (persisted before anything
   runs) and boots the pending slot;
5. the health check passes -> :meth:`SlotStore.confirm` (the slot becomes active and the
   anti-rollback counter ``highest_sequence`` is raised, only here, as MCUboot raises its
   security counter only once ``image_ok`` is set); it fails -> :meth:`SlotStore.revert`
   and restart into the old slot. If the trial image dies ``max_trial_boots`` times
   without confirming, the next :meth:`SlotStore.boot` reverts by itself ("crash loop",
   MCUboot's revert of an unconfirmed test image at the next reset).

Crash safety
------------
Every change is one :func:`~fotakit.agent.persist.atomic_write_json`. The ordering rule
that keeps every crash point safe: the bytes and ``info.json`` of a slot are made
``verified`` (and fsynced) *before* ``boot.json`` names it pending, and ``boot.json``
stops naming a slot pending *before* its bytes are touched again. So whatever
``boot.json`` says is pending or active is always a verified, complete image.

Anti-rollback
-------------
``highest_sequence`` is the verifier's ``min_sequence``: a package whose sequence number is
*lower* is rejected (``RollbackRejected``, Update Result 6); an *equal* one is accepted, so
the current release can be reinstalled (SUIT: "MUST reject any manifest that has a
sequence number lower than its current sequence number", RFC 9124, "Monotonic
Sequence Number"; docs/package-format.md, "Anti-rollback").
:meth:`SlotStore.mark_verified` re-checks it.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Final

from fotakit.agent.persist import (
    CorruptStateError,
    atomic_write_json,
    fsync_dir,
    read_json,
    remove_stale_temp_files,
)
from fotakit.lwm2m.objects.firmware import UpdateResult
from fotakit.packages import RollbackRejected, VerifiedPackage

SLOT_NAMES: Final = ("a", "b")
BOOT_FILE: Final = "boot.json"
INFO_FILE: Final = "info.json"
IMAGE_FILE: Final = "image"
FORMAT: Final = 1
CHUNK_SIZE: Final = 64 * 1024

#: Reasons recorded in :class:`Outcome` (free text is allowed too).
REASON_CONFIRMED: Final = "confirmed"
REASON_HEALTH_CHECK: Final = "health check failed"
REASON_CRASH_LOOP: Final = "crash loop"
REASON_IMAGE_DAMAGED: Final = "pending image damaged"


# --- errors -------------------------------------------------------------------------------


class SlotError(Exception):
    """Base of slot store failures; ``update_result`` is the /5/0/5 value to report."""

    update_result: ClassVar[UpdateResult] = UpdateResult.UPDATE_FAILED


class SlotFull(SlotError):
    """The image does not fit the configured slot capacity (CoAP 4.13 / Update Result 2)."""

    update_result = UpdateResult.NOT_ENOUGH_FLASH

    def __init__(self, capacity: int) -> None:
        super().__init__(f"image does not fit the slot capacity of {capacity} bytes")
        self.capacity = capacity


class NotInitialised(SlotError):
    """``root`` has no ``boot.json``: call :meth:`SlotStore.initialise` first."""


class SlotStateError(SlotError):
    """The operation is not allowed now (e.g. confirm() when not running a trial)."""


class SlotImageDamaged(SlotError):
    """A slot's bytes do not match its description (size or digest)."""

    update_result = UpdateResult.INTEGRITY_CHECK_FAILURE


# --- records ------------------------------------------------------------------------------


class SlotState(enum.StrEnum):
    """Life of one slot's bytes; only ``verified`` slots can be pending or active."""

    EMPTY = "empty"
    WRITING = "writing"
    COMPLETE = "complete"
    VERIFIED = "verified"


@dataclass(frozen=True)
class SlotInfo:
    """What one slot holds. ``size`` is the payload (firmware) length; the payload starts at
    ``payload_offset`` in the image file (0 for a bare image, the envelope length for a
    signed package), so the image file is ``payload_offset + size`` bytes long."""

    name: str
    state: SlotState = SlotState.EMPTY
    version: str | None = None
    sequence: int | None = None
    pkg_name: str | None = None
    digest: str | None = None  # hex SHA-256 of the payload (the manifest's image digest)
    size: int = 0
    payload_offset: int = 0

    @property
    def image_size(self) -> int:
        return self.payload_offset + self.size

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "version": self.version,
            "sequence": self.sequence,
            "pkg_name": self.pkg_name,
            "digest": self.digest,
            "size": self.size,
            "payload_offset": self.payload_offset,
        }

    @classmethod
    def from_json(cls, data: Any, path: Path) -> SlotInfo:
        r = _Fields(data, path)
        try:
            state = SlotState(r.get_str("state"))
        except ValueError as exc:
            raise CorruptStateError(path, f"unknown slot state {data.get('state')!r}") from exc
        name = r.get_str("name")
        if name not in SLOT_NAMES:
            raise CorruptStateError(path, f"unknown slot name {name!r}")
        return cls(
            name=name,
            state=state,
            version=r.opt_str("version"),
            sequence=r.opt_int("sequence"),
            pkg_name=r.opt_str("pkg_name"),
            digest=r.opt_str("digest"),
            size=r.get_int("size"),
            payload_offset=r.get_int("payload_offset"),
        )


class OutcomeKind(enum.StrEnum):
    CONFIRMED = "confirmed"
    REVERTED = "reverted"


@dataclass(frozen=True)
class Outcome:
    """How the last update attempt ended; ``acknowledged`` once the runtime has reported it."""

    kind: OutcomeKind
    reason: str
    slot: str
    version: str | None = None
    sequence: int | None = None
    acknowledged: bool = False

    @property
    def update_result(self) -> UpdateResult:
        """/5/0/5 to report: 1 "Firmware updated successfully" or 8 "Firmware update failed"."""
        if self.kind is OutcomeKind.CONFIRMED:
            return UpdateResult.SUCCESS
        return UpdateResult.UPDATE_FAILED

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "reason": self.reason,
            "slot": self.slot,
            "version": self.version,
            "sequence": self.sequence,
            "acknowledged": self.acknowledged,
        }

    @classmethod
    def from_json(cls, data: Any, path: Path) -> Outcome:
        r = _Fields(data, path)
        try:
            kind = OutcomeKind(r.get_str("kind"))
        except ValueError as exc:
            raise CorruptStateError(path, "unknown outcome kind") from exc
        return cls(
            kind=kind,
            reason=r.get_str("reason"),
            slot=r.get_slot("slot"),
            version=r.opt_str("version"),
            sequence=r.opt_int("sequence"),
            acknowledged=r.get_bool("acknowledged"),
        )


@dataclass(frozen=True)
class BootState:
    """The content of ``boot.json``: which slot is confirmed, which is on test, the counter."""

    active: str
    pending: str | None = None
    trial_boots: int = 0
    highest_sequence: int = 0
    outcome: Outcome | None = None

    @property
    def confirmed(self) -> bool:
        """True when no test image is pending (MCUboot: primary ``image_ok`` set)."""
        return self.pending is None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "active": self.active,
            "pending": self.pending,
            "trial_boots": self.trial_boots,
            "confirmed": self.confirmed,
            "highest_sequence": self.highest_sequence,
            "outcome": None if self.outcome is None else self.outcome.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any, path: Path) -> BootState:
        r = _Fields(data, path)
        if r.get_int("format") != FORMAT:
            raise CorruptStateError(path, f"unsupported format {data.get('format')!r}")
        pending = r.opt_str("pending")
        active = r.get_slot("active")
        if pending is not None and (pending not in SLOT_NAMES or pending == active):
            raise CorruptStateError(path, f"bad pending slot {pending!r}")
        if r.get_bool("confirmed") != (pending is None):
            raise CorruptStateError(path, "'confirmed' contradicts 'pending'")
        raw_outcome = data.get("outcome")
        return cls(
            active=active,
            pending=pending,
            trial_boots=r.get_int("trial_boots"),
            highest_sequence=r.get_int("highest_sequence"),
            outcome=None if raw_outcome is None else Outcome.from_json(raw_outcome, path),
        )


@dataclass(frozen=True)
class BootDecision:
    """What :meth:`SlotStore.boot` decided for this agent start.

    ``info.version`` is the firmware version to publish in /3/0/3. ``trial_boot`` counts
    the starts of a pending image (1..max_trial_boots), 0 when not on trial. ``outcome`` is
    the last update's outcome while it is not yet acknowledged (report /5/0/5 = 1 or 8,
    then call :meth:`SlotStore.acknowledge_outcome`).
    """

    slot: str
    info: SlotInfo
    trial: bool
    trial_boot: int
    outcome: Outcome | None

    @property
    def version(self) -> str | None:
        """The running firmware version (/3/0/3 Firmware Version)."""
        return self.info.version


# --- payload helpers ------------------------------------------------------------------------


def iter_payload(image: Path, info: SlotInfo, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Stream the payload bytes of a slot image (``payload_offset`` .. ``+size``)."""
    with open(image, "rb") as f:
        f.seek(info.payload_offset)
        left = info.size
        while left > 0:
            chunk = f.read(min(chunk_size, left))
            if not chunk:
                raise SlotImageDamaged(f"{image} ends {left} bytes before its payload does")
            left -= len(chunk)
            yield chunk


def payload_digest(image: Path, info: SlotInfo) -> str:
    """Hex SHA-256 of the payload of ``image`` as described by ``info``."""
    h = hashlib.sha256()
    for chunk in iter_payload(image, info):
        h.update(chunk)
    return h.hexdigest()


def _other(name: str) -> str:
    return SLOT_NAMES[1] if name == SLOT_NAMES[0] else SLOT_NAMES[0]


# --- the writer ---------------------------------------------------------------------------


class SlotWriter:
    """Random-access writer for the inactive slot's image (a DownloadSink / push target).

    ``write(offset, data)`` is pwrite(2): idempotent, so a retransmitted block or a resumed
    download may rewrite bytes. Raises :class:`SlotFull` before writing past the capacity.
    """

    def __init__(self, store: SlotStore, name: str, fd: int, capacity: int | None) -> None:
        self._store = store
        self.name = name
        self.path = store.image_path(name)
        self.capacity = capacity
        self._fd: int | None = fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def size(self) -> int:
        """Current length of the image file (bytes written so far, including holes)."""
        if self._fd is None:
            return self.path.stat().st_size
        return os.fstat(self._fd).st_size

    def _open_fd(self) -> int:
        if self._fd is None:
            raise SlotStateError(f"writer for slot {self.name} is closed")
        return self._fd

    def _check_capacity(self, end: int) -> None:
        if self.capacity is not None and end > self.capacity:
            raise SlotFull(self.capacity)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        fd = self._open_fd()
        if offset < 0:
            raise ValueError("negative offset")
        view = memoryview(data).cast("B")
        self._check_capacity(offset + len(view))
        while view:
            n = os.pwrite(fd, view, offset)
            offset += n
            view = view[n:]

    def truncate(self, size: int) -> None:
        fd = self._open_fd()
        if size < 0:
            raise ValueError("negative size")
        self._check_capacity(size)
        os.ftruncate(fd, size)

    def fsync(self) -> None:
        os.fsync(self._open_fd())

    def close(self) -> None:
        """Flush to disk and close (idempotent). The slot stays ``writing``."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def finish(self) -> SlotInfo:
        """All bytes are written: fsync, close, record the slot as ``complete`` (unverified)."""
        self.close()
        return self._store._writer_finished(self)

    def __enter__(self) -> SlotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the store ----------------------------------------------------------------------------


class SlotStore:
    """The A/B slot pair under ``root``; one instance per agent start, one agent per root."""

    def __init__(
        self, root: Path | str, *, max_trial_boots: int = 3, slot_capacity: int | None = None
    ) -> None:
        if max_trial_boots < 1:
            raise ValueError("max_trial_boots must be at least 1")
        self.root = Path(root)
        self.max_trial_boots = max_trial_boots
        self.slot_capacity = slot_capacity
        boot_path = self.root / BOOT_FILE
        raw = read_json(boot_path)
        if raw is None:
            raise NotInitialised(f"{self.root} has no {BOOT_FILE}")
        for directory in (self.root, *(self._slot_dir(n) for n in SLOT_NAMES)):
            remove_stale_temp_files(directory)
        self._state = BootState.from_json(raw, boot_path)
        self._infos = {n: self._load_info(n) for n in SLOT_NAMES}
        self._decision: BootDecision | None = None
        self._trial_resolved = False  # confirm()/revert() ran during this start's trial
        self._restart_required = False  # reverted while running the rejected image
        self._writer: SlotWriter | None = None

    # --- creation ---------------------------------------------------------------------

    @staticmethod
    def is_initialised(root: Path | str) -> bool:
        return (Path(root) / BOOT_FILE).exists()

    @classmethod
    def initialise(
        cls,
        root: Path | str,
        *,
        version: str,
        sequence: int = 0,
        image: Path | str | None = None,
        pkg_name: str | None = None,
        max_trial_boots: int = 3,
        slot_capacity: int | None = None,
    ) -> SlotStore:
        """Create the store with slot ``a`` as the confirmed running firmware.

        Idempotent: an already initialised ``root`` is opened unchanged (``version`` etc.
        are then ignored). ``image`` (optional) is a bare image copied into slot a; without
        it slot a is empty bytes (the agent itself is the firmware). ``sequence`` seeds the
        anti-rollback counter. ``boot.json`` is written last, so a crash part way simply
        redoes the initialisation.
        """
        root = Path(root)
        if not cls.is_initialised(root):
            for name in SLOT_NAMES:
                cls._slot_dir_of(root, name).mkdir(parents=True, exist_ok=True)
            fsync_dir(root / "slots")
            fsync_dir(root)
            dest = cls._slot_dir_of(root, "a") / IMAGE_FILE
            h = hashlib.sha256()
            size = 0
            with open(dest, "wb") as out:
                if image is not None:
                    with open(image, "rb") as src:
                        while chunk := src.read(CHUNK_SIZE):
                            h.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if slot_capacity is not None and size > slot_capacity:
                raise SlotFull(slot_capacity)
            a = SlotInfo(
                name="a",
                state=SlotState.VERIFIED,
                version=version,
                sequence=sequence,
                pkg_name=pkg_name,
                digest=h.hexdigest(),
                size=size,
            )
            atomic_write_json(cls._slot_dir_of(root, "a") / INFO_FILE, a.to_json())
            atomic_write_json(cls._slot_dir_of(root, "b") / INFO_FILE, SlotInfo("b").to_json())
            state = BootState(active="a", highest_sequence=sequence)
            atomic_write_json(root / BOOT_FILE, state.to_json())
        return cls(root, max_trial_boots=max_trial_boots, slot_capacity=slot_capacity)

    # --- paths and loading ------------------------------------------------------------

    @staticmethod
    def _slot_dir_of(root: Path, name: str) -> Path:
        return root / "slots" / name

    def _slot_dir(self, name: str) -> Path:
        return self._slot_dir_of(self.root, name)

    def image_path(self, name: str) -> Path:
        if name not in SLOT_NAMES:
            raise ValueError(f"no slot {name!r}")
        return self._slot_dir(name) / IMAGE_FILE

    def _load_info(self, name: str) -> SlotInfo:
        path = self._slot_dir(name) / INFO_FILE
        raw = read_json(path)
        if raw is None:
            return SlotInfo(name)
        info = SlotInfo.from_json(raw, path)
        if info.name != name:
            raise CorruptStateError(path, f"describes slot {info.name!r}")
        return info

    # --- inspection -------------------------------------------------------------------

    @property
    def state(self) -> BootState:
        return self._state

    @property
    def highest_sequence(self) -> int:
        """The anti-rollback counter: pass as the verifier's ``min_sequence``."""
        return self._state.highest_sequence

    @property
    def active_name(self) -> str:
        return self._state.active

    @property
    def pending_name(self) -> str | None:
        return self._state.pending

    @property
    def inactive_name(self) -> str:
        """The slot updates are written to (the one that is not the confirmed slot)."""
        return _other(self._state.active)

    @property
    def last_outcome(self) -> Outcome | None:
        return self._state.outcome

    @property
    def decision(self) -> BootDecision | None:
        return self._decision

    @property
    def running(self) -> SlotInfo:
        """The slot :meth:`boot` chose for this start."""
        return self._require_booted().info

    @property
    def on_trial(self) -> bool:
        """This start runs an unconfirmed image and neither confirm() nor revert() ran yet."""
        d = self._decision
        return d is not None and d.trial and not self._trial_resolved

    @property
    def restart_required(self) -> bool:
        """revert() ran while running the rejected image: restart to boot the old slot."""
        return self._restart_required

    def slot(self, name: str) -> SlotInfo:
        if name not in SLOT_NAMES:
            raise ValueError(f"no slot {name!r}")
        return self._infos[name]

    def check_image(self, name: str) -> str | None:
        """Re-read slot ``name``: ``None`` if it is a verified image matching its digest,
        else what is wrong."""
        return self._boot_problem(self._infos[name], full=True)

    # --- commits ----------------------------------------------------------------------

    def _commit(self, state: BootState) -> None:
        atomic_write_json(self.root / BOOT_FILE, state.to_json())
        self._state = state

    def _write_info(self, info: SlotInfo) -> None:
        atomic_write_json(self._slot_dir(info.name) / INFO_FILE, info.to_json())
        self._infos[info.name] = info

    def _require_booted(self) -> BootDecision:
        if self._decision is None:
            raise SlotStateError("boot() has not been called in this start")
        return self._decision

    def _require_writable(self) -> str:
        self._require_booted()
        if self.on_trial:
            raise SlotStateError("a trial is in progress: confirm() or revert() first")
        if self._restart_required:
            raise SlotStateError("reverted during this start: restart before a new update")
        return self.inactive_name

    def _boot_problem(self, info: SlotInfo, *, full: bool) -> str | None:
        if info.state is not SlotState.VERIFIED or info.digest is None:
            return f"slot {info.name} is {info.state.value}, not verified"
        path = self.image_path(info.name)
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            return f"slot {info.name} has no image file"
        if actual != info.image_size:
            return f"slot {info.name} image is {actual} bytes, expected {info.image_size}"
        if full:
            try:
                if payload_digest(path, info) != info.digest:
                    return f"slot {info.name} payload digest mismatch"
            except SlotImageDamaged as exc:
                return str(exc)
        return None

    # --- the boot decision ------------------------------------------------------------

    def boot(self) -> BootDecision:
        """Decide which slot runs in this start; call once, before anything else.

        A pending slot that has been started fewer than ``max_trial_boots`` times is
        started on trial, and the start is counted (persisted) first, so a crash anywhere
        later still counts. One started that often without a confirm is reverted ("crash
        loop"); so is one whose bytes no longer match (checked in full before its first
        trial start, by size afterwards).
        """
        if self._decision is not None:
            raise SlotStateError("boot() already ran in this start")
        st = self._state
        if st.pending is not None:
            pinfo = self._infos[st.pending]
            problem = self._boot_problem(pinfo, full=st.trial_boots == 0)
            if problem is not None:
                self._record_revert(f"{REASON_IMAGE_DAMAGED}: {problem}")
            elif st.trial_boots >= self.max_trial_boots:
                self._record_revert(REASON_CRASH_LOOP)
            else:
                self._commit(replace(st, trial_boots=st.trial_boots + 1))
                self._decision = BootDecision(
                    slot=st.pending,
                    info=pinfo,
                    trial=True,
                    trial_boot=self._state.trial_boots,
                    outcome=self._unacknowledged(),
                )
                return self._decision
        active = self._state.active
        self._decision = BootDecision(
            slot=active,
            info=self._infos[active],
            trial=False,
            trial_boot=0,
            outcome=self._unacknowledged(),
        )
        return self._decision

    def _unacknowledged(self) -> Outcome | None:
        o = self._state.outcome
        return o if o is not None and not o.acknowledged else None

    def _record_revert(self, reason: str) -> Outcome:
        st = self._state
        if st.pending is None:
            raise SlotStateError("nothing is pending")
        info = self._infos[st.pending]
        outcome = Outcome(
            kind=OutcomeKind.REVERTED,
            reason=reason,
            slot=st.pending,
            version=info.version,
            sequence=info.sequence,
        )
        self._commit(replace(st, pending=None, trial_boots=0, outcome=outcome))
        return outcome

    # --- writing the inactive slot ----------------------------------------------------

    def open_inactive(
        self, *, expected_size: int | None = None, resume: bool = False
    ) -> SlotWriter:
        """Open the inactive slot for writing and mark it ``writing``.

        ``resume=True`` keeps the bytes already there if the slot was being written
        (``writing`` or ``complete``: a download interrupted by a restart); otherwise the
        image starts empty. A pending (not yet booted) slot is un-scheduled first. Raises
        :class:`SlotFull` if ``expected_size`` exceeds the capacity, and
        :class:`SlotStateError` during a trial (MCUboot: no new update before confirm).
        """
        name = self._require_writable()
        if (
            expected_size is not None
            and self.slot_capacity is not None
            and expected_size > self.slot_capacity
        ):
            raise SlotFull(self.slot_capacity)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._state.pending == name:
            # Un-schedule before the bytes change: boot.json must never name a slot in flux.
            self._commit(replace(self._state, pending=None, trial_boots=0))
        current = self._infos[name]
        keep = resume and current.state in (SlotState.WRITING, SlotState.COMPLETE)
        if current.state is not SlotState.WRITING:
            self._write_info(SlotInfo(name, state=SlotState.WRITING))
        fd = os.open(self.image_path(name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not keep:
                os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
        self._writer = SlotWriter(self, name, fd, self.slot_capacity)
        return self._writer

    def _writer_finished(self, writer: SlotWriter) -> SlotInfo:
        if self._writer is writer:
            self._writer = None
        info = self._infos[writer.name]
        if info.state is not SlotState.WRITING:
            raise SlotStateError(f"slot {writer.name} is {info.state.value}, not writing")
        done = SlotInfo(writer.name, state=SlotState.COMPLETE, size=writer.size)
        self._write_info(done)
        return done

    def describe(self, verified: VerifiedPackage, *, pkg_name: str | None = None) -> SlotInfo:
        """The SlotInfo of a signed package verified in the inactive slot (for mark_*)."""
        m = verified.manifest
        return SlotInfo(
            name=self.inactive_name,
            state=SlotState.COMPLETE,
            version=m.version,
            sequence=m.sequence,
            pkg_name=pkg_name,
            digest=m.payload_digest.hex(),
            size=verified.payload_size,
            payload_offset=verified.payload_offset,
        )

    def mark_verified(self, info: SlotInfo, *, check_digest: bool = True) -> SlotInfo:
        """Record that the inactive slot holds the verified image ``info`` (Downloaded).

        Re-checks the file length and (by default) the payload digest, the anti-rollback
        counter, and fsyncs the image before ``info.json`` says ``verified``.
        """
        name = self._require_writable()
        if info.name != name:
            raise SlotStateError(f"slot {info.name} is not the inactive slot {name}")
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if info.digest is None:
            raise SlotStateError("a verified slot needs a digest")
        if info.sequence is not None and info.sequence < self.highest_sequence:
            raise RollbackRejected(
                f"sequence number {info.sequence} is lower than the current {self.highest_sequence}"
            )
        if self._state.pending == name:
            self._commit(replace(self._state, pending=None, trial_boots=0))
        verified = replace(info, state=SlotState.VERIFIED)
        problem = self._boot_problem(verified, full=check_digest)
        if problem is not None:
            raise SlotImageDamaged(problem)
        image = self.image_path(name)
        fd = os.open(image, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(image.parent)  # the image's directory entry too, before info says verified
        self._write_info(verified)
        return verified

    def mark_pending(self, info: SlotInfo | None = None) -> SlotInfo:
        """Schedule the (verified) inactive slot for a trial boot at the next start.

        With ``info``, :meth:`mark_verified` runs first. The MCUboot equivalent is
        ``boot_set_pending(0)``: a test swap that reverts unless confirmed.
        """
        if info is not None:
            current = self.mark_verified(info)
        else:
            name = self._require_writable()
            current = self._infos[name]
            if current.state is not SlotState.VERIFIED:
                raise SlotStateError(f"slot {name} is {current.state.value}, not verified")
        self._commit(replace(self._state, pending=current.name, trial_boots=0))
        return current

    def discard(self) -> None:
        """Drop the inactive slot's image (Object 5 reset / cancel before Execute)."""
        name = self._require_writable()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._state.pending == name:
            self._commit(replace(self._state, pending=None, trial_boots=0))
        self._write_info(SlotInfo(name))
        path = self.image_path(name)
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)

    # --- resolving a trial ------------------------------------------------------------

    def confirm(self) -> Outcome:
        """The trial image is good: make it the active slot and raise ``highest_sequence``.

        Only allowed while running a trial (MCUboot ``boot_set_confirmed`` from the test
        image). This is the only place the anti-rollback counter goes up.
        """
        if not self.on_trial:
            raise SlotStateError("confirm() is only allowed while running a trial")
        st = self._state
        name = st.pending
        if name is None:  # pragma: no cover - on_trial implies pending
            raise SlotStateError("nothing is pending")
        info = self._infos[name]
        outcome = Outcome(
            kind=OutcomeKind.CONFIRMED,
            reason=REASON_CONFIRMED,
            slot=name,
            version=info.version,
            sequence=info.sequence,
        )
        highest = max(st.highest_sequence, info.sequence or 0)
        self._commit(
            BootState(
                active=name, pending=None, trial_boots=0, highest_sequence=highest, outcome=outcome
            )
        )
        self._trial_resolved = True
        return outcome

    def revert(self, reason: str) -> Outcome:
        """Give up the pending image: the active slot stays, the outcome is recorded.

        During a trial the running image is the rejected one: the runtime must restart
        (``restart_required``); the next :meth:`boot` runs the old slot and returns the
        outcome for Update Result 8.
        """
        was_trial = self.on_trial
        outcome = self._record_revert(reason)
        if was_trial:
            self._trial_resolved = True
            self._restart_required = True
        return outcome

    def acknowledge_outcome(self) -> None:
        """The runtime has recorded /5/0/5 for the last outcome: stop returning it."""
        o = self._state.outcome
        if o is not None and not o.acknowledged:
            self._commit(replace(self._state, outcome=replace(o, acknowledged=True)))


class _Fields:
    """Strict typed access to a decoded JSON object; any mismatch is CorruptStateError."""

    def __init__(self, data: Any, path: Path) -> None:
        if not isinstance(data, dict):
            raise CorruptStateError(path, "not a JSON object")
        self._d = data
        self._path = path

    def _get(self, key: str) -> Any:
        if key not in self._d:
            raise CorruptStateError(self._path, f"missing {key!r}")
        return self._d[key]

    def get_str(self, key: str) -> str:
        v = self._get(key)
        if not isinstance(v, str):
            raise CorruptStateError(self._path, f"{key!r} must be a string")
        return v

    def opt_str(self, key: str) -> str | None:
        v = self._get(key)
        if v is not None and not isinstance(v, str):
            raise CorruptStateError(self._path, f"{key!r} must be a string or null")
        return v

    def get_int(self, key: str) -> int:
        v = self._get(key)
        if type(v) is not int or v < 0:
            raise CorruptStateError(self._path, f"{key!r} must be a non-negative integer")
        return v

    def opt_int(self, key: str) -> int | None:
        if self._get(key) is None:
            return None
        return self.get_int(key)

    def get_bool(self, key: str) -> bool:
        v = self._get(key)
        if not isinstance(v, bool):
            raise CorruptStateError(self._path, f"{key!r} must be a boolean")
        return v

    def get_slot(self, key: str) -> str:
        v = self.get_str(key)
        if v not in SLOT_NAMES:
            raise CorruptStateError(self._path, f"{key!r} must be one of {SLOT_NAMES}")
        return v


__all__ = [
    "BOOT_FILE",
    "REASON_CONFIRMED",
    "REASON_CRASH_LOOP",
    "REASON_HEALTH_CHECK",
    "REASON_IMAGE_DAMAGED",
    "SLOT_NAMES",
    "BootDecision",
    "BootState",
    "NotInitialised",
    "Outcome",
    "OutcomeKind",
    "SlotError",
    "SlotFull",
    "SlotImageDamaged",
    "SlotInfo",
    "SlotState",
    "SlotStateError",
    "SlotStore",
    "SlotWriter",
    "iter_payload",
    "payload_digest",
]
