"""Retransmission timeouts that follow the link: an RTT estimator in the style of CoCoA.

RFC 7252 §4.8 fixes the first retransmission timeout at ACK_TIMEOUT (2 s) x a random
factor up to 1.5, whatever the path's round-trip time. On a 20 ms link that turns every
lost block of a firmware download into 2-3 s of silence with the radio on.
draft-ietf-core-cocoa ("CoAP Simple Congestion Control/Advanced", CoCoA) measures the RTT
and derives the RTO from it, as TCP does (RFC 6298). This module is a pure, I/O-free
version of its estimator for one peer:

* **Strong estimator** — RTT samples from exchanges that needed no retransmission
  (unambiguous samples): SRTT/RTTVAR updated with alpha = 1/8, beta = 1/4 (RFC 6298
  §2), ``RTO_strong = SRTT + 4 x RTTVAR``.
* **Weak estimator** — samples from exchanges that were retransmitted once or twice,
  measured from the *first* transmission (so they overestimate rather than underestimate
  the RTT); the same filter with K = 1: ``RTO_weak = SRTT_weak + RTTVAR_weak``. Exchanges
  with more retransmissions give no sample (CoCoA: such a sample says more about the
  loss than the RTT).
* **Overall RTO** — each new estimate is blended into the one in use:
  ``RTO = 0.5 x RTO_strong + 0.5 x RTO`` after a strong sample,
  ``RTO = 0.25 x RTO_weak + 0.75 x RTO`` after a weak one. The first sample of each kind
  starts its estimator with ``SRTT = R, RTTVAR = R / 2``. Before any sample the RTO is
  RFC 7252's 2 s.
* **Variable backoff factor** (VBF) — the factor by which the timeout grows per
  retransmission depends on the RTO it started from: 3 below 1 s, 2 from 1 to 3 s, 1.5
  above 3 s (a short RTO backs off fast so that a few retransmissions still span a
  useful time; a long one slowly so the give-up time stays bounded).
* **Aging** — an estimate not refreshed for a while drifts back towards the default: an
  RTO below 1 s is doubled for every 16 x RTO without a sample; one above 3 s becomes
  ``1 s + RTO / 2`` for every 4 x RTO without a sample (the rules the CoCoA authors'
  own Californium implementation applies, ``Cocoa.checkAging``).
* **Bounds** — the RTO used is clamped to ``[min_rto, max_rto]``. RFC 6298 puts a 1 s
  floor under TCP's RTO; CoCoA has none of its own. The default floor here, 0.1 s, is far
  above a loopback or LAN RTT and below a cellular one; both bounds are configurable.

**How it drives aiocoap.** aiocoap 0.4.17 takes ``ACK_TIMEOUT``, ``ACK_RANDOM_FACTOR``
and ``MAX_RETRANSMIT`` from the ``transport_tuning`` of each message it sends
(``MessageManager._add_exchange``: first timeout uniform in
``[ACK_TIMEOUT, ACK_TIMEOUT x ACK_RANDOM_FACTOR]``; ``_retransmit``: ``timeout *= 2``
up to ``MAX_RETRANSMIT`` times). So :meth:`CocoaEstimator.tuning` gives, for the next
request, ``ACK_TIMEOUT = RTO`` with a small random factor (1.0 by default: the RTO is
measured, not a guess that needs dithering across a fleet waking up together), and the
retransmissions stay aiocoap's, with the same message ID, so the server deduplicates them.

aiocoap's backoff factor is fixed at 2, so the VBF cannot be applied literally. The first
retransmission — the one that matters when a single block is lost — happens at exactly
the CoCoA RTO either way. The VBF is mapped onto ``MAX_RETRANSMIT``: it is the smallest
number of doublings whose total wait before giving up (``RTO x (2^(n+1) - 1)``) is at
least what CoCoA's schedule ``RTO x VBF^k`` (k = 0..max_retransmit, each capped at
``max_backoff``) would wait. For RTO < 1 s (VBF 3) that means a few more, earlier,
retransmissions within the same give-up time; for RTO > 3 s (VBF 1.5) fewer. The
caller (the downloader) adds its own backoff between failed exchanges on top.

Because the random factor is 1.0, the number of retransmissions an exchange needed is
known from its duration alone (:meth:`CocoaEstimator.retransmissions_for`): aiocoap
sends the k-th retransmission ``RTO x (2^k - 1)`` after the first transmission.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from aiocoap.numbers.constants import TransportTuning

ALPHA: Final = 1 / 8
BETA: Final = 1 / 4
K_STRONG: Final = 4
K_WEAK: Final = 1
WEIGHT_STRONG: Final = 0.5
WEIGHT_WEAK: Final = 0.25
INITIAL_RTO: Final = 2.0
"""RFC 7252 §4.8 ACK_TIMEOUT: the RTO before the first sample."""
MAX_WEAK_RETRANSMISSIONS: Final = 2
"""Exchanges retransmitted more often than this give no RTT sample at all."""
VBF_LOW_LIMIT: Final = 1.0
VBF_HIGH_LIMIT: Final = 3.0
AIOCOAP_BACKOFF: Final = 2
"""aiocoap doubles the timeout on every retransmission (``MessageManager._retransmit``)."""
MAX_MAPPED_RETRANSMIT: Final = 10


def variable_backoff_factor(rto: float) -> float:
    """CoCoA's VBF for an exchange whose first timeout is ``rto`` seconds."""
    if rto < VBF_LOW_LIMIT:
        return 3.0
    if rto <= VBF_HIGH_LIMIT:
        return 2.0
    return 1.5


