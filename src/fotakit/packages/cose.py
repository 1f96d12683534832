"""COSE_Sign1 with a detached payload, as SUIT's authentication block uses it.

RFC 9052 §4.2 (COSE_Sign1), §4.4 (Sig_structure); algorithms from RFC 9053 §2.1 (ES256,
signature = raw ``r || s``, not DER) and §2.2 (EdDSA with Ed25519). The payload field is
``nil``: the signed bytes are the bstr-wrapped SUIT_Digest of the manifest
(draft-ietf-suit-manifest §8.3). Only ``cryptography`` + ``cbor2``, so a device can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from fotakit.packages._cbor import loads_item
from fotakit.packages.errors import MalformedPackage, SignatureInvalid, UnsupportedAlgorithm

COSE_SIGN1_TAG: Final = 18
ALG_EDDSA: Final = -8
ALG_ES256: Final = -7
HEADER_ALG: Final = 1
HEADER_CRIT: Final = 2
HEADER_KID: Final = 4
ALGORITHM_NAMES: Final[Mapping[int, str]] = {ALG_EDDSA: "EdDSA (Ed25519)", ALG_ES256: "ES256"}
_P256_COORD: Final = 32
MAX_KID_LEN: Final = 64

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def algorithm_for(key: PrivateKey | PublicKey) -> int:
    """The COSE algorithm of a supported key; P-256 only for ECDSA."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return ALG_EDDSA
    if isinstance(key.curve, ec.SECP256R1):
        return ALG_ES256
    raise UnsupportedAlgorithm(f"ECDSA curve {key.curve.name} is not supported (P-256 only)")


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


@dataclass(frozen=True)
class Sign1:
    """A decoded COSE_Sign1 block (payload detached)."""

    protected: bytes
    algorithm: int
    kid: bytes
    signature: bytes


def sign_detached(key: PrivateKey, kid: bytes, payload: bytes) -> bytes:
    """A tagged COSE_Sign1 (canonical CBOR) over ``payload``, which is left out (nil)."""
    alg = algorithm_for(key)
    protected = cbor2.dumps({HEADER_ALG: alg, HEADER_KID: kid}, canonical=True)
    to_sign = _sig_structure(protected, payload)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(to_sign)
    else:
        r, s = decode_dss_signature(key.sign(to_sign, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(_P256_COORD, "big") + s.to_bytes(_P256_COORD, "big")
    return cbor2.dumps(
        cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, None, signature]), canonical=True
    )


def decode_sign1(item: object) -> Sign1:
    """Check the shape of a decoded COSE_Sign1_Tagged and pull out alg and kid."""
    if not isinstance(item, cbor2.CBORTag) or item.tag != COSE_SIGN1_TAG:
        raise MalformedPackage("authentication block is not a COSE_Sign1 (tag 18)")
    value = item.value
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise MalformedPackage("COSE_Sign1 must be an array of 4 elements")
    protected, unprotected, payload, signature = value
    if not isinstance(protected, bytes) or not isinstance(signature, bytes):
        raise MalformedPackage("COSE_Sign1 protected header and signature must be bstr")
    if not isinstance(unprotected, Mapping):
        raise MalformedPackage("COSE_Sign1 unprotected header must be a map")
    if payload is not None:
        raise MalformedPackage("COSE_Sign1 payload must be detached (nil)")
    header = loads_item(protected, "COSE protected header")
    if not isinstance(header, Mapping):
        raise MalformedPackage("COSE protected header must be a map")
    if HEADER_CRIT in header:
        # RFC 9052 §3.1: a recipient must reject labels it does not understand in crit.
        raise UnsupportedAlgorithm("COSE 'crit' header parameters are not supported")
    alg = header.get(HEADER_ALG)
    kid = header.get(HEADER_KID)
    if type(alg) is not int:
        raise MalformedPackage("COSE protected header has no integer 'alg'")
    if alg not in ALGORITHM_NAMES:
        raise UnsupportedAlgorithm(f"COSE algorithm {alg} is not supported (EdDSA -8, ES256 -7)")
    if HEADER_KID not in header:
        raise MalformedPackage("COSE protected header has no 'kid'")
    if not isinstance(kid, bytes) or not 1 <= len(kid) <= MAX_KID_LEN:
        raise MalformedPackage("COSE 'kid' must be a bstr of 1..64 bytes")
    return Sign1(protected=protected, algorithm=alg, kid=kid, signature=signature)


def verify_detached(block: Sign1, key: PublicKey, payload: bytes) -> None:
    """Raise SignatureInvalid unless ``block`` signs ``payload`` with ``key``."""
    try:
        key_alg = algorithm_for(key)
    except UnsupportedAlgorithm as exc:
        raise SignatureInvalid(f"trust anchor is not usable: {exc}") from exc
    if key_alg != block.algorithm:
        raise SignatureInvalid(
            f"package is signed with {ALGORITHM_NAMES[block.algorithm]} but the trust anchor "
            f"for kid {block.kid.hex()} is a {ALGORITHM_NAMES[key_alg]} key"
        )
    to_verify = _sig_structure(block.protected, payload)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(block.signature, to_verify)
        else:
            if len(block.signature) != 2 * _P256_COORD:
                raise InvalidSignature
            r = int.from_bytes(block.signature[:_P256_COORD], "big")
            s = int.from_bytes(block.signature[_P256_COORD:], "big")
            key.verify(encode_dss_signature(r, s), to_verify, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError) as exc:
        raise SignatureInvalid(
            f"COSE_Sign1 signature does not verify with the key for kid {block.kid.hex()}"
        ) from exc
