"""Health checks run on a trial boot: they decide between confirm() and revert().

MCUboot leaves "is the new image good?" to the application, which must set ``image_ok``
before the next reset (the MCUboot design document, "Boot swap types"); the agent runs a
self-test on the new slot during its trial boot (docs/agent-guide.md). Here a check is
anything with ``async def check() -> HealthResult``:

- :class:`CommandHealthCheck`: an operator command (exit status 0 = healthy), killed with
  its whole process group when it overruns its timeout;
- :class:`RegistrationHealthCheck`: the new firmware reached the LwM2M server (the
  runtime supplies the probe: "registered within ``deadline`` seconds?"). A device that
  can no longer talk to its server cannot be updated again, so this is the essential one;
- :class:`AllOf`: every check must pass, run in order, stopping at the first failure.

A check never raises for an unhealthy system: exceptions inside a check become a failed
:class:`HealthResult` whose reason goes into the revert outcome (:func:`run_check`).
Cancellation is passed through, after killing any child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Protocol, runtime_checkable

OUTPUT_TAIL: Final = 512  # bytes of a failed command's output quoted in the reason
KILL_WAIT: Final = 5.0  # seconds to wait for a killed command to be reaped


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    reason: str = ""


HEALTHY: Final = HealthResult(True, "healthy")


@runtime_checkable
class HealthCheck(Protocol):
    async def check(self) -> HealthResult: ...


async def run_check(check: HealthCheck) -> HealthResult:
    """Run ``check``; an exception escaping it is a failure, not a crash of the agent."""
    try:
        return await check.check()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a broken check must lead to revert, never to a confirm
        return HealthResult(False, f"{type(check).__name__} raised {type(exc).__name__}: {exc}")


class AlwaysHealthy:
    """No health check configured: a trial image that starts is confirmed."""

    async def check(self) -> HealthResult:
        return HEALTHY


class CommandHealthCheck:
    """Run ``argv``; exit status 0 within ``timeout`` seconds is healthy.

    ``env`` adds to (and overrides) the agent's environment. The command runs in its own
    session; on timeout or cancellation the whole process group is SIGKILLed. Its output
    (stdout and stderr) goes to a temporary file, so a background child holding the
    output open cannot stall the check; the tail is quoted in a failure reason.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> None:
        if not argv:
            raise ValueError("health check command is empty")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.argv = list(argv)
        self.timeout = timeout
        self.env = dict(env or {})
        self.cwd = cwd

    async def check(self) -> HealthResult:
        result = await run_command(self.argv, time_limit=self.timeout, env=self.env, cwd=self.cwd)
        if result.ok:
            return HEALTHY
        return HealthResult(False, result.describe("health command"))


@dataclass(frozen=True)
class CommandResult:
    """How a hook command ended: exit status, or why there is none."""

    argv: tuple[str, ...]
    returncode: int | None  # None when it could not start or was killed on timeout
    timed_out: bool = False
    timeout: float = 0.0
    output: str = ""  # tail of stdout+stderr
    start_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self, what: str) -> str:
        """A one-line reason, e.g. ``health command sh exited with status 3: disk full``."""
        name = self.argv[0]
        if self.start_error is not None:
            return f"cannot run {what} {name}: {self.start_error}"
        if self.timed_out:
            return f"{what} {name} timed out after {self.timeout:g} s"
        code = self.returncode
        assert code is not None
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return f"{what} {name} {how}" + (f": {self.output}" if self.output else "")


async def run_command(
    argv: Sequence[str],
    *,
    time_limit: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
) -> CommandResult:
    """Run ``argv`` in its own session with ``env`` added to the agent's environment.

    After ``time_limit`` seconds, or on cancellation, the whole process group is SIGKILLed
    (and reaped). Output goes to a temporary file, not a pipe, so a background child that
    keeps it open cannot stall the wait; its tail is returned.
    """
    args = tuple(argv)
    with tempfile.TemporaryFile() as output:
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            return CommandResult(args, None, start_error=str(exc))
        try:
            async with asyncio.timeout(time_limit):
                code = await proc.wait()
        except TimeoutError:
            await _kill_group(proc)
            return CommandResult(
                args, None, timed_out=True, timeout=time_limit, output=_tail(output)
            )
        finally:
            if proc.returncode is None:  # cancelled
                await _kill_group(proc)
        return CommandResult(args, code, output=_tail(output))


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KILL_WAIT):
            await proc.wait()


def _tail(output: IO[bytes]) -> str:
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - OUTPUT_TAIL))
    return output.read().decode("utf-8", errors="replace").strip()


class RegistrationHealthCheck:
    """Healthy if ``registered(deadline)`` says the client registered within ``deadline`` s.

    The runtime's probe awaits its own Register/Update success (and returns False when the
    deadline passes). A probe that overruns ``deadline + grace`` is a failure too.
    """

    def __init__(
        self,
        deadline: float,
        registered: Callable[[float], Awaitable[bool]],
        *,
        grace: float = 1.0,
    ) -> None:
        if deadline <= 0:
            raise ValueError("deadline must be positive")
        self.deadline = deadline
        self.registered = registered
        self.grace = grace

    async def check(self) -> HealthResult:
        failed = HealthResult(False, f"not registered with the server within {self.deadline:g} s")
        try:
            async with asyncio.timeout(self.deadline + self.grace):
                ok = await self.registered(self.deadline)
        except TimeoutError:
            return failed
        return HEALTHY if ok else failed


class AllOf:
    """Every check must pass; they run in order and the first failure is the result."""

    def __init__(self, *checks: HealthCheck) -> None:
        self.checks = checks

    async def check(self) -> HealthResult:
        for c in self.checks:
            result = await run_check(c)
            if not result.ok:
                return result
        return HEALTHY
