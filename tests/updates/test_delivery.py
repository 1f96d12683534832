"""Delivery choice (pull/push, URI, form) and transfer-timeout sizing, pure."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from job_helpers import GOOD_RADIO, POOR_RADIO, TARGET, facts

from fotakit.lwm2m.objects import NetworkBearer, UpdateProtocol
from fotakit.updates.delivery import (
    MAX_URI_BYTES,
    Choice,
    DeliveryPolicy,
    DeviceFacts,
    RadioFigures,
    choose_delivery,
    link_good_for_push,
    supported_protocols,
    transfer_timeout,
)
from fotakit.updates.reasons import FailureReason

POLICY = DeliveryPolicy()
PUSH_FIRST = DeliveryPolicy(prefer_pull=False)


# -- /5/0/8 and /5/0/9 ------------------------------------------------------------------------
@pytest.mark.parametrize("protocols", [None, (), (17, 99)])
def test_empty_or_unknown_protocol_support_means_coap_only(
    protocols: tuple[int, ...] | None,
) -> None:
    assert supported_protocols(facts(protocols=protocols)) == {UpdateProtocol.COAP}
    plan = choose_delivery(facts(protocols=protocols), TARGET, POLICY)
    assert plan.choice is Choice.PULL
    assert plan.uri == TARGET.uri_coap


def test_unknown_protocol_values_are_ignored_next_to_known_ones() -> None:
    assert supported_protocols(facts(protocols=(2, 42))) == {UpdateProtocol.HTTP}


@pytest.mark.parametrize("method", [None, 0, 7])
def test_unknown_or_pull_delivery_method_pulls(method: int | None) -> None:
    plan = choose_delivery(facts(delivery_method=method), TARGET, PUSH_FIRST)
    assert plan.choice is Choice.PULL


def test_coap_is_preferred_over_http() -> None:
    plan = choose_delivery(facts(protocols=(2, 0)), TARGET, POLICY)
    assert plan.uri is not None and plan.uri.startswith("coap://")


def test_http_is_used_when_coap_is_not_supported() -> None:
    plan = choose_delivery(facts(protocols=(2,)), TARGET, POLICY)
    assert plan.uri == TARGET.uri_http


def test_secure_only_device_without_secure_uris_has_no_pull() -> None:
    plan = choose_delivery(facts(protocols=(1, 3), delivery_method=0), TARGET, POLICY)
    assert plan.choice is Choice.NONE
    assert plan.failure is FailureReason.NO_DELIVERY_METHOD


def test_secure_only_device_that_also_takes_push_is_pushed() -> None:
    plan = choose_delivery(facts(protocols=(1, 3), delivery_method=2), TARGET, POLICY)
    assert plan.choice is Choice.PUSH


# -- push vs pull with radio thresholds ---------------------------------------------------------
def test_both_supported_pull_preferred_by_default() -> None:
    assert choose_delivery(facts(), TARGET, POLICY).choice is Choice.PULL


def test_both_supported_push_when_preferred_and_link_good() -> None:
    plan = choose_delivery(facts(radio=GOOD_RADIO), TARGET, PUSH_FIRST)
    assert plan.choice is Choice.PUSH
    assert plan.uri is None


def test_both_supported_poor_link_pulls_instead_of_pushing() -> None:
    plan = choose_delivery(facts(radio=POOR_RADIO), TARGET, PUSH_FIRST)
    assert plan.choice is Choice.PULL
    assert "dBm" in plan.reason


def test_push_only_poor_link_waits() -> None:
    plan = choose_delivery(facts(delivery_method=1, radio=POOR_RADIO), TARGET, POLICY)
    assert plan.choice is Choice.WAIT


def test_push_only_good_link_pushes() -> None:
    plan = choose_delivery(facts(delivery_method=1, radio=GOOD_RADIO), TARGET, POLICY)
    assert plan.choice is Choice.PUSH


def test_push_only_without_radio_figures_follows_the_policy() -> None:
    f = facts(delivery_method=1, radio=None)
    assert choose_delivery(f, TARGET, POLICY).choice is Choice.PUSH
    blind = DeliveryPolicy(push_when_radio_unknown=False)
    assert choose_delivery(f, TARGET, blind).choice is Choice.WAIT


def test_push_larger_than_the_push_limit_is_never_chosen() -> None:
    small = DeliveryPolicy(prefer_pull=False, push_max_bytes=1000)
    assert choose_delivery(facts(), TARGET, small).choice is Choice.PULL
    plan = choose_delivery(facts(delivery_method=1), TARGET, small)
    assert plan.choice is Choice.NONE
    assert plan.failure is FailureReason.NO_DELIVERY_METHOD


@pytest.mark.parametrize(
    ("radio", "ok"),
    [
        (RadioFigures(bearer=NetworkBearer.LTE_FDD, rssi_dbm=-85, link_quality=-10), True),
        (RadioFigures(bearer=NetworkBearer.LTE_FDD, rssi_dbm=-111, link_quality=-10), False),
        (RadioFigures(bearer=NetworkBearer.LTE_FDD, rssi_dbm=-90, link_quality=-16), False),
        (RadioFigures(bearer=NetworkBearer.NB_IOT, rssi_dbm=-100, link_quality=-12), True),
        (RadioFigures(bearer=NetworkBearer.GSM, rssi_dbm=-80, link_quality=6), False),
        (RadioFigures(bearer=NetworkBearer.GSM, rssi_dbm=-80, link_quality=2), True),
        (RadioFigures(bearer=NetworkBearer.IEEE_802_15_4, rssi_dbm=-70, link_quality=20), True),
        (RadioFigures(bearer=NetworkBearer.WLAN, rssi_dbm=None, link_quality=None), True),
    ],
)
def test_link_thresholds_per_bearer(radio: RadioFigures, ok: bool) -> None:
    assert link_good_for_push(radio, POLICY)[0] is ok


def test_link_thresholds_are_configurable() -> None:
    radio = RadioFigures(bearer=NetworkBearer.IEEE_802_15_4, rssi_dbm=-70, link_quality=20)
    assert link_good_for_push(radio, DeliveryPolicy(lqi_min=50))[0] is False
    assert link_good_for_push(POOR_RADIO, DeliveryPolicy(rssi_min_dbm=-120, rsrq_min_db=-20))[0]
    nb = RadioFigures(bearer=NetworkBearer.NB_IOT, rssi_dbm=-80)
    forbid = DeliveryPolicy(push_forbidden_bearers=frozenset({NetworkBearer.NB_IOT}))
    assert link_good_for_push(nb, forbid)[0] is False
    snr = DeliveryPolicy(snr_min_db=5)
    assert link_good_for_push(RadioFigures(bearer=6, rssi_dbm=-80, snr_db=2), snr)[0] is False


# -- form and URI -----------------------------------------------------------------------------
def test_bare_payload_class_gets_the_payload_form_and_size() -> None:
    target = replace(TARGET, bare_payload=True)
    plan = choose_delivery(facts(), target, POLICY)
    assert plan.uri == TARGET.uri_coap_payload
    assert plan.form == "payload"
    assert plan.size == TARGET.payload_size
    push = choose_delivery(facts(delivery_method=1), target, POLICY)
    assert (push.form, push.size) == ("payload", TARGET.payload_size)


def test_uri_longer_than_255_bytes_is_never_written() -> None:
    long_coap = "coap://h/" + "x" * MAX_URI_BYTES
    target = replace(TARGET, uri_coap=long_coap)
    plan = choose_delivery(facts(), target, POLICY)
    assert plan.uri == TARGET.uri_http  # falls back to the short one
    only_long = replace(target, uri_http=None)
    plan = choose_delivery(facts(delivery_method=0), only_long, POLICY)
    assert plan.choice is Choice.NONE
    assert plan.failure is FailureReason.URI_TOO_LONG
    exactly = "coap://h/" + "x" * (MAX_URI_BYTES - len("coap://h/"))
    assert len(exactly) == MAX_URI_BYTES
    plan = choose_delivery(facts(), replace(TARGET, uri_coap=exactly), POLICY)
    assert plan.uri == exactly


def test_long_uri_on_push_capable_device_is_pushed() -> None:
    target = replace(TARGET, uri_coap="coap://h/" + "x" * 300, uri_http=None)
    assert choose_delivery(facts(), target, POLICY).choice is Choice.PUSH


# -- timeouts ---------------------------------------------------------------------------------
def test_timeout_for_500_kb_at_100_ms_exceeds_the_fixed_two_minutes() -> None:
    t = transfer_timeout(500_000, 0.1)
    assert t == pytest.approx(4.0 * math.ceil(500_000 / 1024) * 0.1)
    assert t > 120.0


def test_timeout_has_a_floor_for_tiny_packages() -> None:
    assert transfer_timeout(10, 0.01) == 60.0
    assert transfer_timeout(0, 0.01, floor_s=5.0) == 5.0


def test_unknown_rtt_uses_the_default() -> None:
    assert transfer_timeout(1024 * 100, None) == pytest.approx(4.0 * 100 * 2.0)
    assert transfer_timeout(1024 * 100, None, default_rtt_s=0.5) == pytest.approx(200.0)


def test_link_rate_adds_serialisation_time() -> None:
    base = transfer_timeout(1_000_000, 0.05, floor_s=0)
    slow = transfer_timeout(1_000_000, 0.05, floor_s=0, link_rate_bps=2500.0)
    assert slow - base == pytest.approx(4.0 * 1_000_000 / 2500.0)


def test_smaller_blocks_mean_longer_timeouts() -> None:
    assert transfer_timeout(100_000, 0.1, block_size=256) > transfer_timeout(100_000, 0.1)


def test_plan_timeout_uses_observed_rtt_and_policy() -> None:
    plan = choose_delivery(facts(rtt_s=0.3), replace(TARGET, size=1_000_000), POLICY)
    assert plan.timeout_s == pytest.approx(transfer_timeout(1_000_000, 0.3))


def test_invalid_sizes_are_rejected() -> None:
    with pytest.raises(ValueError):
        transfer_timeout(-1, 0.1)
    with pytest.raises(ValueError):
        transfer_timeout(10, 0.1, block_size=0)


@given(
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.one_of(st.none(), st.floats(0.001, 30)),
    st.sampled_from([16, 64, 256, 512, 1024]),
)
def test_timeout_is_monotonic_in_size_and_never_below_the_floor(
    a: int, b: int, rtt: float | None, block: int
) -> None:
    small, large = sorted((a, b))
    t_small = transfer_timeout(small, rtt, block_size=block)
    t_large = transfer_timeout(large, rtt, block_size=block)
    assert 60.0 <= t_small <= t_large


# -- facts ------------------------------------------------------------------------------------
def test_facts_merge_keeps_what_a_later_read_does_not_carry() -> None:
    old = facts(firmware_version="1", radio=GOOD_RADIO)
    new = old.merged(DeviceFacts(fw_state=2, fw_result=0))
    assert new.firmware_version == "1"
    assert new.radio == GOOD_RADIO
    assert (new.fw_state, new.fw_result) == (2, 0)


def test_facts_and_target_round_trip_through_json() -> None:
    f = facts(radio=POOR_RADIO, protocols=(0, 2))
    assert DeviceFacts.from_json(f.to_json()) == f
    assert type(TARGET).from_json(TARGET.to_json()) == TARGET


def test_failure_reasons_map_every_update_result_code() -> None:
    for code in range(2, 12):
        reason = FailureReason.from_update_result(code)
        assert reason is not None
        assert reason.update_result == code
    assert FailureReason.from_update_result(0) is None
    assert FailureReason.from_update_result(1) is None
    assert FailureReason.from_update_result(99) is None
    assert FailureReason.CONNECTION_LOST.retryable
    assert FailureReason.UNREACHABLE.retryable
    assert not FailureReason.INTEGRITY_FAILURE.retryable
    assert not FailureReason.ROLLED_BACK.retryable
    assert FailureReason.ROLLED_BACK == "rolled_back"


# -- protocol order, exclusions, push allowed -----------------------------------------------
def test_plan_records_the_scheme_it_pulls_over() -> None:
    plan = choose_delivery(facts(protocols=(0, 2)), TARGET, POLICY)
    assert (plan.protocol, plan.uri) == ("coap", TARGET.uri_coap)
    assert plan.to_json()["protocol"] == "coap"


def test_protocol_order_is_the_policys() -> None:
    http_first = DeliveryPolicy(protocol_order=("http", "coap"))
    plan = choose_delivery(facts(protocols=(0, 2)), TARGET, http_first)
    assert (plan.protocol, plan.uri) == ("http", TARGET.uri_http)


def test_scheme_missing_from_protocol_order_is_never_used() -> None:
    coap_only = DeliveryPolicy(protocol_order=("coap",))
    plan = choose_delivery(facts(protocols=(2,), delivery_method=0), TARGET, coap_only)
    assert plan.choice is Choice.NONE
    assert plan.failure is FailureReason.NO_DELIVERY_METHOD


def test_excluded_scheme_is_skipped() -> None:
    plan = choose_delivery(facts(protocols=(0, 2)), TARGET, POLICY, exclude=frozenset({"coap"}))
    assert (plan.protocol, plan.uri) == ("http", TARGET.uri_http)
    none = choose_delivery(
        facts(protocols=(0,), delivery_method=0), TARGET, POLICY, exclude=frozenset({"coap"})
    )
    assert none.choice is Choice.NONE
    assert "coap already refused" in none.reason


def test_secure_uri_goes_only_to_a_device_listing_the_secure_scheme() -> None:
    secure = replace(
        TARGET,
        uri_coap="coaps://127.0.0.1:5684/fw/x",
        uri_http=None,
    )
    plain = choose_delivery(facts(protocols=(0,), delivery_method=0), secure, POLICY)
    assert plain.choice is Choice.NONE  # a coaps URI is never written to a CoAP-only device
    dtls = choose_delivery(facts(protocols=(1,), delivery_method=0), secure, POLICY)
    assert (dtls.protocol, dtls.uri) == ("coaps", "coaps://127.0.0.1:5684/fw/x")


def test_push_disallowed_never_pushes() -> None:
    no_push = DeliveryPolicy(allow_push=False, prefer_pull=False)
    assert choose_delivery(facts(radio=GOOD_RADIO), TARGET, no_push).choice is Choice.PULL
    plan = choose_delivery(facts(delivery_method=1, radio=GOOD_RADIO), TARGET, no_push)
    assert plan.choice is Choice.NONE
    assert plan.failure is FailureReason.NO_DELIVERY_METHOD
    assert "allow_push=False" in plan.reason
