"""Verification of signed packages: round trips and every tampering case, each with its error.

Spec: docs/package-format.md (verification order, error -> Update Result table).
"""

from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import replace

import cbor2
import pytest
from package_helpers import (
    CLASS,
    IDENTITY,
    VENDOR,
    build,
    manifest_for,
    new_key,
    sign_raw,
    signed,
    trust_for,
)

from fotakit.lwm2m.objects import UpdateResult
from fotakit.packages import (
    ALG_EDDSA,
    ALG_ES256,
    DeviceIdentity,
    DigestMismatch,
    MalformedPackage,
    ManifestDigestMismatch,
    ManifestTooLarge,
    PackageError,
    RollbackRejected,
    SignatureInvalid,
    SizeMismatch,
    TruncatedPackage,
    TrustStore,
    UnknownKey,
    UnsupportedAlgorithm,
    UnsupportedFormat,
    WrongClass,
    WrongVendor,
    class_id,
    encode_manifest,
    inspect_package,
    key_id,
    vendor_id,
    verify_bytes,
    verify_package,
)
from fotakit.packages.envelope import ENVELOPE_PREFIX, envelope_extent

PAYLOAD = bytes(range(256)) * 40


@pytest.mark.parametrize(("alg", "cose_alg"), [("ed25519", ALG_EDDSA), ("p256", ALG_ES256)])
def test_built_package_verifies_and_returns_signed_fields(alg: str, cose_alg: int) -> None:
    key = new_key(alg)
    pkg = build(PAYLOAD, key, sequence=42, version="2.1.0-rc1", component="modem")
    v = verify_bytes(pkg, trust_for(key), identity=IDENTITY, min_sequence=42)
    assert v.algorithm == cose_alg
    assert v.kid == key_id(key)
    m = v.manifest
    assert (m.sequence, m.version, m.component) == (42, "2.1.0-rc1", "modem")
    assert m.vendor_id == vendor_id(VENDOR)
    assert m.class_id == class_id(vendor_id(VENDOR), CLASS)
    assert m.payload_digest == hashlib.sha256(PAYLOAD).digest()
    assert m.payload_size == v.payload_size == len(PAYLOAD)
    assert pkg[v.payload_offset :] == PAYLOAD
    assert m.kid == key_id(key)


def test_base_digest_round_trips_for_delta_payloads() -> None:
    key = new_key()
    base = hashlib.sha256(b"old image").digest()
    v = verify_bytes(build(PAYLOAD, key, base_digest=base), trust_for(key))
    assert v.manifest.base_digest == base


def test_empty_payload_is_a_valid_package() -> None:
    key = new_key()
    v = verify_bytes(build(b"", key), trust_for(key))
    assert v.payload_size == 0


def test_vendor_ids_are_uuid5_as_in_the_suit_examples() -> None:
    # draft-ietf-suit-manifest Appendix B: vendor-id for "arm.com".
    assert vendor_id("arm.com") == uuid.UUID("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe")
    vid = vendor_id("example.com")
    assert class_id(vid, "board-x") == uuid.uuid5(vid, "board-x")


def test_building_is_deterministic_for_ed25519() -> None:
    key = new_key()
    assert build(PAYLOAD, key) == build(PAYLOAD, key)


# --- tampering: each case its own error ---------------------------------------------------


def test_tampered_payload_is_a_digest_mismatch() -> None:
    key = new_key()
    pkg = bytearray(build(PAYLOAD, key))
    pkg[-100] ^= 0x01
    with pytest.raises(DigestMismatch) as exc:
        verify_bytes(bytes(pkg), trust_for(key))
    assert exc.value.update_result == UpdateResult.INTEGRITY_CHECK_FAILURE


