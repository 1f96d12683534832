"""The agent's configuration file: TOML (``tomllib``) to a frozen :class:`AgentConfig`.

Every key is optional except ``endpoint`` and ``server_uri``. A bad value raises
:class:`ConfigError` naming the key (``health.timeout: expected a number > 0, got
'x'``); unknown keys are refused too, so a typo cannot silently fall back to a default.
Relative paths are relative to the directory of the configuration file. The reference of
every key is in docs/agent-guide.md; :func:`example_config` writes a commented example.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from fotakit.client.config import check_advertised_formats
from fotakit.coap import TransportParams
from fotakit.lwm2m.objects import DeliveryMethod, UpdateProtocol
from fotakit.packages import DeviceIdentity, KeyFileError, TrustStore


class ConfigError(ValueError):
    """The configuration is unusable; the message names the offending key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


_PROTOCOLS = {
    "coap": UpdateProtocol.COAP,
    "coaps": UpdateProtocol.COAPS,
    "http": UpdateProtocol.HTTP,
    "https": UpdateProtocol.HTTPS,
}
_DELIVERY = {
    "pull": DeliveryMethod.PULL_ONLY,
    "push": DeliveryMethod.PUSH_ONLY,
    "both": DeliveryMethod.BOTH,
}


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """How a trial boot is judged: a command (exit 0 = healthy) and/or registering with
    the server within ``registration_deadline`` seconds. Both may be set (both must pass)."""

    command: tuple[str, ...] | None = None
    timeout: float = 30.0
    registration_deadline: float | None = 60.0


