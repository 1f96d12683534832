"""Link profiles of the fleet simulator: how a simulated device's radio link behaves.

A :class:`LinkProfile` is what the in-process relay (:class:`fotakit.sim.relay.UdpRelay`)
does to the device's datagrams — round-trip time (split evenly between the two
directions), jitter, i.i.d. loss, a bandwidth cap (bytes per second of serialisation
delay), and an optional periodic outage — plus the radio figures the device reports in
Object 4 (bearer /4/0/0, signal strength /4/0/2, link quality /4/0/3, SNR /4/0/11), which
the server's delivery choice reads (a signal below the policy's threshold means "pull,
do not push"), and the CoAP timers that suit the link.

Built-in profiles (:data:`PROFILES`): ``lan`` (wired, 1 ms), ``good`` (Wi-Fi, 20 ms,
0.5 %), ``cellular`` (LTE, 100 ms, 2 %), ``poor`` (LTE at the cell edge, 300 ms, 5 %,
-115 dBm: below the default -110 dBm push threshold), ``flaky`` (cellular that drops out
for 5 s every 60 s) and ``nbiot`` (1.5 s RTT, 2 kB/s). ``mixed`` is not a profile but a
seeded assignment (:data:`MIXED`: 40 % good, 30 % cellular, 20 % lan, 10 % poor);
:func:`assign_profiles` makes the same assignment for the same seed and device count.

Limits: loss is independent per datagram (no bursts beyond the outages), the figures are
constant for a run, and the bandwidth is per device (devices sharing a real cell would
share its capacity; they do not here).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from fotakit.coap import TransportParams
from fotakit.lwm2m.objects.connectivity import NetworkBearer
from fotakit.sim.relay import Impairment

MIXED_NAME: Final = "mixed"


@dataclass(frozen=True, slots=True)
class Outages:
    """A periodic blackout: down for ``duration_s`` once every ``every_s`` seconds (each
    device at its own seeded phase, so a fleet does not drop out all at once)."""

    every_s: float
    duration_s: float

    def __post_init__(self) -> None:
        if not 0 < self.duration_s < self.every_s:
            raise ValueError("an outage must be shorter than its period, and longer than 0")


@dataclass(frozen=True, slots=True)
class Radio:
    """Object 4 figures a device on this link reports."""

    bearer: NetworkBearer
    rssi_dbm: int
    """/4/0/2 Radio Signal Strength (0 for wired bearers)."""
    link_quality: int | None = None
    """/4/0/3 Link Quality (RSRQ dB on LTE, LQI on Wi-Fi)."""
    snr_db: int | None = None
    """/4/0/11 SNR."""
    coverage_enhancement_level: int | None = None
    """/4/0/13 CE level (NB-IoT)."""


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """One kind of link (see the module docstring)."""

    name: str
    rtt_s: float
    loss: float
    radio: Radio
    jitter_s: float = 0.0
    bandwidth: float | None = None
    """Bytes per second each direction carries (None: unlimited)."""
    outages: Outages | None = None
    ack_timeout_s: float = 1.0
    """The device's CoAP ACK_TIMEOUT on this link (a few RTTs, at least 0.5 s)."""
    description: str = ""

    def __post_init__(self) -> None:
        if self.rtt_s < 0 or self.jitter_s < 0:
            raise ValueError("rtt and jitter must not be negative")
        Impairment(loss=self.loss, bandwidth=self.bandwidth)  # range checks

    def impairment(self) -> Impairment:
        """What one direction of this link does (half the RTT each way)."""
        return Impairment(
            delay=self.rtt_s / 2,
            jitter=self.jitter_s / 2,
            loss=self.loss,
            bandwidth=self.bandwidth,
        )

    def transport(self) -> TransportParams:
        """The device's CoAP timers on this link."""
        return TransportParams(
            ack_timeout=self.ack_timeout_s,
            ack_random_factor=1.5,
            max_retransmit=4,
            request_timeout=max(30.0, self.ack_timeout_s * 31),
        )


