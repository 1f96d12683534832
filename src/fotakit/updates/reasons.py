"""Typed failure reasons of update jobs: why a device did not end on the target firmware.

The first group mirrors the Update Result codes 2-11 of Object 5 (/5/0/5; OMA registry
``5.xml``, codes 10 and 11 from object version 1.1; TS Core 1.2 Appendix E.6). The
second group is what only the server can observe: a state that did not move in time, a
device that came back on its old firmware (rollback), one that never answered, an operator
cancel, an error code from a device-management operation, no delivery method the device
and the repository share, an update of someone else that never ends, an Object 5 that
ignores the reset. The string values are stable: they are stored with each job and
shown in APIs and campaign counters (pain point "failure reason missing or wrong").
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from fotakit.lwm2m.objects import UpdateResult


class FailureReason(StrEnum):
    """Why a job ended FAILED, TIMED_OUT or CANCELLED (stable strings)."""

    # -- Update Result codes reported by the device in /5/0/5 ---------------------------------
    NOT_ENOUGH_STORAGE = "not_enough_storage"  # 2 "Not enough flash memory"
    OUT_OF_RAM = "out_of_ram"  # 3 "Out of RAM during downloading process"
    CONNECTION_LOST = "connection_lost"  # 4 "Connection lost during downloading process"
    INTEGRITY_FAILURE = "integrity_failure"  # 5 "Integrity check failure"
    UNSUPPORTED_PACKAGE = "unsupported_package"  # 6 "Unsupported package type"
    INVALID_URI = "invalid_uri"  # 7 "Invalid URI"
    UPDATE_FAILED = "update_failed"  # 8 "Firmware update failed"
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"  # 9 "Unsupported protocol"
    CANCELLED_ON_DEVICE = "cancelled_on_device"  # 10 "Firmware update cancelled" (not by us)
    DEFERRED = "deferred"  # 11 "Firmware update deferred", beyond what the job allows
    # -- what the server observes ---------------------------------------------------------------
    ROLLED_BACK = "rolled_back"
    """Re-registered after the update on its old firmware version (A/B fallback)."""
    WRONG_VERSION = "wrong_version"
    """Re-registered on a version that is neither the target nor the old one."""
    VERSION_UNKNOWN = "version_unknown"
    """Neither /3/0/3 nor /5/0/7 could be read after re-registration: success unprovable."""
    TIMED_OUT = "timed_out"
    """A per-state deadline passed (downloading, downloaded, updating, re-registration)."""
    UNREACHABLE = "unreachable"
    """Requests timed out or could not be sent (RequestTimeout, DeviceUnreachable)."""
    CANCELLED = "cancelled"
    """Cancelled by the operator (or its campaign)."""
    DEVICE_ERROR = "device_error"
    """A device-management operation was answered with an error code (4.xx/5.xx)."""
    NO_DELIVERY_METHOD = "no_delivery_method"
    """/5/0/8 and /5/0/9 leave no way to deliver the package the repository offers."""
    URI_TOO_LONG = "uri_too_long"
    """Every usable Package URI is longer than the 255 bytes /5/0/1 holds."""
    NO_FIRMWARE_OBJECT = "no_firmware_object"
    """The device has no readable Object 5 instance /5/0."""
    LINK_TOO_POOR = "link_too_poor"
    """A push-only device whose radio never got good enough within the allowed wait."""
    DEVICE_BUSY = "device_busy"
    """Object 5 stayed Updating with an update the job did not start (someone else's),
    past ``updating_timeout_s`` from when that was first seen."""
    OBJECT5_STUCK = "object5_stuck"
    """Object 5 stayed Downloading/Downloaded after the reset writes (empty Package URI,
    TS Core E.6) were acknowledged: the device ignores the reset."""

    @classmethod
    def from_update_result(cls, code: int) -> FailureReason | None:
        """The reason for an Update Result code, or None for 0 (Initial) and 1 (Success)."""
        try:
            result = UpdateResult(code)
        except ValueError:
            return None
        return _BY_RESULT.get(result)

    @property
    def update_result(self) -> UpdateResult | None:
        """The /5/0/5 code this reason stands for (None for server-side reasons)."""
        return _RESULT_BY_REASON.get(self)

    @property
    def retryable(self) -> bool:
        """True when trying again later can reasonably succeed.

        Transient conditions (a lost connection, RAM pressure during the download, a
        deadline, an unreachable device) are retried within the job's budget; a property
        of the package or the device (integrity, storage, package type, URI, protocol) or
        a verdict of the device (update failed, rolled back) is not: the same package
        would fail the same way.
        """
        return self in _RETRYABLE


_BY_RESULT: Final[dict[UpdateResult, FailureReason]] = {
    UpdateResult.NOT_ENOUGH_FLASH: FailureReason.NOT_ENOUGH_STORAGE,
    UpdateResult.OUT_OF_RAM: FailureReason.OUT_OF_RAM,
    UpdateResult.CONNECTION_LOST: FailureReason.CONNECTION_LOST,
    UpdateResult.INTEGRITY_CHECK_FAILURE: FailureReason.INTEGRITY_FAILURE,
    UpdateResult.UNSUPPORTED_PACKAGE_TYPE: FailureReason.UNSUPPORTED_PACKAGE,
    UpdateResult.INVALID_URI: FailureReason.INVALID_URI,
    UpdateResult.UPDATE_FAILED: FailureReason.UPDATE_FAILED,
    UpdateResult.UNSUPPORTED_PROTOCOL: FailureReason.UNSUPPORTED_PROTOCOL,
    UpdateResult.CANCELLED: FailureReason.CANCELLED_ON_DEVICE,
    UpdateResult.DEFERRED: FailureReason.DEFERRED,
}
_RESULT_BY_REASON: Final = {reason: result for result, reason in _BY_RESULT.items()}
_RETRYABLE: Final = frozenset(
    {
        FailureReason.OUT_OF_RAM,
        FailureReason.CONNECTION_LOST,
        FailureReason.TIMED_OUT,
        FailureReason.UNREACHABLE,
    }
)

__all__ = ["FailureReason"]
