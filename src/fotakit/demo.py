"""``make demo``: a server on SQLite and one client, over real CoAP on loopback.

For now it shows the foundation at work — a registration, a read of the Device object, a
write and a read-back, an observation, an Update and the de-registration — printing what
happened. Later issues grow it into the full fleet demo.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import datetime
from pathlib import Path as FsPath

from rich.console import Console
from rich.table import Table

from fotakit.client import ClientConfig, LwM2MClient
from fotakit.client.objects import DeviceInfo, DeviceInstance, device_object
from fotakit.lwm2m.linkformat import format_links
from fotakit.lwm2m.model import Value
from fotakit.lwm2m.objects import DEVICE, builtin_registry
from fotakit.lwm2m.path import Path
from fotakit.server import LwM2MServer, ServerConfig
from fotakit.server.events import (
    Deregistered,
    Event,
    Notification,
    Registered,
    Subscription,
    Updated,
)
from fotakit.store import default_db_url

_STEP_TIMEOUT = 15.0


async def _next(events: Subscription, kind: type[Event]) -> Event:
    """The next event of ``kind`` (others are skipped; so are initial observe values)."""
    async with asyncio.timeout(_STEP_TIMEOUT):
        while True:
            event = await events.get()
            if isinstance(event, Notification) and event.initial:
                continue
            if isinstance(event, kind):
                return event


def _show(value: Value) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)


def prepare_data_dir(data_dir: FsPath) -> str:
    """Recreate the demo's data directory; the database URL inside it."""
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    return default_db_url(data_dir)


async def run_demo(console: Console, db_url: str, port: int) -> int:
    registry = builtin_registry()
    server = LwM2MServer(
        ServerConfig(host="127.0.0.1", port=port, db_url=db_url, registry=registry)
    )
    await server.start()
    console.rule("[bold]fotakit demo[/bold]: one LwM2M server, one client, real CoAP")
    console.print(f"server  coap://127.0.0.1:{server.port}  database {db_url}")
    client: LwM2MClient | None = None
    try:
        async with server.subscribe() as events:
            client = LwM2MClient(
                ClientConfig(
                    endpoint="demo-device-1",
                    server_uri=f"coap://127.0.0.1:{server.port}",
                    lifetime=60,
                    lwm2m_version="1.1",
                ),
                objects=[
                    device_object(
                        DEVICE,
                        DeviceInstance(
                            DeviceInfo(
                                manufacturer="fotakit",
                                model_number="demo-board",
                                serial_number="SN-0001",
                                firmware_version="1.0.0",
                            )
                        ),
                    )
                ],
                registry=registry,
            )
            t0 = time.perf_counter()
            await client.start()
            reg = await _next(events, Registered)
            assert isinstance(reg, Registered)
            r = reg.registration
            console.print(
                f"[green]registered[/green] ep={r.endpoint} id={r.registration_id} "
                f"lt={r.lifetime}s lwm2m={r.lwm2m_version} b={r.binding} "
                f"from {r.address}:{r.port} in {1000 * (time.perf_counter() - t0):.1f} ms"
            )
            console.print(f"  objects: {format_links(list(r.objects))}", markup=False)

            device = await server.read(r.endpoint, Path.parse("/3/0"))
            table = Table(title="read /3/0 (Device)", show_lines=False)
            table.add_column("path")
            table.add_column("name")
            table.add_column("value")
            dev_def = registry.get(3)
            for path in sorted(device):
                res = dev_def.resource(path.resource_id or 0) if dev_def else None
                table.add_row(str(path), res.name if res else "?", _show(device[path]))
            console.print(table)

            tz = Path.parse("/3/0/15")
            before = await server.read_value(r.endpoint, tz)
            obs = await server.observe(r.endpoint, tz)
            await server.write(r.endpoint, tz, "Europe/Berlin")
            after = await server.read_value(r.endpoint, tz)
            console.print(
                f"[green]write[/green] /3/0/15 Timezone: {before!r} -> "
                f"'Europe/Berlin'; read back: {after!r}"
            )
            note = await _next(events, Notification)
            assert isinstance(note, Notification)
            console.print(
                f"[green]notified[/green] {note.path} = {_show(note.content[note.path])} "
                f"(observation {note.observation_id})"
            )
            await server.cancel_observe(obs)

            await client.update()
            await _next(events, Updated)
            console.print("[green]updated[/green] registration refreshed by the client")

            await client.stop(deregister=True)
            client = None
            await _next(events, Deregistered)
            console.print("[green]de-registered[/green] demo-device-1")
            ok = after == "Europe/Berlin"
    except TimeoutError:
        console.print("[red]demo failed: a step did not happen in time[/red]")
        return 1
    finally:
        if client is not None:
            await client.stop(deregister=False)
        await server.stop()
    console.rule("[bold green]demo finished[/bold green]" if ok else "[red]demo failed[/red]")
    return 0 if ok else 1
