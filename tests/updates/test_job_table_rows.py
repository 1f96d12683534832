"""Rows of the UpdateJob table added for cases the job used to get wrong (pure, injected
clock): a deferral after Execute was accepted, someone else's update (device_busy), an
Object 5 that ignores the reset (object5_stuck), protocol fallback, failure details, and
snapshots written before the job had phases."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from job_helpers import (
    T0,
    TARGET,
    Driver,
    at_delivering,
    at_installing,
    at_starting,
    logs,
    of,
)

from fotakit.updates.job import (
    Execute,
    Finish,
    JobPolicy,
    JobState,
    Push,
    ReadFacts,
    ResetUri,
    UpdateJob,
    Wait,
    WriteUri,
)
from fotakit.updates.reasons import FailureReason


# -- a. Update Result 11 after Execute was accepted ---------------------------------------------
def test_deferral_after_accepted_execute_waits_and_executes_again() -> None:
    d = at_installing(JobPolicy(defer_retry_s=600.0, max_attempts=1))
    d.fw(2, 11)  # Execute was accepted, then the device's user deferred (TS Core E.6)
    assert d.state is JobState.WAITING
    assert d.job.wait is Wait.DEFERRED
    assert d.job.deadline == pytest.approx(d.now + 600.0)
    d.timer()
    assert d.state is JobState.DOWNLOADED
    assert len(of(d.commands, Execute)) == 2
    assert d.job.attempts == 1  # a deferral is not an attempt
    d.ok(Execute)
    d.fw(3)
    d.register()
    d.facts(firmware_version=TARGET.version, fw_state=0, fw_result=1)
    assert d.state is JobState.SUCCEEDED


def test_deferral_after_execute_seen_by_a_read_is_bounded_by_the_maximum_defer_period() -> None:
    d = at_starting(JobPolicy(defer_retry_s=3600.0))
    d.facts(max_defer_s=300)
    d.ok(WriteUri)
    d.fw(2)
    d.ok(Execute)
    assert d.state is JobState.INSTALLING
    d.register("update")
    d.facts(fw_state=2, fw_result=11, max_defer_s=300)
    assert d.state is JobState.WAITING
    assert d.job.deadline == pytest.approx(d.now + 301.0)


def test_deferrals_after_execute_count_towards_max_deferrals() -> None:
    d = at_installing(JobPolicy(max_deferrals=1, defer_retry_s=10.0))
    d.fw(2, 11)
    d.timer()
    d.ok(Execute)
    d.fw(2, 11)
    assert d.state is JobState.FAILED
    assert d.job.reason == "deferred"


# -- b. someone else's update: one deadline ----------------------------------------------------
def test_busy_device_has_one_deadline_from_when_updating_was_first_seen() -> None:
    d = at_starting(JobPolicy(updating_timeout_s=900.0, max_attempts=3))
    d.facts(fw_state=3, fw_result=0)  # Updating: not ours, nothing was delivered
    assert d.state is JobState.STARTING
    first = d.job.deadline
    assert first == pytest.approx(T0 + 900.0)
    for _ in range(4):  # every registration Update triggers a read
        d.advance(200.0)
        d.register("update")
        d.facts(fw_state=3, fw_result=0)
        assert d.job.deadline == first
    d.timer()
    assert d.state is JobState.FAILED
    assert d.job.reason == "device_busy"
    assert not FailureReason("device_busy").retryable
    assert d.job.attempts == 1
    detail = d.finishes()[-1].detail
    assert detail is not None and "Updating" in detail and "900" in detail
    assert not of(d.commands, WriteUri) and not of(d.commands, ResetUri)


def test_busy_device_that_goes_idle_gets_the_delivery() -> None:
    d = at_starting()
    d.facts(fw_state=3)
    d.advance(100.0)
    d.fw(0, 1)  # the other update ended
    assert d.state is JobState.DELIVERING
    assert d.has_pending(WriteUri)


# -- c. an Object 5 that ignores the reset -----------------------------------------------------
@pytest.mark.parametrize(("fw_state", "name"), [(1, "Downloading"), (2, "Downloaded")])
def test_object5_that_stays_put_after_two_resets_fails_object5_stuck(
    fw_state: int, name: str
) -> None:
    d = at_starting(JobPolicy(max_attempts=3))
    d.facts(fw_state=fw_state)
    d.ok(ResetUri)  # 2.04, yet...
    assert d.pending(ReadFacts)  # the job re-reads after the reset
    d.facts(fw_state=fw_state)  # ...still there
    assert len(of(d.commands, ResetUri)) == 2
    d.ok(ResetUri)
    d.facts(fw_state=fw_state)
    assert d.state is JobState.FAILED
    assert d.job.reason == "object5_stuck"
    assert not FailureReason("object5_stuck").retryable
    assert d.finishes()[-1].detail == (
        f"Object 5 stayed in {name} after 2 reset writes (empty Package URI)"
    )
    assert len(of(d.commands, ResetUri)) == 2
    assert d.job.attempts == 1


def test_second_reset_that_works_goes_on_to_deliver() -> None:
    d = at_starting()
    d.facts(fw_state=1)
    d.ok(ResetUri)
    d.facts(fw_state=1)
    d.ok(ResetUri)
    d.facts(fw_state=0)
    assert d.state is JobState.DELIVERING


def test_state_seen_before_the_reset_was_answered_is_not_held_against_it() -> None:
    d = at_starting()
    d.facts(fw_state=1)
    d.fw(1, 0)  # a notification sent before the reset landed
    assert len(of(d.commands, ResetUri)) == 1
    d.ok(ResetUri)
    d.facts(fw_state=0)
    assert d.state is JobState.DELIVERING


# -- d. protocol fallback ----------------------------------------------------------------------
def test_result_9_falls_back_to_the_next_protocol_without_a_new_attempt() -> None:
    d = at_delivering()  # /5/0/8 lists CoAP and HTTP; CoAP is preferred
    assert d.pending(WriteUri).uri == TARGET.uri_coap
    d.ok(WriteUri)
    d.fw(0, 9)  # Unsupported protocol, although /5/0/8 listed it
    assert d.state is JobState.DELIVERING
    assert d.pending(WriteUri).uri == TARGET.uri_http
    assert d.job.attempts == 1
    fallback = logs(d.commands, "protocol_fallback")
    assert [(f.details["from"], f.details["to"]) for f in fallback] == [("coap", "http")]
    assert "9" in fallback[0].details["why"]
    d.ok(WriteUri)
    d.fw(0, 9)  # nothing left to try: the failure stands
    assert d.state is JobState.FAILED
    assert d.job.reason == "unsupported_protocol"


def test_result_9_without_another_listed_protocol_fails() -> None:
    d = at_delivering(protocols=(0,))
    d.ok(WriteUri)
    d.fw(0, 9)
    assert d.job.reason == "unsupported_protocol"
    assert not logs(d.commands, "protocol_fallback")
    assert len(of(d.commands, WriteUri)) == 1


def test_connection_lost_twice_over_one_protocol_retries_over_the_next() -> None:
    d = at_starting(JobPolicy(max_attempts=3, backoff_jitter=0.0))
    for _ in range(2):
        d.facts()
        assert d.pending(WriteUri).uri == TARGET.uri_coap
        d.ok(WriteUri)
        d.fw(1)
        d.fw(0, 4)  # Connection lost during downloading
        assert d.state is JobState.WAITING
        d.timer()
    fallback = logs(d.commands, "protocol_fallback")
    assert [(f.details["from"], f.details["to"]) for f in fallback] == [("coap", "http")]
    d.facts()
    assert d.pending(WriteUri).uri == TARGET.uri_http
    assert d.job.attempts == 3


def test_answer_of_the_replaced_write_does_not_count_for_the_new_one() -> None:
    d = at_delivering()
    first = d.pending(WriteUri)
    d.fw(0, 9)  # the refusal overtook the Write's 2.04
    assert d.pending(WriteUri).uri == TARGET.uri_http
    d._take(d.job.on_command_result(first.command_id, False, "4.00", d.now))
    assert d.state is JobState.DELIVERING  # the old Write's error is not this delivery's


def test_push_only_device_with_push_disallowed_fails_naming_the_setting() -> None:
    d = at_starting(JobPolicy(allow_push=False))
    d.facts(delivery_method=1)
    assert d.job.reason == "no_delivery_method"
    assert not of(d.commands, Push)
    detail = d.finishes()[-1].detail
    assert detail is not None and "allow_push" in detail


# -- e. details ------------------------------------------------------------------------------
SIGNED_REFUSED = (
    "the device refused the signed fotakit package (Update Result 6); profile 'acme-lamp' "
    "sets payload_form=signed — devices that check their own image format need "
    "payload_form=bare"
)


def test_signed_package_refused_with_result_6_names_the_profile_setting() -> None:
    d = at_delivering(JobPolicy(profile="acme-lamp"))
    d.ok(WriteUri)
    d.fw(1)
    d.fw(0, 6)
    assert d.job.reason == "unsupported_package"
    assert d.job.detail == SIGNED_REFUSED
    finish = of(d.commands, Finish)[-1]
    assert finish.detail == SIGNED_REFUSED
    assert logs(d.commands, "finished")[-1].details["detail"] == SIGNED_REFUSED
    assert d.job.snapshot()["detail"] == SIGNED_REFUSED


def test_bare_payload_refused_does_not_blame_the_signed_form() -> None:
    d = Driver(JobPolicy(profile="acme-lamp"), target=replace(TARGET, bare_payload=True))
    d.start()
    d.facts()
    d.ok(WriteUri)
    d.fw(0, 6)
    assert d.job.reason == "unsupported_package"
    assert d.job.detail is None or "signed" not in d.job.detail


def test_command_failure_detail_names_the_operation_and_code() -> None:
    d = at_delivering()
    d.fail(WriteUri, "4.00")
    assert d.job.reason == "device_error"
    assert d.job.detail == "Write /5/0/1 Package URI was answered 4.00"


# -- snapshots written before the job had phases -----------------------------------------------
_TARGET_JSON = json.dumps(TARGET.to_json())
_FACTS = (
    '{"endpoint": "dev-1", "lwm2m_version": "1.1", "queue_mode": false, "lifetime_s": null, '
    '"protocols": [0, 2], "delivery_method": 2, "firmware_version": "1.1.1", '
    '"pkg_version": null, "fw_state": @STATE@, "fw_result": 0, "severity": null, '
    '"max_defer_s": null, "auto_upgrade": null, "has_cancel": true, "radio": {"bearer": 6, '
    '"rssi_dbm": -85, "link_quality": -10, "snr_db": null}, "rtt_s": 0.05}'
)
#: Written by the job before phases (commit d538bdc): resetting a leftover download.
OLD_RESETTING = (
    (
        '{"job_id": "job-1", "endpoint": "dev-1", "target": @TARGET@, "state": "starting", '
        '"reason": null, "attempts": 1, "deadline": 1000120.0, "facts": @FACTS@, '
        '"old_version": "1.1.1", "wait": null, "plan": null, "counter": 8, '
        '"pending": {"job-1:7": "reset_uri"}, "flags": {"have_facts": true, "delivered": false, '
        '"write_acked": false, "seen_downloading": false, "resetting": true, '
        '"execute_sent": false, "execute_attempted": false, "executed": false, '
        '"push_failed": false, "reregistered": false, "resumed": false}, '
        '"cancel_method": null, "link_wait_since": null, "deferrals": 0, '
        '"defer_deadline": null, "contact_timeout": null, "version_rereads": 0}'
    )
    .replace("@TARGET@", _TARGET_JSON)
    .replace("@FACTS@", _FACTS.replace("@STATE@", "1"))
)
#: ...and with Execute sent, its answer not back.
OLD_EXECUTE_SENT = (
    (
        '{"job_id": "job-1", "endpoint": "dev-1", "target": @TARGET@, "state": "downloaded", '
        '"reason": null, "attempts": 1, "deadline": 1000300.0, "facts": @FACTS@, '
        '"old_version": "1.1.1", "wait": null, "plan": {"choice": "pull", "reason": "both '
        'supported, pull preferred; coap is supported (/5/0/8)", "uri": '
        '"coap://127.0.0.1:5683/fw/0123456789abcdef", "form": "package", "size": 200000, '
        '"timeout_s": 60.0, "failure": null}, "counter": 20, "pending": {"job-1:10": '
        '"observe", "job-1:19": "execute"}, "flags": {"have_facts": true, "delivered": true, '
        '"write_acked": true, "seen_downloading": true, "resetting": false, '
        '"execute_sent": true, "execute_attempted": true, "executed": false, '
        '"push_failed": false, "reregistered": false, "resumed": false}, '
        '"cancel_method": null, "link_wait_since": null, "deferrals": 0, '
        '"defer_deadline": null, "contact_timeout": null, "version_rereads": 0}'
    )
    .replace("@TARGET@", _TARGET_JSON)
    .replace("@FACTS@", _FACTS.replace("@STATE@", "2"))
)


def test_snapshot_of_a_resetting_job_in_the_old_format_is_read_and_resumed() -> None:
    job = UpdateJob.from_snapshot(json.loads(OLD_RESETTING), JobPolicy())
    assert job.state is JobState.STARTING
    assert job.detail is None
    d = Driver(job=job, now=T0 + 10)
    out = d._take(job.resume(d.now))
    assert [c.paths for c in of(out, ReadFacts)] == [("/5/0", "/3/0/3", "/4/0")]
    d.facts(fw_state=1)  # the reset sent before the restart did not take
    assert len(of(d.commands, ResetUri)) == 1
    d.ok(ResetUri)
    d.facts(fw_state=1)
    assert d.state is JobState.FAILED  # two resets in all: the old one counts
    assert d.job.reason == "object5_stuck"


def test_snapshot_with_execute_sent_in_the_old_format_is_read_and_resumed() -> None:
    job = UpdateJob.from_snapshot(json.loads(OLD_EXECUTE_SENT), JobPolicy())
    assert job.state is JobState.DOWNLOADED
    assert job.plan is not None and job.plan.protocol == "coap"
    d = Driver(job=job, now=T0 + 10)
    d._take(job.resume(d.now))
    d.register()  # the Execute's answer was lost in the reboot: this is the reboot
    assert d.state is JobState.REBOOTING
    d.facts(firmware_version=TARGET.version, fw_state=0, fw_result=1)
    assert d.state is JobState.SUCCEEDED
    assert not of(d.commands, Execute)


# -- found by the property tests once results in WAITING had their row -------------------------
def test_updating_seen_after_our_delivery_before_the_read_answers_is_our_install() -> None:
    d = at_delivering(JobPolicy(max_attempts=3))
    d.ok(WriteUri)
    d.timer()  # DELIVERING deadline: retry later
    d.timer()  # the retry reads everything again
    assert d.state is JobState.STARTING
    d.fw(3, 0)  # Updating, notified before the read answered: our image installs
    assert d.state is JobState.INSTALLING
    assert len(of(d.commands, WriteUri)) == 1
