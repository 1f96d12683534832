"""DeviceInventory over real CoAP on loopback: a real LwM2MServer, real fotakit clients.

Each device is a :class:`fotakit.client.LwM2MClient` whose /3/0 says its model (the class
name), firmware version and time zone. Waiting is on the inventory's listener (each
completed read), always time-bounded; never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from fotakit.client import ClientConfig, LwM2MClient
from fotakit.client.instance import LwM2MObject
from fotakit.client.objects.device import DeviceInfo, DeviceInstance, device_object
from fotakit.coap import TransportParams
from fotakit.lwm2m.objects import builtin_registry
from fotakit.server import LwM2MServer, ServerConfig
from fotakit.updates.inventory import DeviceInventory
from fotakit.updates.targets import DeviceClass, DeviceView, TargetSpec

WAIT = 10.0
FAST = TransportParams(
    ack_timeout=0.2, ack_random_factor=1.0, max_retransmit=2, request_timeout=3.0
)


@pytest.fixture
async def server(sqlite_url: str) -> AsyncIterator[LwM2MServer]:
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        db_url=sqlite_url,
        transport=FAST,
        max_register_rate=10_000.0,
        register_burst=10_000,
    )
    srv = LwM2MServer(config)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


class Devices:
    """Real fotakit clients on loopback, stopped at the end."""

    def __init__(self, server: LwM2MServer) -> None:
        self.server = server
        self.clients: dict[str, LwM2MClient] = {}
        self.instances: dict[str, DeviceInstance] = {}

    def make(
        self,
        endpoint: str,
        *,
        model: str = "sensor-v2",
        version: str = "1.0.0",
        tz: str = "Europe/Berlin",
        no_device_instance: bool = False,
    ) -> LwM2MClient:
        definition = builtin_registry().get(3)
        assert definition is not None
        if no_device_instance:  # /3 without instance 0: a Read of /3/0 answers 4.04
            device = LwM2MObject(definition, {})
        else:
            info = DeviceInfo(model_number=model, firmware_version=version, timezone=tz)
            instance = DeviceInstance(info)
            self.instances[endpoint] = instance
            device = device_object(definition, instance)
        config = ClientConfig(
            endpoint=endpoint,
            server_uri=f"coap://127.0.0.1:{self.server.port}",
            lifetime=60,
            transport=FAST,
        )
        client = LwM2MClient(config, [device])
        self.clients[endpoint] = client
        return client

    async def start(self, *endpoints: str) -> None:
        clients = [self.clients[ep] for ep in endpoints]
        await asyncio.gather(*(c.start() for c in clients))
        await asyncio.gather(*(c.wait_registered(WAIT) for c in clients))

    async def stop(self) -> None:
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                await client.stop(deregister=False)


@pytest.fixture
async def devices(server: LwM2MServer) -> AsyncIterator[Devices]:
    fleet = Devices(server)
    try:
        yield fleet
    finally:
        await fleet.stop()


@pytest.fixture
async def inventory(server: LwM2MServer) -> AsyncIterator[DeviceInventory]:
    inv = DeviceInventory(server, read_timeout=5.0)
    try:
        yield inv
    finally:
        await inv.stop()


async def until(
    inv: DeviceInventory,
    predicate: Callable[[], bool],
    timeout: float = WAIT,  # noqa: ASYNC109
) -> None:
    """Until ``predicate()`` holds, re-checked after each completed inventory read."""
    changed = asyncio.Event()

    def listener(_view: DeviceView) -> None:
        changed.set()

    inv.add_listener(listener)
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                changed.clear()
                await changed.wait()
    finally:
        inv.remove_listener(listener)


async def test_registered_devices_appear_with_class_version_and_zone(
    server: LwM2MServer, devices: Devices, inventory: DeviceInventory
) -> None:
    devices.make("early", model="sensor-v2", version="1.0.0", tz="Europe/Berlin")
    devices.make("late", model="gateway-v1", version="3.1.4", tz="America/New_York")
    devices.make("odd-tz", model="sensor-v2", version="1.0.0", tz="Mars/Olympus_Mons")
    await devices.start("early")  # registered before the inventory starts
    await inventory.start()
    await devices.start("late", "odd-tz")
    await until(inventory, lambda: {"early", "late", "odd-tz"} <= set(inventory.views))
    await inventory.settled()

    assert inventory("early") == DeviceView(
        endpoint="early", class_name="sensor-v2", firmware_version="1.0.0", tz="Europe/Berlin"
    )
    assert inventory("late") == DeviceView(
        endpoint="late", class_name="gateway-v1", firmware_version="3.1.4", tz="America/New_York"
    )
    # not an IANA zone: unknown, so the campaign's default zone applies
    assert inventory("odd-tz").tz is None
    assert inventory("odd-tz").firmware_version == "1.0.0"
    # nothing known yet about an unknown endpoint, and no invented vendor/class ids
    assert inventory("nobody") == DeviceView(endpoint="nobody")
    assert all(v.vendor_id is None and v.class_id is None for v in inventory.views.values())


async def test_new_firmware_after_reregister_and_after_update(
    server: LwM2MServer, devices: Devices, inventory: DeviceInventory
) -> None:
    await inventory.start()
    client = devices.make("dev-1", version="1.0.0")
    await devices.start("dev-1")
    await until(inventory, lambda: inventory("dev-1").firmware_version == "1.0.0")

    # the device reboots into 2.0.0 and registers again
    await client.stop(deregister=False)
    devices.instances["dev-1"].set_firmware_version("2.0.0")
    await client.start()
    await client.wait_registered(WAIT)
    await until(inventory, lambda: inventory("dev-1").firmware_version == "2.0.0")
    assert inventory("dev-1").class_name == "sensor-v2"

    # a version change announced by a registration Update (re-reads /3/0/3 only)
    devices.instances["dev-1"].set_firmware_version("2.0.1")
    assert await client.update()
    await until(inventory, lambda: inventory("dev-1").firmware_version == "2.0.1")
    assert inventory("dev-1").tz == "Europe/Berlin"


async def test_a_device_answering_404_keeps_a_view_with_only_its_endpoint(
    server: LwM2MServer, devices: Devices, inventory: DeviceInventory
) -> None:
    await inventory.start()
    devices.make("blank", no_device_instance=True)
    devices.make("fine")
    await devices.start("blank", "fine")
    await until(inventory, lambda: {"blank", "fine"} <= set(inventory.views))
    await inventory.settled()
    assert inventory("blank") == DeviceView(endpoint="blank")
    assert inventory.failed_reads >= 1
    # an explicit refresh fails the same way, without raising
    assert await inventory.refresh("blank") == DeviceView(endpoint="blank")
    assert inventory("fine").class_name == "sensor-v2"


async def test_failed_reads_keep_the_last_known_view(
    server: LwM2MServer, devices: Devices, inventory: DeviceInventory
) -> None:
    await inventory.start()
    client = devices.make("dev-1", version="1.4.0")
    await devices.start("dev-1")
    await until(inventory, lambda: inventory("dev-1").firmware_version == "1.4.0")
    known = inventory("dev-1")
    await client.stop(deregister=True)  # gone: the read fails (not registered)
    assert await inventory.refresh("dev-1") == known
    assert inventory("dev-1") == known


async def test_target_spec_selects_exactly_the_matching_devices(
    server: LwM2MServer, devices: Devices, inventory: DeviceInventory
) -> None:
    await inventory.start()
    fleet = {
        "s-1": ("sensor-v2", "1.0.0"),
        "s-2": ("sensor-v2", "1.0.0"),
        "s-old": ("sensor-v2", "0.9.0"),
        "s-prefix": ("sensor-v2", "1.0.0-rc1"),
        "gw-1": ("gateway-v1", "1.0.0"),
        "s3-1": ("sensor-v3", "1.0.0"),
    }
    for ep, (model, version) in fleet.items():
        devices.make(ep, model=model, version=version)
    devices.make("blank", no_device_instance=True)
    await devices.start(*fleet, "blank")
    await until(inventory, lambda: set(fleet) | {"blank"} <= set(inventory.views))
    await inventory.settled()

    spec = TargetSpec(current_version="1.0.0", device_class=DeviceClass(name="sensor-v2"))
    chosen = spec.select([inventory(ep) for ep in sorted(server.registrations)])
    assert [v.endpoint for v in chosen] == ["s-1", "s-2"]


async def test_tags_are_persisted_in_the_store_and_read_back(
    server: LwM2MServer, devices: Devices, inventory: DeviceInventory
) -> None:
    await inventory.start()
    devices.make("dev-1")
    devices.make("dev-2")
    await devices.start("dev-1", "dev-2")
    await until(inventory, lambda: {"dev-1", "dev-2"} <= set(inventory.views))
    view = await inventory.set_tags("dev-1", ["beta", "eu"])
    assert view.tags == frozenset({"beta", "eu"})
    assert inventory("dev-1").tags == frozenset({"beta", "eu"})
    record = await server.store.get_device("dev-1")
    assert record is not None and record.attributes["tags"] == ["beta", "eu"]
    with pytest.raises(LookupError):
        await inventory.set_tags("never-seen", ["x"])
    with pytest.raises(ValueError, match="invalid tag"):
        await inventory.set_tags("dev-1", [" padded"])

    # another inventory (a restarted process) reads the tags from the store
    other = DeviceInventory(server, read_timeout=5.0)
    await other.start()
    try:
        await other.settled()
        assert other("dev-1").tags == frozenset({"beta", "eu"})
        assert other("dev-1").class_name == "sensor-v2"
        spec = TargetSpec(tags=frozenset({"beta"}), device_class=DeviceClass(name="sensor-v2"))
        assert [v.endpoint for v in spec.select(other.views.values())] == ["dev-1"]
    finally:
        await other.stop()


async def test_concurrent_refreshes_share_reads(
    server: LwM2MServer, devices: Devices, inventory: DeviceInventory
) -> None:
    await inventory.start()
    devices.make("dev-1")
    await devices.start("dev-1")
    await until(inventory, lambda: "dev-1" in inventory.views)
    await inventory.settled()
    before = inventory.reads
    views = await asyncio.gather(*(inventory.refresh("dev-1") for _ in range(20)))
    assert {v.firmware_version for v in views} == {"1.0.0"}
    # one read in flight, the other 19 requests coalesce into one follow-up read
    assert inventory.reads - before <= 2


async def test_reads_a_register_storm_triggers_are_paced_and_a_refresh_is_not(
    server: LwM2MServer, devices: Devices
) -> None:
    # 2 reads at once, then 4 per second: 6 devices registering together are read over
    # at least (6 - 2) / 4 = 1 s, not all at once (docs/benchmarks.md, B1)
    inv = DeviceInventory(
        server, read_timeout=5.0, read_rate=4.0, read_burst=2, storm_read_rate=4.0
    )
    loop = asyncio.get_running_loop()
    done_at: dict[str, float] = {}
    inv.add_listener(lambda view: done_at.setdefault(view.endpoint, loop.time()))
    await inv.start()
    try:
        devices.make("known")
        await devices.start("known")
        await until(inv, lambda: "known" in inv.views)
        await inv.settled()
        storm = [f"storm-{i}" for i in range(6)]
        for ep in storm:
            devices.make(ep)
        await devices.start(*storm)
        # an operator's refresh meanwhile is not queued behind the storm's reads
        view = await inv.refresh("known")
        refreshed_at = loop.time()
        assert view.class_name == "sensor-v2"
        await until(inv, lambda: set(storm) <= set(done_at))
        times = sorted(done_at[ep] for ep in storm)
        assert times[-1] - times[0] >= 0.9, times
        assert refreshed_at < times[-1]
        assert inv.reads == 1 + 1 + 6  # known, its refresh, the storm: one read each
    finally:
        await inv.stop()


def test_read_pacing_needs_a_positive_rate_and_burst(server: LwM2MServer) -> None:
    with pytest.raises(ValueError, match="read_rate"):
        DeviceInventory(server, read_rate=0.0)
    with pytest.raises(ValueError, match="read_burst"):
        DeviceInventory(server, read_burst=0)


async def test_busy_devices_are_not_read_until_refreshed(
    server: LwM2MServer, devices: Devices
) -> None:
    busy = {"dev-busy"}
    inv = DeviceInventory(server, read_timeout=5.0, busy=lambda ep: ep in busy)
    await inv.start()
    try:
        devices.make("dev-busy")
        devices.make("dev-free")
        await devices.start("dev-busy", "dev-free")
        await until(inv, lambda: "dev-free" in inv.views)
        await inv.settled()
        assert "dev-busy" not in inv.views
        busy.clear()  # its job ended
        inv.refresh_soon("dev-busy")
        await until(inv, lambda: inv("dev-busy").class_name == "sensor-v2")
    finally:
        await inv.stop()


# -- through UpdateService: a campaign by class and current version -------------------------


async def test_campaign_by_class_and_version_through_the_service(
    tmp_path: Path, sqlite_url: str
) -> None:
    from e2e_helpers import (
        AGENT_TRANSPORT,
        CLASS,
        VENDOR,
        Fleet,
        make_service,
        payload_of,
        running_site,
        trust_for,
        wait_campaign,
    )

    from fotakit.agent.config import AgentConfig, DeviceConfig, HealthConfig
    from fotakit.agent.runtime import Agent
    from fotakit.packages import generate_key
    from fotakit.updates.campaign import CampaignSpec

    key = generate_key("ed25519")
    async with running_site(tmp_path, sqlite_url, key) as site:
        fleet = Fleet(tmp_path / "agents", trust_for(key))
        models = {
            "s-1": ("sensor-v2", "1.0.0"),
            "s-2": ("sensor-v2", "1.0.0"),
            "s-3": ("sensor-v2", "1.0.0"),
            "s-old": ("sensor-v2", "0.9.0"),
            "other": ("gateway-v1", "1.0.0"),
        }
        for ep, (model, version) in models.items():
            config = AgentConfig(
                endpoint=ep,
                server_uri=f"coap://127.0.0.1:{site.server.port}",
                data_dir=fleet.root / ep,
                lifetime=60,
                local_host="127.0.0.1",
                initial_version=version,
                device=DeviceConfig(
                    manufacturer="fotakit tests",
                    model=model,
                    vendor_domain=VENDOR,
                    class_name=CLASS,
                ),
                health=HealthConfig(timeout=10.0, registration_deadline=5.0),
                transport=AGENT_TRANSPORT,
                connectivity="simulated",
            )
            fleet.agents[ep] = Agent(config, trust=fleet.trust)
        await fleet.start(site.server, models)
        record = site.publish(payload_of(4_000, 3), version="2.0.0", sequence=2)
        service = make_service(site, sqlite_url)
        await service.start()
        try:
            inventory = service.inventory
            assert isinstance(inventory, DeviceInventory)
            await inventory.settled()
            assert inventory("s-old") == DeviceView(
                endpoint="s-old", class_name="sensor-v2", firmware_version="0.9.0", tz="UTC"
            )
            spec = CampaignSpec(
                name="sensors 1.0.0 -> 2.0.0",
                package_id=record.id,
                target=TargetSpec(
                    device_class=DeviceClass(name="sensor-v2"), current_version="1.0.0"
                ),
            )
            cid = await service.create_campaign(spec)
            await service.start_campaign(cid)
            done = await wait_campaign(service, cid, {"completed", "paused", "aborted"}, 20)
            progress = await service.progress(cid)
            members = {j.endpoint for j in await service.jobs(cid)}
            # after the update the devices say 2.0.0 and the inventory follows
            updated = {"s-1", "s-2", "s-3"}
            await until(
                inventory,
                lambda: all(inventory(ep).firmware_version == "2.0.0" for ep in updated),
                20,
            )
            versions = {ep: a.running_version for ep, a in fleet.agents.items()}
        finally:
            await service.stop()
            await fleet.stop()
    assert done.state == "completed", progress
    assert members == updated
    assert progress.by_state == {"succeeded": 3}
    assert versions == {**dict.fromkeys(updated, "2.0.0"), "s-old": "0.9.0", "other": "1.0.0"}


# -- the stored inventory (schema version 3) -----------------------------------------------


async def test_a_device_without_a_view_here_is_found_in_the_store(
    server: LwM2MServer, devices: Devices, sqlite_url: str
) -> None:
    from fotakit.updates.store import UpdateStore

    with UpdateStore.open(sqlite_url) as store, UpdateStore.open(sqlite_url) as elsewhere:
        reader = DeviceInventory(server, read_timeout=5.0, store=store)
        await reader.start()
        try:
            devices.make("dev-s", model="class-y", version="3.1.0", tz="Asia/Tokyo")
            await devices.start("dev-s")
            await until(reader, lambda: reader("dev-s").firmware_version == "3.1.0")
        finally:
            await reader.stop()
        # another process's inventory (never started, never read the device) knows it
        other = DeviceInventory(server, read_timeout=5.0, store=elsewhere)
        assert other("dev-s") == DeviceView(
            endpoint="dev-s", class_name="class-y", firmware_version="3.1.0", tz="Asia/Tokyo"
        )
        assert other("nobody") == DeviceView(endpoint="nobody")
        rec = store.get_inventory("dev-s")
    assert rec is not None
    assert (rec.class_name, rec.model, rec.manufacturer) == ("class-y", "class-y", "fotakit")
    assert rec.facts["/3/0/3"] == "3.1.0" and rec.read_at is not None


async def test_after_a_restart_a_device_whose_read_fails_keeps_class_and_version(
    tmp_path: Path, db_url: str
) -> None:
    from e2e_helpers import make_service, payload_of, running_site

    from fotakit.packages import generate_key
    from fotakit.updates.campaign import CampaignSpec

    key = generate_key("ed25519")
    async with running_site(tmp_path, db_url, key) as site:
        fleet = Devices(site.server)
        try:
            fleet.make("dev-r", model="class-x", version="1.0.0")
            await fleet.start("dev-r")
            service = make_service(site, db_url)
            await service.start()
            try:
                inv = service.inventory
                assert inv is not None
                await until(inv, lambda: inv("dev-r").firmware_version == "1.0.0")
            finally:
                await service.stop()
            # the server process restarts; the device comes back without its Device
            # object instance, so its /3/0 read now answers 4.04
            await fleet.clients["dev-r"].stop(deregister=True)
            fleet.make("dev-r", no_device_instance=True)
            await fleet.start("dev-r")
            record = site.publish(payload_of(2_000, 5), version="2.0.0", sequence=2)
            service = make_service(site, db_url)
            await service.start()
            try:
                inv = service.inventory
                assert inv is not None
                await inv.settled()
                reads = (inv.reads, inv.failed_reads)
                view = inv("dev-r")
                spec = CampaignSpec(
                    name="class x from 1.0.0",
                    package_id=record.id,
                    target=TargetSpec(
                        device_class=DeviceClass(name="class-x"), current_version="1.0.0"
                    ),
                )
                cid = await service.create_campaign(spec)
                await service.start_campaign(cid)
                campaign = await service.campaign_state(cid)
                assert campaign is not None
                members = campaign.members
                if members:  # (a campaign without members has completed already)
                    await service.cancel(cid)
            finally:
                await service.stop()
        finally:
            await fleet.stop()
    assert reads == (1, 1)  # the new process did read the device, and the read failed
    assert (view.class_name, view.firmware_version, view.tz) == (
        "class-x",
        "1.0.0",
        "Europe/Berlin",
    )
    assert members == ["dev-r"]
