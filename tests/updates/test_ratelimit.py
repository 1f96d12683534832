"""Token buckets, combined limits, jitter: pure with an injected clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fotakit.updates.ratelimit import (
    BucketConfig,
    BucketState,
    Jitter,
    RateLimitError,
    TokenBucket,
    combined_grant,
    take_tokens,
)

T0 = 1_780_000_000.0


def test_burst_then_steady_rate() -> None:
    b = TokenBucket(BucketConfig(rate_per_minute=60, burst=5), BucketState(5, T0))
    assert b.take(100, T0) == 5
    assert b.take(1, T0 + 0.5) == 0
    assert b.next_available_at(T0 + 0.5) == pytest.approx(T0 + 1)
    assert b.take(3, T0 + 3) == 3
    assert b.take(100, T0 + 1000) == 5  # never more than the burst


def test_clock_going_backwards_adds_nothing() -> None:
    cfg = BucketConfig(rate_per_minute=60, burst=2)
    taken, state = take_tokens(BucketState(0, T0), cfg, 1, T0 - 100)
    assert taken == 0 and state == BucketState(0, T0)


@given(
    rate=st.floats(0.5, 600),
    burst=st.integers(1, 10),
    requests=st.lists(st.tuples(st.floats(0, 30), st.integers(0, 8)), max_size=60),
)
def test_never_more_than_the_bucket_allows_in_any_span(
    rate: float, burst: int, requests: list[tuple[float, int]]
) -> None:
    cfg = BucketConfig(rate, burst)
    state = BucketState.full(cfg, T0)
    now = T0
    grants: list[tuple[float, int]] = []
    for dt, n in requests:
        now += dt
        taken, state = take_tokens(state, cfg, n, now)
        assert 0 <= taken <= n
        grants.append((now, taken))
    for i, (a, _) in enumerate(grants):
        total = 0
        for b, k in grants[i:]:
            total += k
            assert total <= burst + rate * (b - a) / 60 + 1e-6


def test_combined_grant_takes_the_fewest_and_wastes_nothing() -> None:
    own = TokenBucket(BucketConfig(60, 5), BucketState(5, T0))
    shared = TokenBucket(BucketConfig(60, 2), BucketState(2, T0))
    assert combined_grant([own, shared], 4, T0) == 2
    assert own.available(T0) == 3 and shared.available(T0) == 0
    assert combined_grant([own, shared], 4, T0) == 0
    assert own.available(T0) == 3  # nothing taken from the campaign bucket for a refusal


class _Stingy:
    """A shared limiter that says it has 3 but grants 1 (another process took the rest)."""

    def available(self, now: float) -> int:
        return 3

    def take(self, n: int, now: float) -> int:
        return min(n, 1)

    def next_available_at(self, now: float) -> float:
        return now + 1


def test_combined_grant_follows_a_shared_limiter_that_grants_less() -> None:
    own = TokenBucket(BucketConfig(60, 5), BucketState(5, T0))
    assert combined_grant([own, _Stingy()], 3, T0) == 1
    assert own.available(T0) == 4


@given(seed=st.integers(0, 2**32), max_s=st.floats(0, 3600), ep=st.text(max_size=20))
def test_jitter_is_bounded_and_deterministic(seed: int, max_s: float, ep: str) -> None:
    j = Jitter(max_s, seed)
    d = j.delay(ep)
    assert 0 <= d <= max_s and (d < max_s or max_s == 0)
    assert Jitter(max_s, seed).delay(ep) == d


def test_jitter_spreads_devices() -> None:
    j = Jitter(60.0, seed=7)
    delays = [j.delay(f"dev{i}") for i in range(1000)]
    assert min(delays) < 1 and max(delays) > 59
    assert abs(sum(delays) / len(delays) - 30) < 3
    assert Jitter(60.0, seed=8).delay("dev1") != delays[1]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate_per_minute": 0}, "rate_per_minute"),
        ({"rate_per_minute": math.inf}, "rate_per_minute"),
        ({"rate_per_minute": 1, "burst": 0}, "burst"),
        ({"rate_per_minute": 1, "burst": True}, "burst"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(RateLimitError) as info:
        BucketConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_state_round_trips_as_json() -> None:
    s = BucketState(1.25, T0)
    assert BucketState.from_json(s.to_json()) == s


def test_shared_bucket_adapter_lets_the_shared_side_decide() -> None:
    from fotakit.updates.ratelimit import SharedBucket

    # the "elsewhere" bucket: a real one behind the callable (the store does the same math)
    remote = TokenBucket(BucketConfig(6, 2), BucketState(2, T0))
    shared = SharedBucket(remote.take, BucketConfig(6, 2))
    own = TokenBucket(BucketConfig(600, 10), BucketState(10, T0))
    assert combined_grant([own, shared], 5, T0) == 2
    assert own.available(T0) == 8  # own gave exactly what the shared bucket granted
    assert shared.next_available_at(T0) == pytest.approx(T0 + 10)
    assert combined_grant([own, shared], 5, T0 + 10) == 1
