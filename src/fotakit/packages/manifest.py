"""The signed manifest: a SUIT_Manifest (draft-ietf-suit-manifest-37 key numbers).

What fotakit signs for one firmware image, and its canonical CBOR form (RFC 8949 §4.2.1
deterministic encoding, so the manifest digest is stable). Layout, key numbers and the
custom (negative) keys are in docs/package-format.md:

    { 1: 1, 2: sequence, 3: << common >>, 20: << install >>,
      -1: << [-16, base digest] >>?, -3: version, -4: kid }
    common = { 2: [ component-id ], 4: << [20, {1: VID, 2: CID, 3: << [-16, digest] >>,
                                               14: size}, 1, 15, 2, 15] >> }
    install = [21, 2, 3, 15]   ; fetch, then image-match

Vendor and class IDs are UUID5 as SUIT §8.4.8.1 constructs them:
VID = uuid5(NAMESPACE_DNS, vendor domain), CID = uuid5(VID, class name).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

import cbor2

from fotakit.packages._cbor import as_array, as_map, as_uint, loads_item
from fotakit.packages.errors import MalformedPackage, UnsupportedAlgorithm, UnsupportedFormat

# SUIT_Manifest keys (-37)
MANIFEST_VERSION_KEY: Final = 1
SEQUENCE_KEY: Final = 2
COMMON_KEY: Final = 3
INSTALL_KEY: Final = 20
# fotakit's custom manifest members (negative keys, $$SUIT_Manifest_Extensions)
BASE_DIGEST_KEY: Final = -1  # precursor image digest (RFC 9124), for delta payloads
VERSION_TEXT_KEY: Final = -3
KID_KEY: Final = -4
# SUIT_Common
COMPONENTS_KEY: Final = 2
COMMON_SEQUENCE_KEY: Final = 4
# Commands
COND_VENDOR: Final = 1
COND_CLASS: Final = 2
COND_IMAGE_MATCH: Final = 3
COND_DEVICE: Final = 24
DIR_SET_PARAMETERS: Final = 19
DIR_OVERRIDE_PARAMETERS: Final = 20
DIR_FETCH: Final = 21
_CONDITIONS: Final = frozenset({COND_VENDOR, COND_CLASS, COND_IMAGE_MATCH, COND_DEVICE})
_DIRECTIVES: Final = frozenset({DIR_SET_PARAMETERS, DIR_OVERRIDE_PARAMETERS, DIR_FETCH})
# Parameters
P_VENDOR: Final = 1
P_CLASS: Final = 2
P_DIGEST: Final = 3
P_SIZE: Final = 14
P_URI: Final = 21
_PARAMS: Final = frozenset({P_VENDOR, P_CLASS, P_DIGEST, P_SIZE, P_URI})
# Report all: record on success and failure, sysinfo on success and failure.
REPORT_ALL: Final = 15
REPORT_FAILURE: Final = 2

SHA256_ALG: Final = -16  # COSE/SUIT algorithm id of SHA-256
SHA256_LEN: Final = 32
MAX_SEQUENCE: Final = 2**64 - 1
MAX_PAYLOAD_SIZE: Final = 2**63 - 1
MAX_TEXT: Final = 64


class InvalidVersion(ValueError):
    """A version string breaks the rule of :func:`check_version`."""


def check_version(version: object) -> str:
    """The package version rule (docs/package-format.md, "Version strings"): 1 to
    :data:`MAX_TEXT` characters, printable, no whitespace. Semver is not required (``1.4.2``,
    ``2.0.0-rc.1+build.7``, ``R2026.11`` all pass); an update succeeds when the device's
    /3/0/3 equals it exactly, so a space or a line break could never match what a device
    reports. Enforced when building and uploading; a device's reader stays liberal (1..64
    printable, :func:`decode_manifest`)."""
    if not isinstance(version, str) or not version:
        raise InvalidVersion("must be a non-empty string")
    if len(version) > MAX_TEXT:
        raise InvalidVersion(f"must be at most {MAX_TEXT} characters, got {len(version)}")
    if any(ch.isspace() for ch in version):
        raise InvalidVersion(f"must not contain whitespace: {version!r}")
    if not version.isprintable():
        raise InvalidVersion(f"must be printable characters only: {version!r}")
    return version


def vendor_id(domain: str) -> uuid.UUID:
    """SUIT vendor ID: UUID5 in the DNS namespace of the vendor's domain name."""
    return uuid.uuid5(uuid.NAMESPACE_DNS, domain)


def class_id(vendor: uuid.UUID, class_name: str) -> uuid.UUID:
    """SUIT class ID: UUID5 of the class name in the vendor ID's namespace."""
    return uuid.uuid5(vendor, class_name)


