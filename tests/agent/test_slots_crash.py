"""SIGKILL the slot store at every interesting moment; the next start must still be sound.

Each test runs tests/agent/slot_crash_helper.py in a real subprocess, waits for the line it
prints at the kill point (no sleeps), SIGKILLs it, then reopens the store in this process
and calls boot(). The invariant checked every time: boot() picks a slot whose image is
complete and verified (its payload hashes to the digest of the version it claims, which is
recomputed here from the helper's deterministic payloads), and the recorded outcome tells
the truth about what happened.

Note: SIGKILL loses no data already handed to the kernel, so these tests prove the ordering
and atomicity of the commits (what a crash can observe), not the fsync calls themselves.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sys
from pathlib import Path

import pytest
from slot_crash_helper import (
    NEW_SEQUENCE,
    NEW_VERSION,
    OLD_SEQUENCE,
    OLD_VERSION,
    payload_for,
)

from fotakit.agent.slots import (
    REASON_CRASH_LOOP,
    REASON_HEALTH_CHECK,
    BootDecision,
    OutcomeKind,
    SlotState,
    SlotStore,
    payload_digest,
)

HELPER = Path(__file__).with_name("slot_crash_helper.py")
MAX_TRIAL_BOOTS = 3
DIGESTS = {v: hashlib.sha256(payload_for(v)).hexdigest() for v in (OLD_VERSION, NEW_VERSION)}
# The whole update in one run: commit points are os.replace calls in this order:
# 0 open_inactive (info b writing), 1 finish (info b complete), 2 mark_verified (info b
# verified), 3 mark_pending (boot.json), 4 trial boot count (boot.json), 5 confirm (boot.json).
FLOW = ["boot", "write-all", "finish", "verify", "pending", "restart", "boot", "confirm"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    image = tmp_path / "factory.bin"
    image.write_bytes(payload_for(OLD_VERSION))
    SlotStore.initialise(tmp_path / "r", version=OLD_VERSION, sequence=OLD_SEQUENCE, image=image)
    return tmp_path / "r"


async def run_helper(root: Path, *args: str) -> list[str]:
    """Run the helper until it prints PAUSE, SIGKILL it, return its output lines."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HELPER),
        str(root),
        "--max-trial-boots",
        str(MAX_TRIAL_BOOTS),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    err = (await proc.stderr.read()).decode(errors="replace")
                    await proc.wait()
                    pytest.fail(f"helper exited {proc.returncode} before PAUSE: {lines} {err}")
                line = raw.decode().strip()
                lines.append(line)
                if line.startswith("PAUSE"):
                    break
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return lines


def reboot(root: Path) -> tuple[SlotStore, BootDecision]:
    """A start after the crash: open the store, boot, check the chosen slot is sound."""
    store = SlotStore(root, max_trial_boots=MAX_TRIAL_BOOTS)
    d = store.boot()
    info = d.info
    assert info.state is SlotState.VERIFIED
    assert info.version is not None and info.digest == DIGESTS[info.version]
    image = store.image_path(d.slot)
    assert image.stat().st_size == info.image_size
    assert payload_digest(image, info) == DIGESTS[info.version]
    assert temp_files(root) == []  # a crash's stray temporaries were cleaned up
    return store, d


def temp_files(root: Path) -> list[Path]:
    return list(root.rglob(".*.tmp"))


async def prepare_pending(root: Path) -> None:
    """Download, verify and schedule the new image (in a helper run to its end)."""
    await run_helper(root, "boot", "write-all", "finish", "verify", "pending", "pause")


async def test_kill_mid_image_write_boots_old_slot(root: Path) -> None:
    await run_helper(root, "boot", "write-half", "pause")
    store, d = reboot(root)
    assert (d.slot, d.trial, d.outcome) == ("a", False, None)
    assert d.info.version == OLD_VERSION
    assert store.slot("b").state is SlotState.WRITING


