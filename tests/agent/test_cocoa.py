"""The CoCoA-style RTT estimator: formulas, bounds, aging, and that aiocoap obeys its timers."""

from __future__ import annotations

import asyncio
import itertools

import aiocoap
import aiocoap.error
import pytest
from aiocoap.numbers.codes import Code
from hypothesis import given
from hypothesis import strategies as st

from fotakit.agent.cocoa import (
    CocoaConfig,
    CocoaEstimator,
    CocoaTuning,
    variable_backoff_factor,
)
from fotakit.coap import create_endpoint

Address = tuple[str, int]


def test_rto_is_rfc7252_ack_timeout_before_any_sample() -> None:
    est = CocoaEstimator()
    assert est.rto(0.0) == 2.0
    assert est.tuning(0.0).ACK_TIMEOUT == 2.0


def test_first_strong_sample_blends_half_of_srtt_plus_4_rttvar_into_the_default() -> None:
    est = CocoaEstimator(CocoaConfig(min_rto=0.001))
    est.observe(0.2, 0, now=1.0)
    # RTO_strong = R + 4 x R/2 = 0.6; overall = 0.5 x 0.6 + 0.5 x 2.0
    assert est.rto() == pytest.approx(1.3)
    assert est.srtt == pytest.approx(0.2)


def test_weak_sample_is_weighted_a_quarter_with_k_1() -> None:
    est = CocoaEstimator(CocoaConfig(min_rto=0.001))
    est.observe(0.4, 1, now=1.0)
    # RTO_weak = R + 1 x R/2 = 0.6; overall = 0.25 x 0.6 + 0.75 x 2.0
    assert est.rto() == pytest.approx(1.65)
    assert est.weak_samples == 1 and est.srtt is None


def test_exchanges_with_three_retransmissions_give_no_sample() -> None:
    est = CocoaEstimator()
    est.observe(5.0, 3, now=1.0)
    assert est.rto() == 2.0 and est.ignored_samples == 1


def test_steady_rtt_converges_to_the_rtt_or_the_floor() -> None:
    free = CocoaEstimator(CocoaConfig(min_rto=0.001))
    floored = CocoaEstimator()
    for i in range(200):
        free.observe(0.02, 0, now=i * 0.02)
        floored.observe(0.02, 0, now=i * 0.02)
    assert free.rto() == pytest.approx(0.02, rel=0.05)
    assert floored.rto() == 0.1


def test_variable_backoff_factor_by_rto() -> None:
    assert variable_backoff_factor(0.5) == 3
    assert variable_backoff_factor(1.0) == 2
    assert variable_backoff_factor(3.0) == 2
    assert variable_backoff_factor(3.5) == 1.5


def test_short_rto_doubles_after_16_rto_without_samples() -> None:
    est = CocoaEstimator()
    for i in range(100):
        est.observe(0.02, 0, now=i * 0.02)
    last = 99 * 0.02
    assert est.rto(last + 1.5) == 0.1  # 16 x 0.1 = 1.6 s not yet over
    assert est.rto(last + 1.7) == pytest.approx(0.2)
    assert est.rto(last + 1.7 + 3.3) == pytest.approx(0.4)  # 16 x 0.2 more


def test_long_rto_decays_towards_the_default_after_4_rto() -> None:
    est = CocoaEstimator(CocoaConfig(max_rto=60.0))
    for i in range(30):
        est.observe(8.0, 0, now=i * 8.0)
    rto = est.rto()
    assert rto > 3
    later = est.rto(29 * 8.0 + 4 * rto + 0.1)
    assert later == pytest.approx(1.0 + rto / 2)


def test_tuning_first_timeout_is_the_rto_and_gives_up_no_earlier_than_cocoa() -> None:
    est = CocoaEstimator()
    for i in range(100):
        est.observe(0.03, 0, now=i * 0.03)
    tuning = est.tuning()
    assert tuning.ACK_TIMEOUT == 0.1 and tuning.ACK_RANDOM_FACTOR == 1.0
    cocoa = est.backoff_schedule(0.1)
    assert cocoa == pytest.approx([0.1, 0.3, 0.9, 2.7, 8.1])
    aiocoap_wait = 0.1 * (2 ** (tuning.MAX_RETRANSMIT + 1) - 1)
    assert aiocoap_wait >= sum(cocoa)
    assert 0.1 * (2**tuning.MAX_RETRANSMIT - 1) < sum(cocoa)  # and not much later


