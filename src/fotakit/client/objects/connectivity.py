"""Object 4 "Connectivity Monitoring" (TS Core 1.1.1 E.5, object version 1.3).

The figures come from a pluggable :class:`ConnectivitySource`:

- :class:`LinuxConnectivitySource` reads the host's real interfaces: the default route
  (``/proc/net/route``) picks the interface of the LwM2M session and the router address;
  ``/sys/class/net/<if>`` tells its type (``wireless`` / ``phy80211``: bearer 21 WLAN,
  ARPHRD_ETHER: 41 Ethernet) and state; ``/proc/net/wireless`` gives link quality and
  signal level (dBm) of a WLAN; IPv4 addresses come from ``SIOCGIFADDR`` and IPv6 ones
  from ``/proc/net/if_inet6``.
- :class:`SimulatedConnectivitySource` holds settable radio figures (RSSI, link quality,
  bearer, SNR, cell ID, ...); a change calls its listeners, which notifies observers.

Resources 0 (Network Bearer), 1 (Available Network Bearer), 2 (Radio Signal Strength) and
4 (IP Addresses) are mandatory, so they are always present: a wired bearer, which has no
radio, reports 0 dBm (documented in docs/agent-guide.md). The optional ones are present
only when the source knows them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Protocol

from fotakit.client.instance import LwM2MObject, ObjectInstance, ResourceValue
from fotakit.lwm2m.errors import NotFound
from fotakit.lwm2m.model import ObjectDef
from fotakit.lwm2m.objects import NetworkBearer

NETWORK_BEARER = 0
AVAILABLE_NETWORK_BEARER = 1
RADIO_SIGNAL_STRENGTH = 2
LINK_QUALITY = 3
IP_ADDRESSES = 4
ROUTER_IP_ADDRESSES = 5
LINK_UTILIZATION = 6
APN = 7
CELL_ID = 8
SMNC = 9
SMCC = 10
SIGNAL_SNR = 11
LAC = 12
COVERAGE_ENHANCEMENT_LEVEL = 13


@dataclass(frozen=True, slots=True)
class ConnectivityStatus:
    """The Object 4 figures at one moment (None / empty: not known, resource absent)."""

    bearer: NetworkBearer = NetworkBearer.ETHERNET
    available_bearers: tuple[NetworkBearer, ...] = (NetworkBearer.ETHERNET,)
    radio_signal_strength: int = 0  # dBm; mandatory resource, 0 for wired bearers
    link_quality: int | None = None
    ip_addresses: tuple[str, ...] = ()
    router_ip_addresses: tuple[str, ...] = ()
    link_utilization: int | None = None
    apn: tuple[str, ...] = ()
    cell_id: int | None = None
    smnc: int | None = None
    smcc: int | None = None
    signal_snr: int | None = None
    lac: int | None = None
    coverage_enhancement_level: int | None = None

    def values(self) -> dict[int, ResourceValue]:
        """Resource ID -> value of every resource present."""
        out: dict[int, ResourceValue] = {
            NETWORK_BEARER: int(self.bearer),
            AVAILABLE_NETWORK_BEARER: {
                i: int(b) for i, b in enumerate(self.available_bearers or (self.bearer,))
            },
            RADIO_SIGNAL_STRENGTH: self.radio_signal_strength,
            IP_ADDRESSES: dict(enumerate(self.ip_addresses)),
        }
        if self.router_ip_addresses:
            out[ROUTER_IP_ADDRESSES] = dict(enumerate(self.router_ip_addresses))
        if self.apn:
            out[APN] = dict(enumerate(self.apn))
        optional = {
            LINK_QUALITY: self.link_quality,
            LINK_UTILIZATION: self.link_utilization,
            CELL_ID: self.cell_id,
            SMNC: self.smnc,
            SMCC: self.smcc,
            SIGNAL_SNR: self.signal_snr,
            LAC: self.lac,
            COVERAGE_ENHANCEMENT_LEVEL: self.coverage_enhancement_level,
        }
        out.update({rid: v for rid, v in optional.items() if v is not None})
        return out


class ConnectivitySource(Protocol):
    """Where the Object 4 figures come from.

    ``status()`` runs on every Read (keep it cheap). ``subscribe`` registers a callback the
    source calls when it knows something changed; a polling source never calls it and the
    agent calls :meth:`ConnectivityInstance.refresh` periodically instead.
    """

    def status(self) -> ConnectivityStatus: ...

    def subscribe(self, listener: Callable[[], None]) -> None: ...


class SimulatedConnectivitySource:
    """Settable figures for simulated devices (the fleet simulator drives them)."""

    def __init__(self, initial: ConnectivityStatus | None = None) -> None:
        self._status = initial or ConnectivityStatus(
            bearer=NetworkBearer.LTE_FDD,
            available_bearers=(NetworkBearer.LTE_FDD,),
            radio_signal_strength=-85,
            link_quality=-10,
            ip_addresses=("127.0.0.1",),
        )
        self._listeners: list[Callable[[], None]] = []

    def status(self) -> ConnectivityStatus:
        return self._status

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def set(self, **changes: object) -> None:
        """Replace fields of :class:`ConnectivityStatus` by name, e.g. ``set(
        radio_signal_strength=-101, signal_snr=3)``; unknown names raise TypeError.
        Listeners run when anything changed."""
        new = dataclasses.replace(self._status, **changes)  # type: ignore[arg-type]
        if new != self._status:
            self._status = new
            for listener in list(self._listeners):
                listener()


# ARPHRD_* from linux/if_arp.h
_ARPHRD_ETHER = 1
_ARPHRD_LOOPBACK = 772
_ARPHRD_IEEE802154 = 804
_SIOCGIFADDR = 0x8915
_MAX_INTERFACES = 64


def parse_route_table(text: str) -> list[tuple[str, str, str]]:
    """``(interface, destination, gateway)`` rows of ``/proc/net/route`` as dotted IPv4.

    The kernel writes the addresses as little-endian hex. Malformed lines are skipped.
    """
    rows: list[tuple[str, str, str]] = []
    for line in text.splitlines()[1:256]:
        fields = line.split()
        if len(fields) < 3:
            continue
        try:
            dest = socket.inet_ntoa(struct.pack("<I", int(fields[1], 16)))
            gateway = socket.inet_ntoa(struct.pack("<I", int(fields[2], 16)))
        except (ValueError, struct.error):
            continue
        rows.append((fields[0], dest, gateway))
    return rows


def parse_wireless(text: str) -> dict[str, tuple[int, int]]:
    """Interface -> (link quality, signal level dBm) from ``/proc/net/wireless``."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines()[2:66]:
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or len(fields) < 3:
            continue
        try:
            quality = int(float(fields[1].rstrip(".")))
            level = int(float(fields[2].rstrip(".")))
        except ValueError:
            continue
        if level > 63:  # some drivers report an unsigned byte (256 + dBm)
            level -= 256
        out[name.strip()] = (quality, level)
    return out


