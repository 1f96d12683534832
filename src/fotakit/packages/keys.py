"""Signing keys, key ids and the device's trust store.

Keys are Ed25519 (COSE EdDSA, required) or ECDSA P-256 (COSE ES256). The key id (``kid``,
COSE header 4) is the first 16 bytes of SHA-256 over the public key's DER
SubjectPublicKeyInfo — the same material MCUboot's KEYHASH TLV hashes — so anyone holding
the public key can recompute it. Private keys are written once, 0600 from creation (never
chmod'ed afterwards), through a temporary file hard-linked into place so that a crash
never leaves a half-written key and an existing key is never overwritten. Nothing here
logs or prints key material.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from fotakit.packages.cose import PrivateKey, PublicKey

KID_LENGTH: Final = 16
KeyAlgorithm = Literal["ed25519", "p256"]
KEY_ALGORITHMS: Final[tuple[KeyAlgorithm, ...]] = ("ed25519", "p256")
PUBLIC_SUFFIX: Final = ".pub.pem"
PRIVATE_SUFFIX: Final = ".pem"
_MAX_PEM_SIZE: Final = 16 * 1024
_PUBLIC_PEM_MARKER: Final = b"-----BEGIN PUBLIC KEY-----"


class KeyFileError(Exception):
    """A key file is missing, unreadable, of an unsupported type, or already exists."""


def generate_key(alg: KeyAlgorithm = "ed25519") -> PrivateKey:
    """A fresh private key: Ed25519 or ECDSA P-256."""
    if alg == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key algorithm {alg!r} (ed25519 or p256)")


def key_id(key: PublicKey | PrivateKey) -> bytes:
    """``SHA-256(DER SubjectPublicKeyInfo)[:16]`` of the (public half of the) key."""
    public = (
        key.public_key()
        if isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
        else key
    )
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()[:KID_LENGTH]


def _check_supported(key: object, path: Path) -> None:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return
    raise KeyFileError(f"{path}: unsupported key type (Ed25519 or ECDSA P-256 only)")


def _read_pem(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_PEM_SIZE + 1)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > _MAX_PEM_SIZE:
        raise KeyFileError(f"{path}: too large for a PEM key file")
    return data


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    """A PEM (PKCS#8, unencrypted) Ed25519 or P-256 private key."""
    p = Path(path)
    data = _read_pem(p)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # The message of cryptography's error never contains key bytes, but keep ours fixed.
        raise KeyFileError(f"{p}: not an unencrypted PEM private key") from exc
    _check_supported(key, p)
    assert isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
    return key


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """A PEM SubjectPublicKeyInfo Ed25519 or P-256 public key."""
    p = Path(path)
    data = _read_pem(p)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{p}: not a PEM public key") from exc
    _check_supported(key, p)
    assert isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey)
    return key


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``data``; fail if it exists; never visible half-written."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # link() refuses an existing target, unlike rename(): an old key is never replaced.
        os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_key_pair(
    key: PrivateKey, directory: str | os.PathLike[str], name: str
) -> tuple[Path, Path]:
    """Write ``name.pem`` (0600) and ``name.pub.pem`` (0644) into ``directory``.

    Returns (private path, public path). Raises KeyFileError if either exists.
    """
    if not name or "/" in name or name.startswith(".") or "\x00" in name:
        raise KeyFileError(f"invalid key name {name!r}")
    d = Path(directory)
    private_path = d / f"{name}{PRIVATE_SUFFIX}"
    public_path = d / f"{name}{PUBLIC_SUFFIX}"
    for p in (private_path, public_path):
        if p.exists():
            raise KeyFileError(f"{p} already exists; refusing to overwrite a key")
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        d.mkdir(parents=True, exist_ok=True)
        _write_new_file(private_path, private_pem, 0o600)
        try:
            _write_new_file(public_path, public_pem, 0o644)
        except BaseException:
            private_path.unlink(missing_ok=True)
            raise
    except FileExistsError as exc:
        raise KeyFileError(f"{exc.filename} already exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot write the key pair into {d}: {exc.strerror or exc}") from exc
    return private_path, public_path


