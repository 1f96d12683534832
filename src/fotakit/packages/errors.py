"""Typed failures of package parsing and verification, each mapped to an Object 5 result.

A device reports a rejected package through /5/0/5 Update Result (OMA TS Core 1.2,
Appendix E.6): 5 "Integrity check failure" when the bytes are not what the signer made,
6 "Unsupported package type" when the package is authentic-looking but not for this device
or not in a form it understands. Every failure is its own class so that callers (the
device agent, the repository's upload check, the CLI) can tell them apart, and each carries
the result code the agent writes to /5/0/5.
"""

from __future__ import annotations

from typing import ClassVar

from fotakit.lwm2m.objects.firmware import UpdateResult


class PackageError(Exception):
    """Base of every package failure; ``update_result`` is the /5/0/5 value to report."""

    update_result: ClassVar[UpdateResult] = UpdateResult.INTEGRITY_CHECK_FAILURE
    #: Short stable name used in CLI messages and logs (e.g. ``"signature-invalid"``).
    code: ClassVar[str] = "package-error"


# --- 5: integrity -------------------------------------------------------------------------


class MalformedPackage(PackageError):
    """The envelope or manifest is not well-formed CBOR of the expected shape (garbage)."""

    code = "malformed"


class ManifestTooLarge(PackageError):
    """The envelope declares more bytes than the size cap; rejected before reading them."""

    code = "manifest-too-large"


class UnknownKey(PackageError):
    """No trust anchor has the key id the package was signed with."""

    code = "unknown-key"


class SignatureInvalid(PackageError):
    """The COSE_Sign1 signature does not verify with the trust anchor for its key id."""

    code = "signature-invalid"


class ManifestDigestMismatch(PackageError):
    """The manifest bytes do not hash to the SUIT_Digest in the authentication wrapper."""

    code = "manifest-digest-mismatch"


class DigestMismatch(PackageError):
    """The payload does not hash to the signed image digest."""

    code = "digest-mismatch"


class SizeMismatch(PackageError):
    """The payload is longer than the signed image size (trailing bytes)."""

    code = "size-mismatch"


class TruncatedPackage(SizeMismatch):
    """The file or stream ended before the envelope or the signed payload size was reached."""

    code = "truncated"


# --- 6: unsupported package type ----------------------------------------------------------


class UnsupportedFormat(PackageError):
    """Not a SUIT-profile envelope (no tag 107), or a manifest feature this reader lacks."""

    update_result = UpdateResult.UNSUPPORTED_PACKAGE_TYPE
    code = "unsupported-format"


class UnsupportedAlgorithm(PackageError):
    """A COSE signature or SUIT digest algorithm other than EdDSA, ES256 and SHA-256."""

    update_result = UpdateResult.UNSUPPORTED_PACKAGE_TYPE
    code = "unsupported-algorithm"


class WrongVendor(PackageError):
    """The signed vendor ID is not this device's."""

    update_result = UpdateResult.UNSUPPORTED_PACKAGE_TYPE
    code = "wrong-vendor"


class WrongClass(PackageError):
    """The signed class ID is not this device's."""

    update_result = UpdateResult.UNSUPPORTED_PACKAGE_TYPE
    code = "wrong-class"


class RollbackRejected(PackageError):
    """The signed sequence number is lower than the device's current one.

    Reported as 6: the package is refused while downloading, and the Object 5 state machine
    only allows results 2-7 and 9 on the Downloading -> Idle transition (8 belongs to a
    failed Update execution).
    """

    update_result = UpdateResult.UNSUPPORTED_PACKAGE_TYPE
    code = "rollback"


ALL_ERRORS: tuple[type[PackageError], ...] = (
    MalformedPackage,
    ManifestTooLarge,
    UnknownKey,
    SignatureInvalid,
    ManifestDigestMismatch,
    DigestMismatch,
    SizeMismatch,
    TruncatedPackage,
    UnsupportedFormat,
    UnsupportedAlgorithm,
    WrongVendor,
    WrongClass,
    RollbackRejected,
)