def test_retransmissions_are_inferred_from_the_exchange_duration() -> None:
    est = CocoaEstimator()
    assert est.retransmissions_for(0.09, 0.1, 4) == 0
    assert est.retransmissions_for(0.12, 0.1, 4) == 1  # answer to the 1st retransmission
    assert est.retransmissions_for(0.32, 0.1, 4) == 2  # 2nd went out at 0.3
    assert est.retransmissions_for(100.0, 0.1, 4) == 4


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        CocoaConfig(min_rto=1.0, max_rto=0.5)
    with pytest.raises(ValueError):
        CocoaConfig(random_factor=0.9)


samples = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=120.0, allow_nan=False),
        st.integers(min_value=0, max_value=6),
        st.floats(min_value=0.0, max_value=600.0, allow_nan=False),
    ),
    max_size=60,
)


@given(
    samples,
    st.floats(min_value=0.01, max_value=1.0),
    st.floats(min_value=1.0, max_value=60.0),
)
def test_rto_always_within_bounds(
    events: list[tuple[float, int, float]], lo: float, hi: float
) -> None:
    est = CocoaEstimator(CocoaConfig(min_rto=lo, max_rto=hi))
    now = 0.0
    for rtt, retransmissions, gap in events:
        now += gap
        assert lo <= est.rto(now) <= hi
        est.observe(rtt, retransmissions, now)
        assert lo <= est.rto() <= hi
        tuning = est.tuning(now)
        assert lo <= tuning.ACK_TIMEOUT <= hi
        assert 0 <= tuning.MAX_RETRANSMIT <= 10


@given(st.floats(min_value=0.01, max_value=60.0), st.integers(min_value=0, max_value=8))
def test_backoff_is_monotone_capped_and_covered_by_aiocoap(rto: float, retransmit: int) -> None:
    est = CocoaEstimator(CocoaConfig(max_retransmit=retransmit, max_backoff=32.0))
    schedule = est.backoff_schedule(rto)
    assert len(schedule) == retransmit + 1 and schedule[0] == pytest.approx(rto)
    assert all(b >= a for a, b in itertools.pairwise(schedule))
    assert all(t <= max(32.0, rto) for t in schedule)
    n = est.mapped_retransmit(rto)
    if n < 10:
        assert rto * (2 ** (n + 1) - 1) >= sum(schedule) * (1 - 1e-9)


@given(st.floats(min_value=0.001, max_value=100.0), st.floats(min_value=0.001, max_value=100.0))
def test_vbf_never_grows_with_the_rto(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert variable_backoff_factor(lo) >= variable_backoff_factor(hi)


class _Silent(asyncio.DatagramProtocol):
    """A UDP peer that never answers and notes when each datagram arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.got = asyncio.Event()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.arrivals.append(asyncio.get_running_loop().time())
        self.got.set()


async def test_aiocoap_retransmits_at_the_per_message_rto_then_doubles() -> None:
    loop = asyncio.get_running_loop()
    silent = _Silent()
    transport, _ = await loop.create_datagram_endpoint(lambda: silent, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    ctx, _ = await create_endpoint(aiocoap.resource.Site(), "127.0.0.1", 0)
    try:
        request = aiocoap.Message(
            code=Code.GET,
            uri=f"coap://127.0.0.1:{port}/x",
            transport_tuning=CocoaTuning(0.05, 1.0, 2),
        )
        start = loop.time()
        with pytest.raises(aiocoap.error.ConRetransmitsExceeded):
            async with asyncio.timeout(5):
                await ctx.request(request).response
        gave_up = loop.time() - start
    finally:
        await ctx.shutdown()
        transport.close()
    offsets = [t - silent.arrivals[0] for t in silent.arrivals]
    assert len(offsets) == 3
    assert offsets[1] == pytest.approx(0.05, abs=0.02)
    assert offsets[2] == pytest.approx(0.15, abs=0.03)
    assert gave_up == pytest.approx(0.35, abs=0.05)
