"""The simulator's pure parts (profiles, seeded choices, addresses, its configuration) and
the relay features it relies on (per-client upstream address, per-host outages), the
latter with real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fotakit.sim import Impairment, UdpRelay
from fotakit.sim.fleet import SimConfig, device_host, server_address
from fotakit.sim.profiles import MIXED, PROFILES, assign_profiles, check_profile, chosen

Address = tuple[str, int]


# -- profiles ------------------------------------------------------------------------------


@given(count=st.integers(0, 2000), seed=st.integers(0, 2**32))
def test_mixed_assignment_has_the_documented_shares_and_repeats_with_the_seed(
    count: int, seed: int
) -> None:
    got = assign_profiles(count, "mixed", seed)
    assert len(got) == count
    by_name = Counter(p.name for p in got)
    for name, share in MIXED:
        assert abs(by_name[name] - share * count) < 1  # largest remainder: off by < 1
    assert set(by_name) <= {name for name, _ in MIXED}
    assert assign_profiles(count, "mixed", seed) == got


def test_a_named_profile_is_given_to_every_device_and_an_unknown_one_is_refused() -> None:
    assert {p.name for p in assign_profiles(7, "poor", 1)} == {"poor"}
    with pytest.raises(ValueError, match=r"unknown profile 'nosuch'.*cellular"):
        assign_profiles(3, "nosuch", 1)
    with pytest.raises(ValueError):
        check_profile("")


def test_profiles_differ_in_their_link_and_radio_and_poor_is_below_the_push_threshold() -> None:
    radios = {p.radio for p in PROFILES.values()}
    assert len(radios) == len(PROFILES)
    rtts = [PROFILES[n].rtt_s for n in ("lan", "good", "cellular", "poor", "nbiot")]
    assert rtts == sorted(rtts) and len(set(rtts)) == len(rtts)
    assert PROFILES["poor"].radio.rssi_dbm < -110  # DeliveryPolicy.rssi_min_dbm default
    for profile in PROFILES.values():
        imp = profile.impairment()
        assert imp.delay * 2 == pytest.approx(profile.rtt_s)
        assert profile.transport().ack_timeout > profile.rtt_s  # no spurious retransmits
    assert PROFILES["flaky"].outages is not None


@given(n=st.integers(1, 500), ratio=st.floats(0, 1), seed=st.integers(0, 10**6))
def test_injection_choices_have_the_asked_size_and_repeat_with_the_seed(
    n: int, ratio: float, seed: int
) -> None:
    picked = chosen(n, ratio, seed, "fail-health")
    assert len(picked) == round(ratio * n)
    assert picked <= set(range(n))
    assert chosen(n, ratio, seed, "fail-health") == picked


@pytest.mark.parametrize("ratio", [-0.1, 1.01, float("nan")])
def test_injection_ratio_outside_0_1_is_refused(ratio: float) -> None:
    with pytest.raises(ValueError):
        chosen(10, ratio, 1, "offline")


# -- addresses and configuration ------------------------------------------------------------


def test_every_device_gets_its_own_loopback_address() -> None:
    hosts = [device_host(i) for i in range(5000)]
    assert len(set(hosts)) == 5000
    assert all(h.startswith("127.0.") and h != "127.0.0.1" for h in hosts)
    assert device_host(0) == "127.0.1.2"
    with pytest.raises(ValueError):
        device_host(-1)


@given(st.text(max_size=60))
def test_server_uri_parser_returns_an_address_or_a_value_error(text: str) -> None:
    try:
        host, port = server_address(text)
    except ValueError as exc:
        assert str(exc).startswith("server:")
    else:
        assert host and 0 <= port <= 65535
        assert text.startswith("coap://")


@given(
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    port=st.integers(1, 65535),
)
def test_server_uri_parser_reads_host_and_port(host: str, port: int) -> None:
    assert server_address(f"coap://{host}:{port}") == (host, port)
    assert server_address(f"coap://{host}") == (host, 5683)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"devices": 0}, "devices"),
        ({"profile": "nosuch"}, "profile"),
        ({"fail_health": 2.0}, "fail_health"),
        ({"offline_mid_download": -1.0}, "offline_mid_download"),
        ({"outage_s": 0.0}, "outage_s"),
        ({"prefix": "../x"}, "prefix"),
        ({"server": "http://127.0.0.1"}, "server"),
    ],
)
def test_bad_configuration_names_the_field(changes: dict[str, object], field: str) -> None:
    params: dict[str, object] = {"devices": 3, "data_dir": Path("unused")}
    params.update(changes)
    with pytest.raises(ValueError, match=field if field != "profile" else "unknown profile"):
        SimConfig(**params).check()  # type: ignore[arg-type]


# -- the relay features the simulator uses --------------------------------------------------


class _Echo(asyncio.DatagramProtocol):
    """Answers every datagram with the sender's host, so the client sees what the server saw."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.transport.sendto(addr[0].encode(), addr)


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.queue.put_nowait(data)


