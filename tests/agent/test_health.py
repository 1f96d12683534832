"""health.py with real subprocesses: exit status, timeouts that kill the process group."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from fotakit.agent.health import (
    AllOf,
    AlwaysHealthy,
    CommandHealthCheck,
    HealthCheck,
    HealthResult,
    RegistrationHealthCheck,
    run_check,
)


def sh(script: str, **kwargs: object) -> CommandHealthCheck:
    return CommandHealthCheck(["sh", "-c", script], **kwargs)  # type: ignore[arg-type]


async def wait_exited(pid: int) -> None:
    """Await the exit of a process that is not our child (pidfd becomes readable)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already gone and reaped
    loop = asyncio.get_running_loop()
    exited = asyncio.Event()
    loop.add_reader(fd, exited.set)
    try:
        async with asyncio.timeout(5):
            await exited.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_command_exiting_0_is_healthy() -> None:
    result = await sh("exit 0").check()
    assert result.ok


async def test_command_exiting_nonzero_fails_with_status_and_output() -> None:
    result = await sh("echo disk full >&2; exit 3").check()
    assert not result.ok
    assert "exited with status 3" in result.reason and "disk full" in result.reason


async def test_command_killed_by_a_signal_says_so() -> None:
    result = await sh("kill -TERM $$").check()
    assert not result.ok and "killed by signal 15" in result.reason


async def test_hanging_command_times_out_and_its_process_group_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    check = sh(f"sleep 60 & echo $! > {pidfile}; wait", timeout=0.5)
    async with asyncio.timeout(10):
        result = await check.check()
    assert not result.ok and "timed out after 0.5 s" in result.reason
    await wait_exited(int(pidfile.read_text()))  # the background child died with the group


async def test_background_child_keeping_output_open_does_not_stall_the_check(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "pid"
    check = sh(f"sleep 60 & echo $! > {pidfile}; exit 0", timeout=5)
    async with asyncio.timeout(4):
        assert (await check.check()).ok
    os.kill(int(pidfile.read_text()), 9)


async def test_command_sees_the_configured_environment() -> None:
    ok = sh('test "$FOTAKIT_PROBE" = yes && test -n "$PATH"', env={"FOTAKIT_PROBE": "yes"})
    assert (await ok.check()).ok
    assert not (await sh('test "$FOTAKIT_PROBE" = yes').check()).ok


async def test_missing_command_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    result = await CommandHealthCheck([str(tmp_path / "no-such-binary")]).check()
    assert not result.ok and "cannot run" in result.reason


async def first_write(fd: int) -> bytes:
    """Await data on a non-blocking FIFO read end (an event, not a poll)."""
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(fd, readable.set)
    try:
        async with asyncio.timeout(5):
            await readable.wait()
        return os.read(fd, 100)
    finally:
        loop.remove_reader(fd)


async def test_cancelled_check_kills_the_command(tmp_path: Path) -> None:
    fifo = tmp_path / "pid.fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # open before the command writes to it
    try:
        task = asyncio.create_task(sh(f"echo $$ > {fifo}; exec sleep 60", timeout=30).check())
        pid = int(await first_write(fd))
    finally:
        os.close(fd)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_exited(pid)


async def test_registration_check_passes_when_probe_reports_registered() -> None:
    registered = asyncio.Event()
    seen: list[float] = []

    async def probe(deadline: float) -> bool:
        seen.append(deadline)
        try:
            async with asyncio.timeout(deadline):
                await registered.wait()
        except TimeoutError:
            return False
        return True

    check = RegistrationHealthCheck(5.0, probe)
    task = asyncio.create_task(check.check())
    registered.set()
    assert (await task).ok and seen == [5.0]


async def test_registration_check_fails_when_deadline_passes() -> None:
    async def probe(deadline: float) -> bool:
        return False

    result = await RegistrationHealthCheck(0.2, probe).check()
    assert not result.ok and "not registered" in result.reason and "0.2 s" in result.reason


async def test_registration_probe_overrunning_its_deadline_is_a_failure() -> None:
    async def probe(deadline: float) -> bool:
        await asyncio.Event().wait()  # never answers
        return True

    async with asyncio.timeout(5):
        result = await RegistrationHealthCheck(0.1, probe, grace=0.1).check()
    assert not result.ok


async def test_all_of_stops_at_the_first_failure(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    check = AllOf(sh("exit 0"), sh("exit 4"), sh(f"touch {marker}"))
    result = await check.check()
    assert not result.ok and "status 4" in result.reason
    assert not marker.exists()


async def test_all_of_passes_when_every_check_passes() -> None:
    async def probe(deadline: float) -> bool:
        return True

    check = AllOf(AlwaysHealthy(), sh("true"), RegistrationHealthCheck(1.0, probe))
    assert (await check.check()).ok
    assert (await AllOf().check()).ok


async def test_a_check_that_raises_is_a_failure() -> None:
    class Broken:
        async def check(self) -> HealthResult:
            raise RuntimeError("sensor bus gone")

    broken: HealthCheck = Broken()
    result = await run_check(broken)
    assert not result.ok and "sensor bus gone" in result.reason
    assert not (await AllOf(AlwaysHealthy(), broken).check()).ok


def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(ValueError):
        CommandHealthCheck([])
    with pytest.raises(ValueError):
        CommandHealthCheck(["true"], timeout=0)