class TrustStore:
    """Trust anchors by key id: the public keys a device accepts package signatures from."""

    def __init__(self) -> None:
        self._keys: dict[bytes, PublicKey] = {}

    def add(self, kid: bytes | None, public_key: PublicKey) -> bytes:
        """Trust ``public_key`` under ``kid`` (default: its derived key id); returns the kid."""
        kid = key_id(public_key) if kid is None else bytes(kid)
        if not kid:
            raise ValueError("kid must not be empty")
        self._keys[kid] = public_key
        return kid

    def get(self, kid: bytes) -> PublicKey | None:
        return self._keys.get(kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._keys)

    @classmethod
    def from_pem_files(cls, paths: Iterable[str | os.PathLike[str]]) -> TrustStore:
        """Public keys from PEM files, each under its derived key id."""
        store = cls()
        for path in paths:
            store.add(None, load_public_key(path))
        return store

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str]) -> TrustStore:
        """Every PEM *public* key (``*.pem``) in a directory; private keys there are skipped."""
        d = Path(path)
        if not d.is_dir():
            raise KeyFileError(f"{d}: not a directory")
        store = cls()
        for pem in sorted(d.glob("*.pem")):
            if pem.is_file() and _PUBLIC_PEM_MARKER in _read_pem(pem):
                store.add(None, load_public_key(pem))
        if not store:
            raise KeyFileError(f"{d}: no PEM public keys found")
        return store

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> TrustStore:
        """A directory of public keys or a single public key PEM file."""
        p = Path(path)
        return cls.from_directory(p) if p.is_dir() else cls.from_pem_files([p])


class TrustDirectory(TrustStore):
    """The public keys (``*.pem``) of a directory, re-read whenever its listing changed.

    A server's trust directory is filled by the operator while the server runs
    (docs/operator-guide.md, "Your first campaign"): each lookup compares the directory's
    listing (names, sizes, modification times) with the one last read, and re-reads every
    key when it differs — a ``stat`` per file, no reading, when nothing changed. The
    directory may be empty (nothing is trusted yet). A file that does not load (a private
    key, a half-copied PEM) is skipped and named in :attr:`skipped`; an unchanged listing is
    not retried.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_dir():
            raise KeyFileError(f"{self.path}: not a directory")
        self.skipped: dict[str, str] = {}
        """File name -> why it was not loaded (at the last re-read)."""
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self._lock = threading.Lock()  # uploads verify in worker threads
        self.refresh()

    def _listing(self) -> tuple[tuple[str, int, int], ...]:
        found: list[tuple[str, int, int]] = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.path):
                if entry.name.endswith(".pem") and entry.is_file():
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat()
                        found.append((entry.name, st.st_size, st.st_mtime_ns))
        return tuple(sorted(found))

    def refresh(self) -> bool:
        """Re-read the keys if the listing changed since the last read; whether it did."""
        with self._lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> bool:
        listing = self._listing()
        if listing == self._seen:
            return False
        keys: dict[bytes, PublicKey] = {}
        skipped: dict[str, str] = {}
        for name, _, _ in listing:
            pem = self.path / name
            try:
                if _PUBLIC_PEM_MARKER not in _read_pem(pem):
                    continue  # a private key next to its public half: not an anchor
                public = load_public_key(pem)
            except (KeyFileError, OSError, ValueError) as exc:
                skipped[name] = str(exc)
                continue
            keys[key_id(public)] = public
        self._keys, self.skipped, self._seen = keys, skipped, listing
        return True

    def get(self, kid: bytes) -> PublicKey | None:
        self.refresh()
        return super().get(kid)

    def __contains__(self, kid: object) -> bool:
        self.refresh()
        return super().__contains__(kid)

    def __len__(self) -> int:
        self.refresh()
        return super().__len__()

    def __iter__(self) -> Iterator[bytes]:
        self.refresh()
        return iter(list(self._keys))
