"""The installer hook: hand a verified slot's firmware to whatever really installs it.

For a Linux-class device the slot *is* the firmware as far as the agent is concerned
(:class:`NullInstaller`, the default). When something else must act on the image (flash
an MCU behind the gateway with an MCUboot image, unpack an application bundle, switch a
rootfs partition), :class:`CommandInstaller` runs an operator command with:

- ``FOTAKIT_IMAGE``: path of a file holding only the payload (the envelope of a signed
  package is stripped; the bytes are streamed out of the slot and re-hashed against the
  signed digest on the way, so the hook never sees bytes the signer did not make);
- ``FOTAKIT_SLOT`` (``a``/``b``), ``FOTAKIT_VERSION``, ``FOTAKIT_SEQUENCE``,
  ``FOTAKIT_PKG_NAME``, ``FOTAKIT_DIGEST`` (hex SHA-256 of the payload).

Exit status 0 means installed; anything else (or a timeout) raises
:class:`InstallFailed`, which the runtime reports as /5/0/5 = 8 "Firmware update failed"
(OMA TS Core 1.2, Appendix E.6). The extracted file is deleted when the hook returns: a
hook that needs the bytes later must copy them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Final, Protocol, runtime_checkable

from fotakit.agent.health import run_command
from fotakit.agent.persist import TEMP_PREFIX, TEMP_SUFFIX
from fotakit.agent.slots import SlotImageDamaged, SlotInfo, iter_payload
from fotakit.lwm2m.objects.firmware import UpdateResult

DEFAULT_TIMEOUT: Final = 600.0


class InstallFailed(Exception):
    """The installer hook did not install the image (Update Result 8)."""

    update_result: ClassVar[UpdateResult] = UpdateResult.UPDATE_FAILED

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class Installer(Protocol):
    async def install(self, info: SlotInfo, image: Path) -> None:
        """Install the verified slot ``info`` whose image file is ``image``; raise
        :class:`InstallFailed` if it could not be installed."""
        ...


class NullInstaller:
    """Nothing to do: the slot itself is the firmware."""

    async def install(self, info: SlotInfo, image: Path) -> None:
        return None


class CommandInstaller:
    """Run ``argv`` with the payload of the slot in ``FOTAKIT_IMAGE`` (see module doc).

    ``env`` is added to the agent's environment; ``workdir`` is where the payload is
    extracted (default: next to the slot image, so no second file system is needed).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
        workdir: Path | str | None = None,
    ) -> None:
        if not argv:
            raise ValueError("installer command is empty")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.argv = list(argv)
        self.timeout = timeout
        self.env = dict(env or {})
        self.workdir = Path(workdir) if workdir is not None else None

    async def install(self, info: SlotInfo, image: Path) -> None:
        directory = self.workdir if self.workdir is not None else image.parent
        payload = await asyncio.to_thread(extract_payload, image, info, directory)
        try:
            env = {
                **self.env,
                "FOTAKIT_IMAGE": str(payload),
                "FOTAKIT_SLOT": info.name,
                "FOTAKIT_VERSION": info.version or "",
                "FOTAKIT_SEQUENCE": "" if info.sequence is None else str(info.sequence),
                "FOTAKIT_PKG_NAME": info.pkg_name or "",
                "FOTAKIT_DIGEST": info.digest or "",
            }
            result = await run_command(self.argv, time_limit=self.timeout, env=env)
        finally:
            payload.unlink(missing_ok=True)
        if not result.ok:
            raise InstallFailed(result.describe("installer"))


def extract_payload(image: Path, info: SlotInfo, directory: Path) -> Path:
    """Stream the payload of ``image`` into a new file in ``directory``; check its digest.

    The file name has the temporary pattern of persist.py, so one left by a crash is
    removed by the next start's clean-up (for ``directory`` = the slot's own directory).
    """
    try:
        fd, name = tempfile.mkstemp(
            dir=directory, prefix=f"{TEMP_PREFIX}payload.", suffix=TEMP_SUFFIX
        )
    except OSError as exc:
        raise InstallFailed(f"cannot create the payload file in {directory}: {exc}") from exc
    path = Path(name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in iter_payload(image, info):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if info.digest is not None and h.hexdigest() != info.digest:
            raise InstallFailed(f"slot {info.name} payload does not match its signed digest")
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if isinstance(exc, (SlotImageDamaged, OSError)):
            raise InstallFailed(f"cannot extract the payload of slot {info.name}: {exc}") from exc
        raise
    return path
