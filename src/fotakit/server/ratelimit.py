"""Per-source token buckets that bound how fast one host may Register.

A Register costs a database commit; a flood from one address (a misbehaving device in a
reboot loop, or an attacker) must not starve everyone else. Over the limit the server
answers 5.03 Service Unavailable with Max-Age set to when a token will be available (RFC
7252 §5.9.3.4). The table of buckets is bounded: the least recently used is forgotten.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """``rate`` tokens per second, at most ``burst`` stored, one bucket per key."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def acquire(self, key: str) -> float:
        """Take a token for ``key``: 0.0 if granted, else seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    @staticmethod
    def max_age(wait: float) -> int:
        """A Max-Age (whole seconds, at least 1) for a 5.03 answer."""
        return max(1, math.ceil(wait))
