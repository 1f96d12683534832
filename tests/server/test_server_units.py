"""The server's pure parts, without sockets: negotiation, rate limiting, stored requests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fotakit.lwm2m.codecs import ContentFormat
from fotakit.lwm2m.linkformat import Link
from fotakit.lwm2m.objects import builtin_registry
from fotakit.lwm2m.path import Path
from fotakit.server.negotiation import choose_format, is_single_value
from fotakit.server.queue import AwakeTracker
from fotakit.server.ratelimit import RateLimiter
from fotakit.server.registrations import Registration
from fotakit.server.requests import RequestSpec

REGISTRY = builtin_registry()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def registration(version: str = "1.1", formats: tuple[int, ...] = ()) -> Registration:
    return Registration(
        registration_id="abc",
        endpoint="dev",
        address="::1",
        port=5683,
        lifetime=60,
        lwm2m_version=version,
        binding="U",
        queue_mode=False,
        sms=None,
        root_path="/",
        objects=(Link("/3/0"), Link("/5", {"ver": "1.1"})),
        content_formats=frozenset(formats),
        registered_at=NOW,
        last_update=NOW,
    )


@pytest.mark.parametrize(
    ("version", "formats", "path", "writing", "expected"),
    [
        ("1.0", (), Path(3, 0, 0), False, ContentFormat.TEXT),
        ("1.0", (), Path(3, 0, 0), True, ContentFormat.TEXT),
        ("1.0", (), Path(3, 0, 6), False, ContentFormat.TLV),
        ("1.0", (112,), Path(3, 0), False, ContentFormat.TLV),
        ("1.0", (), Path(5, 0, 0), True, ContentFormat.OPAQUE),
        ("1.0", (), Path(5, 0, 0), False, ContentFormat.OPAQUE),
        ("1.1", (110, 112), Path(3, 0), False, ContentFormat.SENML_CBOR),
        ("1.1", (110,), Path(3, 0, 0), False, ContentFormat.SENML_JSON),
        ("1.1", (), Path(3, 0, 0), False, ContentFormat.TEXT),
        ("1.1", (), Path(5, 0, 8, 0), False, ContentFormat.TEXT),
        ("1.1", (), Path(5, 0, 8), False, ContentFormat.TLV),
        ("1.1", (), Path(5, 0), True, ContentFormat.TLV),
        ("1.1", (112,), Path(5, 0, 0), True, ContentFormat.OPAQUE),
        ("1.2", (11544,), Path(3, 0), False, ContentFormat.LWM2M_CBOR),
        ("1.1", (11544,), Path(3, 0), False, ContentFormat.TLV),
    ],
)
def test_format_negotiation_rule(
    version: str,
    formats: tuple[int, ...],
    path: Path,
    writing: bool,
    expected: ContentFormat,
) -> None:
    reg = registration(version, formats)
    assert choose_format(reg, path, REGISTRY, writing=writing) is expected


def test_explicit_format_always_wins() -> None:
    reg = registration("1.0")
    for fmt in ContentFormat:
        assert choose_format(reg, Path(3, 0, 0), REGISTRY, explicit=fmt) is fmt


def test_single_value_paths() -> None:
    assert is_single_value(Path(3, 0, 0), REGISTRY)
    assert not is_single_value(Path(5, 0, 8), REGISTRY)  # multi-instance resource
    assert is_single_value(Path(5, 0, 8, 1), REGISTRY)
    assert is_single_value(Path(30000, 0, 1), REGISTRY)  # unknown: assumed single
    assert not is_single_value(Path(3, 0), REGISTRY)


def test_registration_uri_brackets_ipv6_and_lists_objects() -> None:
    reg = registration()
    assert reg.uri_base == "coap://[::1]:5683"
    assert reg.object_ids() == {3, 5}
    assert reg.replace(address="127.0.0.1").uri_base == "coap://127.0.0.1:5683"
    assert reg.expires_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert reg.replace(lifetime=0).expires_at is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_grants_burst_then_refills_at_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.acquire("h") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("h")
    assert wait == pytest.approx(0.5)
    assert limiter.max_age(wait) == 1
    assert limiter.acquire("other") == 0.0
    clock.now += 0.5
    assert limiter.acquire("h") == 0.0
    assert limiter.acquire("h") > 0


def test_rate_limiter_forgets_least_recently_used_hosts() -> None:
    limiter = RateLimiter(1.0, 1, max_keys=2, clock=FakeClock())
    for host in ("a", "b", "c"):
        assert limiter.acquire(host) == 0.0
    assert limiter.acquire("a") == 0.0  # "a" was forgotten: a fresh bucket
    assert limiter.acquire("c") > 0


@given(
    rate=st.floats(0.1, 100),
    burst=st.integers(1, 50),
    steps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_rate_limiter_never_grants_more_than_burst_plus_refill(
    rate: float, burst: int, steps: list[float]
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate, burst, clock=clock)
    granted = 0
    for step in steps:
        clock.now += step
        if limiter.acquire("h") == 0.0:
            granted += 1
    assert granted <= burst + rate * clock.now + 1e-6


def test_rate_limiter_rejects_nonsense_parameters() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 1)
    with pytest.raises(ValueError):
        RateLimiter(1, 0)


def test_awake_tracker_counts_from_the_last_message() -> None:
    clock = FakeClock()
    awake = AwakeTracker(10.0, clock)
    assert not awake.is_awake("q")
    awake.heard_from("q")
    clock.now = 9.9
    assert awake.is_awake("q")
    clock.now = 10.0
    assert not awake.is_awake("q")
    awake.heard_from("q")
    awake.fell_asleep("q")
    assert not awake.is_awake("q")


_paths = st.lists(st.integers(0, 65534), min_size=0, max_size=4).map(lambda ids: Path(*ids))


@given(
    operation=st.sampled_from(["read", "write", "execute", "observe", "create", "delete"]),
    method=st.sampled_from(["GET", "PUT", "POST", "DELETE"]),
    path=_paths,
    payload=st.binary(max_size=64),
    cf=st.none() | st.integers(0, 65535),
    accept=st.none() | st.integers(0, 65535),
    query=st.lists(st.text(max_size=10), max_size=3),
    obs_id=st.none() | st.text(alphabet="abcXYZ09_-", min_size=1, max_size=12),
)
def test_request_spec_survives_the_stored_form(
    operation: str,
    method: str,
    path: Path,
    payload: bytes,
    cf: int | None,
    accept: int | None,
    query: list[str],
    obs_id: str | None,
) -> None:
    spec = RequestSpec(
        operation=operation,
        method=method,
        path=path,
        payload=payload,
        content_format=cf,
        accept=accept,
        query=tuple(query),
        observation_id=obs_id,
    )
    restored = RequestSpec.from_stored(
        operation=operation,
        path=str(path),
        payload=payload,
        content_format=cf,
        options=spec.options(),
    )
    assert restored == spec


def test_request_spec_builds_the_coap_message() -> None:
    spec = RequestSpec(
        operation="observe", method="GET", path=Path(5, 0, 3), accept=112, observation_id="o"
    )
    msg = spec.to_message("coap://127.0.0.1:5690", None)
    assert msg.opt.uri_path == ("5", "0", "3") and msg.opt.observe == 0
    assert msg.opt.accept == 112
    cancel = RequestSpec(operation="cancel-observe", method="GET", path=Path(5, 0, 3))
    assert cancel.to_message("coap://127.0.0.1:5690", None).opt.observe == 1