def test_tampered_manifest_is_a_manifest_digest_mismatch() -> None:
    key = new_key()
    pkg = build(PAYLOAD, key, version="1.0.0")
    tampered = pkg.replace(b"1.0.0", b"9.0.0", 1)
    assert tampered != pkg
    with pytest.raises(ManifestDigestMismatch) as exc:
        verify_bytes(tampered, trust_for(key))
    assert exc.value.update_result == UpdateResult.INTEGRITY_CHECK_FAILURE


def test_manifest_with_its_digest_recomputed_fails_the_signature() -> None:
    # The attacker rewrites the manifest AND the digest in the wrapper: the signature,
    # which covers the digest, no longer verifies.
    key = new_key()
    attacker = new_key()
    m = manifest_for(PAYLOAD, key, sequence=99)
    forged = signed(m, attacker, kid=key_id(key))
    with pytest.raises(SignatureInvalid) as exc:
        verify_bytes(forged + PAYLOAD, trust_for(key))
    assert exc.value.update_result == UpdateResult.INTEGRITY_CHECK_FAILURE


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_package_signed_with_the_wrong_key_is_signature_invalid(alg: str) -> None:
    trusted, other = new_key(alg), new_key(alg)
    pkg = signed(manifest_for(PAYLOAD, trusted), other, kid=key_id(trusted)) + PAYLOAD
    with pytest.raises(SignatureInvalid):
        verify_bytes(pkg, trust_for(trusted))


def test_flipped_signature_bit_is_signature_invalid() -> None:
    key = new_key("p256")
    pkg = bytearray(build(PAYLOAD, key))
    envelope_len = envelope_extent(bytes(pkg)).length
    # The signature is the last bstr of the authentication wrapper, which precedes the
    # manifest member: find it by its content.
    sig_at = bytes(pkg).find(b"\x58\x40") + 2
    assert 0 < sig_at < envelope_len
    pkg[sig_at + 5] ^= 0x80
    with pytest.raises(SignatureInvalid):
        verify_bytes(bytes(pkg), trust_for(key))


def test_unknown_key_id_is_unknown_key() -> None:
    signer, anchor = new_key(), new_key()
    with pytest.raises(UnknownKey) as exc:
        verify_bytes(build(PAYLOAD, signer), trust_for(anchor))
    assert key_id(signer).hex() in str(exc.value)
    assert exc.value.update_result == UpdateResult.INTEGRITY_CHECK_FAILURE


def test_trust_anchor_of_another_algorithm_under_the_same_kid_is_signature_invalid() -> None:
    signer, other = new_key("ed25519"), new_key("p256")
    store = TrustStore()
    store.add(key_id(signer), other.public_key())
    with pytest.raises(SignatureInvalid):
        verify_bytes(build(PAYLOAD, signer), store)


def test_wrong_class_is_rejected_with_unsupported_package_type() -> None:
    key = new_key()
    pkg = build(PAYLOAD, key, class_name="board-y")
    with pytest.raises(WrongClass) as exc:
        verify_bytes(pkg, trust_for(key), identity=IDENTITY)
    assert exc.value.update_result == UpdateResult.UNSUPPORTED_PACKAGE_TYPE


def test_wrong_vendor_is_rejected_with_unsupported_package_type() -> None:
    key = new_key()
    pkg = build(PAYLOAD, key, vendor="example.org")
    with pytest.raises(WrongVendor) as exc:
        verify_bytes(pkg, trust_for(key), identity=IDENTITY)
    assert exc.value.update_result == UpdateResult.UNSUPPORTED_PACKAGE_TYPE


def test_vendor_only_identity_accepts_any_class_of_that_vendor() -> None:
    key = new_key()
    pkg = build(PAYLOAD, key, class_name="board-z")
    verify_bytes(pkg, trust_for(key), identity=DeviceIdentity.from_names(VENDOR))