@dataclass(frozen=True, slots=True)
class InstallerConfig:
    """A command run on the verified image before the slot is marked for trial (it gets
    the payload in ``FOTAKIT_IMAGE``, see :mod:`fotakit.agent.installer`). None: the slot
    image is the firmware as it is."""

    command: tuple[str, ...] | None = None
    timeout: float = 300.0


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    manufacturer: str = "fotakit"
    model: str = "fotakit-agent"
    serial: str = "0"
    hardware_version: str | None = None
    vendor_domain: str = "example.com"
    class_name: str | None = None

    @property
    def identity(self) -> DeviceIdentity:
        """What the package's vendor and class IDs must match (packages: DeviceIdentity)."""
        return DeviceIdentity.from_names(self.vendor_domain, self.class_name)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything ``fotakit agent run`` needs (see docs/agent-guide.md for each key)."""

    endpoint: str
    server_uri: str
    data_dir: Path
    lifetime: int = 300
    lwm2m_version: str = "1.1"
    local_host: str = "0.0.0.0"
    local_port: int = 0
    initial_version: str = "0.0.0"
    initial_sequence: int = 0
    device: DeviceConfig = field(default_factory=DeviceConfig)
    max_trial_boots: int = 3
    slot_capacity: int | None = None
    trust_anchors: tuple[Path, ...] = ()
    delivery: DeliveryMethod = DeliveryMethod.BOTH
    protocols: tuple[UpdateProtocol, ...] = (
        UpdateProtocol.COAP,
        UpdateProtocol.HTTP,
        UpdateProtocol.HTTPS,
    )
    block_size: int = 1024
    download_retries: int = 5
    health: HealthConfig = field(default_factory=HealthConfig)
    installer: InstallerConfig = field(default_factory=InstallerConfig)
    transport: TransportParams = field(default_factory=TransportParams)
    adaptive_timers: bool = True
    connectivity: Literal["linux", "simulated"] = "linux"
    deregister_on_reboot: bool = False
    source: Path | None = None  # the file this was read from
    queue_mode: bool = False  # register with Q (TS Core §6.5); Python API only for now
    # The root link's ct in Register (TS Core §6.2.1); None: the client default, ct=112.
    advertise_formats: tuple[int, ...] | None = None

    def trust_store(self) -> TrustStore:
        """The trust anchors as a :class:`TrustStore` (ConfigError if unreadable)."""
        store = TrustStore()
        for path in self.trust_anchors:
            try:
                part = TrustStore.from_path(path)
            except (KeyFileError, OSError, ValueError) as exc:
                raise ConfigError("trust.anchors", f"{path}: {exc}") from exc
            for kid in part:
                key = part.get(kid)
                assert key is not None
                store.add(kid, key)
        return store


# -- value checks ------------------------------------------------------------------------


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _table(data: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(prefix + key, f"expected a table, got {_describe(value)}")
    return value


def _str(data: Mapping[str, Any], key: str, name: str, default: str | None) -> str | None:
    value = data.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(name, f"expected a string, got {_describe(value)}")
    return value


def _required_str(data: Mapping[str, Any], key: str, name: str) -> str:
    value = _str(data, key, name, None)
    if not value:
        raise ConfigError(name, "is required and must be a non-empty string")
    return value


def _int(
    data: Mapping[str, Any], key: str, name: str, default: int, *, low: int = 0, high: int = 2**31
) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"expected an integer, got {_describe(value)}")
    if not low <= value <= high:
        raise ConfigError(name, f"must be in {low}..{high}, got {value}")
    return value


def _number(
    data: Mapping[str, Any], key: str, name: str, default: float | None, *, allow_zero: bool = False
) -> float | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(name, f"expected a number, got {_describe(value)}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(name, f"expected a number > 0, got {value}")
    return float(value)


def _bool(data: Mapping[str, Any], key: str, name: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(name, f"expected true or false, got {_describe(value)}")
    return value


def _command(data: Mapping[str, Any], key: str, name: str) -> tuple[str, ...] | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        raise ConfigError(name, 'expected a list of strings (argv), e.g. ["/bin/check", "-q"]')
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(name, f"expected a non-empty list of strings, got {_describe(value)}")
    return tuple(value)


def _path(base: Path, value: object, name: str) -> Path:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ConfigError(name, f"expected a path string, got {_describe(value)}")
    try:
        p = Path(value).expanduser()
    except RuntimeError as exc:  # "~nosuchuser"
        raise ConfigError(name, str(exc)) from None
    return p if p.is_absolute() else base / p


def _no_unknown(data: Mapping[str, Any], known: set[str], prefix: str) -> None:
    for key in data:
        if key not in known:
            raise ConfigError(prefix + str(key), "unknown key")


def _check_server_uri(uri: str) -> str:
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise ConfigError("server_uri", f"not a URI: {exc}") from None
    if parts.scheme != "coap":
        raise ConfigError("server_uri", f"scheme must be coap:// (coaps needs DTLS), got {uri!r}")
    if not parts.hostname:
        raise ConfigError("server_uri", f"no host in {uri!r}")
    del port
    return uri


# -- the file ------------------------------------------------------------------------------

_TOP = {
    "endpoint",
    "server_uri",
    "lifetime",
    "lwm2m_version",
    "data_dir",
    "local_host",
    "local_port",
    "initial_version",
    "initial_sequence",
    "deregister_on_reboot",
    "device",
    "slots",
    "trust",
    "delivery",
    "health",
    "installer",
    "transport",
    "connectivity",
    "advertise_formats",
}


def _formats(data: Mapping[str, Any]) -> tuple[int, ...] | None:
    """``advertise_formats``: a list of content-format numbers for the root link ``ct``."""
    if "advertise_formats" not in data:
        return None
    raw = data["advertise_formats"]
    if not isinstance(raw, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in raw):
        raise ConfigError(
            "advertise_formats",
            f"expected a list of content-format numbers (e.g. [112]), got {_describe(raw)}",
        )
    formats = tuple(raw)
    try:
        check_advertised_formats(formats)
    except ValueError as exc:
        raise ConfigError("advertise_formats", str(exc)) from None
    return formats


def parse_config(data: Mapping[str, Any], base: Path | None = None) -> AgentConfig:
    """Build an :class:`AgentConfig` from parsed TOML (``base``: relative path root)."""
    base = base or Path.cwd()
    _no_unknown(data, _TOP, "")
    endpoint = _required_str(data, "endpoint", "endpoint")
    server_uri = _check_server_uri(_required_str(data, "server_uri", "server_uri"))
    lwm2m_version = _str(data, "lwm2m_version", "lwm2m_version", "1.1")
    if lwm2m_version not in ("1.0", "1.1", "1.2"):
        raise ConfigError("lwm2m_version", f"must be 1.0, 1.1 or 1.2, got {lwm2m_version!r}")
    data_dir = _path(base, data.get("data_dir", "fotakit-agent-data"), "data_dir")

    dev = _table(data, "device")
    _no_unknown(
        dev,
        {"manufacturer", "model", "serial", "hardware_version", "vendor_domain", "class_name"},
        "device.",
    )
    device = DeviceConfig(
        manufacturer=_str(dev, "manufacturer", "device.manufacturer", "fotakit") or "",
        model=_str(dev, "model", "device.model", "fotakit-agent") or "",
        serial=_str(dev, "serial", "device.serial", endpoint) or "",
        hardware_version=_str(dev, "hardware_version", "device.hardware_version", None),
        vendor_domain=_required_str(dev, "vendor_domain", "device.vendor_domain")
        if "vendor_domain" in dev
        else "example.com",
        class_name=_str(dev, "class_name", "device.class_name", None),
    )

    slots = _table(data, "slots")
    _no_unknown(slots, {"max_trial_boots", "capacity"}, "slots.")
    capacity = slots.get("capacity")
    if capacity is not None:
        capacity = _int(slots, "capacity", "slots.capacity", 0, low=1, high=2**62)

    trust = _table(data, "trust")
    _no_unknown(trust, {"anchors"}, "trust.")
    anchors_raw = trust.get("anchors", [])
    if isinstance(anchors_raw, str):
        anchors_raw = [anchors_raw]
    if not isinstance(anchors_raw, list):
        raise ConfigError(
            "trust.anchors", f"expected a list of paths, got {_describe(anchors_raw)}"
        )
    anchors = tuple(_path(base, a, "trust.anchors") for a in anchors_raw)

    delivery = _table(data, "delivery")
    _no_unknown(delivery, {"method", "protocols", "block_size", "retries"}, "delivery.")
    method = _str(delivery, "method", "delivery.method", "both")
    if method not in _DELIVERY:
        raise ConfigError("delivery.method", f"must be pull, push or both, got {method!r}")
    protocols_raw = delivery.get("protocols", ["coap", "http", "https"])
    if not isinstance(protocols_raw, list) or not all(
        isinstance(p, str) and p in _PROTOCOLS for p in protocols_raw
    ):
        raise ConfigError(
            "delivery.protocols",
            f"expected a list of coap, coaps, http, https; got {_describe(protocols_raw)}",
        )
    block_size = _int(delivery, "block_size", "delivery.block_size", 1024, low=16, high=1024)
    if block_size & (block_size - 1):
        raise ConfigError("delivery.block_size", f"must be a power of two, got {block_size}")

    health = _table(data, "health")
    _no_unknown(health, {"command", "timeout", "registration_deadline"}, "health.")
    health_cfg = HealthConfig(
        command=_command(health, "command", "health.command"),
        timeout=_number(health, "timeout", "health.timeout", 30.0) or 30.0,
        registration_deadline=_number(
            health, "registration_deadline", "health.registration_deadline", 60.0
        ),
    )

    installer = _table(data, "installer")
    _no_unknown(installer, {"command", "timeout"}, "installer.")
    installer_cfg = InstallerConfig(
        command=_command(installer, "command", "installer.command"),
        timeout=_number(installer, "timeout", "installer.timeout", 300.0) or 300.0,
    )

    transport = _table(data, "transport")
    _no_unknown(
        transport,
        {"ack_timeout", "ack_random_factor", "max_retransmit", "request_timeout", "adaptive"},
        "transport.",
    )
    defaults = TransportParams()
    ack_random_factor = _number(
        transport, "ack_random_factor", "transport.ack_random_factor", defaults.ack_random_factor
    )
    assert ack_random_factor is not None
    if ack_random_factor < 1.0:
        raise ConfigError("transport.ack_random_factor", f"must be >= 1, got {ack_random_factor}")
    try:
        transport_params = TransportParams(
            ack_timeout=_number(
                transport, "ack_timeout", "transport.ack_timeout", defaults.ack_timeout
            )
            or defaults.ack_timeout,
            ack_random_factor=ack_random_factor,
            max_retransmit=_int(
                transport,
                "max_retransmit",
                "transport.max_retransmit",
                defaults.max_retransmit,
                high=20,
            ),
            request_timeout=_number(
                transport, "request_timeout", "transport.request_timeout", defaults.request_timeout
            )
            or defaults.request_timeout,
        )
    except ValueError as exc:
        raise ConfigError("transport", str(exc)) from None

    connectivity = _table(data, "connectivity")
    _no_unknown(connectivity, {"source"}, "connectivity.")
    source = _str(connectivity, "source", "connectivity.source", "linux")
    if source not in ("linux", "simulated"):
        raise ConfigError("connectivity.source", f"must be linux or simulated, got {source!r}")

    local_port = _int(data, "local_port", "local_port", 0, high=65535)
    return AgentConfig(
        endpoint=endpoint,
        server_uri=server_uri,
        data_dir=data_dir,
        lifetime=_int(data, "lifetime", "lifetime", 300, low=0),
        lwm2m_version=lwm2m_version,
        local_host=_str(data, "local_host", "local_host", "0.0.0.0") or "0.0.0.0",
        local_port=local_port,
        initial_version=_str(data, "initial_version", "initial_version", "0.0.0") or "0.0.0",
        initial_sequence=_int(data, "initial_sequence", "initial_sequence", 0, high=2**63 - 1),
        device=device,
        max_trial_boots=_int(slots, "max_trial_boots", "slots.max_trial_boots", 3, low=1, high=100),
        slot_capacity=capacity,
        trust_anchors=anchors,
        delivery=_DELIVERY[method],
        protocols=tuple(dict.fromkeys(_PROTOCOLS[p] for p in protocols_raw)),
        block_size=block_size,
        download_retries=_int(delivery, "retries", "delivery.retries", 5, high=1000),
        health=health_cfg,
        installer=installer_cfg,
        transport=transport_params,
        adaptive_timers=_bool(transport, "adaptive", "transport.adaptive", True),
        connectivity="simulated" if source == "simulated" else "linux",
        deregister_on_reboot=_bool(data, "deregister_on_reboot", "deregister_on_reboot", False),
        advertise_formats=_formats(data),
    )


def load_config(path: Path | str) -> AgentConfig:
    """Read and check a TOML configuration file (ConfigError on any problem)."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read {p}: {exc.strerror or exc}") from None
    return loads_config(text, base=p.parent.resolve(), source=p)