@dataclass(frozen=True, slots=True)
class CocoaConfig:
    """Bounds and knobs of the estimator (defaults as discussed in the module doc)."""

    min_rto: float = 0.1
    max_rto: float = 32.0
    initial_rto: float = INITIAL_RTO
    max_retransmit: int = 4
    """Retransmissions in CoCoA's own schedule (RFC 7252's MAX_RETRANSMIT)."""
    max_backoff: float = 32.0
    """No single backed-off timeout exceeds this."""
    random_factor: float = 1.0
    """ACK_RANDOM_FACTOR handed to aiocoap (>= 1; 1.0 keeps the timers deterministic)."""

    def __post_init__(self) -> None:
        if not 0 < self.min_rto <= self.max_rto:
            raise ValueError("need 0 < min_rto <= max_rto")
        if self.initial_rto <= 0 or self.max_backoff <= 0:
            raise ValueError("initial_rto and max_backoff must be positive")
        if not 0 <= self.max_retransmit <= MAX_MAPPED_RETRANSMIT:
            raise ValueError(f"max_retransmit must be in 0..{MAX_MAPPED_RETRANSMIT}")
        if self.random_factor < 1:
            raise ValueError("random_factor must be >= 1")

    def clamp(self, rto: float) -> float:
        return min(self.max_rto, max(self.min_rto, rto))


@dataclass(slots=True)
class _Filter:
    """One RFC 6298 smoothed estimator (SRTT, RTTVAR) with its K."""

    k: int
    srtt: float | None = None
    rttvar: float = 0.0

    def update(self, sample: float) -> float:
        """Feed one RTT sample; returns this estimator's RTO."""
        if self.srtt is None:
            self.srtt = sample
            self.rttvar = sample / 2
        else:
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - sample)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * sample
        return self.srtt + self.k * self.rttvar