PROFILES: Final[Mapping[str, LinkProfile]] = {
    p.name: p
    for p in (
        LinkProfile(
            "lan",
            rtt_s=0.001,
            loss=0.0,
            radio=Radio(NetworkBearer.ETHERNET, 0),
            ack_timeout_s=0.5,
            description="wired Ethernet: 1 ms, no loss",
        ),
        LinkProfile(
            "good",
            rtt_s=0.02,
            jitter_s=0.005,
            loss=0.005,
            bandwidth=250_000,
            radio=Radio(NetworkBearer.WLAN, -55, link_quality=200, snr_db=30),
            ack_timeout_s=0.5,
            description="Wi-Fi: 20 ms, 0.5 % loss, 250 kB/s, -55 dBm",
        ),
        LinkProfile(
            "cellular",
            rtt_s=0.1,
            jitter_s=0.02,
            loss=0.02,
            bandwidth=50_000,
            radio=Radio(NetworkBearer.LTE_FDD, -85, link_quality=-9, snr_db=12),
            ack_timeout_s=1.0,
            description="LTE: 100 ms, 2 % loss, 50 kB/s, -85 dBm",
        ),
        LinkProfile(
            "poor",
            rtt_s=0.3,
            jitter_s=0.05,
            loss=0.05,
            bandwidth=10_000,
            radio=Radio(NetworkBearer.LTE_FDD, -115, link_quality=-18, snr_db=-2),
            ack_timeout_s=1.5,
            description="LTE at the cell edge: 300 ms, 5 % loss, 10 kB/s, -115 dBm "
            "(below the push threshold: the server has it pull)",
        ),
        LinkProfile(
            "flaky",
            rtt_s=0.1,
            jitter_s=0.02,
            loss=0.02,
            bandwidth=50_000,
            radio=Radio(NetworkBearer.LTE_FDD, -95, link_quality=-12, snr_db=5),
            outages=Outages(every_s=60.0, duration_s=5.0),
            ack_timeout_s=1.0,
            description="LTE that loses coverage for 5 s every minute",
        ),
        LinkProfile(
            "nbiot",
            rtt_s=1.5,
            jitter_s=0.2,
            loss=0.01,
            bandwidth=2_000,
            radio=Radio(
                NetworkBearer.NB_IOT,
                -105,
                link_quality=-12,
                snr_db=3,
                coverage_enhancement_level=1,
            ),
            ack_timeout_s=4.0,
            description="NB-IoT: 1.5 s, 1 % loss, 2 kB/s (slow: updates take minutes)",
        ),
    )
}

MIXED: Final[tuple[tuple[str, float], ...]] = (
    ("good", 0.4),
    ("cellular", 0.3),
    ("lan", 0.2),
    ("poor", 0.1),
)
"""The share of each profile in ``--profile mixed``."""


def profile_names(known: Mapping[str, LinkProfile] = PROFILES) -> list[str]:
    """Every name ``--profile`` accepts."""
    return [MIXED_NAME, *known]


def check_profile(name: str, known: Mapping[str, LinkProfile] = PROFILES) -> str:
    """``name`` if it is a profile or ``mixed``; ValueError naming the choices otherwise."""
    if name != MIXED_NAME and name not in known:
        choices = ", ".join(profile_names(known))
        raise ValueError(f"unknown profile {name!r}; choose one of {choices}")
    return name


def assign_profiles(
    count: int, profile: str, seed: int, known: Mapping[str, LinkProfile] = PROFILES
) -> list[LinkProfile]:
    """The profile of each of ``count`` devices: all ``profile`` (looked up in ``known``),
    or for ``mixed`` the :data:`MIXED` shares (rounded so they add up to ``count``),
    shuffled by ``seed``."""
    check_profile(profile, known)
    if count < 0:
        raise ValueError("count must not be negative")
    if profile != MIXED_NAME:
        return [known[profile]] * count
    # Largest remainder: the shares are exact for any count, not only multiples of 10.
    quotas = [(name, share * count) for name, share in MIXED]
    counts = {name: int(q) for name, q in quotas}
    left = count - sum(counts.values())
    order = [name for name, _ in MIXED]
    by_remainder = sorted(quotas, key=lambda nq: (int(nq[1]) - nq[1], order.index(nq[0])))
    for name, _ in by_remainder[:left]:
        counts[name] += 1
    out = [PROFILES[name] for name, _ in MIXED for _ in range(counts[name])]
    random.Random(f"fotakit-sim/profiles/{seed}").shuffle(out)
    return out


def chosen(count: int, ratio: float, seed: int, what: str) -> frozenset[int]:
    """``round(ratio * count)`` device indexes chosen by ``seed`` (for failure injection;
    ``what`` keeps the choices of different injections independent)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"{what}: the ratio must be in 0..1, got {ratio}")
    k = round(ratio * count)
    return frozenset(random.Random(f"fotakit-sim/{what}/{seed}").sample(range(count), k))
