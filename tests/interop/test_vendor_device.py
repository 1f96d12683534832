"""A stock third-party device on lwm2m-node-lib 1.4.0, updated by a fotakit campaign.

``peers/vendor_device.js`` is an LwM2M 1.0 device as a vendor ships it: Object 5 with
pull over CoAP only (/5/0/8 = [0], /5/0/9 = 0), its own image format (VNDR, see
``vendor_image.py``) checked by its own code, and an Update that "reboots" it (De-register,
Register) into the version of the image header. It knows nothing about fotakit's signed
package, so fotakit must give it the package's *bare payload* — the VNDR image — from
``/fw/<id>/payload`` (docs/operator-guide.md, "Third-party devices").

Everything is real: the fotakit LwM2M server with the repository on ``/fw``, the
UpdateService with its DeviceInventory (which reads the device's /3/0: Model Number is the
device class a campaign targets), node-coap's Block2 download, the device's CRC-32 check.
Waiting is on events (the peer's JSON lines, the service's event log) with time bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiocoap
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "updates"))

from e2e_helpers import (
    WAIT,
    Site,
    all_events,
    make_service,
    next_event,
    payload_of,
    running_site,
    trust_for,
)
from vendor_image import vndr_image, with_bad_crc

from fotakit.packages import generate_key, verify_bytes
from fotakit.repository import PackageRecord
from fotakit.server import DeviceError, Registered
from fotakit.updates.campaign import CampaignSpec
from fotakit.updates.profiles import DeviceProfile
from fotakit.updates.service import UpdateService
from fotakit.updates.targets import DeviceClass, TargetSpec

pytestmark = pytest.mark.interop

NodePeer = Any  # conftest's NodePeer (conftest is pytest's to import, not ours)
StartPeer = Callable[..., Awaitable[NodePeer]]

DEVICE_CLASS = "vndr-meter-2"
ENDPOINT = "vndr-0001"
OLD = "2.3.0"
NEW = "2.4.0"
#: The payload inside the VNDR image: > 1 KiB, so the download takes several Block2 blocks.
FIRMWARE = payload_of(5_000, 23)
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


# -- the VNDR image helper ------------------------------------------------------------------


def _crc32_bitwise(data: bytes) -> int:
    """CRC-32 computed bit by bit from its definition (RFC 1952 §8), not by zlib."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_crc32_matches_the_published_check_value() -> None:
    # "123456789" -> 0xCBF43926 is the check value of CRC-32/ISO-HDLC (zlib, RFC 1952)
    assert _crc32_bitwise(b"123456789") == 0xCBF43926
    assert zlib.crc32(b"123456789") == 0xCBF43926


def test_vndr_image_layout_and_crc() -> None:
    image = vndr_image("1.2", b"abc")
    body = b"VNDR" + b"\x03" + b"1.2" + b"\x00\x00\x00\x03" + b"abc"
    assert image[: len(body)] == body
    assert len(image) == len(body) + 4
    assert int.from_bytes(image[-4:], "big") == _crc32_bitwise(body)
    bad = with_bad_crc(image)
    assert bad[:-4] == image[:-4] and bad[-4:] != image[-4:]
    for version in ("", "1 0", "é", "x" * 256):
        with pytest.raises(ValueError, match="printable ASCII"):
            vndr_image(version, b"")


# -- the site, the device and the service ----------------------------------------------------


def publish_vndr(site: Site, image: bytes, *, version: str, sequence: int) -> PackageRecord:
    """Package ``image`` with fotakit's package tooling (a signed package whose payload is
    the VNDR image) and add it to the repository: /fw/<id> serves the signed package,
    /fw/<id>/payload the image itself."""
    return site.publish(image, version=version, sequence=sequence, class_name=DEVICE_CLASS)


async def vendor_service(site: Site, db_url: str, *, bare: bool) -> UpdateService:
    """A started UpdateService; with ``bare``, DEVICE_CLASS has a device profile that says
    ``payload_form=bare`` (as an operator sets it: ``fotakit profiles set vndr-meter-2
    --payload-form bare``); without, the built-in default (the signed package) applies."""
    service: UpdateService = make_service(site, db_url)
    await service.start()
    if bare:
        await service.put_profile(
            DeviceProfile(DEVICE_CLASS, payload_form="bare", protocols=("coap",), push=False)
        )
    return service


