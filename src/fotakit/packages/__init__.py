"""Signed firmware packages: a SUIT-profile envelope (COSE_Sign1) followed by the payload.

Format: docs/package-format.md (draft-ietf-suit-manifest-37 key numbers, RFC 9052 COSE).
Device-side verification needs only ``cryptography`` and ``cbor2``: nothing in this
package imports the server, the store or the CLI.

Main entry points: :func:`build_package` (signer), :func:`verify_package` /
:class:`PackageReader` / :class:`StreamingPackageVerifier` / :class:`PayloadVerifier`
(device, repository), :func:`inspect_package` (unverified look), :class:`TrustStore`.
"""

from fotakit.packages.build import (
    BuildError,
    build_package,
    build_package_in_memory,
    make_manifest,
    sign_manifest,
)
from fotakit.packages.cose import ALG_EDDSA, ALG_ES256, ALGORITHM_NAMES, PrivateKey, PublicKey
from fotakit.packages.envelope import MAX_ENVELOPE_SIZE, envelope_extent
from fotakit.packages.errors import (
    DigestMismatch,
    MalformedPackage,
    ManifestDigestMismatch,
    ManifestTooLarge,
    PackageError,
    RollbackRejected,
    SignatureInvalid,
    SizeMismatch,
    TruncatedPackage,
    UnknownKey,
    UnsupportedAlgorithm,
    UnsupportedFormat,
    WrongClass,
    WrongVendor,
)
from fotakit.packages.keys import (
    KEY_ALGORITHMS,
    KeyAlgorithm,
    KeyFileError,
    TrustDirectory,
    TrustStore,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    write_key_pair,
)
from fotakit.packages.manifest import (
    DeviceIdentity,
    Manifest,
    class_id,
    decode_manifest,
    encode_manifest,
    vendor_id,
)
from fotakit.packages.verify import (
    PackageInfo,
    PackageReader,
    PayloadVerifier,
    StreamingPackageVerifier,
    VerifiedPackage,
    check_manifest,
    inspect_package,
    verify_bytes,
    verify_package,
)

__all__ = [
    "ALGORITHM_NAMES",
    "ALG_EDDSA",
    "ALG_ES256",
    "KEY_ALGORITHMS",
    "MAX_ENVELOPE_SIZE",
    "BuildError",
    "DeviceIdentity",
    "DigestMismatch",
    "KeyAlgorithm",
    "KeyFileError",
    "MalformedPackage",
    "Manifest",
    "ManifestDigestMismatch",
    "ManifestTooLarge",
    "PackageError",
    "PackageInfo",
    "PackageReader",
    "PayloadVerifier",
    "PrivateKey",
    "PublicKey",
    "RollbackRejected",
    "SignatureInvalid",
    "SizeMismatch",
    "StreamingPackageVerifier",
    "TruncatedPackage",
    "TrustDirectory",
    "TrustStore",
    "UnknownKey",
    "UnsupportedAlgorithm",
    "UnsupportedFormat",
    "VerifiedPackage",
    "WrongClass",
    "WrongVendor",
    "build_package",
    "build_package_in_memory",
    "check_manifest",
    "class_id",
    "decode_manifest",
    "encode_manifest",
    "envelope_extent",
    "generate_key",
    "inspect_package",
    "key_id",
    "load_private_key",
    "load_public_key",
    "make_manifest",
    "sign_manifest",
    "vendor_id",
    "verify_bytes",
    "verify_package",
    "write_key_pair",
]