@dataclass(frozen=True)
class DeviceIdentity:
    """What a device is: the vendor ID it accepts and (optionally) its class ID."""

    vendor_id: uuid.UUID
    class_id: uuid.UUID | None = None

    @classmethod
    def from_names(cls, vendor_domain: str, class_name: str | None = None) -> DeviceIdentity:
        vid = vendor_id(vendor_domain)
        return cls(vid, class_id(vid, class_name) if class_name is not None else None)


@dataclass(frozen=True)
class Manifest:
    """The fields fotakit signs for one image."""

    sequence: int
    vendor_id: uuid.UUID
    class_id: uuid.UUID
    version: str
    payload_digest: bytes
    payload_size: int
    base_digest: bytes | None = None
    component: str | None = None
    kid: bytes = b""

    def __post_init__(self) -> None:
        _check_fields(self)


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise MalformedPackage(f"{what} must be a text string")
    if not 1 <= len(value) <= MAX_TEXT or not value.isprintable():
        raise MalformedPackage(f"{what} must be 1..{MAX_TEXT} printable characters")
    return value


def _check_fields(m: Manifest) -> None:
    if type(m.sequence) is not int or not 0 <= m.sequence <= MAX_SEQUENCE:
        raise MalformedPackage("sequence number must be an integer in 0..2^64-1")
    if type(m.payload_size) is not int or not 0 <= m.payload_size <= MAX_PAYLOAD_SIZE:
        raise MalformedPackage("payload size must be a non-negative integer")
    if not isinstance(m.vendor_id, uuid.UUID) or not isinstance(m.class_id, uuid.UUID):
        raise MalformedPackage("vendor and class IDs must be UUIDs")
    _check_text(m.version, "version")
    if m.component is not None:
        _check_text(m.component, "component name")
    for name, digest in (("payload digest", m.payload_digest), ("base digest", m.base_digest)):
        if digest is not None and (not isinstance(digest, bytes) or len(digest) != SHA256_LEN):
            raise MalformedPackage(f"{name} must be {SHA256_LEN} bytes (SHA-256)")
    if not isinstance(m.kid, bytes) or len(m.kid) > 64:
        raise MalformedPackage("kid must be at most 64 bytes")


def encode_digest(digest: bytes) -> bytes:
    """bstr .cbor SUIT_Digest for a SHA-256 digest."""
    return cbor2.dumps([SHA256_ALG, digest])


def _component_id(component: str | None) -> list[bytes]:
    return [] if component is None else [component.encode()]


def encode_manifest(m: Manifest) -> bytes:
    """The canonical CBOR of the SUIT_Manifest for ``m`` (what the signature covers)."""
    params = {
        P_VENDOR: m.vendor_id.bytes,
        P_CLASS: m.class_id.bytes,
        P_DIGEST: encode_digest(m.payload_digest),
        P_SIZE: m.payload_size,
    }
    common_sequence = [
        DIR_OVERRIDE_PARAMETERS,
        params,
        COND_VENDOR,
        REPORT_ALL,
        COND_CLASS,
        REPORT_ALL,
    ]
    common = {
        COMPONENTS_KEY: [_component_id(m.component)],
        COMMON_SEQUENCE_KEY: cbor2.dumps(common_sequence, canonical=True),
    }
    install = [DIR_FETCH, REPORT_FAILURE, COND_IMAGE_MATCH, REPORT_ALL]
    manifest: dict[int, object] = {
        MANIFEST_VERSION_KEY: 1,
        SEQUENCE_KEY: m.sequence,
        COMMON_KEY: cbor2.dumps(common, canonical=True),
        INSTALL_KEY: cbor2.dumps(install, canonical=True),
        VERSION_TEXT_KEY: m.version,
        KID_KEY: m.kid,
    }
    if m.base_digest is not None:
        manifest[BASE_DIGEST_KEY] = encode_digest(m.base_digest)
    return cbor2.dumps(manifest, canonical=True)


# --- decoding ------------------------------------------------------------------------------


def decode_digest(data: object, what: str) -> bytes:
    """The SHA-256 bytes of a bstr .cbor SUIT_Digest; other algorithms are unsupported."""
    digest = as_array(loads_item(data, what), what)
    if len(digest) < 2:
        raise MalformedPackage(f"{what} must be [algorithm, bytes]")
    alg, value = digest[0], digest[1]
    if type(alg) is not int:
        raise MalformedPackage(f"{what} algorithm must be an integer")
    if alg != SHA256_ALG:
        raise UnsupportedAlgorithm(f"{what} algorithm {alg} is not supported (SHA-256 = -16)")
    if not isinstance(value, bytes) or len(value) != SHA256_LEN:
        raise MalformedPackage(f"{what} must hold {SHA256_LEN} digest bytes")
    return value


def _commands(data: object, what: str) -> list[tuple[int, object]]:
    seq = as_array(loads_item(data, what), what)
    if not seq or len(seq) % 2:
        raise MalformedPackage(f"{what} must be a non-empty list of command/argument pairs")
    out: list[tuple[int, object]] = []
    for i in range(0, len(seq), 2):
        cmd = seq[i]
        if type(cmd) is not int:
            raise MalformedPackage(f"{what}: command codes must be integers")
        if cmd not in _CONDITIONS and cmd not in _DIRECTIVES:
            raise UnsupportedFormat(f"{what}: SUIT command {cmd} is not supported")
        out.append((cmd, seq[i + 1]))
    return out