def test_lower_sequence_number_is_rollback_and_equal_is_accepted() -> None:
    key = new_key()
    pkg = build(PAYLOAD, key, sequence=41)
    verify_bytes(pkg, trust_for(key), min_sequence=41)
    with pytest.raises(RollbackRejected) as exc:
        verify_bytes(pkg, trust_for(key), min_sequence=42)
    assert "41" in str(exc.value) and "42" in str(exc.value)
    assert exc.value.update_result == UpdateResult.UNSUPPORTED_PACKAGE_TYPE


@pytest.mark.parametrize("cut", [1, 100, len(PAYLOAD)])
def test_truncated_payload_is_truncated_package(cut: int) -> None:
    key = new_key()
    pkg = build(PAYLOAD, key)
    with pytest.raises(TruncatedPackage):
        verify_bytes(pkg[:-cut], trust_for(key))


@pytest.mark.parametrize("keep", [0, 1, 2, 3, 10, 100])
def test_file_truncated_inside_the_envelope_is_truncated_package(keep: int) -> None:
    key = new_key()
    pkg = build(PAYLOAD, key)
    with pytest.raises(TruncatedPackage):
        verify_bytes(pkg[:keep], trust_for(key))


def test_trailing_bytes_after_the_payload_are_a_size_mismatch() -> None:
    key = new_key()
    with pytest.raises(SizeMismatch) as exc:
        verify_bytes(build(PAYLOAD, key) + b"x", trust_for(key))
    assert not isinstance(exc.value, TruncatedPackage)


class CountingStream(io.RawIOBase):
    """An endless stream that counts what was read from it."""

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        n = len(buf)
        data = (self.head[self.read_bytes : self.read_bytes + n]).ljust(n, b"\0")
        buf[:n] = data
        self.read_bytes += n
        return n


def test_ten_megabyte_manifest_fails_fast_without_being_read() -> None:
    key = new_key()
    header = (
        ENVELOPE_PREFIX
        + b"\x02\x44"
        + b"\x82\x40\x40\x40"  # a 4-byte authentication wrapper
        + b"\x03"
        + b"\x5a"
        + (10 * 1024 * 1024).to_bytes(4, "big")
    )
    stream = CountingStream(header)
    with pytest.raises(ManifestTooLarge) as exc:
        verify_package(stream, trust_for(key))  # type: ignore[arg-type]
    assert stream.read_bytes < 1024
    assert exc.value.update_result == UpdateResult.INTEGRITY_CHECK_FAILURE


def test_ten_megabyte_manifest_in_a_real_package_is_manifest_too_large() -> None:
    key = new_key()
    big_manifest = cbor2.dumps({1: 1, 2: 1, -3: "x" * (10 * 1024 * 1024)})
    pkg = sign_raw(big_manifest, key) + PAYLOAD
    with pytest.raises(ManifestTooLarge):
        verify_bytes(pkg, trust_for(key))
    with pytest.raises(ManifestTooLarge):
        inspect_package(io.BytesIO(pkg))


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x00",
        b"garbage, not CBOR at all" * 10,
        bytes(range(256)),
        cbor2.dumps({"firmware": "yes"}),
        cbor2.dumps(cbor2.CBORTag(18, [b"", {}, None, b""])),
    ],
)
def test_garbage_without_the_envelope_tag_is_unsupported_format_or_truncated(
    garbage: bytes,
) -> None:
    key = new_key()
    with pytest.raises((UnsupportedFormat, TruncatedPackage)) as exc:
        verify_bytes(garbage, trust_for(key))
    if garbage:
        assert isinstance(exc.value, UnsupportedFormat)
        assert exc.value.update_result == UpdateResult.UNSUPPORTED_PACKAGE_TYPE


