"""UpdateJob behaviour, one pain point per test (pure: injected clock, no I/O)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from job_helpers import (
    NEW,
    OLD,
    POOR_RADIO,
    T0,
    TARGET,
    Driver,
    at_delivering,
    at_downloaded,
    at_installing,
    at_rebooting,
    at_starting,
    facts,
    logs,
    of,
)

from fotakit.updates.delivery import transfer_timeout
from fotakit.updates.job import (
    FIRMWARE_STATE_PATHS,
    VERSION_PATHS,
    Cancel,
    Execute,
    Finish,
    JobPolicy,
    JobState,
    Observe,
    Push,
    ReadFacts,
    ResetUri,
    SetTimer,
    Wait,
    WriteResource,
    WriteUri,
)
from fotakit.updates.reasons import FailureReason

DEVICE_OPS = (WriteUri, ResetUri, Push, Execute, Cancel, WriteResource, Observe)


def _complete(d: Driver, version: str = NEW) -> None:
    """From DELIVERING: the download, Execute, reboot, re-registration on ``version``."""
    d.ok(WriteUri)
    d.fw(1)
    d.fw(2)
    d.ok(Execute)
    d.fw(3)
    d.register()
    d.facts(firmware_version=version, fw_state=0, fw_result=1)


# -- exact version comparison -----------------------------------------------------------------
def test_version_1_1_1_is_not_success_for_target_1_1_10() -> None:
    d = at_starting()
    d.facts(firmware_version="1.1.1")  # a prefix of the target: not on target
    assert d.state is JobState.DELIVERING
    assert TARGET.version == "1.1.10"
    _complete(d, version="1.1.1")
    assert d.state is JobState.FAILED
    assert d.job.reason is FailureReason.ROLLED_BACK


def test_version_1_1_10_on_device_is_not_success_for_target_1_1_1() -> None:
    d = Driver(target=replace(TARGET, version="1.1.1"))
    d.start()
    d.facts(firmware_version="1.1.10")
    assert d.state is JobState.DELIVERING


def test_device_already_on_target_succeeds_without_touching_it() -> None:
    d = at_starting()
    d.facts(firmware_version=NEW)
    assert d.state is JobState.SUCCEEDED
    assert not [c for c in d.commands if isinstance(c, DEVICE_OPS)]
    assert d.finishes()[-1].state is JobState.SUCCEEDED
    assert logs(d.commands, "finished")[-1].details["why"] == "already_on_target"


# -- success only after re-registration with the exact version --------------------------------
def test_full_pull_update_succeeds_after_reregistration_on_target() -> None:
    d = at_delivering()
    _complete(d)
    assert d.state is JobState.SUCCEEDED
    assert d.job.reason is None
    assert [f.state for f in d.finishes()] == [JobState.SUCCEEDED]


def test_idle_success_without_reregistration_is_not_success() -> None:
    d = at_installing()
    d.fw(0, 1)  # Idle / Updated successfully, but the device never re-registered
    assert d.state is JobState.REBOOTING
    assert not d.finishes()
    d.timer()
    assert d.state is JobState.TIMED_OUT
    assert d.job.reason is FailureReason.TIMED_OUT


def test_reregistration_on_old_version_fails_as_rolled_back() -> None:
    d = at_rebooting()
    d.facts(firmware_version=OLD, fw_state=0, fw_result=8)
    assert d.state is JobState.FAILED
    assert d.job.reason is FailureReason.ROLLED_BACK
    details = logs(d.commands, "finished")[-1].details
    assert details["fw_result"] == 8
    assert details["version"] == OLD


def test_trial_boot_on_new_version_still_updating_is_judged_only_after_confirmation() -> None:
    d = at_rebooting()
    d.facts(firmware_version=NEW, fw_state=3, fw_result=0)  # trial boot, health check running
    assert d.state is JobState.REBOOTING
    d.fw(0, 1)  # confirmed
    read = d.pending(ReadFacts)
    assert read.paths == VERSION_PATHS
    d.facts(firmware_version=NEW, fw_state=0, fw_result=1)
    assert d.state is JobState.SUCCEEDED


def test_trial_boot_that_reverts_ends_rolled_back() -> None:
    d = at_rebooting()
    d.facts(firmware_version=NEW, fw_state=3, fw_result=0)
    d.register()  # health check failed: reverted and rebooted
    d.facts(firmware_version=OLD, fw_state=0, fw_result=8)
    assert d.job.reason is FailureReason.ROLLED_BACK


def test_third_version_after_reboot_is_wrong_version() -> None:
    d = at_rebooting()
    d.facts(firmware_version="9.9.9", fw_state=0, fw_result=0)
    assert d.job.reason is FailureReason.WRONG_VERSION


def test_pkg_version_proves_success_when_firmware_version_is_absent() -> None:
    d = Driver()
    d.start()
    d.facts(firmware_version=None, pkg_version="0.9")
    _complete_without_3_0_3(d)
    assert d.state is JobState.SUCCEEDED


def _complete_without_3_0_3(d: Driver) -> None:
    d.ok(WriteUri)
    d.fw(2)
    d.ok(Execute)
    d.register()
    d.facts(firmware_version=None, pkg_version=NEW, fw_state=0, fw_result=1)


def test_no_version_readable_after_reboot_fails_version_unknown() -> None:
    d = at_starting()
    d.facts(firmware_version=None, pkg_version=None)  # neither /3/0/3 nor /5/0/7
    d.ok(WriteUri)
    d.fw(2)
    d.ok(Execute)
    d.register()
    d.facts(firmware_version=None, pkg_version=None, fw_state=0, fw_result=1)
    assert d.job.reason is FailureReason.VERSION_UNKNOWN


# -- observe and read on every Register/Update ------------------------------------------------
def test_state_changes_lost_to_pmin_are_recovered_by_the_read_on_update() -> None:
    d = at_delivering()
    d.ok(WriteUri)
    # Downloading -> Downloaded never notified (coalesced by pmin); the device sends an Update
    d.register("update")
    read = d.pending(ReadFacts)
    assert read.paths == FIRMWARE_STATE_PATHS
    d.facts(fw_state=2, fw_result=0)
    assert d.state is JobState.DOWNLOADED
    assert d.has_pending(Execute)


def test_automatic_install_hidden_by_pmin_is_followed_from_the_read() -> None:
    d = at_delivering()
    d.ok(WriteUri)
    d.register("update")
    d.facts(fw_state=3, fw_result=0)  # Updating already: /5/0/14 installed by itself
    assert d.state is JobState.INSTALLING
    assert not of(d.commands, Execute)


def test_reregistration_reobserves_and_rereads_versions() -> None:
    d = at_installing()
    before = len(of(d.commands, Observe))
    d.register()
    assert d.state is JobState.REBOOTING
    assert len(of(d.commands, Observe)) == before + 1
    assert d.pending(ReadFacts).paths == VERSION_PATHS


# -- Object 5 not Idle at start ----------------------------------------------------------------
@pytest.mark.parametrize("leftover", [1, 2])
def test_leftover_download_is_reset_with_empty_uri_before_delivery(leftover: int) -> None:
    d = at_starting()
    d.facts(fw_state=leftover, fw_result=0)
    assert d.state is JobState.STARTING
    assert d.has_pending(ResetUri)
    assert not of(d.commands, WriteUri)
    d.ok(ResetUri)
    d.facts(fw_state=0, fw_result=0)
    assert d.state is JobState.DELIVERING
    assert d.has_pending(WriteUri)


def test_device_without_object_5_fails_no_firmware_object() -> None:
    d = at_starting()
    d.facts(fw_state=None, fw_result=None)
    assert d.job.reason is FailureReason.NO_FIRMWARE_OBJECT


# -- Update Result failures and retries --------------------------------------------------------
def test_integrity_failure_is_not_retried() -> None:
    d = at_delivering()
    d.ok(WriteUri)
    d.fw(1)
    d.fw(0, 5)
    assert d.state is JobState.FAILED
    assert d.job.reason is FailureReason.INTEGRITY_FAILURE
    assert d.job.attempts == 1


def test_connection_lost_retries_after_backoff_and_delivers_again() -> None:
    d = at_delivering(JobPolicy(backoff_base_s=30.0, backoff_jitter=0.0))
    d.ok(WriteUri)
    d.fw(1)
    d.fw(0, 4)
    assert d.state is JobState.WAITING
    assert d.job.wait is Wait.RETRY
    assert d.job.deadline == pytest.approx(d.now + 30.0)
    d.timer()
    assert d.state is JobState.STARTING
    assert d.job.attempts == 2
    d.facts(fw_state=0, fw_result=4)
    assert d.state is JobState.DELIVERING
    assert len(of(d.commands, WriteUri)) == 2


def test_retry_budget_exhausted_fails_with_the_last_reason() -> None:
    d = Driver(JobPolicy(max_attempts=2))
    d.start()
    for _ in range(2):
        d.facts()
        d.ok(WriteUri)
        d.fw(1)
        d.fw(0, 4)
        if d.state is JobState.WAITING:
            d.timer()
    assert d.state is JobState.FAILED
    assert d.job.reason is FailureReason.CONNECTION_LOST
    assert d.job.attempts == 2


def test_backoff_grows_exponentially() -> None:
    d = Driver(JobPolicy(max_attempts=4, backoff_base_s=10.0, backoff_jitter=0.0))
    d.start()
    delays = []
    for _ in range(3):
        d.fail(ReadFacts, "timeout")
        delays.append(d.job.deadline - d.now)  # type: ignore[operator]
        d.timer()
    assert delays == pytest.approx([10.0, 20.0, 40.0])


def test_unreachable_device_retries_within_budget_then_fails_unreachable() -> None:
    d = Driver(JobPolicy(max_attempts=3))
    d.start()
    for _ in range(3):
        d.fail(ReadFacts, "timeout")
        if d.state is JobState.WAITING:
            d.timer()
    assert d.state is JobState.FAILED
    assert d.job.reason is FailureReason.UNREACHABLE
    assert d.job.attempts == 3


def test_throttle_does_not_burn_retry_budget() -> None:
    d = Driver(JobPolicy(max_attempts=1))
    for _ in range(5):  # held by the rate limit five times before it may start
        d.hold(60.0)
        d.timer()
        assert d.state is JobState.STARTING
        d.hold(60.0)  # the concurrency cap is full: back to waiting
        assert d.state is JobState.WAITING
        assert d.job.wait is Wait.THROTTLE
    d.timer()
    assert d.job.attempts == 1
    d.facts()
    assert d.state is JobState.DELIVERING  # the one real attempt is still there


def test_maintenance_window_wait_does_not_burn_retry_budget() -> None:
    opens = T0 + 3600.0
    policy = JobPolicy(max_attempts=1, window=lambda now: None if now >= opens else opens)
    d = Driver(policy)
    d.start()
    d.facts()
    assert d.state is JobState.WAITING
    assert d.job.wait is Wait.WINDOW
    assert d.job.deadline == opens
    assert not of(d.commands, WriteUri)
    d.timer()
    d.facts()
    assert d.state is JobState.DELIVERING
    assert d.job.attempts == 1


def test_execute_waits_for_the_maintenance_window() -> None:
    opens = T0 + 7200.0
    policy = JobPolicy(window=lambda now: None if now >= opens or now < T0 + 10 else opens)
    d = at_delivering(policy)
    d.ok(WriteUri)
    d.advance(60)
    d.fw(2)
    assert d.state is JobState.WAITING
    assert d.job.wait is Wait.EXECUTE_WINDOW
    assert not of(d.commands, Execute)
    d.timer()
    assert d.state is JobState.DOWNLOADED
    assert d.has_pending(Execute)


# -- timeouts --------------------------------------------------------------------------------
def test_downloading_timeout_retries_then_ends_timed_out() -> None:
    d = at_delivering(JobPolicy(max_attempts=2))
    d.ok(WriteUri)
    d.fw(1)
    d.timer()
    assert d.state is JobState.WAITING
    d.timer()
    d.facts(fw_state=1)  # still downloading our URI: keep following it, no rewrite
    assert d.state is JobState.DELIVERING
    assert len(of(d.commands, WriteUri)) == 1
    d.timer()
    assert d.state is JobState.TIMED_OUT
    assert d.job.reason is FailureReason.TIMED_OUT


def test_installing_timeout_ends_timed_out_without_retry() -> None:
    d = at_installing(JobPolicy(max_attempts=5))
    d.timer()
    assert d.state is JobState.TIMED_OUT
    assert len(of(d.commands, Execute)) == 1


def test_reregistration_timeout_ends_timed_out() -> None:
    d = at_rebooting()
    d.timer()
    assert d.state is JobState.TIMED_OUT


def test_downloaded_timeout_without_execute_answer_retries_without_redownload() -> None:
    d = at_downloaded(JobPolicy(max_attempts=2))
    d.timer()
    assert d.state is JobState.WAITING
    d.timer()
    d.facts(fw_state=2)  # our image is still there
    assert d.state is JobState.DOWNLOADED
    assert len(of(d.commands, WriteUri)) == 1
    assert d.has_pending(Execute)


def test_delivering_deadline_is_sized_from_package_size_and_rtt() -> None:
    big = replace(TARGET, size=5_000_000)
    d = Driver(target=big)
    d.start()
    d.facts(rtt_s=0.2)
    expected = transfer_timeout(5_000_000, 0.2)
    assert expected > 120.0 * 10
    assert d.job.deadline == pytest.approx(d.now + expected)


def test_timer_before_deadline_is_ignored() -> None:
    d = at_installing()
    d._take(d.job.on_timer(d.now + 1))
    assert d.state is JobState.INSTALLING
    assert logs(d.last, "timer_early")


# -- queue mode --------------------------------------------------------------------------------
def test_queue_mode_deadline_counts_from_the_next_contact() -> None:
    policy = JobPolicy(downloading_timeout_s=600.0)
    d = at_starting(policy)
    d.facts(queue_mode=True, lifetime_s=3600)
    assert d.state is JobState.DELIVERING
    assert d.has_pending(WriteUri)  # issued at once: the server queues it
    assert d.job.deadline == pytest.approx(T0 + 600.0 + 3660.0)
    d.advance(3000)  # the device sleeps 50 minutes, then sends an Update
    d.register("update")
    assert d.job.deadline == pytest.approx(d.now + 600.0)
    d.ok(WriteUri)
    assert d.job.deadline == pytest.approx(d.now + 600.0)  # only the first contact counts


def test_queue_mode_device_that_never_wakes_still_times_out() -> None:
    d = at_starting(JobPolicy(max_attempts=1))
    d.facts(queue_mode=True, lifetime_s=3600)
    d.timer()
    assert d.state is JobState.TIMED_OUT


# -- execute, severity, deferral, automatic upgrade --------------------------------------------
def test_deferred_execute_waits_and_executes_again_without_burning_budget() -> None:
    d = at_downloaded(JobPolicy(defer_retry_s=600.0, max_attempts=1))
    d.ok(Execute)
    assert d.state is JobState.INSTALLING
    d2 = at_downloaded(JobPolicy(defer_retry_s=600.0, max_attempts=1))
    d2.fw(2, 11)  # the device's user deferred
    assert d2.state is JobState.WAITING
    assert d2.job.wait is Wait.DEFERRED
    d2.timer()
    assert d2.state is JobState.DOWNLOADED
    assert len(of(d2.commands, Execute)) == 2
    assert d2.job.attempts == 1


def test_deferral_is_bounded_by_the_maximum_defer_period() -> None:
    d = at_starting(JobPolicy(defer_retry_s=3600.0))
    d.facts(max_defer_s=600)
    d.ok(WriteUri)
    d.fw(2)
    d.fw(2, 11)
    assert d.job.deadline == pytest.approx(d.now + 601.0)
    d.timer()
    d.fw(3)  # past the period the device installs by itself
    assert d.state is JobState.INSTALLING


def test_too_many_deferrals_fail_deferred() -> None:
    d = at_downloaded(JobPolicy(max_deferrals=2, defer_retry_s=10.0))
    for _ in range(3):
        d.fw(2, 11)
        if d.state is JobState.WAITING:
            d.timer()
    assert d.job.reason is FailureReason.DEFERRED


def test_severity_is_written_before_execute_when_the_device_has_it() -> None:
    d = at_starting(JobPolicy(severity=0))
    d.facts(severity=1)
    d.ok(WriteUri)
    d.fw(2)
    ops = [c for c in d.last if isinstance(c, WriteResource | Execute)]
    assert isinstance(ops[0], WriteResource)
    assert (ops[0].path, ops[0].value) == ("/5/0/11", 0)
    assert isinstance(ops[1], Execute)


def test_automatic_upgrade_at_download_is_not_executed() -> None:
    d = at_starting()
    d.facts(auto_upgrade=True)
    d.ok(WriteUri)
    d.fw(2)
    assert d.state is JobState.DOWNLOADED
    assert not of(d.commands, Execute)
    d.fw(3)
    d.register()
    d.facts(firmware_version=NEW, fw_state=0, fw_result=1)
    assert d.state is JobState.SUCCEEDED


def test_execute_refused_4_05_rereads_instead_of_failing() -> None:
    d = at_downloaded()
    d.fail(Execute, "4.05")
    assert d.state is JobState.DOWNLOADED
    assert d.pending(ReadFacts).paths == FIRMWARE_STATE_PATHS
    d.facts(fw_state=3)
    assert d.state is JobState.INSTALLING


def test_update_failed_with_image_kept_fails_update_failed() -> None:
    d = at_installing()
    d.fw(2, 8)
    assert d.job.reason is FailureReason.UPDATE_FAILED


# -- cancel ----------------------------------------------------------------------------------
def test_cancel_on_1_1_client_executes_5_0_10() -> None:
    d = at_delivering()
    d.cancel()
    cancel = d.pending(Cancel)
    assert cancel.method == "execute"
    d.ok(Cancel)
    d.fw(0, 10)
    assert d.state is JobState.CANCELLED
    assert d.job.reason is FailureReason.CANCELLED


def test_cancel_on_1_0_client_resets_with_empty_uri() -> None:
    d = at_delivering(lwm2m_version="1.0", has_cancel=None)
    d.cancel()
    assert d.pending(Cancel).method == "reset"
    d.ok(Cancel)
    d.facts(fw_state=0, fw_result=0)
    assert d.state is JobState.CANCELLED


def test_cancel_refused_by_device_falls_back_to_reset() -> None:
    d = at_delivering()
    d.cancel()
    d.fail(Cancel, "4.04")
    assert d.pending(Cancel).method == "reset"
    assert d.state is JobState.CANCELLING


def test_unconfirmed_cancel_ends_cancelled_at_its_deadline() -> None:
    d = at_delivering()
    d.cancel()
    d.fail(Cancel, "timeout")
    assert d.state is JobState.CANCELLING
    d.timer()
    assert d.state is JobState.CANCELLED
    assert logs(d.commands, "finished")[-1].details["why"] == "unconfirmed"


def test_cancel_while_installing_is_rejected_and_the_job_goes_on() -> None:
    d = at_installing()
    d.cancel()
    assert d.state is JobState.INSTALLING
    assert logs(d.last, "cancel_rejected")
    assert not of(d.commands, Cancel)


def test_cancel_racing_with_install_follows_the_install() -> None:
    d = at_downloaded()
    d.cancel()
    d.fw(3)  # the device had already started installing
    assert d.state is JobState.INSTALLING


def test_cancel_before_anything_reached_the_device_is_immediate() -> None:
    d = at_starting()
    d.cancel()
    assert d.state is JobState.CANCELLED
    assert not of(d.commands, Cancel)


# -- push and pull -----------------------------------------------------------------------------
def test_push_only_device_with_good_link_gets_a_push_with_sized_timeout() -> None:
    d = at_starting()
    d.facts(delivery_method=1, rtt_s=0.1)
    push = d.pending(Push)
    assert push.size == TARGET.size
    assert push.form == "package"
    assert push.timeout_s == pytest.approx(transfer_timeout(TARGET.size, 0.1))
    d.ok(Push)
    assert d.pending(ReadFacts).paths == FIRMWARE_STATE_PATHS
    d.facts(fw_state=2)
    assert d.state is JobState.DOWNLOADED


def test_push_only_device_on_poor_link_waits_then_fails_link_too_poor() -> None:
    policy = JobPolicy(link_recheck_s=600.0, link_wait_max_s=1800.0, max_attempts=1)
    d = at_starting(policy)
    d.facts(delivery_method=1, radio=POOR_RADIO)
    assert d.state is JobState.WAITING
    assert d.job.wait is Wait.LINK
    for _ in range(3):
        d.timer()
        d.facts(delivery_method=1, radio=POOR_RADIO)
    assert d.state is JobState.FAILED
    assert d.job.reason is FailureReason.LINK_TOO_POOR
    assert not of(d.commands, Push)


def test_push_only_device_pushed_once_the_link_recovers() -> None:
    d = at_starting()
    d.facts(delivery_method=1, radio=POOR_RADIO)
    d.timer()
    d.facts(delivery_method=1)
    assert d.has_pending(Push)


def test_device_with_poor_radio_is_pulled_not_pushed() -> None:
    d = at_starting(JobPolicy(prefer_pull=False))
    d.facts(radio=POOR_RADIO)
    assert d.has_pending(WriteUri)
    d2 = at_starting(JobPolicy(prefer_pull=False))
    d2.facts()
    assert d2.has_pending(Push)


def test_push_refused_4_13_fails_not_enough_storage() -> None:
    d = at_starting()
    d.facts(delivery_method=1)
    d.fail(Push, "4.13")
    assert d.job.reason is FailureReason.NOT_ENOUGH_STORAGE


def test_bare_payload_device_gets_the_payload_uri() -> None:
    d = Driver(target=replace(TARGET, bare_payload=True))
    d.start()
    d.facts()
    assert d.pending(WriteUri).uri == TARGET.uri_coap_payload


def test_http_only_device_gets_the_http_uri() -> None:
    d = at_starting()
    d.facts(protocols=(2,))
    assert d.pending(WriteUri).uri == TARGET.uri_http


def test_no_common_protocol_fails_no_delivery_method() -> None:
    d = at_starting()
    d.facts(protocols=(1, 3), delivery_method=0)
    assert d.job.reason is FailureReason.NO_DELIVERY_METHOD


# -- restore ----------------------------------------------------------------------------------
def test_restored_job_in_delivering_rereads_state_instead_of_rewriting_uri() -> None:
    d = at_delivering()
    d.ok(WriteUri)
    d.fw(1)
    out = d.restore()
    assert not of(out, WriteUri)
    assert of(out, ReadFacts)[0].paths == FIRMWARE_STATE_PATHS
    assert of(out, Observe)
    assert of(out, SetTimer)[-1].at == d.job.deadline
    d.facts(fw_state=2)
    assert d.state is JobState.DOWNLOADED
    assert len(of(d.commands, WriteUri)) == 1


def test_restored_before_the_write_was_acknowledged_writes_again_only_if_idle() -> None:
    d = at_delivering()
    d.restore()  # killed with the Write in flight
    d.facts(fw_state=0, fw_result=0)  # it never reached the device
    assert d.state is JobState.STARTING  # reads everything again before deciding
    assert len(of(d.commands, WriteUri)) == 1
    d.facts(fw_state=0, fw_result=0)
    assert d.state is JobState.DELIVERING
    assert len(of(d.commands, WriteUri)) == 2
    assert d.job.attempts == 1


def test_restored_job_in_installing_never_executes_again() -> None:
    d = at_installing()
    d.restore()
    d.facts(fw_state=3)
    d.register()
    d.facts(firmware_version=NEW, fw_state=0, fw_result=1)
    assert d.state is JobState.SUCCEEDED
    assert len(of(d.commands, Execute)) == 1


def test_restored_job_in_downloaded_executes_if_still_downloaded() -> None:
    d = at_downloaded()
    d.restore()  # the Execute was lost with the old process
    d.facts(fw_state=2)
    assert d.has_pending(Execute)
    assert len(of(d.commands, Execute)) == 2


def test_restored_job_after_the_execute_landed_follows_the_install() -> None:
    d = at_downloaded()
    d.restore()
    d.facts(fw_state=3)
    assert d.state is JobState.INSTALLING
    assert len(of(d.commands, Execute)) == 1


def test_command_ids_stay_unique_across_restores() -> None:
    d = at_delivering()
    d.restore()
    d.facts(fw_state=1)
    d.restore()
    ids = [c.command_id for c in d.commands]
    assert len(ids) == len(set(ids))


def test_finish_is_emitted_exactly_once() -> None:
    d = at_delivering()
    _complete(d)
    d.register()
    d.fw(0, 1)
    assert len(of(d.commands, Finish)) == 1


def test_every_input_is_logged() -> None:
    d = at_delivering()
    _complete(d)
    kinds = [log.details["input"] for log in logs(d.commands, "input")]
    for expected in ("start", "facts", "command_ok", "firmware_state", "registered"):
        assert expected in kinds


def test_lost_execute_answer_never_leads_to_a_second_delivery() -> None:
    d = at_downloaded(JobPolicy(max_attempts=3))
    d.fail(Execute, "timeout")  # the device did execute; the answer was lost
    d.fail(ReadFacts, "timeout")
    d.timer()  # DOWNLOADED deadline: retry
    d.timer()
    d.facts(firmware_version=NEW, fw_state=0, fw_result=1)  # it rebooted into the target
    assert d.state is JobState.REBOOTING
    assert len(of(d.commands, WriteUri)) == 1
    d.register()
    d.facts(firmware_version=NEW, fw_state=0, fw_result=1)
    assert d.state is JobState.SUCCEEDED


def test_notification_before_the_first_read_does_not_trigger_a_delivery() -> None:
    d = at_starting()
    d.fw(0, 0)  # an observation left from earlier: versions are not known yet
    assert d.state is JobState.STARTING
    assert not of(d.commands, WriteUri)
    d.facts(firmware_version=NEW)
    assert d.state is JobState.SUCCEEDED


def test_missed_3_0_3_read_after_reboot_is_not_judged_by_pkg_version() -> None:
    d = at_rebooting()
    # /3/0/3 timed out; /5/0/7 names the package it downloaded, not what it runs
    d.facts(firmware_version=None, pkg_version=NEW, fw_state=0, fw_result=8)
    assert d.state is JobState.REBOOTING
    d.register("update")
    d.facts(firmware_version=OLD, pkg_version=NEW, fw_state=0, fw_result=8)
    assert d.job.reason is FailureReason.ROLLED_BACK


def test_pkg_version_alone_is_not_proof_of_being_on_target_at_start() -> None:
    d = at_starting()
    d.facts(firmware_version=None, pkg_version=NEW, fw_state=0, fw_result=8)
    assert d.state is JobState.DELIVERING
    d2 = at_starting()
    d2.facts(firmware_version=None, pkg_version=NEW, fw_state=0, fw_result=1)
    assert d2.state is JobState.SUCCEEDED


# -- bugs found by the engine under load -------------------------------------------------------
@pytest.mark.parametrize("leftover", [1, 2])
@pytest.mark.parametrize("code", ["timeout", "unreachable"])
def test_failed_push_leftover_is_reset_before_delivering_again(leftover: int, code: str) -> None:
    d = at_starting(JobPolicy(max_attempts=3))
    d.facts(delivery_method=1)
    d.fail(Push, code)  # the Block1 transfer broke off: a partial image on the device
    assert d.state is JobState.WAITING
    d.timer()
    d.facts(delivery_method=1, fw_state=leftover, fw_result=0)
    # nobody sends that transfer any more: never wait for it (600 s), reset it
    assert d.state is JobState.STARTING
    assert d.has_pending(ResetUri)
    assert len(of(d.commands, Push)) == 1
    d.ok(ResetUri)
    d.facts(delivery_method=1, fw_state=0, fw_result=0)
    assert d.state is JobState.DELIVERING
    assert d.has_pending(Push)
    assert len(of(d.commands, Push)) == 2


def test_push_out_of_time_leftover_is_reset_before_delivering_again() -> None:
    d = at_starting(JobPolicy(max_attempts=3))
    d.facts(delivery_method=1)
    d.fw(1)  # Downloading, then the DELIVERING deadline passes without an answer
    d.timer()
    assert d.state is JobState.WAITING
    d.timer()
    d.facts(delivery_method=1, fw_state=1, fw_result=0)
    assert d.state is JobState.STARTING
    assert d.has_pending(ResetUri)


def test_pulled_download_is_still_followed_after_a_retry() -> None:
    d = at_delivering(JobPolicy(max_attempts=3))
    d.fail(WriteUri, "timeout")  # the URI may have reached the device: it pulls by itself
    d.timer()
    d.facts(fw_state=1)
    assert d.state is JobState.DELIVERING
    assert not of(d.commands, ResetUri)


@pytest.mark.parametrize("code", ["timeout", "unreachable"])
def test_register_after_unanswered_execute_counts_as_the_reboot(code: str) -> None:
    d = at_downloaded()
    d.fail(Execute, code)  # the device executed; the answer was lost in its reboot
    assert d.state is JobState.DOWNLOADED
    d.register()
    assert d.state is JobState.REBOOTING
    assert d.pending(ReadFacts).paths == VERSION_PATHS
    assert of(d.last, Observe)
    d.facts(firmware_version=NEW, fw_state=0, fw_result=1)
    assert d.state is JobState.SUCCEEDED
    assert len(of(d.commands, Execute)) == 1


def test_register_while_execute_is_unanswered_counts_as_the_reboot() -> None:
    d = at_downloaded()
    d.register()  # before the Execute's answer (or its timeout) came back
    assert d.state is JobState.REBOOTING
    d.fail(Execute, "timeout")
    assert d.state is JobState.REBOOTING
    d.facts(firmware_version=NEW, fw_state=0, fw_result=1)
    assert d.state is JobState.SUCCEEDED


def test_register_after_unanswered_execute_counts_across_a_restore() -> None:
    d = at_downloaded()
    d.fail(Execute, "timeout")
    d.restore()
    d.register()
    assert d.state is JobState.REBOOTING
    d.facts(firmware_version=OLD, fw_state=0, fw_result=8)
    assert d.job.reason is FailureReason.ROLLED_BACK


def test_register_after_refused_execute_is_not_the_reboot() -> None:
    d = at_downloaded()
    d.fail(Execute, "4.05")
    d.register()
    assert d.state is JobState.DOWNLOADED
    assert d.pending(ReadFacts).paths == FIRMWARE_STATE_PATHS


def test_missed_3_0_3_read_after_reboot_reads_again_on_its_own() -> None:
    d = at_rebooting()
    d.facts(firmware_version=None, pkg_version=NEW, fw_state=0, fw_result=1)
    assert d.state is JobState.REBOOTING
    assert d.pending(ReadFacts).paths == VERSION_PATHS  # no Update needed
    d.facts(firmware_version=NEW, fw_state=0, fw_result=1)
    assert d.state is JobState.SUCCEEDED


def test_3_0_3_never_read_after_reboot_ends_version_unknown_after_bounded_rereads() -> None:
    d = at_rebooting(JobPolicy(version_rereads=2))
    reads = len(of(d.commands, ReadFacts))
    for _ in range(3):
        assert d.state is JobState.REBOOTING
        d.facts(firmware_version=None, pkg_version=NEW, fw_state=0, fw_result=1)
    assert d.state is JobState.FAILED
    assert d.job.reason is FailureReason.VERSION_UNKNOWN
    assert len(of(d.commands, ReadFacts)) == reads + 2


def test_target_version_seen_while_waiting_to_retry_is_never_delivered_again() -> None:
    # the hypothesis counterexample of test_random_plausible_device_behaviour_keeps_the_invariants
    d = at_delivering(JobPolicy(max_attempts=3))
    d.ok(WriteUri)
    d.timer()  # DELIVERING deadline: retry later
    assert d.state is JobState.WAITING
    d._take(d.job.on_facts(facts(firmware_version=NEW, fw_state=None), d.now))
    assert d.state is JobState.REBOOTING  # it installed our package: no second delivery
    d.register()
    d.facts(firmware_version=OLD, fw_state=0, fw_result=8)
    assert d.job.reason is FailureReason.ROLLED_BACK
    assert len(of(d.commands, WriteUri)) == 1
