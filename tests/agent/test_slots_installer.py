"""installer.py: the hook gets only the payload of a verified slot, as a real subprocess."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from slot_crash_helper import CLASS, VENDOR, payload_for

from fotakit.agent.installer import CommandInstaller, Installer, InstallFailed, NullInstaller
from fotakit.agent.slots import SlotInfo, SlotStore
from fotakit.lwm2m.objects.firmware import UpdateResult
from fotakit.packages import TrustStore, build_package_in_memory, generate_key, verify_package


@pytest.fixture
def store(tmp_path: Path) -> SlotStore:
    """A store whose inactive slot b holds a verified signed package of 2.0.0 (seq 7)."""
    key = generate_key("ed25519")
    trust = TrustStore()
    trust.add(None, key.public_key())
    s = SlotStore.initialise(tmp_path / "root", version="1.0.0")
    s.boot()
    data = build_package_in_memory(
        payload_for("2.0.0"),
        version="2.0.0",
        vendor_domain=VENDOR,
        class_name=CLASS,
        sequence=7,
        key=key,
    )
    writer = s.open_inactive(expected_size=len(data))
    writer.write(0, data)
    writer.finish()
    s.mark_verified(s.describe(verify_package(writer.path, trust), pkg_name="sensor-fw"))
    return s


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


async def test_hook_receives_payload_without_envelope_and_slot_metadata(
    store: SlotStore, tmp_path: Path
) -> None:
    out = tmp_path / "installed.bin"
    env_file = tmp_path / "env.txt"
    hook = CommandInstaller(
        [
            "sh",
            "-c",
            f'cp "$FOTAKIT_IMAGE" {out} && echo "$FOTAKIT_SLOT $FOTAKIT_VERSION '
            f'$FOTAKIT_SEQUENCE $FOTAKIT_PKG_NAME $FOTAKIT_DIGEST $EXTRA" > {env_file}',
        ],
        env={"EXTRA": "x1"},
    )
    info = store.slot("b")
    assert info.payload_offset > 0
    await hook.install(info, store.image_path("b"))
    assert out.read_bytes() == payload_for("2.0.0")
    digest = hashlib.sha256(payload_for("2.0.0")).hexdigest()
    assert env_file.read_text().split() == ["b", "2.0.0", "7", "sensor-fw", digest, "x1"]
    assert leftovers(store.image_path("b").parent) == []  # extracted copy removed


async def test_bare_image_slot_is_handed_over_whole(tmp_path: Path) -> None:
    factory = tmp_path / "factory.bin"
    factory.write_bytes(b"bare firmware")
    s = SlotStore.initialise(tmp_path / "root", version="1.0.0", image=factory)
    out = tmp_path / "out"
    hook = CommandInstaller(["sh", "-c", f'cp "$FOTAKIT_IMAGE" {out}'])
    await hook.install(s.slot("a"), s.image_path("a"))
    assert out.read_bytes() == b"bare firmware"


async def test_failing_hook_raises_install_failed_reported_as_8(store: SlotStore) -> None:
    hook = CommandInstaller(["sh", "-c", "echo flash write error; exit 2"])
    with pytest.raises(InstallFailed) as info:
        await hook.install(store.slot("b"), store.image_path("b"))
    assert info.value.update_result is UpdateResult.UPDATE_FAILED
    assert "status 2" in info.value.reason and "flash write error" in info.value.reason
    assert leftovers(store.image_path("b").parent) == []


async def test_hanging_hook_times_out(store: SlotStore) -> None:
    hook = CommandInstaller(["sleep", "60"], timeout=0.3)
    with pytest.raises(InstallFailed, match="timed out"):
        await hook.install(store.slot("b"), store.image_path("b"))


async def test_slot_bytes_changed_after_verification_never_reach_the_hook(
    store: SlotStore, tmp_path: Path
) -> None:
    image = store.image_path("b")
    data = bytearray(image.read_bytes())
    data[-10] ^= 1
    image.write_bytes(bytes(data))
    ran = tmp_path / "ran"
    hook = CommandInstaller(["touch", str(ran)])
    with pytest.raises(InstallFailed, match="digest"):
        await hook.install(store.slot("b"), image)
    assert not ran.exists()
    assert leftovers(image.parent) == []


async def test_truncated_slot_is_install_failed(store: SlotStore) -> None:
    image = store.image_path("b")
    image.write_bytes(image.read_bytes()[:100])
    with pytest.raises(InstallFailed, match="extract"):
        await CommandInstaller(["true"]).install(store.slot("b"), image)


async def test_null_installer_accepts_anything(store: SlotStore) -> None:
    null: Installer = NullInstaller()
    await null.install(SlotInfo("b"), store.image_path("b"))
    assert isinstance(CommandInstaller(["true"]), Installer)
