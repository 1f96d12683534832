"""Object 3 "Device": identity and housekeeping of the device (TS Core 1.1.1 E.4).

The values FOTA relies on: /3/0/3 Firmware Version (the server's proof that an update
took), /3/0/4 Reboot (mandatory, executable), /3/0/16 Supported Binding and Modes, and
/3/0/13 Current Time (writable: the server may set the clock; we keep an offset).

Battery (/3/0/9 Battery Level, /3/0/20 Battery Status) and memory (/3/0/10 Memory Free,
/3/0/21 Memory Total, both in kB of 1000 bytes) come from a pluggable
:class:`DeviceStatusSource`: :class:`LinuxDeviceStatus` reads ``/proc/meminfo`` and
``/sys/class/power_supply``; :class:`SimulatedDeviceStatus` holds settable values and
tells the instance when they change (so observers of /3/0/9 are notified). The firmware
version may be a callable (the device agent passes "the version of the running slot").
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path as FsPath
from typing import Protocol

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
BATTERY_STATUS = 20
MEMORY_TOTAL = 21
AVAILABLE_POWER_SOURCES = 6
BATTERY_LEVEL = 9
MEMORY_FREE = 10


class BatteryStatus(enum.IntEnum):
    """/3/0/20 Battery Status values (TS Core 1.1.1 E.4)."""

    NORMAL = 0
    CHARGING = 1
    CHARGE_COMPLETE = 2
    DAMAGED = 3
    LOW_BATTERY = 4
    NOT_INSTALLED = 5
    UNKNOWN = 6


class PowerSource(enum.IntEnum):
    """/3/0/6 Available Power Sources values."""

    DC = 0
    INTERNAL_BATTERY = 1
    EXTERNAL_BATTERY = 2
    FUEL_CELL = 3
    POWER_OVER_ETHERNET = 4
    USB = 5
    AC_MAINS = 6
    SOLAR = 7


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """The changing figures of Object 3 at one moment (None: the device cannot tell)."""

    battery_level: int | None = None  # percent 0..100
    battery_status: BatteryStatus | None = None
    memory_free_kb: int | None = None  # kB = 1000 bytes (TS E.4)
    memory_total_kb: int | None = None
    power_sources: tuple[PowerSource, ...] = ()


class DeviceStatusSource(Protocol):
    """Where battery and memory figures come from.

    ``status()`` is called on every Read, so it should be cheap. ``subscribe`` registers a
    callback the source calls when it knows a value changed (sources that only poll may
    never call it).
    """

    def status(self) -> DeviceStatus: ...

    def subscribe(self, listener: Callable[[], None]) -> None: ...


_BATTERY_STATUS_TEXT = {
    "charging": BatteryStatus.CHARGING,
    "full": BatteryStatus.CHARGE_COMPLETE,
    "discharging": BatteryStatus.NORMAL,
    "not charging": BatteryStatus.NORMAL,
    "unknown": BatteryStatus.UNKNOWN,
}

#: A battery below this level reports Battery Status 4 "low battery".
LOW_BATTERY_PERCENT = 10


def parse_meminfo(text: str) -> tuple[int | None, int | None]:
    """(free kB, total kB) from ``/proc/meminfo`` text (kiB there, kB = 1000 B here).

    "Free" is ``MemAvailable`` (what a new process could use), falling back to ``MemFree``.
    Lines that do not parse are ignored.
    """
    values: dict[str, int] = {}
    for line in text.splitlines()[:200]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        factor = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
        values[key.strip()] = int(parts[0]) * factor
    free = values.get("MemAvailable", values.get("MemFree"))
    total = values.get("MemTotal")
    return (
        None if free is None else free // 1000,
        None if total is None else total // 1000,
    )


class LinuxDeviceStatus:
    """Battery and memory of the Linux host this agent runs on.

    ``root`` is the file-system root holding ``proc`` and ``sys`` (``/`` on a device; a
    test may point it at a prepared tree). A host without a battery reports Battery Status
    5 "not installed", no Battery Level, and DC power.
    """

    def __init__(self, root: FsPath | str = "/") -> None:
        self.root = FsPath(root)

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Polling source: never calls back (the agent refreshes observers periodically)."""

    def _read(self, relative: str) -> str | None:
        try:
            return (self.root / relative).read_text(encoding="ascii", errors="replace")
        except OSError:
            return None

    def _battery(self) -> tuple[int | None, BatteryStatus]:
        supplies = self.root / "sys/class/power_supply"
        try:
            entries = sorted(supplies.iterdir())[:32]
        except OSError:
            entries = []
        for entry in entries:
            kind = self._read(f"sys/class/power_supply/{entry.name}/type")
            if kind is None or kind.strip().lower() != "battery":
                continue
            capacity = self._read(f"sys/class/power_supply/{entry.name}/capacity")
            text = (self._read(f"sys/class/power_supply/{entry.name}/status") or "").strip()
            level = None
            if capacity is not None and capacity.strip().isdigit():
                level = max(0, min(100, int(capacity.strip())))
            status = _BATTERY_STATUS_TEXT.get(text.lower(), BatteryStatus.UNKNOWN)
            if status is BatteryStatus.NORMAL and level is not None and level < LOW_BATTERY_PERCENT:
                status = BatteryStatus.LOW_BATTERY
            return level, status
        return None, BatteryStatus.NOT_INSTALLED

    def status(self) -> DeviceStatus:
        meminfo = self._read("proc/meminfo")
        free, total = parse_meminfo(meminfo) if meminfo is not None else (None, None)
        level, battery = self._battery()
        sources = (
            (PowerSource.INTERNAL_BATTERY,)
            if battery is not BatteryStatus.NOT_INSTALLED
            else (PowerSource.DC,)
        )
        return DeviceStatus(level, battery, free, total, sources)


