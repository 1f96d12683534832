"""Object 4 Connectivity Monitoring, read by a real LwM2M server over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from runtime_helpers import FAST, WAIT, next_event

from fotakit.client import ClientConfig, LwM2MClient
from fotakit.client.objects.connectivity import (
    ConnectivityStatus,
    LinuxConnectivitySource,
    SimulatedConnectivitySource,
    connectivity_object,
    parse_if_inet6,
    parse_route_table,
    parse_wireless,
)
from fotakit.lwm2m.objects import CONNECTIVITY_MONITORING, NetworkBearer
from fotakit.lwm2m.path import Path as LwPath
from fotakit.server import LwM2MServer, Notification


async def _client(server: LwM2MServer, source: object, endpoint: str) -> LwM2MClient:
    config = ClientConfig(
        endpoint=endpoint, server_uri=f"coap://127.0.0.1:{server.port}", lifetime=60, transport=FAST
    )
    client = LwM2MClient(config, [connectivity_object(CONNECTIVITY_MONITORING, source)])  # type: ignore[arg-type]
    await client.start()
    await client.wait_registered(WAIT)
    return client


@pytest.fixture
async def simulated(server: LwM2MServer) -> AsyncIterator[tuple[SimulatedConnectivitySource, str]]:
    source = SimulatedConnectivitySource(
        ConnectivityStatus(
            bearer=NetworkBearer.LTE_FDD,
            available_bearers=(NetworkBearer.LTE_FDD, NetworkBearer.NB_IOT),
            radio_signal_strength=-93,
            link_quality=-11,
            ip_addresses=("10.1.2.3",),
            router_ip_addresses=("10.1.2.1",),
            apn=("iot.example",),
            cell_id=4711,
            smnc=1,
            smcc=262,
            signal_snr=7,
            lac=300,
            coverage_enhancement_level=1,
        )
    )
    client = await _client(server, source, "conn-sim")
    try:
        yield source, "conn-sim"
    finally:
        await client.stop()


async def test_read_of_object_4_returns_every_simulated_resource(
    server: LwM2MServer, simulated: tuple[SimulatedConnectivitySource, str]
) -> None:
    _, ep = simulated
    content = await asyncio.wait_for(server.read(ep, "/4/0"), WAIT)
    assert content[LwPath(4, 0, 0)] == 6
    assert content[LwPath(4, 0, 1, 0)] == 6 and content[LwPath(4, 0, 1, 1)] == 7
    assert content[LwPath(4, 0, 2)] == -93
    assert content[LwPath(4, 0, 3)] == -11
    assert content[LwPath(4, 0, 4, 0)] == "10.1.2.3"
    assert content[LwPath(4, 0, 5, 0)] == "10.1.2.1"
    assert content[LwPath(4, 0, 7, 0)] == "iot.example"
    assert content[LwPath(4, 0, 8)] == 4711
    assert content[LwPath(4, 0, 9)] == 1 and content[LwPath(4, 0, 10)] == 262
    assert content[LwPath(4, 0, 11)] == 7 and content[LwPath(4, 0, 12)] == 300
    assert content[LwPath(4, 0, 13)] == 1
    assert LwPath(4, 0, 6) not in content  # unknown link utilization: resource absent


async def test_changed_simulated_rssi_is_notified_to_the_observer(
    server: LwM2MServer, simulated: tuple[SimulatedConnectivitySource, str]
) -> None:
    source, ep = simulated
    async with server.subscribe() as events:
        obs = await asyncio.wait_for(server.observe(ep, "/4/0/2"), WAIT)
        assert obs.initial[LwPath(4, 0, 2)] == -93
        source.set(radio_signal_strength=-120)
        note = await next_event(events, Notification, lambda n: not n.initial)
        assert note.content[LwPath(4, 0, 2)] == -120


async def test_unchanged_value_set_again_is_not_notified(
    server: LwM2MServer, simulated: tuple[SimulatedConnectivitySource, str]
) -> None:
    source, ep = simulated
    async with server.subscribe() as events:
        await asyncio.wait_for(server.observe(ep, "/4/0/2"), WAIT)
        source.set(radio_signal_strength=-93)  # same value: no notification
        source.set(signal_snr=2)  # another resource: not this observation
        source.set(radio_signal_strength=-60)
        note = await next_event(events, Notification, lambda n: not n.initial)
        assert note.content[LwPath(4, 0, 2)] == -60


def test_simulated_source_rejects_unknown_field() -> None:
    with pytest.raises(TypeError):
        SimulatedConnectivitySource().set(rssi=-3)


async def test_linux_source_reports_this_hosts_interface_through_the_server(
    server: LwM2MServer,
) -> None:
    source = LinuxConnectivitySource()
    expected = source.status()
    client = await _client(server, source, "conn-linux")
    try:
        content = await asyncio.wait_for(server.read("conn-linux", "/4/0"), WAIT)
    finally:
        await client.stop()
    assert content[LwPath(4, 0, 0)] == int(expected.bearer)
    assert content[LwPath(4, 0, 2)] == expected.radio_signal_strength
    addresses = [v for p, v in content.items() if p.resource_id == 4]
    assert addresses == list(expected.ip_addresses)
    names = source.interfaces()
    if any(source.bearer_of(n) is not None for n in names):
        assert expected.bearer in (NetworkBearer.ETHERNET, NetworkBearer.WLAN)


def _fake_host(root: Path) -> None:
    net = root / "sys/class/net"
    for name, arp, state in (("lo", 772, "unknown"), ("eth0", 1, "down"), ("wlan0", 1, "up")):
        (net / name).mkdir(parents=True)
        (net / name / "type").write_text(f"{arp}\n")
        (net / name / "operstate").write_text(f"{state}\n")
    (net / "wlan0/wireless").mkdir()
    proc = root / "proc/net"
    proc.mkdir(parents=True)
    (proc / "route").write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "wlan0\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\n"
        "wlan0\t0000A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\n"
    )
    (proc / "wireless").write_text(
        "Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n"
        " face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n"
        "wlan0: 0000   58.  -52.  -256        0      0      0      0     12        0\n"
    )
    (proc / "if_inet6").write_text(
        "fe800000000000000000000000000001 03 40 20 80    wlan0\n"
        "00000000000000000000000000000001 01 80 10 80       lo\n"
    )


def test_linux_source_on_a_wlan_host_reports_bearer_21_signal_and_router(tmp_path: Path) -> None:
    _fake_host(tmp_path)
    status = LinuxConnectivitySource(tmp_path).status()
    assert status.bearer is NetworkBearer.WLAN
    assert status.available_bearers == (NetworkBearer.WLAN,)  # eth0 is down, lo not a bearer
    assert status.radio_signal_strength == -52
    assert status.link_quality == 58
    assert status.router_ip_addresses == ("192.168.0.1",)
    assert status.ip_addresses == ("fe80::1",)


def test_linux_source_without_any_interface_still_has_the_mandatory_resources(
    tmp_path: Path,
) -> None:
    values = LinuxConnectivitySource(tmp_path).status().values()
    assert {0, 1, 2, 4} <= set(values)


@given(st.text(max_size=400))
def test_proc_parsers_never_crash_on_junk(text: str) -> None:
    parse_route_table(text)
    parse_wireless(text)
    parse_if_inet6(text)