async def start_device(site: Site, node_peers: StartPeer, version: str = OLD) -> NodePeer:
    """The vendor device, registered (both sides agree) before anyone talks to it."""
    async with site.server.subscribe() as events:
        device = await node_peers(
            "vendor_device.js",
            "127.0.0.1",
            str(site.server.port),
            ENDPOINT,
            DEVICE_CLASS,
            version,
            name=ENDPOINT,
            env={"VENDOR_DOWNLOAD_TIMEOUT_S": "15"},
        )
        await next_event(events, Registered, lambda ev: ev.endpoint == ENDPOINT)
    registered = await device.expect("registered")
    assert registered["version"] == version
    return device


@dataclass
class Outcome:
    """What a campaign over the one vendor device came to."""

    job: Any
    campaign: Any
    events: list[Any]
    record: PackageRecord

    def story(self) -> list[tuple[str, dict[str, Any]]]:
        """The job's event log without the bulky facts (for failure messages)."""
        return [(e.kind, {k: v for k, v in e.details.items() if k != "facts"}) for e in self.events]


async def run_campaign(service: UpdateService, record: PackageRecord) -> Outcome:
    """A campaign for DEVICE_CLASS on OLD to ``record``, run until its job ends and the
    campaign is over; bounded."""
    spec = CampaignSpec(
        name=f"vndr {record.version}",
        package_id=record.id,
        target=TargetSpec(device_class=DeviceClass(name=DEVICE_CLASS), current_version=OLD),
        retry_budget=1,
    )
    cid = await service.create_campaign(spec)
    await service.start_campaign(cid)
    async with service.subscribe() as queue, asyncio.timeout(60):
        while True:
            jobs = await service.jobs(cid)
            campaign = await service.get_campaign(cid)
            assert campaign is not None
            if jobs and all(j.state in TERMINAL for j in jobs) and campaign.state != "running":
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.get(), 0.5)
    assert [j.endpoint for j in jobs] == [ENDPOINT], jobs  # the class selected it, alone
    events = await all_events(service, job_id=jobs[0].id)
    return Outcome(jobs[0], campaign, events, record)


@contextlib.asynccontextmanager
async def vendor_site(
    tmp_path: Path, db_url: str, node_peers: StartPeer
) -> AsyncIterator[tuple[Site, NodePeer]]:
    async with running_site(tmp_path, db_url, generate_key("ed25519")) as site:
        device = await start_device(site, node_peers)
        yield site, device


async def read(site: Site, path: str) -> Any:
    return await asyncio.wait_for(site.server.read_value(ENDPOINT, path), WAIT)


def delivery_of(outcome: Outcome) -> dict[str, Any]:
    deliveries = [e.details for e in outcome.events if e.kind == "delivery"]
    assert len(deliveries) == 1, outcome.story()
    return dict(deliveries[0])


# -- the tests -------------------------------------------------------------------------------


async def test_repository_serves_the_signed_package_and_the_vndr_image_as_its_payload(
    tmp_path: Path, sqlite_url: str
) -> None:
    image = vndr_image(NEW, FIRMWARE)
    key = generate_key("ed25519")
    async with running_site(tmp_path, sqlite_url, key) as site:
        record = publish_vndr(site, image, version=NEW, sequence=2)
        ctx = await aiocoap.Context.create_client_context()
        try:
            got = {}
            for suffix in ("", "/payload"):
                uri = f"{site.coap_base}/fw/{record.id}{suffix}"
                request = aiocoap.Message(code=aiocoap.GET, uri=uri)
                response = await asyncio.wait_for(ctx.request(request).response, WAIT)
                assert response.code == aiocoap.CONTENT, (uri, response)
                got[suffix] = bytes(response.payload)
        finally:
            await ctx.shutdown()
    assert got["/payload"] == image
    assert got[""] != image and not got[""].startswith(b"VNDR")  # COSE/CBOR, not VNDR
    assert len(got[""]) == record.size
    # the signed package verifies, and what it signs after its envelope is the VNDR image
    verified = verify_bytes(got[""], trust_for(key))
    assert verified.manifest.version == NEW
    start = verified.payload_offset
    assert got[""][start : start + verified.payload_size] == image


