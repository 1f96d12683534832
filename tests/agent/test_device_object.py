"""Object 3 Device additions (battery, memory, firmware version source, reboot hook),
read through a real LwM2M server over loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from runtime_helpers import FAST, WAIT, next_event

from fotakit.client import ClientConfig, LwM2MClient
from fotakit.client.objects.device import (
    BatteryStatus,
    DeviceInfo,
    DeviceInstance,
    DeviceStatus,
    LinuxDeviceStatus,
    PowerSource,
    SimulatedDeviceStatus,
    device_object,
    parse_meminfo,
)
from fotakit.lwm2m.objects import DEVICE
from fotakit.lwm2m.path import Path as LwPath
from fotakit.server import LwM2MServer, Notification


async def test_device_object_reports_battery_memory_version_and_reboots(
    server: LwM2MServer,
) -> None:
    status = SimulatedDeviceStatus(
        DeviceStatus(
            battery_level=77,
            battery_status=BatteryStatus.CHARGING,
            memory_free_kb=1234,
            memory_total_kb=4096,
            power_sources=(PowerSource.INTERNAL_BATTERY, PowerSource.USB),
        )
    )
    running = ["1.0.0"]
    reboots: list[str | None] = []
    instance = DeviceInstance(
        DeviceInfo(manufacturer="ACME", model_number="m1", serial_number="s-9"),
        reboot=reboots.append,
        status=status,
        firmware_version=lambda: running[0],
    )
    config = ClientConfig(
        endpoint="dev-3", server_uri=f"coap://127.0.0.1:{server.port}", lifetime=60, transport=FAST
    )
    client = LwM2MClient(config, [device_object(DEVICE, instance)])
    await client.start()
    try:
        await client.wait_registered(WAIT)
        content = await asyncio.wait_for(server.read("dev-3", "/3/0"), WAIT)
        assert content[LwPath(3, 0, 0)] == "ACME"
        assert content[LwPath(3, 0, 3)] == "1.0.0"
        assert content[LwPath(3, 0, 9)] == 77
        assert content[LwPath(3, 0, 20)] == 1
        assert content[LwPath(3, 0, 10)] == 1234
        assert content[LwPath(3, 0, 21)] == 4096
        assert content[LwPath(3, 0, 6, 0)] == 1 and content[LwPath(3, 0, 6, 1)] == 5
        assert content[LwPath(3, 0, 16)] == "U"

        running[0] = "2.0.0"  # the running slot changed
        assert await asyncio.wait_for(server.read_value("dev-3", "/3/0/3"), WAIT) == "2.0.0"

        async with server.subscribe() as events:
            await asyncio.wait_for(server.observe("dev-3", "/3/0/9"), WAIT)
            status.set(battery_level=5, battery_status=BatteryStatus.LOW_BATTERY)
            note = await next_event(events, Notification, lambda n: not n.initial)
            assert note.content[LwPath(3, 0, 9)] == 5

        await asyncio.wait_for(server.execute("dev-3", "/3/0/4"), WAIT)
        assert reboots == [None]
    finally:
        await client.stop()


def test_linux_device_status_reads_meminfo_and_battery(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text(
        "MemTotal:        2000000 kB\nMemFree:          100000 kB\nMemAvailable:    1000000 kB\n"
    )
    bat = tmp_path / "sys/class/power_supply/BAT0"
    bat.mkdir(parents=True)
    (bat / "type").write_text("Battery\n")
    (bat / "capacity").write_text("7\n")
    (bat / "status").write_text("Discharging\n")
    status = LinuxDeviceStatus(tmp_path).status()
    assert status.memory_total_kb == 2_048_000  # 2000000 KiB = 2048000 kB (1000 B)
    assert status.memory_free_kb == 1_024_000  # MemAvailable, not MemFree
    assert status.battery_level == 7
    assert status.battery_status is BatteryStatus.LOW_BATTERY
    assert status.power_sources == (PowerSource.INTERNAL_BATTERY,)


def test_linux_device_status_without_battery_says_not_installed(tmp_path: Path) -> None:
    status = LinuxDeviceStatus(tmp_path).status()
    assert status.battery_status is BatteryStatus.NOT_INSTALLED
    assert status.battery_level is None and status.memory_free_kb is None


def test_linux_device_status_of_this_host_has_memory() -> None:
    status = LinuxDeviceStatus().status()
    assert status.memory_total_kb is not None and status.memory_total_kb > 0
    assert status.memory_free_kb is not None
    assert 0 <= status.memory_free_kb <= status.memory_total_kb


@given(st.text(max_size=300))
def test_meminfo_parser_never_crashes_on_junk(text: str) -> None:
    free, total = parse_meminfo(text)
    assert free is None or free >= 0
    assert total is None or total >= 0
