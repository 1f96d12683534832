"""Fleet simulation and network impairment: :class:`UdpRelay` delays, drops and throttles
datagrams between CoAP peers on loopback, for benchmarks and the device simulator;
:mod:`fotakit.sim.profiles` names link profiles (RTT, loss, bandwidth, outages, radio
figures); :mod:`fotakit.sim.fleet` runs N real device agents behind them
(``from fotakit.sim.fleet import FleetSimulator, SimConfig``; not imported here, so the
relay stays importable without the agent)."""

from fotakit.sim.relay import DirectionStats, Impairment, UdpRelay

__all__ = ["DirectionStats", "Impairment", "UdpRelay"]
