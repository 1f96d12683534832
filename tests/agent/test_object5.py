"""/5/0 over real CoAP on loopback: a real LwM2MServer drives a real LwM2MClient.

The device side is :class:`FirmwareUpdateInstance` with a file-backed delegate
(agent_helpers.FileDelegate); the server is the test driver, exactly as an update job
would drive a device.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from agent_helpers import WAIT, FileDelegate, running_device

from fotakit.agent.object5 import FirmwareSnapshot, FirmwareUpdateInstance
from fotakit.lwm2m.attributes import NotificationAttributes
from fotakit.lwm2m.objects import DeliveryMethod, State, UpdateResult
from fotakit.lwm2m.objects.paths import (
    FIRMWARE_CANCEL,
    FIRMWARE_PACKAGE,
    FIRMWARE_PACKAGE_URI,
    FIRMWARE_STATE,
    FIRMWARE_UPDATE,
    FIRMWARE_UPDATE_RESULT,
)
from fotakit.lwm2m.path import Path as LwPath
from fotakit.server import DeviceError, LwM2MServer, Notification

EP = "fw-device"
PULL_URI = "coap://127.0.0.1:5683/fw/abc"


async def state_and_result(server: LwM2MServer) -> tuple[int, int]:
    state = await asyncio.wait_for(server.read_value(EP, FIRMWARE_STATE), WAIT)
    result = await asyncio.wait_for(server.read_value(EP, FIRMWARE_UPDATE_RESULT), WAIT)
    assert isinstance(state, int) and isinstance(result, int)
    return state, result


async def expect_error(code: str, coro: object) -> None:
    with pytest.raises(DeviceError) as info:
        await asyncio.wait_for(coro, WAIT)  # type: ignore[arg-type]
    assert info.value.code == code


@pytest.fixture
def delegate(tmp_path: Path) -> FileDelegate:
    return FileDelegate(tmp_path / "image.bin")


async def test_read_of_the_instance_shows_all_readable_resources(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        content = await asyncio.wait_for(dev.server.read(EP, "/5/0"), WAIT)
    ids = {p.resource_id for p in content}
    assert ids == {1, 3, 5, 6, 7, 8, 9, 11, 12, 13, 14}  # 0, 2, 10 are not readable
    assert content[LwPath(5, 0, 3)] == 0 and content[LwPath(5, 0, 5)] == 0
    assert content[LwPath(5, 0, 9)] == DeliveryMethod.BOTH
    assert content[LwPath(5, 0, 8, 0)] == 0 and content[LwPath(5, 0, 8, 1)] == 2
    assert content[LwPath(5, 0, 11)] == 1  # Mandatory by default
    assert isinstance(content[LwPath(5, 0, 12)], datetime)


async def test_write_uri_starts_downloading_with_result_0(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE_URI, PULL_URI), WAIT)
        assert await state_and_result(dev.server) == (State.DOWNLOADING, 0)
        assert delegate.pulls == [PULL_URI]
        assert await dev.server.read_value(EP, FIRMWARE_PACKAGE_URI) == PULL_URI
        # persisted before anyone was told
        assert delegate.persisted[-1].state is State.DOWNLOADING
        assert delegate.persisted[-1].package_uri == PULL_URI


async def test_write_uri_with_unsupported_scheme_sets_result_9(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE_URI, "coaps://h/fw"), WAIT)
        assert await state_and_result(dev.server) == (State.IDLE, 9)
        await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE_URI, "no uri"), WAIT)
        assert await state_and_result(dev.server) == (State.IDLE, 7)
        assert delegate.pulls == []


async def test_execute_update_when_idle_answers_4_05(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        await expect_error("4.05", dev.server.execute(EP, FIRMWARE_UPDATE))
        assert await state_and_result(dev.server) == (State.IDLE, 0)
        assert "start_update" not in delegate.calls


async def test_cancel_when_idle_answers_4_05(sqlite_url: str, delegate: FileDelegate) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        await expect_error("4.05", dev.server.execute(EP, FIRMWARE_CANCEL))
        assert await state_and_result(dev.server) == (State.IDLE, 0)


async def test_cancel_while_downloading_goes_idle_with_result_10(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE_URI, PULL_URI), WAIT)
        await asyncio.wait_for(dev.server.execute(EP, FIRMWARE_CANCEL), WAIT)
        assert await state_and_result(dev.server) == (State.IDLE, 10)
        assert delegate.calls[-2:] == ["cancel_download", "discard_image"]
        # the download the runtime reports afterwards changes nothing
        assert not dev.fw.download_finished(UpdateResult.SUCCESS)
        assert await state_and_result(dev.server) == (State.IDLE, 10)


async def test_non_empty_uri_while_downloading_answers_4_00(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE_URI, PULL_URI), WAIT)
        await expect_error(
            "4.00", dev.server.write(EP, FIRMWARE_PACKAGE_URI, "coap://127.0.0.1/other")
        )
        assert await state_and_result(dev.server) == (State.DOWNLOADING, 0)
        assert await dev.server.read_value(EP, FIRMWARE_PACKAGE_URI) == PULL_URI
        assert delegate.pulls == [PULL_URI]


async def test_empty_uri_resets_a_download(sqlite_url: str, delegate: FileDelegate) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE_URI, PULL_URI), WAIT)
        await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE_URI, ""), WAIT)
        assert await state_and_result(dev.server) == (State.IDLE, 0)
        assert await dev.server.read_value(EP, FIRMWARE_PACKAGE_URI) == ""
        assert "discard_image" in delegate.calls


async def test_null_package_resets_a_downloaded_image(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE_URI, PULL_URI), WAIT)
        assert dev.fw.download_finished(UpdateResult.SUCCESS, pkg_name="fw", pkg_version="2")
        assert await state_and_result(dev.server) == (State.DOWNLOADED, 0)
        assert await dev.server.read_value(EP, "/5/0/7") == "2"
        await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE, b"\x00"), WAIT)
        assert await state_and_result(dev.server) == (State.IDLE, 0)
        assert await dev.server.read_value(EP, "/5/0/7") == ""


async def test_package_write_while_updating_answers_4_05(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE_URI, PULL_URI), WAIT)
        dev.fw.download_finished(UpdateResult.SUCCESS)
        await asyncio.wait_for(dev.server.execute(EP, FIRMWARE_UPDATE), WAIT)
        assert delegate.calls[-1] == "start_update"
        await expect_error("4.05", dev.server.write(EP, FIRMWARE_PACKAGE, b"\x00"))
        await expect_error("4.05", dev.server.write(EP, FIRMWARE_PACKAGE_URI, ""))
        await expect_error("4.05", dev.server.execute(EP, FIRMWARE_CANCEL))
        assert await state_and_result(dev.server) == (State.UPDATING, 0)


async def test_small_package_in_one_message_is_stored_and_finished(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE, b"tiny image"), WAIT)
        assert await asyncio.wait_for(delegate.finished.get(), WAIT) == 10
        assert delegate.image.read_bytes() == b"tiny image"
        assert await state_and_result(dev.server) == (State.DOWNLOADING, 0)
        dev.fw.download_finished(UpdateResult.SUCCESS)
        assert await state_and_result(dev.server) == (State.DOWNLOADED, 0)


async def test_deferred_update_keeps_downloaded_with_result_11(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        dev.fw.defer_policy = lambda _snapshot: True
        await asyncio.wait_for(dev.server.write(EP, "/5/0/13", 3600), WAIT)
        await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE_URI, PULL_URI), WAIT)
        dev.fw.download_finished(UpdateResult.SUCCESS)
        await asyncio.wait_for(dev.server.execute(EP, FIRMWARE_UPDATE), WAIT)
        assert await state_and_result(dev.server) == (State.DOWNLOADED, 11)
        assert "start_update" not in delegate.calls
        deadline = dev.fw.snapshot.defer_deadline
        assert deadline is not None
        # the server forbids deferral: the next Execute installs
        await asyncio.wait_for(dev.server.write(EP, "/5/0/13", 0), WAIT)
        await asyncio.wait_for(dev.server.execute(EP, FIRMWARE_UPDATE), WAIT)
        assert await state_and_result(dev.server) == (State.UPDATING, 0)
        assert delegate.calls[-1] == "start_update"


async def test_deferral_deadline_starts_the_update_by_itself(tmp_path: Path) -> None:
    now = [1000.0]
    delegate = FileDelegate(tmp_path / "image.bin")
    fw = FirmwareUpdateInstance(delegate, clock=lambda: now[0], defer_policy=lambda _snapshot: True)
    fw.write(13, 5, True)
    fw.write(1, PULL_URI, True)
    fw.download_finished(UpdateResult.SUCCESS)
    fw.execute(2, None)
    assert (fw.state, fw.result) == (State.DOWNLOADED, UpdateResult.DEFERRED)
    assert not fw.check_deferral()
    now[0] = 1005.0
    assert fw.check_deferral()
    assert (fw.state, fw.result) == (State.UPDATING, UpdateResult.INITIAL)
    assert delegate.calls[-1] == "start_update"


async def test_automatic_upgrade_starts_the_update_when_downloaded(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        await asyncio.wait_for(dev.server.write(EP, "/5/0/14", True), WAIT)
        await asyncio.wait_for(dev.server.write(EP, FIRMWARE_PACKAGE_URI, PULL_URI), WAIT)
        dev.fw.download_finished(UpdateResult.SUCCESS)
        assert await state_and_result(dev.server) == (State.UPDATING, 0)
        assert delegate.calls[-1] == "start_update"
        states = [s.state for s in delegate.persisted]
        assert states[-2:] == [State.DOWNLOADED, State.UPDATING]


async def test_restart_during_push_reports_connection_lost(tmp_path: Path) -> None:
    delegate = FileDelegate(tmp_path / "image.bin")
    snap = FirmwareSnapshot(state=State.DOWNLOADING, last_state_change=5.0)
    fw = FirmwareUpdateInstance(delegate, snapshot=FirmwareSnapshot.from_json(snap.to_json()))
    assert (fw.state, fw.result) == (State.IDLE, UpdateResult.CONNECTION_LOST)
    assert delegate.persisted[-1].result is UpdateResult.CONNECTION_LOST
    # a pull in progress is left for the runtime to resume
    pulling = FirmwareSnapshot(state=State.DOWNLOADING, package_uri=PULL_URI)
    fw = FirmwareUpdateInstance(delegate, snapshot=pulling)
    assert (fw.state, fw.package_uri) == (State.DOWNLOADING, PULL_URI)
    # Updating after a restart is resolved by the runtime
    fw = FirmwareUpdateInstance(delegate, snapshot=FirmwareSnapshot(state=State.UPDATING))
    assert fw.update_finished(UpdateResult.UPDATE_FAILED)
    assert (fw.state, fw.result) == (State.IDLE, UpdateResult.UPDATE_FAILED)


async def test_bad_setting_values_answer_4_00(sqlite_url: str, delegate: FileDelegate) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        await expect_error("4.00", dev.server.write(EP, "/5/0/11", 7))
        await asyncio.wait_for(dev.server.write(EP, "/5/0/11", 0), WAIT)
        assert await dev.server.read_value(EP, "/5/0/11") == 0
        assert delegate.persisted[-1].severity == 0


async def test_every_state_transition_reaches_an_observer_despite_pmin(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    """Idle -> Downloading -> Downloaded -> Updating -> Idle within pmin: 1, 2, 3, 0."""
    async with running_device(sqlite_url, delegate) as dev:
        server = dev.server
        await asyncio.wait_for(
            server.write_attributes(EP, FIRMWARE_STATE, NotificationAttributes(pmin=1)), WAIT
        )
        async with server.subscribe() as events:
            obs = await asyncio.wait_for(server.observe(EP, FIRMWARE_STATE), WAIT)
            assert obs.initial[FIRMWARE_STATE] == 0
            await asyncio.wait_for(server.write(EP, FIRMWARE_PACKAGE_URI, PULL_URI), WAIT)
            dev.fw.download_finished(UpdateResult.SUCCESS)
            await asyncio.wait_for(server.execute(EP, FIRMWARE_UPDATE), WAIT)
            dev.fw.update_finished(UpdateResult.SUCCESS)
            seen: list[object] = []
            async with asyncio.timeout(4 * WAIT):
                while len(seen) < 4:
                    event = await events.get()
                    if (
                        isinstance(event, Notification)
                        and event.observation_id == obs.id
                        and not event.initial
                    ):
                        seen.append(event.content[FIRMWARE_STATE])
        assert seen == [1, 2, 3, 0]
        assert await state_and_result(server) == (State.IDLE, UpdateResult.SUCCESS)


async def collect_states(events: object, obs_id: str, path: LwPath, count: int) -> list[object]:
    """The next ``count`` (non-initial) notified values of /5/0/3 of one observation."""
    seen: list[object] = []
    async with asyncio.timeout(4 * WAIT):
        while len(seen) < count:
            event = await events.get()  # type: ignore[attr-defined]
            if (
                isinstance(event, Notification)
                and event.observation_id == obs_id
                and not event.initial
            ):
                seen.append(event.content[LwPath(5, 0, 3)])
    return seen


async def test_transitions_in_one_loop_turn_without_pmin_all_reach_the_observer(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    """aiocoap keeps one pending notification per observation; none may be overwritten."""
    async with running_device(sqlite_url, delegate) as dev:
        async with dev.server.subscribe() as events:
            obs = await asyncio.wait_for(dev.server.observe(EP, FIRMWARE_STATE), WAIT)
            fw = dev.fw  # device-side calls, all before the event loop runs again
            fw.write(1, PULL_URI, True)
            fw.download_finished(UpdateResult.SUCCESS)
            fw.execute(2, None)
            fw.update_finished(UpdateResult.SUCCESS)
            assert await collect_states(events, obs.id, FIRMWARE_STATE, 4) == [1, 2, 3, 0]


async def test_observer_of_the_instance_sees_every_state_despite_pmin(
    sqlite_url: str, delegate: FileDelegate
) -> None:
    async with running_device(sqlite_url, delegate) as dev:
        server = dev.server
        await asyncio.wait_for(
            server.write_attributes(EP, "/5/0", NotificationAttributes(pmin=1)), WAIT
        )
        async with server.subscribe() as events:
            obs = await asyncio.wait_for(server.observe(EP, "/5/0"), WAIT)
            await asyncio.wait_for(server.write(EP, FIRMWARE_PACKAGE_URI, PULL_URI), WAIT)
            dev.fw.download_finished(UpdateResult.SUCCESS)
            await asyncio.wait_for(server.execute(EP, FIRMWARE_UPDATE), WAIT)
            dev.fw.update_finished(UpdateResult.SUCCESS)
            assert await collect_states(events, obs.id, LwPath(5, 0), 4) == [1, 2, 3, 0]


async def test_uri_on_a_push_only_device_sets_result_9(tmp_path: Path) -> None:
    delegate = FileDelegate(tmp_path / "image.bin", method=DeliveryMethod.PUSH_ONLY)
    fw = FirmwareUpdateInstance(delegate)
    fw.write(1, PULL_URI, True)
    assert (fw.state, fw.result) == (State.IDLE, UpdateResult.UNSUPPORTED_PROTOCOL)
    assert delegate.pulls == []


class _RecordingInstance(FirmwareUpdateInstance):
    """/5/0 that also logs its notifications (to check their order against persist)."""

    def __init__(self, delegate: FileDelegate, log: list[tuple[str, object]]) -> None:
        self.log = log
        super().__init__(delegate, clock=lambda: 1_700_000_000.0)

    def notify_changed(self, resource_id: int | None = None, *, must_deliver: bool = False) -> None:
        self.log.append(("notify", resource_id))
        super().notify_changed(resource_id, must_deliver=must_deliver)


async def test_persist_precedes_notify_and_time_precedes_state(tmp_path: Path) -> None:
    log: list[tuple[str, object]] = []

    class Delegate(FileDelegate):
        def persist(self, snapshot: FirmwareSnapshot) -> None:
            log.append(("persist", (snapshot.state, snapshot.last_state_change)))
            super().persist(snapshot)

    fw = _RecordingInstance(Delegate(tmp_path / "image.bin"), log)
    fw.write(1, PULL_URI, True)
    assert log == [
        ("persist", (State.DOWNLOADING, 1_700_000_000.0)),
        ("notify", 1),
        ("notify", 12),
        ("notify", 3),
    ]
    assert fw.read(12) == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    log.clear()
    fw.download_finished(UpdateResult.INTEGRITY_CHECK_FAILURE)
    assert log == [
        ("persist", (State.IDLE, 1_700_000_000.0)),
        ("notify", 12),
        ("notify", 3),
        ("notify", 5),
    ]