async def test_kill_after_write_before_mark_pending_boots_old_slot(root: Path) -> None:
    await run_helper(root, "boot", "write-all", "finish", "verify", "pause")
    store, d = reboot(root)
    assert (d.slot, d.trial, d.outcome) == ("a", False, None)
    assert store.slot("b").state is SlotState.VERIFIED  # downloaded, but Execute never came
    assert store.pending_name is None


async def test_kill_after_mark_pending_boots_new_slot_on_trial(root: Path) -> None:
    await prepare_pending(root)
    store, d = reboot(root)
    assert (d.slot, d.trial, d.trial_boot) == ("b", True, 1)
    assert d.info.version == NEW_VERSION
    assert store.highest_sequence == OLD_SEQUENCE


async def test_trial_image_killed_max_times_is_reverted_as_crash_loop(root: Path) -> None:
    await prepare_pending(root)
    for n in range(1, MAX_TRIAL_BOOTS + 1):
        lines = await run_helper(root, "boot", "pause")
        assert f"BOOT b True {n}" in lines  # each start was counted before it ran
    store, d = reboot(root)
    assert (d.slot, d.trial, d.info.version) == ("a", False, OLD_VERSION)
    assert d.outcome is not None
    assert (d.outcome.kind, d.outcome.reason, d.outcome.version) == (
        OutcomeKind.REVERTED,
        REASON_CRASH_LOOP,
        NEW_VERSION,
    )
    assert store.highest_sequence == OLD_SEQUENCE
    # And it stays reverted: the next start does not try the image again.
    assert reboot(root)[1].slot == "a"


async def test_kill_after_confirm_keeps_new_slot_and_counter(root: Path) -> None:
    await prepare_pending(root)
    await run_helper(root, "boot", "confirm", "pause")
    store, d = reboot(root)
    assert (d.slot, d.trial, d.info.version) == ("b", False, NEW_VERSION)
    assert d.outcome is not None and d.outcome.kind is OutcomeKind.CONFIRMED
    assert store.highest_sequence == NEW_SEQUENCE


async def test_kill_after_health_revert_boots_old_slot_and_reports_failure(root: Path) -> None:
    await prepare_pending(root)
    await run_helper(root, "boot", "revert-health", "pause")
    store, d = reboot(root)
    assert (d.slot, d.trial) == ("a", False)
    assert d.outcome is not None and d.outcome.reason == REASON_HEALTH_CHECK
    assert store.highest_sequence == OLD_SEQUENCE


async def test_kill_while_writing_the_next_update_never_touches_the_new_active(
    root: Path,
) -> None:
    await prepare_pending(root)
    await run_helper(root, "boot", "confirm", "write-half", "pause")
    _, d = reboot(root)
    assert (d.slot, d.info.version) == ("b", NEW_VERSION)


async def test_flow_has_the_expected_commit_points(root: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HELPER),
        str(root),
        "--count",
        *FLOW,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines()[-1] == "REPLACES 6"


# (slot, trial, trial_boot, outcome kind) expected after a kill just before commit k.
EXPECTED_AT_COMMIT = {
    0: ("a", False, 0, None),
    1: ("a", False, 0, None),
    2: ("a", False, 0, None),
    3: ("a", False, 0, None),  # mark_pending not committed: the update is not scheduled
    4: ("b", True, 1, None),  # the killed start never ran the image: it is not counted
    5: ("b", True, 2, None),  # confirm not committed: still a trial, counter unchanged
}


@pytest.mark.parametrize("k", sorted(EXPECTED_AT_COMMIT))
async def test_kill_inside_any_commit_leaves_old_or_new_state(root: Path, k: int) -> None:
    lines = await run_helper(root, "--kill-at-replace", str(k), *FLOW)
    assert lines[-1].startswith(f"PAUSE replace#{k} ")
    assert len(temp_files(root)) == 1  # killed with the new content written, not yet renamed
    store, d = reboot(root)
    outcome = None if d.outcome is None else d.outcome.kind
    assert (d.slot, d.trial, d.trial_boot, outcome) == EXPECTED_AT_COMMIT[k]
    assert store.highest_sequence == OLD_SEQUENCE
    if d.trial:  # finishing the interrupted update still works
        store.confirm()
        assert reboot(root)[1].slot == "b"