class SimulatedDeviceStatus:
    """Settable battery and memory figures (the fleet simulator drives them).

    :meth:`set` changes any of the :class:`DeviceStatus` fields and calls the subscribed
    listeners when something changed, which notifies observers of /3/0.
    """

    def __init__(self, initial: DeviceStatus | None = None) -> None:
        self._status = initial or DeviceStatus(
            battery_level=100,
            battery_status=BatteryStatus.NORMAL,
            memory_free_kb=64_000,
            memory_total_kb=128_000,
            power_sources=(PowerSource.INTERNAL_BATTERY,),
        )
        self._listeners: list[Callable[[], None]] = []

    def status(self) -> DeviceStatus:
        return self._status

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def set(
        self,
        *,
        battery_level: int | None = None,
        battery_status: BatteryStatus | None = None,
        memory_free_kb: int | None = None,
        memory_total_kb: int | None = None,
    ) -> None:
        """Change the given figures (None: keep); listeners run if anything changed."""
        if battery_level is not None and not 0 <= battery_level <= 100:
            raise ValueError("battery level must be 0..100")
        old = self._status
        new = DeviceStatus(
            old.battery_level if battery_level is None else battery_level,
            old.battery_status if battery_status is None else battery_status,
            old.memory_free_kb if memory_free_kb is None else memory_free_kb,
            old.memory_total_kb if memory_total_kb is None else memory_total_kb,
            old.power_sources,
        )
        if new != old:
            self._status = new
            for listener in list(self._listeners):
                listener()


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
        status: DeviceStatusSource | None = None,
        firmware_version: Callable[[], str] | None = None,
    ) -> None:
        super().__init__()
        self.info = info or DeviceInfo()
        self.reboot = reboot
        self.factory_reset = factory_reset
        self._clock = clock or (lambda: datetime.now(UTC))
        self._clock_offset = timedelta()
        self.error_codes: dict[int, Value] = {0: 0}  # 0: no error (TS E.4 /3/0/11)
        self.status_source = status
        self._firmware_version = firmware_version
        self._last_status = status.status() if status is not None else DeviceStatus()
        if status is not None:
            status.subscribe(self.refresh_status)

    def refresh_status(self) -> None:
        """Re-read the status source and notify observers of the figures that changed."""
        if self.status_source is None:
            return
        new = self.status_source.status()
        old, self._last_status = self._last_status, new
        pairs = (
            (BATTERY_LEVEL, old.battery_level, new.battery_level),
            (BATTERY_STATUS, old.battery_status, new.battery_status),
            (MEMORY_FREE, old.memory_free_kb, new.memory_free_kb),
            (MEMORY_TOTAL, old.memory_total_kb, new.memory_total_kb),
            (AVAILABLE_POWER_SOURCES, old.power_sources, new.power_sources),
        )
        for rid, before, after in pairs:
            if before != after:
                self.notify_changed(rid)

    @property
    def firmware_version(self) -> str:
        """/3/0/3: from the firmware-version callable when given, else ``info``."""
        if self._firmware_version is not None:
            return self._firmware_version()
        return self.info.firmware_version

    def _dynamic(self) -> dict[int, ResourceValue]:
        if self.status_source is None:
            return {}
        status = self.status_source.status()
        self._last_status = status
        values: dict[int, ResourceValue] = {}
        if status.battery_level is not None:
            values[BATTERY_LEVEL] = status.battery_level
        if status.battery_status is not None:
            values[BATTERY_STATUS] = int(status.battery_status)
        if status.memory_free_kb is not None:
            values[MEMORY_FREE] = status.memory_free_kb
        if status.memory_total_kb is not None:
            values[MEMORY_TOTAL] = status.memory_total_kb
        if status.power_sources:
            values[AVAILABLE_POWER_SOURCES] = {
                i: int(src) for i, src in enumerate(status.power_sources)
            }
        return values

    def _static(self) -> dict[int, Value]:
        info = self.info
        values: dict[int, Value] = {
            MANUFACTURER: info.manufacturer,
            MODEL_NUMBER: info.model_number,
            SERIAL_NUMBER: info.serial_number,
            FIRMWARE_VERSION: self.firmware_version,
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
        """Device side: the running firmware changed (after an update).

        With a firmware-version callable, this only notifies observers when ``version``
        differs from what was last stored here.
        """
        if version != self.info.firmware_version:
            self.info.firmware_version = version
            self.notify_changed(FIRMWARE_VERSION)

    def resource_ids(self) -> list[int]:
        ids = set(self._static()) | {REBOOT, ERROR_CODE, RESET_ERROR_CODE, CURRENT_TIME}
        ids |= set(self._dynamic())
        if self.factory_reset is not None:
            ids.add(FACTORY_RESET)
        return sorted(ids)

    def read(self, resource_id: int) -> ResourceValue:
        if resource_id == CURRENT_TIME:
            return self.current_time
        if resource_id == ERROR_CODE:
            return dict(self.error_codes)
        static: dict[int, ResourceValue] = dict(self._static())
        if resource_id in (
            BATTERY_LEVEL,
            BATTERY_STATUS,
            MEMORY_FREE,
            MEMORY_TOTAL,
            AVAILABLE_POWER_SOURCES,
        ):
            static = self._dynamic()
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