@pytest.mark.parametrize(
    "envelope",
    [
        ENVELOPE_PREFIX + b"\x02\x43\xff\xff\xff\x03\x41\x00",  # auth is not CBOR
        ENVELOPE_PREFIX + b"\x02\x41\x80\x03\x41\x00",  # empty auth array
        ENVELOPE_PREFIX + b"\x03\x41\x00\x02\x41\x00",  # members out of order
        ENVELOPE_PREFIX + b"\x02\x61\x00\x03\x41\x00",  # auth is a tstr
        b"\xd8\x6b\x82\x02\x03",  # an array, not a map
        ENVELOPE_PREFIX + b"\x02\x5f\x41\x00\xff\x03\x41\x00",  # indefinite bstr
    ],
)
def test_garbage_inside_a_tagged_envelope_is_malformed(envelope: bytes) -> None:
    key = new_key()
    with pytest.raises(MalformedPackage) as exc:
        verify_bytes(envelope, trust_for(key))
    assert exc.value.update_result == UpdateResult.INTEGRITY_CHECK_FAILURE


def test_suit_envelope_with_more_members_is_unsupported_format() -> None:
    # e.g. an envelope with an integrated payload or severed text from another SUIT tool
    envelope = b"\xd8\x6b\xa3\x02\x41\x00\x03\x41\x00\x17\x41\x00"
    with pytest.raises(UnsupportedFormat) as exc:
        verify_bytes(envelope, trust_for(new_key()))
    assert exc.value.update_result == UpdateResult.UNSUPPORTED_PACKAGE_TYPE


def test_signed_garbage_manifest_is_malformed() -> None:
    key = new_key()
    pkg = sign_raw(b"\xff\x00 this is not a manifest", key)
    with pytest.raises(MalformedPackage):
        verify_bytes(pkg, trust_for(key))


def test_manifest_kid_must_match_the_signature_kid() -> None:
    key = new_key()
    m = manifest_for(PAYLOAD, key, kid=b"someone else")
    with pytest.raises(MalformedPackage, match="kid"):
        verify_bytes(signed(m, key) + PAYLOAD, trust_for(key))


def test_unknown_cose_algorithm_is_unsupported_algorithm() -> None:
    key = new_key()
    pkg = build(PAYLOAD, key)
    # Protected header {1: -8, 4: kid} is encoded as a2 01 27 04 50 <kid>; make alg -35.
    tampered = pkg.replace(b"\xa2\x01\x27\x04\x50", b"\xa2\x01\x26\x04\x50", 1)  # alg -7
    assert tampered != pkg
    store = trust_for(key)
    with pytest.raises(SignatureInvalid):  # ES256 header but an Ed25519 anchor
        verify_bytes(tampered, store)
    tampered = pkg.replace(b"\xa2\x01\x27\x04\x50", b"\xa2\x01\x24\x04\x50", 1)  # alg -5
    with pytest.raises(UnsupportedAlgorithm) as exc:
        verify_bytes(tampered, store)
    assert exc.value.update_result == UpdateResult.UNSUPPORTED_PACKAGE_TYPE


def test_unknown_manifest_member_is_unsupported_format() -> None:
    key = new_key()
    m = manifest_for(PAYLOAD, key)
    raw = cbor2.loads(encode_manifest(m))
    raw[99] = b"future feature"
    with pytest.raises(UnsupportedFormat):
        verify_bytes(sign_raw(cbor2.dumps(raw, canonical=True), key) + PAYLOAD, trust_for(key))


def test_every_error_class_has_a_distinct_code_and_an_update_result() -> None:
    from fotakit.packages.errors import ALL_ERRORS

    codes = [e.code for e in ALL_ERRORS]
    assert len(set(codes)) == len(codes)
    for err in ALL_ERRORS:
        assert issubclass(err, PackageError)
        assert err.update_result in (
            UpdateResult.INTEGRITY_CHECK_FAILURE,
            UpdateResult.UNSUPPORTED_PACKAGE_TYPE,
        )


def test_replace_on_manifest_rejects_invalid_fields() -> None:
    key = new_key()
    m = manifest_for(PAYLOAD, key)
    with pytest.raises(MalformedPackage):
        replace(m, payload_digest=b"short")
    with pytest.raises(MalformedPackage):
        replace(m, sequence=-1)
