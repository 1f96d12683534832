"""Shared builders for the package tests: keys, trust stores, packages, re-signing."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from fotakit.packages import (
    DeviceIdentity,
    Manifest,
    PrivateKey,
    TrustStore,
    build_package_in_memory,
    encode_manifest,
    generate_key,
    key_id,
    make_manifest,
)
from fotakit.packages.envelope import build_envelope

VENDOR = "example.com"
CLASS = "board-x"
IDENTITY = DeviceIdentity.from_names(VENDOR, CLASS)


def trust_for(*keys: PrivateKey) -> TrustStore:
    store = TrustStore()
    for key in keys:
        store.add(None, key.public_key())
    return store


def build(
    payload: bytes,
    key: PrivateKey,
    *,
    sequence: int = 10,
    version: str = "1.0.0",
    vendor: str = VENDOR,
    class_name: str = CLASS,
    component: str | None = None,
    base_digest: bytes | None = None,
) -> bytes:
    return build_package_in_memory(
        payload,
        version=version,
        vendor_domain=vendor,
        class_name=class_name,
        sequence=sequence,
        key=key,
        component=component,
        base_digest=base_digest,
    )


def manifest_for(payload: bytes, key: PrivateKey, **overrides: object) -> Manifest:
    m = make_manifest(
        payload_digest=hashlib.sha256(payload).digest(),
        payload_size=len(payload),
        version="1.0.0",
        vendor_domain=VENDOR,
        class_name=CLASS,
        sequence=10,
        key=key,
    )
    return replace(m, **overrides)  # type: ignore[arg-type]


def sign_raw(manifest_bytes: bytes, key: PrivateKey, kid: bytes | None = None) -> bytes:
    """An envelope over arbitrary manifest bytes, signed by ``key`` under ``kid``."""
    return build_envelope(manifest_bytes, [(key, key_id(key) if kid is None else kid)])


def signed(manifest: Manifest, key: PrivateKey, kid: bytes | None = None) -> bytes:
    return sign_raw(encode_manifest(manifest), key, kid)


def new_key(alg: str = "ed25519") -> PrivateKey:
    return generate_key(alg)  # type: ignore[arg-type]
