"""The agent's TOML configuration: defaults, every section, precise errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fotakit.agent.config import ConfigError, example_config, load_config, loads_config
from fotakit.lwm2m.objects import DeliveryMethod, UpdateProtocol
from fotakit.packages import DeviceIdentity, generate_key, key_id, write_key_pair

MINIMAL = 'endpoint = "dev-1"\nserver_uri = "coap://127.0.0.1:5683"\n'


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    cfg = loads_config(MINIMAL, base=tmp_path)
    assert cfg.endpoint == "dev-1"
    assert cfg.data_dir == tmp_path / "fotakit-agent-data"
    assert cfg.lifetime == 300 and cfg.lwm2m_version == "1.1"
    assert cfg.max_trial_boots == 3 and cfg.slot_capacity is None
    assert cfg.delivery is DeliveryMethod.BOTH
    assert cfg.protocols == (UpdateProtocol.COAP, UpdateProtocol.HTTP, UpdateProtocol.HTTPS)
    assert cfg.health.registration_deadline == 60.0 and cfg.health.command is None
    assert cfg.connectivity == "linux" and cfg.adaptive_timers is True
    assert cfg.device.serial == "dev-1"
    assert cfg.advertise_formats is None  # the client default: one bare ct=112


def test_advertise_formats_is_read_as_given() -> None:
    cfg = loads_config(MINIMAL + "advertise_formats = [110, 112]\n")
    assert cfg.advertise_formats == (110, 112)
    assert loads_config(MINIMAL + "advertise_formats = []\n").advertise_formats == ()


def test_full_config_file_is_read_with_paths_relative_to_it(tmp_path: Path) -> None:
    key = generate_key("ed25519")
    keys = tmp_path / "keys"
    keys.mkdir()
    write_key_pair(key, keys, "vendor")
    (tmp_path / "agent.toml").write_text(
        MINIMAL
        + """
data_dir = "state"
lifetime = 60
local_host = "127.0.0.1"
initial_version = "1.2.3"
[device]
manufacturer = "ACME"
vendor_domain = "acme.example"
class_name = "gw-1"
[slots]
max_trial_boots = 2
capacity = 4096
[trust]
anchors = ["keys"]
[delivery]
method = "pull"
protocols = ["coap"]
block_size = 512
[health]
command = ["/bin/true"]
timeout = 5
[installer]
command = ["/bin/cp"]
[transport]
ack_timeout = 0.5
max_retransmit = 2
adaptive = false
[connectivity]
source = "simulated"
"""
    )
    cfg = load_config(tmp_path / "agent.toml")
    assert cfg.data_dir == tmp_path / "state"
    assert cfg.initial_version == "1.2.3" and cfg.local_host == "127.0.0.1"
    assert cfg.device.identity == DeviceIdentity.from_names("acme.example", "gw-1")
    assert cfg.max_trial_boots == 2 and cfg.slot_capacity == 4096
    assert list(cfg.trust_store()) == [key_id(key.public_key())]
    assert cfg.delivery is DeliveryMethod.PULL_ONLY and cfg.protocols == (UpdateProtocol.COAP,)
    assert cfg.block_size == 512
    assert cfg.health.command == ("/bin/true",) and cfg.health.timeout == 5.0
    assert cfg.installer.command == ("/bin/cp",)
    assert cfg.transport.ack_timeout == 0.5 and cfg.transport.max_retransmit == 2
    assert cfg.adaptive_timers is False and cfg.connectivity == "simulated"


def test_example_config_parses() -> None:
    cfg = loads_config(example_config())
    assert cfg.endpoint == "device-0001"


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("", "endpoint"),  # missing endpoint (MINIMAL dropped below)
        ('lifetime = "long"', "lifetime"),
        ("lifetime = -1", "lifetime"),
        ('lwm2m_version = "2.0"', "lwm2m_version"),
        ("typo_key = 1", "typo_key"),
        ("[slots]\nmax_trial_boots = 0", "slots.max_trial_boots"),
        ("[slots]\ncapacity = true", "slots.capacity"),
        ('[delivery]\nmethod = "carrier-pigeon"', "delivery.method"),
        ('[delivery]\nprotocols = ["ftp"]', "delivery.protocols"),
        ("[delivery]\nblock_size = 1000", "delivery.block_size"),
        ('[health]\ncommand = "selftest --quick"', "health.command"),
        ("[health]\ntimeout = 0", "health.timeout"),
        ("[transport]\nack_random_factor = 0.5", "transport.ack_random_factor"),
        ("[transport]\nadaptive = 1", "transport.adaptive"),
        ('[connectivity]\nsource = "5g"', "connectivity.source"),
        ("device = 3", "device"),
        ("[device]\ncolour = 'red'", "device.colour"),
        ("advertise_formats = 112", "advertise_formats"),
        ('advertise_formats = ["112"]', "advertise_formats"),
        ("advertise_formats = [40]", "advertise_formats"),
        ("advertise_formats = [110, 110]", "advertise_formats"),
    ],
)
def test_bad_value_is_refused_naming_the_key(extra: str, key: str) -> None:
    text = ('server_uri = "coap://127.0.0.1:5683"\n' if key == "endpoint" else MINIMAL) + extra
    with pytest.raises(ConfigError) as info:
        loads_config(text)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


def test_server_uri_must_be_coap() -> None:
    with pytest.raises(ConfigError, match="server_uri: scheme must be coap"):
        loads_config('endpoint = "d"\nserver_uri = "http://x"\n')


def test_missing_trust_anchor_file_names_the_key(tmp_path: Path) -> None:
    cfg = loads_config(MINIMAL + '[trust]\nanchors = ["nope.pem"]\n', base=tmp_path)
    with pytest.raises(ConfigError, match=r"^trust\.anchors: .*nope\.pem"):
        cfg.trust_store()


def test_unreadable_file_and_invalid_toml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        loads_config("endpoint = ")


_keys = st.sampled_from(
    [
        "endpoint",
        "server_uri",
        "lifetime",
        "data_dir",
        "device",
        "slots",
        "trust",
        "health",
        "delivery",
        "transport",
        "connectivity",
        "installer",
        "local_port",
        "x",
    ]
)
_scalars = st.one_of(
    st.integers(),
    st.floats(),
    st.booleans(),
    st.text(max_size=20),
    st.lists(st.one_of(st.text(max_size=8), st.integers()), max_size=3),
)
_values = st.recursive(
    _scalars, lambda inner: st.dictionaries(_keys, inner, max_size=4), max_leaves=10
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=8), st.booleans())
def test_any_parsed_structure_gives_a_config_or_config_error(
    data: dict[str, object], valid_head: bool
) -> None:
    from fotakit.agent.config import parse_config

    if valid_head:  # get past the required keys so the sections are exercised too
        data = {**data, "endpoint": "d", "server_uri": "coap://h"}
    try:
        parse_config(data, Path("/tmp"))
    except ConfigError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_junk_toml_gives_config_error_never_a_crash(text: bytes | str) -> None:
    try:
        loads_config(text)
    except ConfigError:
        pass
