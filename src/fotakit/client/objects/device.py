"""Object 3 "Device": identity and housekeeping of the device (TS Core 1.1.1 E.4).

The values FOTA relies on: /3/0/3 Firmware Version (the server's proof that an update
took), /3/0/4 Reboot (mandatory, executable), /3/0/16 Supported Binding and Modes, and
/3/0/13 Current Time (writable: the server may set the clock; we keep an offset).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fotakit.client.instance import ExecuteResult, LwM2MObject, ObjectInstance, ResourceValue
from fotakit.lwm2m.errors import BadRequest, MethodNotAllowed, NotFound
from fotakit.lwm2m.model import ObjectDef, Value

MANUFACTURER = 0
MODEL_NUMBER = 1
SERIAL_NUMBER = 2
FIRMWARE_VERSION = 3
REBOOT = 4
FACTORY_RESET = 5
ERROR_CODE = 11
RESET_ERROR_CODE = 12
CURRENT_TIME = 13
UTC_OFFSET = 14
TIMEZONE = 15
SUPPORTED_BINDINGS = 16
DEVICE_TYPE = 17
HARDWARE_VERSION = 18
SOFTWARE_VERSION = 19

#: An Execute handler of the Device object: receives the Execute arguments.
DeviceAction = Callable[[str | None], ExecuteResult]


@dataclass(slots=True)
class DeviceInfo:
    """What the device tells about itself."""

    manufacturer: str = "fotakit"
    model_number: str = "fotakit-agent"
    serial_number: str = "0"
    firmware_version: str = "0.0.0"
    hardware_version: str | None = None
    software_version: str | None = None
    device_type: str | None = None
    supported_bindings: str = "U"
    utc_offset: str = "+00:00"
    timezone: str = "UTC"


class DeviceInstance(ObjectInstance):
    """/3/0. ``reboot`` and ``factory_reset`` are the device's hooks (None: 4.05).

    A hook runs when the Execute arrives and must not block; a device that really reboots
    should schedule that after the 2.04 went out.
    """

    def __init__(
        self,
        info: DeviceInfo | None = None,
        *,
        reboot: DeviceAction | None = None,
        factory_reset: DeviceAction | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        self.info = info or DeviceInfo()
        self.reboot = reboot
        self.factory_reset = factory_reset
        self._clock = clock or (lambda: datetime.now(UTC))
        self._clock_offset = timedelta()
        self.error_codes: dict[int, Value] = {0: 0}  # 0: no error (TS E.4 /3/0/11)

    def _static(self) -> dict[int, Value]:
        info = self.info
        values: dict[int, Value] = {
            MANUFACTURER: info.manufacturer,
            MODEL_NUMBER: info.model_number,
            SERIAL_NUMBER: info.serial_number,
            FIRMWARE_VERSION: info.firmware_version,
            UTC_OFFSET: info.utc_offset,
            TIMEZONE: info.timezone,
            SUPPORTED_BINDINGS: info.supported_bindings,
        }
        optional = {
            HARDWARE_VERSION: info.hardware_version,
            SOFTWARE_VERSION: info.software_version,
            DEVICE_TYPE: info.device_type,
        }
        values.update({rid: v for rid, v in optional.items() if v is not None})
        return values

    @property
    def current_time(self) -> datetime:
        return (self._clock() + self._clock_offset).replace(microsecond=0)

    def set_firmware_version(self, version: str) -> None:
        """Device side: the running firmware changed (after an update)."""
        if version != self.info.firmware_version:
            self.info.firmware_version = version
            self.notify_changed(FIRMWARE_VERSION)

    def resource_ids(self) -> list[int]:
        ids = set(self._static()) | {REBOOT, ERROR_CODE, RESET_ERROR_CODE, CURRENT_TIME}
        if self.factory_reset is not None:
            ids.add(FACTORY_RESET)
        return sorted(ids)

    def read(self, resource_id: int) -> ResourceValue:
        if resource_id == CURRENT_TIME:
            return self.current_time
        if resource_id == ERROR_CODE:
            return dict(self.error_codes)
        static = self._static()
        if resource_id not in static:
            raise NotFound(f"resource {resource_id} not present")
        return static[resource_id]

    def write(self, resource_id: int, value: ResourceValue, replace: bool) -> None:
        if resource_id == CURRENT_TIME:
            if not isinstance(value, datetime):
                raise BadRequest("Current Time needs a time value")
            self._clock_offset = value - self._clock()
        elif resource_id == UTC_OFFSET and isinstance(value, str):
            self.info.utc_offset = value
        elif resource_id == TIMEZONE and isinstance(value, str):
            self.info.timezone = value
        elif resource_id in (UTC_OFFSET, TIMEZONE):
            raise BadRequest(f"resource {resource_id} needs a string")
        else:
            raise MethodNotAllowed(f"resource {resource_id} is not writable")
        self.notify_changed(resource_id)

    def execute(self, resource_id: int, args: str | None) -> ExecuteResult:
        if resource_id == REBOOT:
            if self.reboot is None:
                raise MethodNotAllowed("this device has no reboot hook")
            return self.reboot(args)
        if resource_id == FACTORY_RESET:
            if self.factory_reset is None:
                raise MethodNotAllowed("this device has no factory reset")
            return self.factory_reset(args)
        if resource_id == RESET_ERROR_CODE:
            self.error_codes = {0: 0}
            self.notify_changed(ERROR_CODE)
            return None
        raise MethodNotAllowed(f"resource {resource_id} is not executable")


def device_object(definition: ObjectDef, instance: DeviceInstance | None = None) -> LwM2MObject:
    """Object 3 with its single instance 0."""
    return LwM2MObject(definition, {0: instance or DeviceInstance()})