async def test_vendor_device_answers_reads_and_follows_the_object_5_state_machine(
    tmp_path: Path, sqlite_url: str, node_peers: StartPeer
) -> None:
    # what the server reads of it (the instances in TLV) and TS Core E.6.1 without a job
    async with vendor_site(tmp_path, sqlite_url, node_peers) as (site, device):
        server = site.server
        device_object = await asyncio.wait_for(server.read(ENDPOINT, "/3/0"), WAIT)
        firmware = await asyncio.wait_for(server.read(ENDPOINT, "/5/0"), WAIT)
        missing = f"{site.coap_base}/fw/0000000000000000/payload"
        results = []
        for uri in (missing, "http://127.0.0.1/fw/x", ""):
            await asyncio.wait_for(server.write(ENDPOINT, "/5/0/1", uri), WAIT)
            seen = await device.expect("firmware", state=0)
            results.append(seen["result"])
        refused = []
        for call in (
            server.execute(ENDPOINT, "/5/0/2"),  # Update in Idle
            server.write(ENDPOINT, "/5/0/3", 2),  # State is read-only
            server.write(ENDPOINT, "/3/0/3", "9.9.9"),
        ):
            with pytest.raises(DeviceError) as caught:
                await asyncio.wait_for(call, WAIT)
            refused.append(caught.value.code)
        version_now = await read(site, "/3/0/3")
    assert {str(p): v for p, v in device_object.items()} == {
        "/3/0/0": "VNDR Inc.",
        "/3/0/1": DEVICE_CLASS,
        "/3/0/3": OLD,
        "/3/0/16": "U",
    }
    assert {str(p): v for p, v in firmware.items()} == {
        "/5/0/1": "",
        "/5/0/3": 0,
        "/5/0/5": 0,
        "/5/0/8/0": 0,
        "/5/0/9": 0,
    }
    # 4.04 for the URI: Invalid URI (7); http: Unsupported protocol (9); empty: reset (0)
    assert results == [7, 9, 0], device.transcript()
    assert refused == ["4.05", "4.05", "4.05"]
    assert version_now == OLD


async def test_campaign_updates_the_vendor_device_with_the_bare_payload(
    tmp_path: Path, sqlite_url: str, node_peers: StartPeer
) -> None:
    image = vndr_image(NEW, FIRMWARE)
    async with vendor_site(tmp_path, sqlite_url, node_peers) as (site, device):
        first = device.events[0]
        assert first["event"] == "registered"
        record = publish_vndr(site, image, version=NEW, sequence=2)
        service = await vendor_service(site, sqlite_url, bare=True)
        try:
            assert service.inventory is not None
            assert service.inventory(ENDPOINT).class_name == DEVICE_CLASS  # /3/0/1 read
            outcome = await run_campaign(service, record)
            # the device pulled the image, checked it, rebooted into it and came back
            pulled = await device.expect("download")
            downloaded = await device.expect("downloaded")
            await device.expect("rebooting", version=NEW)
            back = await device.expect("registered", version=NEW)
            version_now = await read(site, "/3/0/3")
            state_now = await read(site, "/5/0/3")
            result_now = await read(site, "/5/0/5")
        finally:
            await service.stop()
    story = outcome.story()
    assert outcome.job.state == "succeeded", (outcome.job.reason, story, device.transcript())
    assert outcome.job.reason is None
    assert outcome.campaign.state == "completed", story
    assert downloaded == {"event": "downloaded", "bytes": len(image), "version": NEW}
    chosen = [e.details for e in outcome.events if e.kind == "profile"]
    assert len(chosen) == 1, story
    assert chosen[0]["profile"] == DEVICE_CLASS and chosen[0]["payload_form"] == "bare"
    assert f"device class {DEVICE_CLASS!r} has its own profile" in chosen[0]["why"]
    plan = delivery_of(outcome)
    assert plan["choice"] == "pull" and plan["reason"].startswith("pull only (/5/0/9)"), plan
    assert plan["form"] == "payload" and plan["size"] == len(image)
    assert plan["uri"] == pulled["uri"] == f"{site.coap_base}/fw/{record.id}/payload"
    assert back["location"] != first["location"]  # a new registration after the reboot
    assert ("input", "registered") in [(k, d.get("input")) for k, d in story], story
    assert (version_now, state_now, result_now) == (NEW, 0, 1)  # Idle, "updated successfully"
    # /5/0 is not observable here (answered as a plain Read, RFC 7641 §4.1): the job
    # observes /5/0/3 and /5/0/5 instead, and is told "Updating" by a notification (not
    # necessarily "Downloaded": the download may end before those observations are set up)
    observed = {ev["path"] for ev in device.events if ev["event"] == "request" and ev["observe"]}
    assert {"/5/0", "/5/0/3", "/5/0/5"} <= observed, device.transcript()
    notified = [
        e.details["fw_state"]
        for e in outcome.events
        if e.kind in ("input", "input_ignored") and e.details.get("source") == "observe"
    ]
    assert 3 in notified, story


