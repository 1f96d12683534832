"""Built-in definitions of the core LwM2M objects 0, 1, 3, 4 and 5, and fotakit's own 33600.

Written in Python (not loaded from XML at run time) from the OMA LwM2M registry DDFs
(``OpenMobileAlliance/lwm2m-registry``): 0 Security v1.2, 1 Server v1.2, 3 Device v1.2,
4 Connectivity Monitoring v1.3, 5 Firmware Update v1.2. TS Core 1.2 Appendix E.
33600 "fotakit Update Diagnostics" is the agent's private object (:mod:`.diagnostics`).
User objects come from :func:`fotakit.lwm2m.ddf.load_ddf` and are added to the registry.
"""

from __future__ import annotations

from typing import Final

from fotakit.lwm2m.model import ObjectDef, ObjectRegistry
from fotakit.lwm2m.objects.connectivity import CONNECTIVITY_MONITORING, NetworkBearer
from fotakit.lwm2m.objects.device import DEVICE
from fotakit.lwm2m.objects.diagnostics import (
    UPDATE_DIAGNOSTICS,
    UPDATE_DIAGNOSTICS_ID,
    DiagnosticsResource,
    FailurePhase,
)
from fotakit.lwm2m.objects.firmware import (
    FIRMWARE_UPDATE,
    DeliveryMethod,
    Severity,
    State,
    UpdateProtocol,
    UpdateResult,
)
from fotakit.lwm2m.objects.paths import (
    CONNECTIVITY_LINK_QUALITY,
    CONNECTIVITY_NETWORK_BEARER,
    CONNECTIVITY_RADIO_SIGNAL_STRENGTH,
    DEVICE_FACTORY_RESET,
    DEVICE_FIRMWARE_VERSION,
    DEVICE_HARDWARE_VERSION,
    DEVICE_MANUFACTURER,
    DEVICE_MODEL_NUMBER,
    DEVICE_REBOOT,
    DEVICE_SERIAL_NUMBER,
    DEVICE_SOFTWARE_VERSION,
    DEVICE_SUPPORTED_BINDINGS,
    FIRMWARE,
    FIRMWARE_AUTOMATIC_UPGRADE,
    FIRMWARE_CANCEL,
    FIRMWARE_DELIVERY_METHOD,
    FIRMWARE_INSTANCE,
    FIRMWARE_LAST_STATE_CHANGE_TIME,
    FIRMWARE_MAXIMUM_DEFER_PERIOD,
    FIRMWARE_PACKAGE,
    FIRMWARE_PACKAGE_URI,
    FIRMWARE_PKG_NAME,
    FIRMWARE_PKG_VERSION,
    FIRMWARE_PROTOCOL_SUPPORT,
    FIRMWARE_SEVERITY,
    FIRMWARE_STATE,
    FIRMWARE_UPDATE_RESULT,
    SERVER_BINDING,
    SERVER_DEFAULT_PMAX,
    SERVER_DEFAULT_PMIN,
    SERVER_LIFETIME,
    SERVER_REGISTRATION_UPDATE_TRIGGER,
    SERVER_SHORT_ID,
)
from fotakit.lwm2m.objects.security import SECURITY
from fotakit.lwm2m.objects.server import SERVER

BUILTIN_OBJECTS: Final[tuple[ObjectDef, ...]] = (
    SECURITY,
    SERVER,
    DEVICE,
    CONNECTIVITY_MONITORING,
    FIRMWARE_UPDATE,
)

#: fotakit's own objects, in the vendor range: known to the server and the CLI so they
#: can decode what the agent serves.
VENDOR_OBJECTS: Final[tuple[ObjectDef, ...]] = (UPDATE_DIAGNOSTICS,)


def builtin_registry() -> ObjectRegistry:
    """A new registry holding objects 0, 1, 3, 4, 5 and 33600 (callers may add their own)."""
    return ObjectRegistry((*BUILTIN_OBJECTS, *VENDOR_OBJECTS))


__all__ = [
    "BUILTIN_OBJECTS",
    "CONNECTIVITY_LINK_QUALITY",
    "CONNECTIVITY_MONITORING",
    "CONNECTIVITY_NETWORK_BEARER",
    "CONNECTIVITY_RADIO_SIGNAL_STRENGTH",
    "DEVICE",
    "DEVICE_FACTORY_RESET",
    "DEVICE_FIRMWARE_VERSION",
    "DEVICE_HARDWARE_VERSION",
    "DEVICE_MANUFACTURER",
    "DEVICE_MODEL_NUMBER",
    "DEVICE_REBOOT",
    "DEVICE_SERIAL_NUMBER",
    "DEVICE_SOFTWARE_VERSION",
    "DEVICE_SUPPORTED_BINDINGS",
    "FIRMWARE",
    "FIRMWARE_AUTOMATIC_UPGRADE",
    "FIRMWARE_CANCEL",
    "FIRMWARE_DELIVERY_METHOD",
    "FIRMWARE_INSTANCE",
    "FIRMWARE_LAST_STATE_CHANGE_TIME",
    "FIRMWARE_MAXIMUM_DEFER_PERIOD",
    "FIRMWARE_PACKAGE",
    "FIRMWARE_PACKAGE_URI",
    "FIRMWARE_PKG_NAME",
    "FIRMWARE_PKG_VERSION",
    "FIRMWARE_PROTOCOL_SUPPORT",
    "FIRMWARE_SEVERITY",
    "FIRMWARE_STATE",
    "FIRMWARE_UPDATE",
    "FIRMWARE_UPDATE_RESULT",
    "SECURITY",
    "SERVER",
    "SERVER_BINDING",
    "SERVER_DEFAULT_PMAX",
    "SERVER_DEFAULT_PMIN",
    "SERVER_LIFETIME",
    "SERVER_REGISTRATION_UPDATE_TRIGGER",
    "SERVER_SHORT_ID",
    "UPDATE_DIAGNOSTICS",
    "UPDATE_DIAGNOSTICS_ID",
    "VENDOR_OBJECTS",
    "DeliveryMethod",
    "DiagnosticsResource",
    "FailurePhase",
    "NetworkBearer",
    "Severity",
    "State",
    "UpdateProtocol",
    "UpdateResult",
    "builtin_registry",
]
