"""Run the LwM2M server in the foreground until SIGINT or SIGTERM, then stop cleanly.

This is what ``fotakit server`` (the CLI) and ``python -m fotakit.server`` call.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from fotakit.server.config import ServerConfig
from fotakit.server.server import LwM2MServer


async def run_server(
    config: ServerConfig,
    *,
    stop: asyncio.Event | None = None,
    on_started: Callable[[LwM2MServer], None] | None = None,
) -> None:
    """Start a server, wait for SIGINT/SIGTERM (or ``stop``), stop it.

    ``on_started`` is called once the server is listening (e.g. to print the port).
    """
    stop_event = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop_event.set)
            installed.append(sig)
    server = LwM2MServer(config)
    try:
        await server.start()
        if on_started is not None:
            on_started(server)
        await stop_event.wait()
    finally:
        await server.stop()
        for sig in installed:
            loop.remove_signal_handler(sig)
