"""Our COSE_Sign1 checked by an independent implementation (cwt, in its own venv).

cwt 3.3.0 needs cbor2 < 6, fotakit uses cbor2 6, so the peer runs as a subprocess with
/work/main/.venv-cose/bin/python (``make peers`` builds it from cose_peer/requirements.txt).
Skipped when that venv is missing, unless FOTAKIT_REQUIRE_INTEROP=1.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from package_helpers import build, manifest_for, new_key, signed

from fotakit.packages import key_id, write_key_pair

REPO = Path(__file__).resolve().parents[2]
PEER_PYTHON = REPO / ".venv-cose" / "bin" / "python"
PEER_SCRIPT = Path(__file__).with_name("cose_peer") / "verify_cose.py"
PAYLOAD = os.urandom(5000)

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def peer() -> Path:
    if not PEER_PYTHON.exists():
        if os.environ.get("FOTAKIT_REQUIRE_INTEROP") == "1":
            pytest.fail(f"{PEER_PYTHON} missing and FOTAKIT_REQUIRE_INTEROP=1 (run `make peers`)")
        pytest.skip(f"cwt peer venv {PEER_PYTHON} missing (run `make peers`)")
    return PEER_PYTHON


def run_peer(peer: Path, package: Path, public_key: Path) -> tuple[int, dict[str, object]]:
    proc = subprocess.run(
        [str(peer), str(PEER_SCRIPT), str(package), str(public_key)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_cwt_verifies_our_signature_and_digests(peer: Path, tmp_path: Path, alg: str) -> None:
    key = new_key(alg)
    _, public = write_key_pair(key, tmp_path, "signer")
    package = tmp_path / "fw.suit"
    package.write_bytes(build(PAYLOAD, key, sequence=77))
    code, result = run_peer(peer, package, public)
    assert code == 0, result
    assert result["signature"] is True
    assert result["manifest_digest"] is True
    assert result["payload"] is True
    assert result["kid"] == key_id(key).hex()
    assert result["alg"] == (-8 if alg == "ed25519" else -7)
    assert result["sequence"] == 77


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_cwt_rejects_a_tampered_signature(peer: Path, tmp_path: Path, alg: str) -> None:
    key = new_key(alg)
    _, public = write_key_pair(key, tmp_path, "signer")
    pkg = bytearray(build(PAYLOAD, key))
    sig_at = bytes(pkg).find(b"\x58\x40") + 2  # the 64-byte signature bstr
    pkg[sig_at + 10] ^= 0x04
    package = tmp_path / "bad.suit"
    package.write_bytes(bytes(pkg))
    code, result = run_peer(peer, package, public)
    assert code == 1
    assert result["signature"] is False


def test_cwt_rejects_a_signature_by_another_key(peer: Path, tmp_path: Path) -> None:
    key, other = new_key(), new_key()
    _, public = write_key_pair(key, tmp_path, "signer")
    package = tmp_path / "forged.suit"
    package.write_bytes(signed(manifest_for(PAYLOAD, key), other, kid=key_id(key)) + PAYLOAD)
    code, result = run_peer(peer, package, public)
    assert code == 1
    assert result["signature"] is False


def test_peer_uses_its_own_cbor2_and_cwt(peer: Path) -> None:
    code = "from importlib.metadata import version; print(version('cbor2'), version('cwt'))"
    out = subprocess.run(
        [str(peer), "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    peer_cbor2, peer_cwt = out.stdout.split()
    assert peer_cwt == "3.3.0"
    assert int(peer_cbor2.split(".")[0]) < 6  # not the cbor2 6 fotakit encodes with
