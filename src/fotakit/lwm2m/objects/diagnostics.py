"""Object 33600 "fotakit Update Diagnostics": why the device's last update attempt failed.

Object 5 reports a failed update only as a number (/5/0/5 Update Result 8 "Firmware
update failed"), while the device knows the reason ("health check failed: selftest
exited with status 1", a signature that does not verify, a crash loop). This private
object carries that reason so the server can read it after a failure.

The ID is in the range OMNA reserves for company objects that are not published in the
OMA LwM2M registry (32769-42768, "Company Reserved", URN label ``x``); no registered
object uses it. A server that does not know the object ignores its link in the Register
payload. The DDF (OMA ``LWM2M.xsd`` layout) is ``docs/objects/33600.xml``, for servers
that load object definitions from files (Leshan, fotakit's ``load_ddf``); the resources
are documented in docs/agent-guide.md "Update diagnostics (object 33600)".

One instance (/33600/0), all resources read-only; before any failure the text and the
version are empty, the time 0 and the result 0. The device agent sets them whenever an
update attempt fails (download, verification, installation, health check, crash loop,
rollback) and persists them, so they survive a reboot.
"""

from __future__ import annotations

import enum
from typing import Final

from fotakit.lwm2m.model import ObjectDef
from fotakit.lwm2m.objects._build import I, S, T, obj, res

UPDATE_DIAGNOSTICS_ID: Final = 33600


class DiagnosticsResource(enum.IntEnum):
    """The resource IDs of /33600/0."""

    LAST_FAILURE_TEXT = 0
    LAST_FAILURE_TIME = 1
    UPDATE_RESULT = 2
    FIRMWARE_VERSION = 3
    FAILURE_PHASE = 4


class FailurePhase(enum.StrEnum):
    """/33600/0/4: where in the update the failure happened."""

    NONE = ""  # no failure recorded yet
    DOWNLOAD = "download"  # fetching or receiving the package
    VERIFY = "verify"  # signature, integrity, device class, anti-rollback
    INSTALL = "install"  # the installer hook or the slot switch
    INTERRUPTED = "interrupted"  # a restart cut the download or the update short
    HEALTH_CHECK = "health check"  # the new image ran but failed its health check
    CRASH_LOOP = "crash loop"  # the new image never got as far as its health check
    IMAGE_DAMAGED = "image damaged"  # the pending image changed before it could run


UPDATE_DIAGNOSTICS: Final[ObjectDef] = obj(
    UPDATE_DIAGNOSTICS_ID,
    "fotakit Update Diagnostics",
    version="1.0",
    lwm2m_version="1.0",
    multiple=False,
    mandatory=False,
    namespace="x",
    description=(
        "Why the last firmware update attempt failed, in words, next to the Update Result "
        "of Object 5. Set by the device whenever an attempt fails; kept across reboots."
    ),
    resources=[
        res(
            0,
            "Last Failure Text",
            "R",
            S,
            mandatory=True,
            description="What went wrong, as the device knows it; empty: no failure yet.",
        ),
        res(
            1,
            "Last Failure Time",
            "R",
            T,
            mandatory=True,
            description="When the failure was recorded; 0 (1970-01-01): no failure yet.",
        ),
        res(
            2,
            "Update Result",
            "R",
            I,
            mandatory=True,
            range="0..11",
            description="The /5/0/5 Update Result the failure was reported with.",
        ),
        res(
            3,
            "Firmware Version",
            "R",
            S,
            mandatory=True,
            description="The version of the firmware the failed attempt tried to install; "
            "empty when the package never got as far as naming it.",
        ),
        res(
            4,
            "Failure Phase",
            "R",
            S,
            description="download, verify, install, interrupted, health check, crash loop "
            "or image damaged.",
        ),
    ],
)
