"""docs/package-format.md stays true: its annotated example package is rebuilt byte for byte."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from fotakit.packages import TrustStore, build_package_in_memory, verify_bytes

DOC = Path(__file__).resolve().parents[2] / "docs" / "package-format.md"


def _example() -> tuple[bytes, ed25519.Ed25519PrivateKey]:
    seed = hashlib.sha256(b"fotakit docs example key - never use").digest()
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    package = build_package_in_memory(
        b"Hello, fotakit!\n",
        version="1.0.1",
        vendor_domain="example.com",
        class_name="board-x",
        sequence=1764201600,
        key=key,
        component="app",
    )
    return package, key


def test_documented_example_package_is_what_the_builder_produces() -> None:
    text = DOC.read_text()
    package, key = _example()
    assert hashlib.sha256(package).hexdigest() in text
    assert f"The file is {len(package)} bytes" in text
    dump = "".join(
        m.group(1).replace(" ", "")
        for m in re.finditer(r"^[0-9a-f]{8}: ((?:[0-9a-f]{2,4} ?)+)", text, re.MULTILINE)
    )
    assert bytes.fromhex(dump) == package
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public_pem.decode().strip() in text
    store = TrustStore()
    store.add(None, key.public_key())
    assert verify_bytes(package, store).manifest.version == "1.0.1"
