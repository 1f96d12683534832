"""Object 3 "Device" (object version 1.2, TS Core 1.2 Appendix E.4).

Resource table from the OMA registry's ``3.xml`` (urn:oma:lwm2m:oma:3:1.2). /3/0/3
Firmware Version is what an update job compares with its target version.
"""

from __future__ import annotations

from typing import Final

from fotakit.lwm2m.model import ObjectDef
from fotakit.lwm2m.objects._build import I, L, N, S, T, obj, res

DEVICE: Final[ObjectDef] = obj(
    3,
    "Device",
    version="1.2",
    lwm2m_version="1.1",
    multiple=False,
    mandatory=True,
    description="Device information, reboot and factory reset.",
    resources=[
        res(0, "Manufacturer", "R", S, description="Human readable manufacturer name."),
        res(1, "Model Number", "R", S, description="Manufacturer specified model identifier."),
        res(2, "Serial Number", "R", S, description="Serial number."),
        res(3, "Firmware Version", "R", S, description="Current firmware version."),
        res(4, "Reboot", "E", N, mandatory=True, description="Reboot the device."),
        res(5, "Factory Reset", "E", N, description="Reset the device to factory state."),
        res(
            6,
            "Available Power Sources",
            "R",
            I,
            multiple=True,
            range="0..7",
            description="0 DC, 1 internal battery, 2 external battery, ... 7 solar.",
        ),
        res(
            7,
            "Power Source Voltage",
            "R",
            I,
            multiple=True,
            description="Voltage of each power source, in mV.",
        ),
        res(
            8,
            "Power Source Current",
            "R",
            I,
            multiple=True,
            description="Current of each power source, in mA.",
        ),
        res(
            9,
            "Battery Level",
            "R",
            I,
            range="0..100",
            units="/100",
            description="Internal battery level in percent.",
        ),
        res(
            10, "Memory Free", "R", I, description="Free storage in kilobytes (1 kB = 1000 bytes)."
        ),
        res(
            11,
            "Error Code",
            "R",
            I,
            multiple=True,
            mandatory=True,
            range="0..32",
            description="0 no error, 1 low battery, ... 16..32 device specific.",
        ),
        res(12, "Reset Error Code", "E", N, description="Clear all error codes."),
        res(13, "Current Time", "RW", T, description="Current UNIX time of the client."),
        res(14, "UTC Offset", "RW", S, description="UTC offset in effect (ISO 8601)."),
        res(15, "Timezone", "RW", S, description="IANA time zone of the device."),
        res(
            16,
            "Supported Binding and Modes",
            "R",
            S,
            mandatory=True,
            description="Bindings and modes the client supports.",
        ),
        res(17, "Device Type", "R", S, description="Manufacturer specified device type."),
        res(18, "Hardware Version", "R", S, description="Current hardware version."),
        res(
            19,
            "Software Version",
            "R",
            S,
            description="Current software version, managed with object 5.",
        ),
        res(
            20,
            "Battery Status",
            "R",
            I,
            range="0..6",
            description="0 normal, 1 charging, 2 charge complete, ... 6 unknown.",
        ),
        res(
            21,
            "Memory Total",
            "R",
            I,
            description="Total storage in kilobytes (1 kB = 1000 bytes).",
        ),
        res(
            22,
            "ExtDevInfo",
            "R",
            L,
            multiple=True,
            description="Links to external Device object instances (e.g. a host).",
        ),
    ],
)
