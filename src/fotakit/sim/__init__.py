"""Fleet simulation and network impairment: :class:`UdpRelay` delays, drops and throttles
datagrams between CoAP peers on loopback, for benchmarks and the device simulator."""

from fotakit.sim.relay import DirectionStats, Impairment, UdpRelay

__all__ = ["DirectionStats", "Impairment", "UdpRelay"]
