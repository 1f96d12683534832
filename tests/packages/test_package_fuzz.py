"""Property tests: the manifest codec round-trips; hostile bytes only ever raise PackageError.

Hostile input here is random bytes, random CBOR inside a well-framed envelope, and real
packages with bytes flipped, inserted, deleted or cut. Whatever happens, the only
exceptions allowed are PackageError subclasses (never IndexError, KeyError, cbor2 errors,
...), and a mutated package never verifies unless the mutation left it unchanged.
"""

from __future__ import annotations

import hashlib
import io

import cbor2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from package_helpers import IDENTITY, build, new_key, sign_raw, trust_for

from fotakit.packages import (
    Manifest,
    PackageError,
    StreamingPackageVerifier,
    decode_manifest,
    encode_manifest,
    inspect_package,
    verify_bytes,
)
from fotakit.packages.envelope import ENVELOPE_PREFIX

KEY = new_key()
TRUST = trust_for(KEY)
PAYLOAD = b"firmware image bytes " * 20
PACKAGE = build(PAYLOAD, KEY)

texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Co", "Cn")),
    min_size=1,
    max_size=64,
).filter(str.isprintable)
manifests = st.builds(
    Manifest,
    sequence=st.integers(0, 2**64 - 1),
    vendor_id=st.uuids(),
    class_id=st.uuids(),
    version=texts,
    payload_digest=st.binary(min_size=32, max_size=32),
    payload_size=st.integers(0, 2**63 - 1),
    base_digest=st.none() | st.binary(min_size=32, max_size=32),
    component=st.none() | texts,
    kid=st.binary(min_size=1, max_size=64),
)


@given(manifests)
def test_manifest_codec_round_trips(m: Manifest) -> None:
    data = encode_manifest(m)
    assert decode_manifest(data) == m
    # canonical: re-encoding the decoded manifest gives the same bytes (stable digest)
    assert encode_manifest(decode_manifest(data)) == data


@given(manifests, manifests)
def test_different_manifests_encode_differently(a: Manifest, b: Manifest) -> None:
    assume(a != b)
    assert encode_manifest(a) != encode_manifest(b)


def _check_only_package_errors(data: bytes) -> None:
    for run in (
        lambda: verify_bytes(data, TRUST, identity=IDENTITY, min_sequence=0),
        lambda: inspect_package(io.BytesIO(data)),
        lambda: _feed_all(data),
    ):
        try:
            run()
        except PackageError:
            pass


def _feed_all(data: bytes) -> None:
    sv = StreamingPackageVerifier(TRUST)
    for i in range(0, len(data), 97):
        sv.feed(data[i : i + 97])
    sv.finish()


@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_package_errors(data: bytes) -> None:
    _check_only_package_errors(data)


@given(st.binary(max_size=512), st.binary(max_size=512))
def test_random_contents_in_a_framed_envelope_raise_only_package_errors(
    auth: bytes, manifest: bytes
) -> None:
    envelope = ENVELOPE_PREFIX + b"\x02" + cbor2.dumps(auth) + b"\x03" + cbor2.dumps(manifest)
    _check_only_package_errors(envelope + PAYLOAD)


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.integers(-5, 30) | st.text(max_size=3), children, max_size=6)
    ),
    max_leaves=30,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(cbor_values)
def test_signed_random_cbor_manifests_raise_only_package_errors(value: object) -> None:
    # A *validly signed* manifest of the wrong shape must still be a precise error.
    manifest = cbor2.dumps(value)
    _check_only_package_errors(sign_raw(manifest, KEY) + PAYLOAD)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "insert", "delete", "truncate"]),
            st.integers(0, len(PACKAGE) - 1),
            st.integers(1, 255),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_packages_never_verify_and_raise_only_package_errors(
    mutations: list[tuple[str, int, int]],
) -> None:
    data = bytearray(PACKAGE)
    for op, pos, val in mutations:
        pos %= max(len(data), 1)
        if op == "flip" and data:
            data[pos] ^= val
        elif op == "insert":
            data.insert(pos, val)
        elif op == "delete" and data:
            del data[pos]
        elif op == "truncate":
            del data[pos:]
    mutated = bytes(data)
    try:
        verified = verify_bytes(mutated, TRUST)
    except PackageError:
        _check_only_package_errors(mutated)
        return
    # Only a mutation that happens to restore the original bytes may verify.
    assert hashlib.sha256(mutated).digest() == hashlib.sha256(PACKAGE).digest()
    assert verified.manifest.vendor_id == IDENTITY.vendor_id


def _manifest_layers() -> dict[str, object]:
    top = dict(cbor2.loads(encode_manifest(decode_manifest(_real_manifest_bytes()))))
    common = dict(cbor2.loads(top[3]))
    sequence = list(cbor2.loads(common[4]))
    params = dict(sequence[1])
    return {"top": top, "common": common, "sequence": sequence, "params": params}


def _real_manifest_bytes() -> bytes:
    from fotakit.packages.envelope import envelope_extent

    extent = envelope_extent(PACKAGE)
    return PACKAGE[slice(*extent.manifest)]


def _reassemble(layers: dict[str, object]) -> bytes:
    sequence = list(layers["sequence"])  # type: ignore[call-overload]
    if len(sequence) > 1:
        sequence[1] = layers["params"]
    common = dict(layers["common"])  # type: ignore[call-overload]
    common[4] = cbor2.dumps(sequence)
    top = dict(layers["top"])  # type: ignore[call-overload]
    top[3] = cbor2.dumps(common)
    return cbor2.dumps(top)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["top", "common", "sequence", "params"]),
    st.integers(-6, 30),
    cbor_values,
    st.booleans(),
)
def test_signed_manifests_with_one_field_changed_raise_only_package_errors(
    layer: str, key: int, value: object, delete: bool
) -> None:
    layers = _manifest_layers()
    target = layers[layer]
    if isinstance(target, dict):
        if delete:
            target.pop(key, None)
        else:
            target[key] = value
    else:
        assert isinstance(target, list)
        index = key % len(target)
        if delete:
            del target[index]
        else:
            target[index] = value
    _check_only_package_errors(sign_raw(_reassemble(layers), KEY) + PAYLOAD)
