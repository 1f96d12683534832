"""Ready-made instances of the core objects for the client runtime.

Security (0) and Server (1) are built from :class:`fotakit.client.ClientConfig`; Device
(3) from :class:`DeviceInfo` plus the device's reboot hook. Objects 4 and 5 come with the
device agent.
"""

from fotakit.client.objects.device import DeviceInfo, DeviceInstance, device_object
from fotakit.client.objects.security import security_instance, security_object
from fotakit.client.objects.server import ServerInstance, server_object

__all__ = [
    "DeviceInfo",
    "DeviceInstance",
    "ServerInstance",
    "device_object",
    "security_instance",
    "security_object",
    "server_object",
]
