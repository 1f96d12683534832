"""How fast a campaign starts devices: token buckets, jitter, a concurrency cap — pure.

Answer to the thundering herd (like ThingsBoard's "packs" and AWS IoT Jobs'
``maximumPerMinute``): a token bucket per campaign and one global bucket, both refilled at
``rate_per_minute`` up to ``burst`` tokens; starting one device takes one token from each.
A seeded, per-device jitter spreads the actual starts; a cap bounds the transfers in flight.
A device refused by the limiter is *deferred*, never failed: the limiter lives outside the
job, so throttling can never burn a device's retry budget (§2 #6).

Everything is pure: ``now`` (epoch seconds) is an argument. The bucket state is two numbers
(:class:`BucketState`: ``tokens``, ``updated_at``) so several server processes can share a
bucket through the database: lock the row, :func:`take_tokens`, write the new state back
(``rate_buckets(scope, tokens, updated_at)`` of the update store).
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "BucketConfig",
    "BucketState",
    "Jitter",
    "Limiter",
    "RateLimitError",
    "SharedBucket",
    "TokenBucket",
    "combined_grant",
    "next_token_at",
    "refill",
    "take_tokens",
]

_EPS = 1e-9


class RateLimitError(ValueError):
    """An invalid rate limit setting; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class BucketConfig:
    """Refill rate (tokens per minute, > 0) and capacity (``burst`` >= 1 whole tokens)."""

    rate_per_minute: float
    burst: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.rate_per_minute, (int, float)) or not (
            math.isfinite(self.rate_per_minute) and self.rate_per_minute > 0
        ):
            raise RateLimitError("rate_per_minute", "must be a finite number > 0")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise RateLimitError("burst", "must be an integer >= 1")

    @property
    def per_second(self) -> float:
        return self.rate_per_minute / 60.0


@dataclass(frozen=True, slots=True)
class BucketState:
    """Tokens in the bucket at ``updated_at`` (epoch s). What the store persists per scope."""

    tokens: float
    updated_at: float

    @classmethod
    def full(cls, config: BucketConfig, now: float) -> BucketState:
        return cls(float(config.burst), now)

    def to_json(self) -> dict[str, float]:
        return {"tokens": self.tokens, "updated_at": self.updated_at}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BucketState:
        return cls(float(data["tokens"]), float(data["updated_at"]))


def refill(state: BucketState, config: BucketConfig, now: float) -> BucketState:
    """The state at ``now``. A clock that went backwards adds nothing (and keeps the stamp)."""
    if now <= state.updated_at:
        return state
    tokens = min(float(config.burst), state.tokens + (now - state.updated_at) * config.per_second)
    return BucketState(tokens, now)


def take_tokens(
    state: BucketState, config: BucketConfig, n: int, now: float
) -> tuple[int, BucketState]:
    """Take up to ``n`` whole tokens at ``now``: ``(taken, new_state)``."""
    current = refill(state, config, now)
    taken = max(0, min(n, math.floor(current.tokens + _EPS)))
    return taken, BucketState(current.tokens - taken, current.updated_at)


def next_token_at(state: BucketState, config: BucketConfig, now: float) -> float:
    """When the bucket next holds one whole token (``now`` if it does already)."""
    current = refill(state, config, now)
    missing = 1.0 - current.tokens
    if missing <= _EPS:
        return now
    return current.updated_at + missing / config.per_second


class Limiter(Protocol):
    """Grants up to ``n`` starts at ``now`` and consumes what it grants."""

    def available(self, now: float) -> int: ...

    def take(self, n: int, now: float) -> int: ...

    def next_available_at(self, now: float) -> float: ...


class TokenBucket:
    """An in-memory token bucket (one process): a :class:`Limiter`."""

    def __init__(self, config: BucketConfig, state: BucketState | None = None) -> None:
        self.config = config
        self.state = state if state is not None else BucketState(float(config.burst), 0.0)

    def available(self, now: float) -> int:
        return math.floor(refill(self.state, self.config, now).tokens + _EPS)

    def take(self, n: int, now: float) -> int:
        taken, self.state = take_tokens(self.state, self.config, n, now)
        return taken

    def next_available_at(self, now: float) -> float:
        return next_token_at(self.state, self.config, now)


class SharedBucket:
    """A :class:`Limiter` over a bucket kept elsewhere (the database), reached through a
    ``take(n, now) -> granted`` callable, e.g. ``partial(store.take_tokens, "global",
    rate_per_s=..., burst=...)`` adapted to ``(n, now)``.

    How many tokens it holds is unknown until asked, so :meth:`available` promises
    anything and :meth:`take` decides; put it last in :func:`combined_grant`.
    """

    def __init__(self, take: Callable[[int, float], int], config: BucketConfig) -> None:
        self._take = take
        self.config = config
        self._short_at: float | None = None

    def available(self, now: float) -> int:
        return sys.maxsize

    def take(self, n: int, now: float) -> int:
        granted = self._take(n, now)
        self._short_at = now if granted < n else None
        return granted

    def next_available_at(self, now: float) -> float:
        """``now`` unless the last take came up short: then one refill period later."""
        if self._short_at is None:
            return now
        return max(now, self._short_at + 1.0 / self.config.per_second)


def combined_grant(limiters: Sequence[Limiter], n: int, now: float) -> int:
    """Take ``k <= n`` tokens from every limiter, ``k`` the fewest any can give.

    Put a limiter shared with other processes (a bucket in the database) last: it is asked
    first, and the in-memory ones then give exactly what it granted, so no token is taken
    from one bucket for a start another bucket refused.
    """
    k = n
    for limiter in limiters:
        k = min(k, limiter.available(now))
    if k <= 0:
        return 0
    for limiter in reversed(limiters):
        k = min(k, limiter.take(k, now))
    return k


@dataclass(frozen=True, slots=True)
class Jitter:
    """A per-device start delay in ``[0, max_s)``, a pure function of ``(seed, endpoint)``.

    Being a hash rather than a stream of a random generator, the delay of a device does not
    depend on the order of decisions, so a restarted server gives the same delays.
    """

    max_s: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.max_s, (int, float)) or not (
            math.isfinite(self.max_s) and self.max_s >= 0
        ):
            raise RateLimitError("jitter_s", "must be a finite number >= 0")

    def delay(self, endpoint: str) -> float:
        if self.max_s == 0:
            return 0.0
        digest = hashlib.sha256(f"{self.seed}:{endpoint}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2.0**64  # in [0, 1)
        return min(fraction * self.max_s, math.nextafter(self.max_s, 0.0))