def _uuid(value: object, what: str) -> uuid.UUID:
    if not isinstance(value, bytes) or len(value) != 16:
        raise MalformedPackage(f"{what} must be a 16-byte UUID")
    return uuid.UUID(bytes=value)


_KNOWN_KEYS: Final = frozenset(
    {MANIFEST_VERSION_KEY, SEQUENCE_KEY, COMMON_KEY, INSTALL_KEY}
    | {BASE_DIGEST_KEY, VERSION_TEXT_KEY, KID_KEY}
)


def decode_manifest(data: bytes) -> Manifest:
    """Parse manifest bytes; MalformedPackage / UnsupportedFormat / UnsupportedAlgorithm."""
    top = as_map(loads_item(data, "manifest"), "manifest")
    for key in top:
        if type(key) is not int:
            raise MalformedPackage("manifest keys must be integers")
        if key not in _KNOWN_KEYS:
            raise UnsupportedFormat(f"manifest member {key} is not supported")
    for key in (MANIFEST_VERSION_KEY, SEQUENCE_KEY, COMMON_KEY, VERSION_TEXT_KEY, KID_KEY):
        if key not in top:
            raise MalformedPackage(f"manifest member {key} is missing")
    if top[MANIFEST_VERSION_KEY] != 1 or type(top[MANIFEST_VERSION_KEY]) is not int:
        raise UnsupportedFormat("SUIT manifest version must be 1")
    sequence = as_uint(top[SEQUENCE_KEY], "sequence number", MAX_SEQUENCE)
    version = _check_text(top[VERSION_TEXT_KEY], "version")
    kid = top[KID_KEY]
    if not isinstance(kid, bytes):
        raise MalformedPackage("kid must be a bstr")
    base_digest = None
    if BASE_DIGEST_KEY in top:
        base_digest = decode_digest(top[BASE_DIGEST_KEY], "base image digest")

    common = as_map(loads_item(top[COMMON_KEY], "suit-common"), "suit-common")
    if set(common) - {COMPONENTS_KEY, COMMON_SEQUENCE_KEY}:
        raise UnsupportedFormat("suit-common has members this reader does not support")
    components = as_array(common.get(COMPONENTS_KEY), "suit-components")
    if len(components) != 1:
        raise UnsupportedFormat("exactly one component per package is supported")
    component_id = as_array(components[0], "component identifier")
    if len(component_id) > 1 or not all(isinstance(c, bytes) for c in component_id):
        raise UnsupportedFormat("component identifier must be [] or [name]")
    component: str | None = None
    if component_id:
        raw = component_id[0]
        assert isinstance(raw, bytes)
        try:
            component = _check_text(raw.decode(), "component name")
        except UnicodeDecodeError as exc:
            raise MalformedPackage("component name must be UTF-8") from exc

    params: dict[int, object] = {}
    conditions: set[int] = set()
    if COMMON_SEQUENCE_KEY not in common:
        raise MalformedPackage("suit-common has no common sequence")
    for cmd, arg in _commands(common[COMMON_SEQUENCE_KEY], "common sequence"):
        if cmd in (DIR_SET_PARAMETERS, DIR_OVERRIDE_PARAMETERS):
            for pkey, pvalue in as_map(arg, "SUIT parameters").items():
                if type(pkey) is not int or pkey not in _PARAMS:
                    raise UnsupportedFormat(f"SUIT parameter {pkey!r} is not supported")
                if cmd == DIR_OVERRIDE_PARAMETERS or pkey not in params:
                    params[pkey] = pvalue
        elif cmd in _CONDITIONS:
            conditions.add(cmd)
    if INSTALL_KEY in top:
        _commands(top[INSTALL_KEY], "install sequence")
    if not {COND_VENDOR, COND_CLASS} <= conditions:
        raise MalformedPackage("common sequence must check vendor and class identifiers")
    for pkey, name in (
        (P_VENDOR, "vendor-id"),
        (P_CLASS, "class-id"),
        (P_DIGEST, "image-digest"),
        (P_SIZE, "image-size"),
    ):
        if pkey not in params:
            raise MalformedPackage(f"SUIT parameter {name} is missing")
    return Manifest(
        sequence=sequence,
        vendor_id=_uuid(params[P_VENDOR], "vendor-id"),
        class_id=_uuid(params[P_CLASS], "class-id"),
        version=version,
        payload_digest=decode_digest(params[P_DIGEST], "image digest"),
        payload_size=as_uint(params[P_SIZE], "image size", MAX_PAYLOAD_SIZE),
        base_digest=base_digest,
        component=component,
        kid=kid,
    )
