"""Object 5 "Firmware Update" (object version 1.2, TS Core 1.2 Appendix E.6).

Resource table from the OMA registry's ``5.xml`` (object 1.1, resources 0-13) plus
resource 14 "Automatic Upgrade at Download" added by object version 1.2 (registry,
2023-08; not yet in TS Core 1.2.1). There is no resource 4 in any version. The enums
carry the value tables of /5/0/3, /5/0/5, /5/0/8, /5/0/9 and /5/0/11.
"""

from __future__ import annotations

import enum
from typing import Final

from fotakit.lwm2m.model import ObjectDef
from fotakit.lwm2m.objects._build import B, I, N, O, S, T, U, obj, res


class State(enum.IntEnum):
    """/5/0/3 State."""

    IDLE = 0
    DOWNLOADING = 1
    DOWNLOADED = 2
    UPDATING = 3


class UpdateResult(enum.IntEnum):
    """/5/0/5 Update Result (10 and 11 from object version 1.1)."""

    INITIAL = 0
    SUCCESS = 1  # "Firmware updated successfully"
    NOT_ENOUGH_FLASH = 2
    OUT_OF_RAM = 3
    CONNECTION_LOST = 4
    INTEGRITY_CHECK_FAILURE = 5
    UNSUPPORTED_PACKAGE_TYPE = 6
    INVALID_URI = 7
    UPDATE_FAILED = 8
    UNSUPPORTED_PROTOCOL = 9
    CANCELLED = 10
    DEFERRED = 11


class UpdateProtocol(enum.IntEnum):
    """/5/0/8 Firmware Update Protocol Support (4 and 5 from object version 1.0.2)."""

    COAP = 0
    COAPS = 1
    HTTP = 2
    HTTPS = 3
    COAP_TCP = 4  # CoAP over TCP, RFC 8323
    COAPS_TCP = 5  # CoAP over TLS, RFC 8323

    @property
    def scheme(self) -> str:
        """The Package URI scheme this protocol is used with."""
        return _SCHEMES[self]

    @classmethod
    def from_scheme(cls, scheme: str) -> UpdateProtocol | None:
        """The protocol for a URI scheme (case-insensitive), or None if there is none."""
        for proto, name in _SCHEMES.items():
            if name == scheme.lower():
                return proto
        return None


_SCHEMES: Final = {
    UpdateProtocol.COAP: "coap",
    UpdateProtocol.COAPS: "coaps",
    UpdateProtocol.HTTP: "http",
    UpdateProtocol.HTTPS: "https",
    UpdateProtocol.COAP_TCP: "coap+tcp",
    UpdateProtocol.COAPS_TCP: "coaps+tcp",
}


class DeliveryMethod(enum.IntEnum):
    """/5/0/9 Firmware Update Delivery Method."""

    PULL_ONLY = 0
    PUSH_ONLY = 1
    BOTH = 2

    @property
    def supports_pull(self) -> bool:
        return self is not DeliveryMethod.PUSH_ONLY

    @property
    def supports_push(self) -> bool:
        return self is not DeliveryMethod.PULL_ONLY


class Severity(enum.IntEnum):
    """/5/0/11 Severity (object version 1.1; 1 Mandatory is the default)."""

    CRITICAL = 0
    MANDATORY = 1
    OPTIONAL = 2


FIRMWARE_UPDATE: Final[ObjectDef] = obj(
    5,
    "Firmware Update",
    version="1.2",
    lwm2m_version="1.1",
    multiple=False,
    mandatory=False,
    description="Management of the firmware: install a package, update, act afterwards.",
    resources=[
        res(0, "Package", "W", O, mandatory=True, description="Firmware package (push)."),
        res(
            1,
            "Package URI",
            "RW",
            S,
            mandatory=True,
            range="0..255",
            description="RFC 3986 URI to download the package from (pull).",
        ),
        res(
            2,
            "Update",
            "E",
            N,
            mandatory=True,
            description="Install the downloaded package; only in State Downloaded.",
        ),
        res(
            3,
            "State",
            "R",
            I,
            mandatory=True,
            range="0..3",
            description="0 Idle, 1 Downloading, 2 Downloaded, 3 Updating.",
        ),
        res(
            5,
            "Update Result",
            "R",
            I,
            mandatory=True,
            range="0..11",
            description="Result of the last download or update (see UpdateResult).",
        ),
        res(6, "PkgName", "R", S, range="0..255", description="Name of the package."),
        res(7, "PkgVersion", "R", S, range="0..255", description="Version of the package."),
        res(
            8,
            "Firmware Update Protocol Support",
            "R",
            I,
            multiple=True,
            range="0..5",
            description="Pull protocols the client supports (see UpdateProtocol).",
        ),
        res(
            9,
            "Firmware Update Delivery Method",
            "R",
            I,
            mandatory=True,
            range="0..2",
            description="0 pull only, 1 push only, 2 both.",
        ),
        res(
            10, "Cancel", "E", N, description="Cancel the update; 4.05 once installing has started."
        ),
        res(
            11,
            "Severity",
            "RW",
            I,
            range="0..2",
            description="0 Critical, 1 Mandatory (default), 2 Optional.",
        ),
        res(12, "Last State Change Time", "R", T, description="Written before every State change."),
        res(
            13,
            "Maximum Defer Period",
            "RW",
            U,
            units="s",
            description="How long a user may defer the update; 0 forbids deferral.",
        ),
        res(
            14,
            "Automatic Upgrade at Download",
            "RW",
            B,
            description="If true, install at download end without Execute /5/0/2.",
        ),
    ],
)
