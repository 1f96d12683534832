"""Ready-made instances of the core objects for the client runtime.

Security (0) and Server (1) are built from :class:`fotakit.client.ClientConfig`; Device
(3) from :class:`DeviceInfo` plus the device's reboot hook and status source; Connectivity
Monitoring (4) from a :class:`ConnectivitySource` (Linux interfaces or simulated). Object 5
lives in :mod:`fotakit.agent.object5`.
"""

from fotakit.client.objects.connectivity import (
    ConnectivityInstance,
    ConnectivitySource,
    ConnectivityStatus,
    LinuxConnectivitySource,
    SimulatedConnectivitySource,
    connectivity_object,
)
from fotakit.client.objects.device import (
    DeviceInfo,
    DeviceInstance,
    DeviceStatus,
    LinuxDeviceStatus,
    SimulatedDeviceStatus,
    device_object,
)
from fotakit.client.objects.security import security_instance, security_object
from fotakit.client.objects.server import ServerInstance, server_object

__all__ = [
    "ConnectivityInstance",
    "ConnectivitySource",
    "ConnectivityStatus",
    "DeviceInfo",
    "DeviceInstance",
    "DeviceStatus",
    "LinuxConnectivitySource",
    "LinuxDeviceStatus",
    "ServerInstance",
    "SimulatedConnectivitySource",
    "SimulatedDeviceStatus",
    "connectivity_object",
    "device_object",
    "security_instance",
    "security_object",
    "server_object",
]