async def test_the_signed_package_is_refused_as_an_unsupported_package_type(
    tmp_path: Path, sqlite_url: str, node_peers: StartPeer
) -> None:
    image = vndr_image(NEW, FIRMWARE)
    async with vendor_site(tmp_path, sqlite_url, node_peers) as (site, device):
        record = publish_vndr(site, image, version=NEW, sequence=2)
        service = await vendor_service(site, sqlite_url, bare=False)  # the signed package
        try:
            outcome = await run_campaign(service, record)
            pulled = await device.expect("download")
            rejected = await device.expect("rejected")
            version_now = await read(site, "/3/0/3")
            state_now = await read(site, "/5/0/3")
        finally:
            await service.stop()
    story = outcome.story()
    assert outcome.job.state == "failed", (outcome.job.state, story, device.transcript())
    assert outcome.job.reason == "unsupported_package", story
    # the reason says what happened and which profile setting to change
    finished = [e.details for e in outcome.events if e.kind == "finished"]
    assert len(finished) == 1, story
    detail = finished[0]["detail"]
    assert "refused the signed" in detail and "Update Result 6" in detail, detail
    assert "profile 'default'" in detail and "payload_form=bare" in detail, detail
    assert outcome.campaign.state == "completed", story  # no error threshold: it ran out
    assert outcome.campaign.snapshot["counters"]["by_reason"] == {"unsupported_package": 1}
    assert rejected["result"] == 6 and rejected["why"] == "no VNDR magic"
    plan = delivery_of(outcome)
    assert plan["form"] == "package" and plan["size"] == record.size
    assert pulled["uri"] == plan["uri"] == f"{site.coap_base}/fw/{record.id}"
    assert not any(ev["event"] == "rebooting" for ev in device.events)
    assert (version_now, state_now) == (OLD, 0)  # back in Idle, still on its old version


async def test_an_image_with_a_bad_crc_is_an_integrity_failure(
    tmp_path: Path, sqlite_url: str, node_peers: StartPeer
) -> None:
    image = with_bad_crc(vndr_image(NEW, FIRMWARE))
    async with vendor_site(tmp_path, sqlite_url, node_peers) as (site, device):
        record = publish_vndr(site, image, version=NEW, sequence=2)
        service = await vendor_service(site, sqlite_url, bare=True)
        try:
            outcome = await run_campaign(service, record)
            rejected = await device.expect("rejected")
            version_now = await read(site, "/3/0/3")
            state_now = await read(site, "/5/0/3")
        finally:
            await service.stop()
    story = outcome.story()
    assert outcome.job.state == "failed", (outcome.job.state, story, device.transcript())
    assert outcome.job.reason == "integrity_failure", story
    assert outcome.campaign.snapshot["counters"]["by_reason"] == {"integrity_failure": 1}
    assert rejected["result"] == 5 and rejected["why"].startswith("CRC-32 "), rejected
    assert delivery_of(outcome)["form"] == "payload"
    assert not any(ev["event"] == "rebooting" for ev in device.events)
    assert (version_now, state_now) == (OLD, 0)
