"""Well-known paths of the built-in objects, spelled as :class:`Path` (single instance 0)."""

from __future__ import annotations

from typing import Final

from fotakit.lwm2m.path import Path

# Object 3 Device
DEVICE_MANUFACTURER: Final = Path(3, 0, 0)
DEVICE_MODEL_NUMBER: Final = Path(3, 0, 1)
DEVICE_SERIAL_NUMBER: Final = Path(3, 0, 2)
DEVICE_FIRMWARE_VERSION: Final = Path(3, 0, 3)
DEVICE_REBOOT: Final = Path(3, 0, 4)
DEVICE_FACTORY_RESET: Final = Path(3, 0, 5)
DEVICE_SUPPORTED_BINDINGS: Final = Path(3, 0, 16)
DEVICE_HARDWARE_VERSION: Final = Path(3, 0, 18)
DEVICE_SOFTWARE_VERSION: Final = Path(3, 0, 19)

# Object 4 Connectivity Monitoring
CONNECTIVITY_NETWORK_BEARER: Final = Path(4, 0, 0)
CONNECTIVITY_RADIO_SIGNAL_STRENGTH: Final = Path(4, 0, 2)
CONNECTIVITY_LINK_QUALITY: Final = Path(4, 0, 3)

# Object 33600 fotakit Update Diagnostics (fotakit.lwm2m.objects.diagnostics)
DIAGNOSTICS_LAST_FAILURE_TEXT: Final = Path(33600, 0, 0)
DIAGNOSTICS_LAST_FAILURE_TIME: Final = Path(33600, 0, 1)

# Object 5 Firmware Update
FIRMWARE: Final = Path(5)
FIRMWARE_INSTANCE: Final = Path(5, 0)
FIRMWARE_PACKAGE: Final = Path(5, 0, 0)
FIRMWARE_PACKAGE_URI: Final = Path(5, 0, 1)
FIRMWARE_UPDATE: Final = Path(5, 0, 2)
FIRMWARE_STATE: Final = Path(5, 0, 3)
FIRMWARE_UPDATE_RESULT: Final = Path(5, 0, 5)
FIRMWARE_PKG_NAME: Final = Path(5, 0, 6)
FIRMWARE_PKG_VERSION: Final = Path(5, 0, 7)
FIRMWARE_PROTOCOL_SUPPORT: Final = Path(5, 0, 8)
FIRMWARE_DELIVERY_METHOD: Final = Path(5, 0, 9)
FIRMWARE_CANCEL: Final = Path(5, 0, 10)
FIRMWARE_SEVERITY: Final = Path(5, 0, 11)
FIRMWARE_LAST_STATE_CHANGE_TIME: Final = Path(5, 0, 12)
FIRMWARE_MAXIMUM_DEFER_PERIOD: Final = Path(5, 0, 13)
FIRMWARE_AUTOMATIC_UPGRADE: Final = Path(5, 0, 14)

# Object 1 LwM2M Server: resource IDs (the instance differs per server account)
SERVER_SHORT_ID: Final = 0
SERVER_LIFETIME: Final = 1
SERVER_DEFAULT_PMIN: Final = 2
SERVER_DEFAULT_PMAX: Final = 3
SERVER_BINDING: Final = 7
SERVER_REGISTRATION_UPDATE_TRIGGER: Final = 8
