"""End to end: a third-party LwM2M device (not the fotakit agent) updated by a job.

The device is built on the generic client runtime (:class:`fotakit.client.LwM2MClient`)
with a minimal hand-written Object 5 like a vendor's firmware has: LwM2M 1.0, /5/0/8
CoAP only, /5/0/9 pull only, no /5/0/10 Cancel, none of resources 11-14, no Object 4.
It downloads the Package URI itself with a plain aiocoap request (Block2 by aiocoap),
expects its own image format (the bare payload, not the signed package), and "reboots"
by closing its endpoint and registering again, on a new port, with /3/0/3 set to the
version it booted. Everything else is real: server, repository on ``/fw``, UpdateService.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiocoap
from e2e_helpers import (
    FAST,
    WAIT,
    all_events,
    make_service,
    payload_of,
    running_site,
    wait_job,
)

from fotakit.client import ClientConfig, LwM2MClient, LwM2MObject, ObjectInstance
from fotakit.client.instance import ExecuteResult, ResourceValue
from fotakit.client.objects.device import DeviceInfo, DeviceInstance, device_object
from fotakit.lwm2m.errors import MethodNotAllowed, NotFound
from fotakit.lwm2m.objects import FIRMWARE_UPDATE, builtin_registry
from fotakit.packages import generate_key
from fotakit.updates.profiles import DeviceProfile

OLD = "acme-1.4"
NEW = "acme-1.5"
#: The resources this vendor's Object 5 has (no 10 Cancel, none of 11-14).
HAS = (0, 1, 2, 3, 5, 8, 9)


class VendorFirmware(ObjectInstance):
    """/5/0 of the vendor device: pull only over CoAP, expects the bare image."""

    def __init__(self, device: VendorDevice) -> None:
        super().__init__()
        self.device = device
        self.state = device.fw_state
        self.result = device.fw_result
        self.uri = ""

    def resource_ids(self) -> list[int]:
        return [1, 2, 3, 5, 8, 9]

    def read(self, resource_id: int) -> ResourceValue:
        values: dict[int, ResourceValue] = {
            1: self.uri,
            3: self.state,
            5: self.result,
            8: {0: 0},  # CoAP only
            9: 0,  # pull only
        }
        if resource_id not in values:
            raise NotFound(f"resource {resource_id} not present")
        return values[resource_id]

    def write(self, resource_id: int, value: ResourceValue, replace: bool) -> None:
        self.device.writes.append((resource_id, value))
        if resource_id != 1:
            raise MethodNotAllowed(f"resource {resource_id} is not writable here")
        assert isinstance(value, str)
        self.uri = value
        if not value:  # empty URI: reset (TS E.6)
            self._set(0, 0)
            return
        if self.state != 0:
            raise MethodNotAllowed("not idle")
        self._set(1, 0)
        self.device.spawn(self._download(value))

    async def _download(self, uri: str) -> None:
        self.device.uris.append(uri)
        ctx = await aiocoap.Context.create_client_context()
        try:
            request = aiocoap.Message(code=aiocoap.GET, uri=uri)
            response = await asyncio.wait_for(ctx.request(request).response, WAIT)
        finally:
            await ctx.shutdown()
        data = bytes(response.payload)
        self.device.downloaded.append(data)
        if response.code.is_successful() and data == self.device.image:
            self._set(2, 0)  # Downloaded
        else:
            self._set(0, 5)  # integrity check failure: not our image format
        self.device.changed.set()

    def execute(self, resource_id: int, args: str | None) -> ExecuteResult:
        self.device.executes.append(resource_id)
        if resource_id != 2:
            raise MethodNotAllowed(f"resource {resource_id} is not executable")
        if self.state != 2:
            raise MethodNotAllowed("nothing downloaded")
        self._set(3, 0)  # Updating
        self.device.spawn(self.device.reboot())
        return None

    def _set(self, state: int, result: int) -> None:
        self.state, self.result = state, result
        self.device.fw_state, self.device.fw_result = state, result
        self.notify_changed(3, must_deliver=True)
        self.notify_changed(5, must_deliver=True)


class VendorDevice:
    """One third-party device across its reboots: what survives is its "flash"."""

    def __init__(self, endpoint: str, port: int, image: bytes, *, image_boots: bool) -> None:
        self.endpoint = endpoint
        self.server_port = port
        self.image = image
        self.image_boots = image_boots
        self.version = OLD
        self.fw_state = 0
        self.fw_result = 0
        self.client: LwM2MClient | None = None
        self.ports: list[int] = []
        self.writes: list[tuple[int, ResourceValue]] = []
        self.executes: list[int] = []
        self.uris: list[str] = []
        self.downloaded: list[bytes] = []
        self.rebooted = asyncio.Event()
        self.changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def boot(self) -> None:
        registry = builtin_registry()
        definition = registry.get(3)
        assert definition is not None
        info = DeviceInfo(
            manufacturer="Acme", model_number="acme-meter", firmware_version=self.version
        )
        firmware = LwM2MObject(FIRMWARE_UPDATE, {0: VendorFirmware(self)})
        config = ClientConfig(
            endpoint=self.endpoint,
            server_uri=f"coap://127.0.0.1:{self.server_port}",
            lifetime=60,
            lwm2m_version="1.0",
            transport=FAST,
        )
        client = LwM2MClient(config, [device_object(definition, DeviceInstance(info)), firmware])
        await client.start()
        await client.wait_registered(WAIT)
        self.client = client
        self.ports.append(client.port)

    async def reboot(self) -> None:
        """Power-cycle: no De-register, the new image (or the old one) boots."""
        assert self.client is not None
        await self.client.stop(deregister=False)
        if self.image_boots:
            self.version = NEW
            self.fw_state, self.fw_result = 0, 1  # Idle, success
        else:
            self.fw_state, self.fw_result = 0, 8  # Idle, firmware update failed
        await self.boot()
        self.rebooted.set()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.stop(deregister=False)


async def _run_job(tmp_path: Path, sqlite_url: str, *, image_boots: bool) -> tuple:  # type: ignore[type-arg]
    key = generate_key("ed25519")
    image = payload_of(5_000, 11)
    async with running_site(tmp_path, sqlite_url, key) as site:
        record = site.publish(image, version=NEW, sequence=2)
        assert record.size != len(image)  # the signed package is not the bare payload
        device = VendorDevice("acme-0001", site.server.port, image, image_boots=image_boots)
        await device.boot()
        service = make_service(site, sqlite_url)
        await service.start()
        try:
            # how an operator says it: this device class checks its own image format
            await service.put_profile(DeviceProfile("acme-meter", payload_form="bare"))
            job_id = await service.start_job(device.endpoint, record.id)
            done = await wait_job(service, job_id, 60)
            await asyncio.wait_for(device.rebooted.wait(), WAIT)
            events = await all_events(service, job_id=job_id)
        finally:
            await service.stop()
            await device.stop()
    story = [(e.kind, {k: v for k, v in e.details.items() if k != "facts"}) for e in events]
    return done, device, events, story, record


def _check_delivery(device: VendorDevice, events: list, story: list, image: bytes) -> None:  # type: ignore[type-arg]
    # the device got the bare-payload URI, pulled it over CoAP, and the bytes are the image
    assert len(device.uris) == 1, story
    assert device.uris[0].startswith("coap://127.0.0.1:")
    assert device.uris[0].endswith("/payload"), device.uris
    assert device.downloaded == [image]
    # nothing written or executed that this Object 5 does not have
    assert [rid for rid, _ in device.writes] == [1], device.writes
    assert device.executes == [2]
    assert all(rid in HAS for rid, _ in device.writes)
    # the event log: the profile of its class, pull chosen because /5/0/9 says pull only,
    # bare payload form
    chosen = [e.details for e in events if e.kind == "profile"]
    assert len(chosen) == 1, story
    assert chosen[0]["profile"] == "acme-meter" and chosen[0]["payload_form"] == "bare"
    deliveries = [e.details for e in events if e.kind == "delivery"]
    assert len(deliveries) == 1, story
    plan = deliveries[0]
    assert plan["choice"] == "pull"
    assert plan["reason"].startswith("pull only (/5/0/9)"), plan
    assert plan["form"] == "payload"
    assert plan["uri"] == device.uris[0]
    assert plan["size"] == len(image)
    commands = [e.details.get("command") for e in events if e.kind == "command"]
    assert "write_uri" in commands and "push" not in commands, story
    # it really rebooted: a new registration from a new port
    assert len(device.ports) == 2 and device.ports[0] != device.ports[1]


async def test_vendor_device_pulls_bare_payload_and_reboots_into_new_version(
    tmp_path: Path, sqlite_url: str
) -> None:
    done, device, events, story, _record = await _run_job(tmp_path, sqlite_url, image_boots=True)
    assert done.state == "succeeded", (done.state, done.reason, story)
    assert done.reason is None
    assert device.version == NEW
    _check_delivery(device, events, story, payload_of(5_000, 11))


async def test_vendor_device_back_on_old_version_is_rolled_back(
    tmp_path: Path, sqlite_url: str
) -> None:
    done, device, events, story, _record = await _run_job(tmp_path, sqlite_url, image_boots=False)
    assert done.state == "failed", (done.state, done.reason, story)
    assert done.reason == "rolled_back", story
    assert device.version == OLD
    _check_delivery(device, events, story, payload_of(5_000, 11))