def loads_config(
    text: bytes | str, *, base: Path | None = None, source: Path | None = None
) -> AgentConfig:
    """Parse TOML text into an :class:`AgentConfig` (ConfigError on any problem)."""
    try:
        raw = text.decode("utf-8") if isinstance(text, bytes) else text
        data = tomllib.loads(raw)
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"the file is not UTF-8: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"not valid TOML: {exc}") from None
    config = parse_config(data, base)
    if source is not None:
        object.__setattr__(config, "source", source)
    return config


EXAMPLE_CONFIG = """\
# fotakit device agent configuration (docs/agent-guide.md lists every key)
endpoint = "device-0001"                 # LwM2M endpoint client name (required)
server_uri = "coap://lwm2m.example.com:5683"  # the LwM2M server (required)
lifetime = 300                           # registration lifetime, seconds
lwm2m_version = "1.1"
data_dir = "/var/lib/fotakit-agent"      # slots, boot state, Object 5 state
local_host = "0.0.0.0"
initial_version = "1.0.0"                # version of the firmware installed at first start
initial_sequence = 0                     # its sequence number (seeds anti-rollback)
# advertise_formats = [112]              # root link ct in Register; default one bare ct=112

[device]
manufacturer = "Example Ltd"
model = "sensor-v2"
serial = "SN0001"
vendor_domain = "example.com"            # must match the package's vendor
class_name = "sensor-v2"                 # must match the package's device class

[slots]
max_trial_boots = 3                      # unconfirmed starts of a new image before revert
# capacity = 16777216                    # bytes per slot (refuse bigger images: result 2)

[trust]
anchors = ["/etc/fotakit/trust"]          # PEM public keys, or directories of them

[delivery]
method = "both"                          # pull, push or both
protocols = ["coap", "http", "https"]
block_size = 1024

[health]
# command = ["/usr/local/bin/selftest"]  # exit status 0 = healthy
timeout = 30
registration_deadline = 60               # must register with the server within this

[installer]
# command = ["/usr/local/bin/install-image"]  # receives the verified image path
timeout = 300

[transport]
ack_timeout = 2.0
ack_random_factor = 1.5
max_retransmit = 4
adaptive = true                          # CoCoA-style RTO for downloads

[connectivity]
source = "linux"                         # or "simulated"
"""


def example_config() -> str:
    """A commented example configuration (what ``fotakit agent init-config`` writes)."""
    return EXAMPLE_CONFIG