def parse_if_inet6(text: str) -> dict[str, list[str]]:
    """Interface -> IPv6 addresses (scope global or link) from ``/proc/net/if_inet6``."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines()[:256]:
        fields = line.split()
        if len(fields) < 6 or len(fields[0]) != 32:
            continue
        try:
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        except ValueError:
            continue
        out.setdefault(fields[5], []).append(str(address))
    return out


class LinuxConnectivitySource:
    """The real interfaces of the Linux host (see the module docstring).

    ``root`` is the file-system root holding ``proc`` and ``sys``; IPv4 addresses are
    asked from the kernel only when ``root`` is ``/`` (they are not in a file).
    ``interface`` pins the interface; by default the one of the default route, else the
    first interface that is up (loopback last).
    """

    def __init__(self, root: FsPath | str = "/", *, interface: str | None = None) -> None:
        self.root = FsPath(root)
        self.interface = interface

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Polling source: never calls back."""

    def _read(self, relative: str) -> str | None:
        try:
            return (self.root / relative).read_text(encoding="ascii", errors="replace")
        except OSError:
            return None

    def interfaces(self) -> list[str]:
        try:
            names = sorted(p.name for p in (self.root / "sys/class/net").iterdir())
        except OSError:
            return []
        return names[:_MAX_INTERFACES]

    def _is_up(self, name: str) -> bool:
        state = (self._read(f"sys/class/net/{name}/operstate") or "").strip()
        # "unknown" is what loopback and many virtual interfaces report while usable
        return state in ("up", "unknown")

    def _arp_type(self, name: str) -> int | None:
        text = (self._read(f"sys/class/net/{name}/type") or "").strip()
        return int(text) if text.isdigit() else None

    def bearer_of(self, name: str) -> NetworkBearer | None:
        """The Object 4 bearer of interface ``name`` (None: loopback or unknown)."""
        base = self.root / "sys/class/net" / name
        if (base / "wireless").exists() or (base / "phy80211").exists():
            return NetworkBearer.WLAN
        arp = self._arp_type(name)
        if arp == _ARPHRD_ETHER:
            return NetworkBearer.ETHERNET
        if arp == _ARPHRD_IEEE802154:
            return NetworkBearer.IEEE_802_15_4
        return None

    def _ipv4(self, name: str) -> str | None:
        if self.root != FsPath("/"):
            return None
        with (
            contextlib.suppress(OSError),
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        ):
            packed = struct.pack("256s", name.encode()[:15])
            answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, packed)
            return socket.inet_ntoa(answer[20:24])
        return None

    def status(self) -> ConnectivityStatus:
        names = self.interfaces()
        routes = parse_route_table(self._read("proc/net/route") or "")
        default = [(i, gw) for i, dest, gw in routes if dest == "0.0.0.0"]
        chosen = self.interface
        if chosen is None and default:
            chosen = default[0][0]
        if chosen is None:
            up = [n for n in names if self._is_up(n)]
            up.sort(key=lambda n: self._arp_type(n) == _ARPHRD_LOOPBACK)
            chosen = up[0] if up else None
        available = tuple(
            dict.fromkeys(
                b for n in names if self._is_up(n) and (b := self.bearer_of(n)) is not None
            )
        )
        if chosen is None:
            return ConnectivityStatus(available_bearers=available)
        bearer = self.bearer_of(chosen) or NetworkBearer.ETHERNET
        addresses: list[str] = []
        ipv4 = self._ipv4(chosen)
        if ipv4 is not None:
            addresses.append(ipv4)
        addresses += parse_if_inet6(self._read("proc/net/if_inet6") or "").get(chosen, [])
        routers = tuple(gw for i, gw in default if i == chosen)
        signal, quality = 0, None
        wireless = parse_wireless(self._read("proc/net/wireless") or "").get(chosen)
        if wireless is not None:
            quality, signal = wireless
        return ConnectivityStatus(
            bearer=bearer,
            available_bearers=available or (bearer,),
            radio_signal_strength=signal,
            link_quality=quality,
            ip_addresses=tuple(addresses),
            router_ip_addresses=routers,
        )


class ConnectivityInstance(ObjectInstance):
    """/4/0: reads every value from its source; :meth:`refresh` notifies what changed."""

    def __init__(self, source: ConnectivitySource) -> None:
        super().__init__()
        self.source = source
        self._last = source.status().values()
        source.subscribe(self.refresh)

    def refresh(self) -> None:
        """Re-read the source and notify observers of each resource whose value changed."""
        new = self.source.status().values()
        old, self._last = self._last, new
        for rid in sorted(set(old) | set(new)):
            if old.get(rid) != new.get(rid):
                self.notify_changed(rid)

    def resource_ids(self) -> list[int]:
        return sorted(self.source.status().values())

    def read(self, resource_id: int) -> ResourceValue:
        values = self.source.status().values()
        if resource_id not in values:
            raise NotFound(f"resource {resource_id} not present")
        return values[resource_id]


def connectivity_object(definition: ObjectDef, source: ConnectivitySource) -> LwM2MObject:
    """Object 4 with its single instance 0 reading ``source``."""
    return LwM2MObject(definition, {0: ConnectivityInstance(source)})
