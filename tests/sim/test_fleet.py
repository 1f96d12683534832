"""The fleet simulator against a real LwM2M server and update service, all on loopback.

Twenty real agents on the ``mixed`` profile register through their relays, each from its
own 127.0.x.y; Object 4 is read through the server and matches each device's profile; a
campaign updates the fleet, with the injected failures ending as the engine decides:
``fail_health`` devices roll back (Update Result 8), the device that loses its link the
moment its download starts still ends on the new firmware (the CoAP retransmissions of
both sides outlast the outage), ``poor`` devices (weak signal) are pulled, the rest pushed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "updates"))

from e2e_helpers import (
    all_events,
    delivery_methods,
    make_service,
    payload_of,
    running_site,
    trust_for,
    wait_campaign,
)

from fotakit.coap import TransportParams
from fotakit.lwm2m.objects import UpdateResult
from fotakit.lwm2m.objects.connectivity import NetworkBearer
from fotakit.packages import generate_key
from fotakit.server import LwM2MServer, ServerConfig
from fotakit.sim.fleet import FleetSimulator, SimConfig, device_host
from fotakit.sim.profiles import PROFILES, LinkProfile, Outages, Radio
from fotakit.updates.campaign import CampaignSpec, ErrorThreshold
from fotakit.updates.job import JobPolicy
from fotakit.updates.targets import TargetSpec

N = 20
# Server timers: a lost datagram is retried after 0.5 s, for 15 s in all (outlasts the
# 1.5 s injected outage and the 300 ms RTT of "poor" links).
SERVER_TRANSPORT = TransportParams(
    ack_timeout=0.5, ack_random_factor=1.0, max_retransmit=4, request_timeout=20.0
)
POLICY = JobPolicy(prefer_pull=False, backoff_base_s=1.0, backoff_max_s=2.0, max_attempts=4)


async def test_mixed_fleet_registers_reports_its_radio_and_updates_with_injected_failures(
    tmp_path: Path, sqlite_url: str
) -> None:
    key = generate_key("ed25519")
    async with running_site(
        tmp_path,
        sqlite_url,
        key,
        transport=SERVER_TRANSPORT,
        # the server's default Register limit per source host: the devices' own
        # addresses keep them under it
        max_register_rate=20.0,
        register_burst=50,
    ) as site:
        config = SimConfig(
            devices=N,
            profile="mixed",
            server=site.coap_base,
            trust=trust_for(key),
            data_dir=tmp_path / "sim",
            seed=2026,
            fail_health=0.1,
            offline_mid_download=0.1,
            outage_s=1.5,
            lifetime=60,
        )
        async with FleetSimulator(config) as sim:
            devices = {d.endpoint: d for d in sim.devices}
            eps = sorted(devices)
            assert eps == [f"sim-{i:04d}" for i in range(N)]
            # -- registration: every device, each from its own source host -------------
            regs = {ep: site.server.get(ep) for ep in eps}
            assert all(r is not None for r in regs.values())
            addresses = {ep: r.address for ep, r in regs.items() if r is not None}
            assert addresses == {ep: device_host(devices[ep].index) for ep in eps}
            assert len(set(addresses.values())) == N
            # -- the mixed profile: every share present, as seeded ---------------------
            profiles = {ep: d.profile.name for ep, d in devices.items()}
            assert sorted(profiles.values()).count("good") == 8
            assert sorted(profiles.values()).count("cellular") == 6
            assert sorted(profiles.values()).count("lan") == 4
            assert sorted(profiles.values()).count("poor") == 2
            # -- /4 through the server, per profile ----------------------------------
            seen: dict[str, set[tuple[object, object]]] = {}
            for ep in eps:
                radio = devices[ep].profile.radio
                bearer = await site.server.read_value(ep, "/4/0/0")
                rssi = await site.server.read_value(ep, "/4/0/2")
                assert (bearer, rssi) == (int(radio.bearer), radio.rssi_dbm)
                seen.setdefault(profiles[ep], set()).add((bearer, rssi))
            assert len({next(iter(v)) for v in seen.values()}) == 4  # differ per profile
            # -- failure injection chosen by the seed --------------------------------
            failing = {ep for ep, d in devices.items() if d.fails_health}
            offline = {ep for ep, d in devices.items() if d.goes_offline}
            assert len(failing) == 2 and len(offline) == 2
            assert sim.summary().by_version == {"1.0.0": N}

            # -- a campaign over the whole fleet -------------------------------------
            record = site.publish(payload_of(6_000, 3), version="2.0.0", sequence=2)
            assert sim.relays["poor"].downstream.bytes_out < record.size
            # a request to the pre-reboot address gives up after 5 s (the default 15 s
            # only slows down the rolled-back devices' verdict)
            service = make_service(site, sqlite_url, policy=POLICY, op_timeout_s=5.0)
            await service.start()
            try:
                cid = await service.create_campaign(
                    CampaignSpec(
                        name="sim 2.0.0",
                        package_id=record.id,
                        target=TargetSpec(endpoints=tuple(eps)),
                        error_threshold=ErrorThreshold(percent=50, min_sample=10),
                    )
                )
                await service.start_campaign(cid)
                done = await wait_campaign(service, cid, {"completed", "paused", "aborted"}, 45)
                jobs = {j.endpoint: j for j in await service.jobs(cid)}
                events = await all_events(service, campaign_id=cid)
            finally:
                await service.stop()
            # the rollbacks are on the agents (Update Result 8, old version running)
            await sim.wait(lambda: all(devices[ep].result is not None for ep in eps), 5)
            summary = sim.summary()
            pulled_bytes = sim.relays["poor"].downstream.bytes_out
            outage_drops = {
                name: relay.upstream.outage_dropped + relay.downstream.outage_dropped
                for name, relay in sim.relays.items()
            }

    story = {ep: (j.state, j.reason) for ep, j in jobs.items()}
    assert done.state == "completed", story
    for ep in eps:
        dev = devices[ep]
        if ep in failing:
            assert jobs[ep].state == "failed", story
            assert jobs[ep].reason in ("rolled_back", "update_failed"), story
            assert dev.result == int(UpdateResult.UPDATE_FAILED)
            assert dev.version == "1.0.0"
        else:
            assert jobs[ep].state == "succeeded", story
            assert dev.version == "2.0.0"
            assert dev.result == int(UpdateResult.SUCCESS)
    # the offline devices really lost their link mid-download, and still got there
    for ep in offline:
        assert devices[ep].offline_injected
    assert sum(outage_drops[profiles[ep]] for ep in offline) > 0
    assert summary.offline_injected == 2
    assert summary.by_version == {"1.0.0": 2, "2.0.0": N - 2}
    assert summary.by_result == {"1 success": N - 2, "8 update_failed": 2}
    # delivery by radio: the weak-signal devices were pulled (through their relay), the
    # others pushed
    methods = delivery_methods(events)
    assert {ep for ep, m in methods.items() if m == "pull"} == {
        ep for ep in eps if profiles[ep] == "poor"
    }
    assert PROFILES["poor"].radio.rssi_dbm < (POLICY.rssi_min_dbm or 0)
    # ...and their pulls crossed the poor link (the Package URI was sent via the relay)
    assert pulled_bytes > 2 * record.size


async def test_periodic_outages_hit_each_device_and_the_link_carries_between_them(
    tmp_path: Path, sqlite_url: str
) -> None:
    blink = LinkProfile(
        "blink",
        rtt_s=0.002,
        loss=0.0,
        radio=Radio(NetworkBearer.LTE_FDD, -90, link_quality=-10),
        outages=Outages(every_s=0.4, duration_s=0.1),
        ack_timeout_s=0.5,
    )
    server = LwM2MServer(
        ServerConfig(host="127.0.0.1", port=0, db_url=sqlite_url, transport=SERVER_TRANSPORT)
    )
    await server.start()
    try:
        config = SimConfig(
            devices=3,
            profile="blink",
            extra_profiles=(blink,),
            server=f"coap://127.0.0.1:{server.port}",
            data_dir=tmp_path / "sim",
            lifetime=60,
        )
        async with FleetSimulator(config) as sim:
            await sim.wait(lambda: all(d.outages >= 2 for d in sim.devices), 10)
            # between outages (and through them, by retransmission) the devices answer
            for dev in sim.devices:
                assert await server.read_value(dev.endpoint, "/3/0/3") == "1.0.0"
                assert await server.read_value(dev.endpoint, "/4/0/2") == -90
            assert {d.profile.name for d in sim.devices} == {"blink"}
    finally:
        await server.stop()
