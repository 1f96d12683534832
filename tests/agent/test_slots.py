"""slots.py in one process: A/B writing, trial boots, confirm, revert, anti-rollback.

A "restart" is a new SlotStore on the same root (what the agent does after a reboot).
Crash safety under SIGKILL is proven separately in test_slots_crash.py.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from slot_crash_helper import CLASS, VENDOR, payload_for

from fotakit.agent.persist import CorruptStateError
from fotakit.agent.slots import (
    REASON_CRASH_LOOP,
    REASON_HEALTH_CHECK,
    REASON_IMAGE_DAMAGED,
    NotInitialised,
    OutcomeKind,
    SlotFull,
    SlotImageDamaged,
    SlotInfo,
    SlotState,
    SlotStateError,
    SlotStore,
    payload_digest,
)
from fotakit.lwm2m.objects.firmware import UpdateResult
from fotakit.packages import (
    DeviceIdentity,
    PrivateKey,
    RollbackRejected,
    TrustStore,
    build_package_in_memory,
    generate_key,
    verify_package,
)

IDENTITY = DeviceIdentity.from_names(VENDOR, CLASS)


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return generate_key("ed25519")


@pytest.fixture
def trust(key: PrivateKey) -> TrustStore:
    t = TrustStore()
    t.add(None, key.public_key())
    return t


def package(key: PrivateKey, version: str, sequence: int) -> bytes:
    return build_package_in_memory(
        payload_for(version),
        version=version,
        vendor_domain=VENDOR,
        class_name=CLASS,
        sequence=sequence,
        key=key,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    image = tmp_path / "factory.bin"
    image.write_bytes(payload_for("1.0.0"))
    SlotStore.initialise(tmp_path / "slots-root", version="1.0.0", sequence=3, image=image)
    return tmp_path / "slots-root"


def booted(root: Path, **kwargs: int) -> SlotStore:
    store = SlotStore(root, **kwargs)
    store.boot()
    return store


def download(
    store: SlotStore, trust: TrustStore, data: bytes, *, shuffle: bool = False
) -> SlotInfo:
    """Write ``data`` to the inactive slot in 512-byte blocks, verify, return its SlotInfo."""
    writer = store.open_inactive(expected_size=len(data))
    offsets = list(range(0, len(data), 512))
    if shuffle:
        random.Random(7).shuffle(offsets)
    for off in offsets:
        writer.write(off, data[off : off + 512])
    writer.finish()
    verified = verify_package(
        writer.path, trust, identity=IDENTITY, min_sequence=store.highest_sequence
    )
    return store.describe(verified, pkg_name="fw")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- initialise -----------------------------------------------------------------------------


def test_initialise_makes_slot_a_the_confirmed_running_firmware(root: Path) -> None:
    store = SlotStore(root)
    d = store.boot()
    assert (d.slot, d.trial, d.trial_boot, d.outcome) == ("a", False, 0, None)
    assert d.info.version == "1.0.0" and d.info.state is SlotState.VERIFIED
    assert d.info.digest == sha(payload_for("1.0.0"))
    assert store.highest_sequence == 3
    assert store.state.confirmed and store.inactive_name == "b"
    assert store.slot("b").state is SlotState.EMPTY
    on_disk = json.loads((root / "boot.json").read_text())
    assert on_disk["active"] == "a" and on_disk["pending"] is None and on_disk["confirmed"]


def test_initialise_again_changes_nothing(root: Path) -> None:
    before = (root / "boot.json").read_bytes()
    store = SlotStore.initialise(root, version="9.9.9", sequence=99)
    assert (root / "boot.json").read_bytes() == before
    assert store.boot().info.version == "1.0.0"


def test_initialise_without_image_describes_empty_bytes(tmp_path: Path) -> None:
    store = SlotStore.initialise(tmp_path, version="0.1")
    d = store.boot()
    assert d.info.size == 0 and d.info.digest == sha(b"")
    assert store.highest_sequence == 0


def test_opening_an_uninitialised_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(NotInitialised):
        SlotStore(tmp_path)


def test_corrupt_boot_state_is_an_error_not_a_reset(root: Path) -> None:
    (root / "boot.json").write_text('{"format": 1, "active": "c"}')
    with pytest.raises(CorruptStateError):
        SlotStore(root)
    (root / "boot.json").write_text("{")
    with pytest.raises(CorruptStateError):
        SlotStore(root)
    assert (root / "boot.json").read_text() == "{"


def test_boot_state_whose_confirmed_flag_contradicts_pending_is_corrupt(root: Path) -> None:
    state = json.loads((root / "boot.json").read_text())
    state["confirmed"] = False
    (root / "boot.json").write_text(json.dumps(state))
    with pytest.raises(CorruptStateError, match="confirmed"):
        SlotStore(root)


# --- the update cycle ------------------------------------------------------------------------


def test_update_runs_on_trial_then_confirm_makes_it_active(
    root: Path, key: PrivateKey, trust: TrustStore
) -> None:
    store = booted(root)
    info = download(store, trust, package(key, "2.0.0", 5), shuffle=True)
    assert info.name == "b" and info.version == "2.0.0" and info.sequence == 5
    pending = store.mark_pending(info)
    assert pending.state is SlotState.VERIFIED and store.pending_name == "b"
    assert store.highest_sequence == 3  # not on mark_pending
    assert store.running.version == "1.0.0"  # this start still runs the old firmware

    store = SlotStore(root)  # restart
    d = store.boot()
    assert (d.slot, d.trial, d.trial_boot) == ("b", True, 1)
    assert d.info.version == "2.0.0" and store.on_trial
    assert store.highest_sequence == 3  # not on the trial boot either

    outcome = store.confirm()
    assert outcome.kind is OutcomeKind.CONFIRMED and outcome.update_result is UpdateResult.SUCCESS
    assert store.highest_sequence == 5
    assert (store.active_name, store.pending_name, store.inactive_name) == ("b", None, "a")
    assert not store.on_trial

    store = SlotStore(root)  # restart after the confirm
    d = store.boot()
    assert (d.slot, d.trial) == ("b", False)
    assert d.outcome is not None and d.outcome.kind is OutcomeKind.CONFIRMED
    assert d.outcome.version == "2.0.0"
    store.acknowledge_outcome()
    assert SlotStore(root).boot().outcome is None


def test_next_update_after_confirm_is_written_to_the_old_slot(
    root: Path, key: PrivateKey, trust: TrustStore
) -> None:
    store = booted(root)
    store.mark_pending(download(store, trust, package(key, "2.0.0", 5)))
    store = booted(root)
    store.confirm()
    # Same start, no restart needed after a confirm.
    info = download(store, trust, package(key, "3.0.0", 6))
    assert info.name == "a"
    store.mark_pending(info)
    store = SlotStore(root)
    d = store.boot()
    assert (d.slot, d.trial, d.info.version) == ("a", True, "3.0.0")


def test_writing_the_inactive_slot_never_touches_the_active_image(
    root: Path, key: PrivateKey, trust: TrustStore
) -> None:
    active_image = root / "slots" / "a" / "image"
    before = active_image.read_bytes()
    before_info = (root / "slots" / "a" / "info.json").read_bytes()
    store = booted(root)
    writer = store.open_inactive()
    assert writer.path == root / "slots" / "b" / "image"
    writer.write(0, b"x" * 100_000)
    writer.truncate(10)
    writer.finish()
    store.discard()
    assert active_image.read_bytes() == before
    assert (root / "slots" / "a" / "info.json").read_bytes() == before_info


def test_half_written_slot_is_marked_writing_and_never_booted(root: Path, key: PrivateKey) -> None:
    store = booted(root)
    data = package(key, "2.0.0", 5)
    writer = store.open_inactive()
    writer.write(0, data[: len(data) // 2])
    assert store.slot("b").state is SlotState.WRITING
    assert json.loads((root / "slots" / "b" / "info.json").read_text())["state"] == "writing"
    with pytest.raises(SlotStateError, match="not verified"):
        store.mark_pending()
    assert SlotStore(root).boot().slot == "a"


def test_health_check_failure_reverts_and_next_start_reports_failure(
    root: Path, key: PrivateKey, trust: TrustStore
) -> None:
    store = booted(root)
    store.mark_pending(download(store, trust, package(key, "2.0.0", 5)))
    store = booted(root)
    outcome = store.revert(REASON_HEALTH_CHECK)
    assert outcome.update_result is UpdateResult.UPDATE_FAILED
    assert store.restart_required and not store.on_trial
    with pytest.raises(SlotStateError, match="restart"):
        store.open_inactive()  # we are still running the rejected image in slot b

    store = SlotStore(root)
    d = store.boot()
    assert (d.slot, d.trial, d.info.version) == ("a", False, "1.0.0")
    assert d.outcome is not None
    assert (d.outcome.kind, d.outcome.reason, d.outcome.version) == (
        OutcomeKind.REVERTED,
        REASON_HEALTH_CHECK,
        "2.0.0",
    )
    assert store.highest_sequence == 3  # a reverted image never raises the counter


def test_unconfirmed_image_reverts_after_max_trial_boots(
    root: Path, key: PrivateKey, trust: TrustStore
) -> None:
    store = booted(root, max_trial_boots=2)
    store.mark_pending(download(store, trust, package(key, "2.0.0", 5)))
    for n in (1, 2):
        d = SlotStore(root, max_trial_boots=2).boot()  # started, then "crashed"
        assert (d.slot, d.trial, d.trial_boot) == ("b", True, n)
    d = SlotStore(root, max_trial_boots=2).boot()
    assert (d.slot, d.trial) == ("a", False)
    assert d.outcome is not None and d.outcome.reason == REASON_CRASH_LOOP
    assert d.outcome.update_result is UpdateResult.UPDATE_FAILED
    assert SlotStore(root).state.pending is None


def test_pending_image_tampered_after_mark_pending_is_reverted_not_booted(
    root: Path, key: PrivateKey, trust: TrustStore
) -> None:
    store = booted(root)
    store.mark_pending(download(store, trust, package(key, "2.0.0", 5)))
    image = root / "slots" / "b" / "image"
    data = bytearray(image.read_bytes())
    data[-1] ^= 0xFF
    image.write_bytes(bytes(data))
    d = SlotStore(root).boot()
    assert (d.slot, d.trial) == ("a", False)
    assert d.outcome is not None and d.outcome.reason.startswith(REASON_IMAGE_DAMAGED)


def test_truncated_pending_image_is_reverted_on_a_later_trial_boot(
    root: Path, key: PrivateKey, trust: TrustStore
) -> None:
    store = booted(root)
    store.mark_pending(download(store, trust, package(key, "2.0.0", 5)))
    assert SlotStore(root).boot().trial
    image = root / "slots" / "b" / "image"
    image.write_bytes(image.read_bytes()[:-1])
    d = SlotStore(root).boot()
    assert d.slot == "a" and d.outcome is not None
    assert "bytes, expected" in d.outcome.reason


# --- rules --------------------------------------------------------------------------------


def test_boot_twice_in_one_start_is_refused(root: Path) -> None:
    store = booted(root)
    with pytest.raises(SlotStateError):
        store.boot()


def test_operations_before_boot_are_refused(root: Path) -> None:
    store = SlotStore(root)
    with pytest.raises(SlotStateError, match="boot"):
        store.open_inactive()
    with pytest.raises(SlotStateError):
        store.running  # noqa: B018


def test_confirm_outside_a_trial_is_refused(root: Path) -> None:
    store = booted(root)
    with pytest.raises(SlotStateError, match="trial"):
        store.confirm()
    assert store.active_name == "a"


def test_revert_with_nothing_pending_is_refused(root: Path) -> None:
    with pytest.raises(SlotStateError):
        booted(root).revert("why")


def test_no_new_download_during_a_trial(root: Path, key: PrivateKey, trust: TrustStore) -> None:
    store = booted(root)
    store.mark_pending(download(store, trust, package(key, "2.0.0", 5)))
    store = booted(root)
    with pytest.raises(SlotStateError, match="trial"):
        store.open_inactive()
    with pytest.raises(SlotStateError, match="trial"):
        store.discard()


def test_new_download_over_a_scheduled_slot_unschedules_it_first(
    root: Path, key: PrivateKey, trust: TrustStore
) -> None:
    store = booted(root)
    store.mark_pending(download(store, trust, package(key, "2.0.0", 5)))
    writer = store.open_inactive()
    assert store.pending_name is None
    assert json.loads((root / "boot.json").read_text())["pending"] is None
    writer.write(0, b"partial")
    assert SlotStore(root).boot().slot == "a"


def test_discard_drops_a_scheduled_image(root: Path, key: PrivateKey, trust: TrustStore) -> None:
    store = booted(root)
    store.mark_pending(download(store, trust, package(key, "2.0.0", 5)))
    store.discard()
    assert store.pending_name is None and store.slot("b").state is SlotState.EMPTY
    assert not (root / "slots" / "b" / "image").exists()
    d = SlotStore(root).boot()
    assert (d.slot, d.trial, d.outcome) == ("a", False, None)


def test_resume_keeps_bytes_written_before_a_restart(root: Path, key: PrivateKey) -> None:
    data = package(key, "2.0.0", 5)
    store = booted(root)
    writer = store.open_inactive()
    writer.write(0, data[:1000])
    writer.close()

    store = booted(root)  # restart mid-download
    writer = store.open_inactive(resume=True)
    assert writer.size == 1000
    writer.write(1000, data[1000:])
    writer.finish()
    assert writer.path.read_bytes() == data

    writer = booted(root).open_inactive()  # a fresh download starts empty
    assert writer.size == 0


def test_pwrite_is_idempotent_and_out_of_order(root: Path) -> None:
    writer = booted(root).open_inactive()
    writer.write(4, b"EFGH")
    writer.write(0, b"ABCD")
    writer.write(4, b"EFGH")  # retransmitted block
    writer.write(2, memoryview(b"cd"))
    writer.close()
    assert writer.path.read_bytes() == b"ABcdEFGH"


# --- capacity -----------------------------------------------------------------------------


def test_expected_size_over_capacity_is_slot_full_before_writing(root: Path) -> None:
    store = booted(root, slot_capacity=1000)
    with pytest.raises(SlotFull) as info:
        store.open_inactive(expected_size=1001)
    assert info.value.capacity == 1000
    assert SlotFull.update_result is UpdateResult.NOT_ENOUGH_FLASH
    assert store.slot("b").state is SlotState.EMPTY


def test_writing_past_capacity_is_slot_full_and_writes_nothing(root: Path) -> None:
    store = booted(root, slot_capacity=1000)
    writer = store.open_inactive()  # size unknown (pull without Size2)
    writer.write(0, b"x" * 1000)
    with pytest.raises(SlotFull):
        writer.write(1000, b"y")
    with pytest.raises(SlotFull):
        writer.write(990, b"z" * 11)
    with pytest.raises(SlotFull):
        writer.truncate(1001)
    assert writer.size == 1000
    writer.close()
    assert writer.path.read_bytes() == b"x" * 1000


# --- verification and anti-rollback ---------------------------------------------------------


def test_verifier_gets_highest_sequence_and_rejects_lower(
    root: Path, key: PrivateKey, trust: TrustStore
) -> None:
    store = booted(root)  # highest_sequence 3
    with pytest.raises(RollbackRejected) as info:
        download(store, trust, package(key, "0.9.0", 2))
    assert info.value.update_result is UpdateResult.UNSUPPORTED_PACKAGE_TYPE


def test_equal_sequence_is_accepted_for_reinstall(
    root: Path, key: PrivateKey, trust: TrustStore
) -> None:
    store = booted(root)
    info = download(store, trust, package(key, "1.0.0-repair", 3))
    assert store.mark_pending(info).sequence == 3


def test_mark_verified_rechecks_rollback_even_without_the_verifier(
    root: Path, key: PrivateKey
) -> None:
    store = booted(root)
    data = payload_for("0.1.0")
    writer = store.open_inactive()
    writer.write(0, data)
    done = writer.finish()
    info = SlotInfo("b", version="0.1.0", sequence=2, digest=sha(data), size=done.size)
    with pytest.raises(RollbackRejected):
        store.mark_pending(info)
    assert store.pending_name is None and store.slot("b").state is SlotState.COMPLETE


def test_mark_verified_rejects_bytes_that_do_not_match_the_digest(root: Path) -> None:
    store = booted(root)
    writer = store.open_inactive()
    writer.write(0, b"firmware!")
    writer.finish()
    info = SlotInfo("b", version="2", sequence=9, digest=sha(b"firmware?"), size=9)
    with pytest.raises(SlotImageDamaged):
        store.mark_verified(info)
    short = SlotInfo("b", version="2", sequence=9, digest=sha(b"firmware!"), size=8)
    with pytest.raises(SlotImageDamaged, match="bytes"):
        store.mark_verified(short)
    assert store.slot("b").state is SlotState.COMPLETE


def test_mark_verified_for_the_active_slot_is_refused(root: Path) -> None:
    store = booted(root)
    with pytest.raises(SlotStateError, match="inactive"):
        store.mark_verified(store.slot("a"))


def test_describe_points_at_the_payload_inside_the_package(
    root: Path, key: PrivateKey, trust: TrustStore
) -> None:
    store = booted(root)
    data = package(key, "2.0.0", 5)
    info = download(store, trust, data)
    assert info.image_size == len(data)
    assert info.payload_offset > 0 and info.size == len(payload_for("2.0.0"))
    assert payload_digest(store.image_path("b"), info) == sha(payload_for("2.0.0"))
    assert store.check_image("b") is not None  # not yet verified
    store.mark_verified(info)
    assert store.check_image("b") is None
