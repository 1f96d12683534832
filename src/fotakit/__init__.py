"""fotakit: over-the-air firmware updates for IoT fleets with LwM2M."""

__version__ = "0.1.0"
