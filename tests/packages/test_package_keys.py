"""Keys: generation, kid derivation, 0600 private key files, the trust store."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from package_helpers import build, new_key

from fotakit.packages import (
    KeyFileError,
    TrustDirectory,
    TrustStore,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    verify_bytes,
    write_key_pair,
)


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_kid_is_the_sha256_prefix_of_the_der_public_key(alg: str) -> None:
    key = new_key(alg)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key_id(key) == key_id(key.public_key()) == hashlib.sha256(der).digest()[:16]


def test_distinct_keys_have_distinct_kids() -> None:
    assert len({key_id(generate_key()) for _ in range(20)}) == 20


def test_unknown_algorithm_name_is_rejected() -> None:
    with pytest.raises(ValueError):
        generate_key("rsa")  # type: ignore[arg-type]


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_key_pair_files_round_trip_and_private_key_is_0600(tmp_path: Path, alg: str) -> None:
    old = os.umask(0o022)
    try:
        key = new_key(alg)
        priv, pub = write_key_pair(key, tmp_path / "keys", "signer")
    finally:
        os.umask(old)
    assert priv.name == "signer.pem" and pub.name == "signer.pub.pem"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    assert key_id(load_private_key(priv)) == key_id(key)
    assert key_id(load_public_key(pub)) == key_id(key)
    # no temporary files left behind
    assert {p.name for p in (tmp_path / "keys").iterdir()} == {"signer.pem", "signer.pub.pem"}


def test_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    first = new_key()
    priv, _ = write_key_pair(first, tmp_path, "signer")
    before = priv.read_bytes()
    with pytest.raises(KeyFileError, match="exists"):
        write_key_pair(new_key(), tmp_path, "signer")
    assert priv.read_bytes() == before
    assert {p.name for p in tmp_path.iterdir()} == {"signer.pem", "signer.pub.pem"}


@pytest.mark.parametrize("name", ["", "../evil", ".hidden", "a/b"])
def test_bad_key_names_are_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(KeyFileError):
        write_key_pair(new_key(), tmp_path, name)


def test_loading_garbage_or_the_wrong_kind_of_key_is_a_key_file_error(tmp_path: Path) -> None:
    priv, pub = write_key_pair(new_key(), tmp_path, "k")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    for bad, loader in (
        (pub, load_private_key),
        (priv, load_public_key),
        (garbage, load_public_key),
    ):
        with pytest.raises(KeyFileError):
            loader(bad)
    with pytest.raises(KeyFileError):
        load_public_key(tmp_path / "missing.pem")


def test_unsupported_curve_is_rejected(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    p384 = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "p384.pub.pem"
    path.write_bytes(
        p384.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyFileError, match="unsupported"):
        load_public_key(path)


def test_trust_store_from_directory_loads_public_keys_and_skips_private_ones(
    tmp_path: Path,
) -> None:
    a, b = new_key("ed25519"), new_key("p256")
    write_key_pair(a, tmp_path, "a")
    write_key_pair(b, tmp_path, "b")
    store = TrustStore.from_directory(tmp_path)
    assert set(store) == {key_id(a), key_id(b)}
    for key in (a, b):
        verify_bytes(build(b"fw", key), store)


def test_trust_store_from_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no PEM public keys"):
        TrustStore.from_directory(tmp_path)


def test_trust_directory_rereads_keys_added_or_removed_after_it_was_opened(
    tmp_path: Path,
) -> None:
    store = TrustDirectory(tmp_path)  # empty is allowed: nothing trusted yet
    assert len(store) == 0
    a, b = new_key("ed25519"), new_key("p256")
    package = build(b"fw", a)
    write_key_pair(a, tmp_path, "a")  # the private half lands there too: skipped
    verify_bytes(package, store)  # no reopening: the lookup saw the new file
    assert set(store) == {key_id(a)}
    (tmp_path / "broken.pem").write_text("-----BEGIN PUBLIC KEY-----\nnot base64\n")
    write_key_pair(b, tmp_path, "b")
    assert set(store) == {key_id(a), key_id(b)}
    assert set(store.skipped) == {"broken.pem"}
    (tmp_path / "a.pub.pem").unlink()
    assert key_id(a) not in store


def test_trust_store_from_path_accepts_a_single_pem(tmp_path: Path) -> None:
    key = new_key()
    _, pub = write_key_pair(key, tmp_path, "k")
    assert list(TrustStore.from_path(pub)) == [key_id(key)]
    assert list(TrustStore.from_pem_files([pub])) == [key_id(key)]


def test_trust_store_add_with_an_explicit_kid() -> None:
    key = new_key()
    store = TrustStore()
    assert store.add(b"legacy-kid", key.public_key()) == b"legacy-kid"
    assert b"legacy-kid" in store and len(store) == 1