async def _client(relay: UdpRelay, host: str) -> tuple[asyncio.DatagramTransport, _Collector]:
    loop = asyncio.get_running_loop()
    collector = _Collector()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: collector, local_addr=(host, 0), remote_addr=relay.address
    )
    return transport, collector


async def test_upstream_socket_binds_to_the_clients_own_host_and_outages_are_per_host() -> None:
    loop = asyncio.get_running_loop()
    server, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    target = server.get_extra_info("sockname")[:2]
    relay = UdpRelay(target, uplink=Impairment(), upstream_host=lambda client: client[0])
    async with relay:
        a, a_in = await _client(relay, "127.0.1.2")
        b, b_in = await _client(relay, "127.0.1.3")
        a.sendto(b"x")
        b.sendto(b"x")
        # the server saw each client at its own host, through the relay
        assert await asyncio.wait_for(a_in.queue.get(), 2) == b"127.0.1.2"
        assert await asyncio.wait_for(b_in.queue.get(), 2) == b"127.0.1.3"

        relay.set_outage(True, host="127.0.1.2")
        assert relay.host_down("127.0.1.2") and not relay.host_down("127.0.1.3")
        assert not relay.outage
        a.sendto(b"lost")
        b.sendto(b"y")
        assert await asyncio.wait_for(b_in.queue.get(), 2) == b"127.0.1.3"
        assert relay.upstream.outage_dropped == 1
        assert a_in.queue.empty()

        relay.outage_for(30, host="127.0.1.2")  # a timed one, ended early by hand
        relay.set_outage(False, host="127.0.1.2")
        a.sendto(b"back")
        assert await asyncio.wait_for(a_in.queue.get(), 2) == b"127.0.1.2"
        a.close()
        b.close()
    server.close()


async def test_idle_sessions_are_closed_when_a_new_client_arrives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    server, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    target = server.get_extra_info("sockname")[:2]
    async with UdpRelay(target, idle_timeout=10.0) as relay:
        a, a_in = await _client(relay, "127.0.1.2")
        a.sendto(b"x")
        assert await asyncio.wait_for(a_in.queue.get(), 2) == b"127.0.0.1"
        assert relay.clients == 1
        # 11 s later on the relay's clock (the loop's clock, shifted)
        real_time = loop.time
        monkeypatch.setattr(loop, "time", lambda: real_time() + 11.0)
        b, b_in = await _client(relay, "127.0.1.3")
        b.sendto(b"x")
        assert await asyncio.wait_for(b_in.queue.get(), 2) == b"127.0.0.1"
        assert relay.clients == 1 and relay.sessions_closed == 1  # a's was idle: closed
        a.sendto(b"again")  # a client that comes back gets a new session
        assert await asyncio.wait_for(a_in.queue.get(), 2) == b"127.0.0.1"
        assert relay.clients == 2 and relay.sessions_closed == 1
        a.close()
        b.close()
    server.close()
    with pytest.raises(ValueError):
        UdpRelay(target, idle_timeout=0)