class CocoaEstimator:
    """The RTO estimate for one peer; feed it exchange outcomes, ask it for timers.

    Pure: time comes in as arguments (``now``, any monotonic clock in seconds).
    """

    def __init__(self, config: CocoaConfig | None = None) -> None:
        self.config = config or CocoaConfig()
        self._rto = self.config.initial_rto
        self._strong = _Filter(K_STRONG)
        self._weak = _Filter(K_WEAK)
        self._updated_at: float | None = None
        self.strong_samples = 0
        self.weak_samples = 0
        self.ignored_samples = 0

    # -- the estimate --------------------------------------------------------------------

    def rto(self, now: float | None = None) -> float:
        """The RTO for an exchange starting ``now`` (aged if given), within the bounds."""
        if now is not None:
            self._age(now)
        return self.config.clamp(self._rto)

    @property
    def srtt(self) -> float | None:
        """The strong estimator's smoothed RTT (None before the first clean exchange)."""
        return self._strong.srtt

    def observe(self, rtt: float, retransmissions: int, now: float) -> None:
        """An exchange completed ``rtt`` seconds after its *first* transmission, having
        been retransmitted ``retransmissions`` times."""
        if rtt < 0 or retransmissions < 0:
            raise ValueError("rtt and retransmissions must not be negative")
        self._age(now)
        if retransmissions == 0:
            estimate = self._strong.update(rtt)
            self._rto = WEIGHT_STRONG * estimate + (1 - WEIGHT_STRONG) * self._rto
            self.strong_samples += 1
        elif retransmissions <= MAX_WEAK_RETRANSMISSIONS:
            estimate = self._weak.update(rtt)
            self._rto = WEIGHT_WEAK * estimate + (1 - WEIGHT_WEAK) * self._rto
            self.weak_samples += 1
        else:
            self.ignored_samples += 1
            return
        # Keep the internal value inside the bounds too, so aging starts from what is used.
        self._rto = self.config.clamp(self._rto)
        self._updated_at = now

    def _age(self, now: float) -> None:
        """CoCoA aging: drift an estimate that has not been refreshed towards the default."""
        if self._updated_at is None:
            return
        idle = now - self._updated_at
        for _ in range(64):  # bounded: each step consumes at least 16 x min_rto or 4 x 3 s
            rto = self.config.clamp(self._rto)
            if rto < VBF_LOW_LIMIT and idle > 16 * rto:
                idle -= 16 * rto
                self._rto = self.config.clamp(2 * rto)
            elif rto > VBF_HIGH_LIMIT and idle > 4 * rto:
                idle -= 4 * rto
                self._rto = self.config.clamp(1.0 + 0.5 * rto)
            else:
                break
            self._updated_at = now - idle

    # -- timers ----------------------------------------------------------------------------

    def backoff_schedule(self, rto: float) -> list[float]:
        """CoCoA's timeouts for one exchange: ``rto x VBF^k`` for k = 0..max_retransmit."""
        vbf = variable_backoff_factor(rto)
        cap = max(self.config.max_backoff, rto)
        return [min(cap, rto * vbf**k) for k in range(self.config.max_retransmit + 1)]

    def mapped_retransmit(self, rto: float) -> int:
        """aiocoap MAX_RETRANSMIT whose doubling schedule waits at least CoCoA's total."""
        target = sum(self.backoff_schedule(rto))
        for n in range(MAX_MAPPED_RETRANSMIT + 1):
            if rto * (AIOCOAP_BACKOFF ** (n + 1) - 1) >= target * (1 - 1e-9):
                return n
        return MAX_MAPPED_RETRANSMIT

    def tuning(self, now: float | None = None) -> TransportTuning:
        """The aiocoap ``TransportTuning`` for the next request to this peer."""
        rto = self.rto(now)
        return make_tuning(rto, self.config.random_factor, self.mapped_retransmit(rto))

    def retransmissions_for(self, elapsed: float, ack_timeout: float, limit: int) -> int:
        """How many retransmissions aiocoap had sent ``elapsed`` s into an exchange.

        With random factor 1 the k-th goes out at ``ack_timeout x (2^k - 1)``. With a
        larger factor the first timeout is only known to lie in
        ``[ack_timeout, factor x ack_timeout]``; counting from its lower end errs towards
        "retransmitted", which makes a sample weak rather than wrongly strong.
        """
        if ack_timeout <= 0 or elapsed < ack_timeout:
            return 0
        count = math.floor(math.log2(elapsed / ack_timeout + 1))
        return max(1, min(limit, count))


class CocoaTuning(TransportTuning):  # type: ignore[misc]
    """aiocoap transport parameters of one message (RFC 7252 §4.8 names)."""

    def __init__(self, ack_timeout: float, random_factor: float, max_retransmit: int) -> None:
        self.ACK_TIMEOUT = ack_timeout
        self.ACK_RANDOM_FACTOR = random_factor
        self.MAX_RETRANSMIT = max_retransmit


def make_tuning(ack_timeout: float, random_factor: float, max_retransmit: int) -> TransportTuning:
    """An aiocoap ``TransportTuning`` with these three RFC 7252 parameters."""
    return CocoaTuning(ack_timeout, random_factor, max_retransmit)
