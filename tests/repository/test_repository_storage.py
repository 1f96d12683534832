"""Uploads: verified before visible, content-addressed and immutable, all-or-nothing."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
from pathlib import Path

import pytest
from repo_helpers import BuildFn, files_under, payload_of

from fotakit.packages import (
    PackageError,
    SignatureInvalid,
    TrustStore,
    UnknownKey,
    generate_key,
)
from fotakit.repository import (
    Form,
    Repository,
    RepositoryClosed,
    UnknownPackage,
    UploadRejected,
)
from fotakit.repository import repository as repository_module
from fotakit.repository import storage as storage_module


def test_add_stores_the_package_under_its_sha256_read_only(
    repo: Repository, repo_dir: Path, build: BuildFn
) -> None:
    data = build(payload_of(5000), version="2.1.0", sequence=7)
    record = repo.add(data)

    digest = hashlib.sha256(data).hexdigest()
    stored = repo_dir / "sha256" / digest[:2] / digest
    assert record.id == digest[:16]
    assert record.sha256 == digest
    assert (record.size, record.payload_size) == (len(data), 5000)
    assert data[record.payload_offset :] == payload_of(5000)
    assert record.payload_sha256 == hashlib.sha256(payload_of(5000)).hexdigest()
    assert (record.version, record.sequence, record.downloads) == ("2.1.0", 7, 0)
    assert stored.read_bytes() == data
    assert stat.S_IMODE(stored.stat().st_mode) & 0o222 == 0
    assert repo.blob_path(record) == stored
    assert files_under(repo_dir) == [stored]


def test_uploads_from_a_path_a_stream_and_bytes_give_the_same_record(
    repo: Repository, build: BuildFn, tmp_path: Path
) -> None:
    data = build(payload_of(3000))
    path = tmp_path / "pkg.suit"
    path.write_bytes(data)
    first = repo.add(path)
    assert repo.add(io.BytesIO(data)) == first
    assert repo.add(data) == first
    assert repo.list() == [first]


def test_ids_and_uris_are_short_and_stable(repo: Repository, build: BuildFn) -> None:
    record = repo.add(build(payload_of(100)))
    uri = record.coap_uri("fota.example.com", 5683, Form.PAYLOAD)
    assert uri == f"coap://fota.example.com:5683/fw/{record.id}/payload"
    assert record.http_uri("::1", 8080) == f"http://[::1]:8080/fw/{record.id}"
    assert len(uri.encode()) < 100  # well under the 255 bytes of /5/0/1


def test_get_list_and_delete(repo: Repository, repo_dir: Path, build: BuildFn) -> None:
    a = repo.add(build(payload_of(100, 1), version="1"))
    b = repo.add(build(payload_of(100, 2), version="2"))
    assert repo.get(b.id) == b
    assert [r.id for r in repo.list()] == [a.id, b.id]

    assert repo.delete(a.id) == a
    assert [r.id for r in repo.list()] == [b.id]
    assert not repo.blob_path(a).exists()
    assert repo.lookup(a.id) is None
    with pytest.raises(UnknownPackage):
        repo.get(a.id)
    with pytest.raises(UnknownPackage):
        repo.delete(a.id)
    assert files_under(repo_dir) == [repo.blob_path(b)]


@pytest.mark.parametrize("bad_id", ["", "nothex!", "0" * 15, "0" * 64, "../../etc/passwd"])
def test_unknown_or_malformed_ids_raise_unknown_package(repo: Repository, bad_id: str) -> None:
    with pytest.raises(UnknownPackage):
        repo.get(bad_id)
    assert repo.lookup(bad_id) is None


def test_a_deleted_package_can_be_uploaded_again(repo: Repository, build: BuildFn) -> None:
    data = build(payload_of(100))
    first = repo.add(data)
    repo.delete(first.id)
    again = repo.add(data)
    assert again.id == first.id
    assert repo.blob_path(again).read_bytes() == data


def test_tampered_package_is_rejected_and_leaves_nothing(
    repo: Repository, repo_dir: Path, build: BuildFn
) -> None:
    data = bytearray(build(payload_of(2000)))
    data[-1] ^= 0x01
    with pytest.raises(UploadRejected) as info:
        repo.add(bytes(data))
    assert isinstance(info.value.cause, PackageError)
    assert str(info.value).startswith(f"{info.value.cause.code}:")
    assert repo.list() == []
    assert files_under(repo_dir) == []


def test_a_package_signed_by_an_untrusted_key_is_rejected(
    repo: Repository, repo_dir: Path, build: BuildFn
) -> None:
    with pytest.raises(UploadRejected) as info:
        repo.add(build(payload_of(100), key=generate_key("p256")))
    assert isinstance(info.value.cause, UnknownKey)
    assert files_under(repo_dir) == []


def test_garbage_is_rejected_with_the_verifiers_error(repo: Repository, repo_dir: Path) -> None:
    for garbage in (b"", b"\x00" * 100, b"\xd8\x6b\xa0", os.urandom(5000)):
        with pytest.raises(UploadRejected) as info:
            repo.add(garbage)
        assert isinstance(info.value.cause, PackageError)
    assert repo.list() == []
    assert files_under(repo_dir) == []


def test_an_upload_over_the_size_limit_is_rejected(
    db_url: str, repo_dir: Path, trust: TrustStore, build: BuildFn
) -> None:
    with Repository(repo_dir, db_url, trust, max_package_size=1000) as repo:
        with pytest.raises(UploadRejected, match="larger than 1000 bytes"):
            repo.add(build(payload_of(2000)))
        assert repo.list() == []
    assert files_under(repo_dir) == []


def test_a_repository_without_trust_store_refuses_uploads(
    db_url: str, repo_dir: Path, build: BuildFn
) -> None:
    with Repository(repo_dir, db_url) as repo:
        with pytest.raises(UploadRejected, match="no trust store"):
            repo.add(build(payload_of(10)))
    assert files_under(repo_dir) == []


class Boom(Exception):
    pass


class _FailingStream(io.RawIOBase):
    def __init__(self, data: bytes, fail_after: int) -> None:
        self._data = io.BytesIO(data)
        self._left = fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        if self._left <= 0:
            raise Boom("connection reset while uploading")
        chunk = self._data.read(min(len(buffer), self._left))
        self._left -= len(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _fail(*_args: object, **_kwargs: object) -> None:
    raise Boom("injected")


@pytest.mark.parametrize(
    "step",
    ["read", "fsync", "verify", "chmod", "rename", "dir-fsync", "insert"],
)
def test_a_failure_at_any_step_of_an_upload_leaves_nothing_visible(
    step: str,
    repo: Repository,
    repo_dir: Path,
    build: BuildFn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = build(payload_of(200_000))
    source: object = data
    if step == "read":
        source = io.BufferedReader(_FailingStream(data, 100_000))  # type: ignore[type-var]
    elif step == "fsync":
        monkeypatch.setattr("os.fsync", _fail)  # storage calls os.fsync
    elif step == "verify":
        monkeypatch.setattr(repository_module, "verify_package", _fail)
    elif step == "chmod":
        monkeypatch.setattr("os.chmod", _fail)
    elif step == "rename":
        monkeypatch.setattr("os.replace", _fail)
    elif step == "dir-fsync":
        monkeypatch.setattr(storage_module, "_fsync_dir", _fail)
    elif step == "insert":
        monkeypatch.setattr(repository_module, "insert", _fail)

    with pytest.raises(Boom):
        repo.add(source)  # type: ignore[arg-type]

    monkeypatch.undo()
    assert repo.list() == []
    assert files_under(repo_dir) == []
    # The repository still works afterwards.
    assert repo.add(data).size == len(data)


def test_concurrent_uploads_of_the_same_file_store_it_once(
    repo: Repository, repo_dir: Path, build: BuildFn
) -> None:
    data = build(payload_of(300_000))
    results: list[object] = []
    barrier = threading.Barrier(8)

    def upload() -> None:
        barrier.wait(timeout=10)
        try:
            results.append(repo.add(data))
        except Exception as exc:  # collected, asserted below
            results.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 8
    assert all(r == results[0] for r in results), results
    assert len(repo.list()) == 1
    assert files_under(repo_dir) == [repo.blob_path(repo.list()[0])]


def test_two_repository_objects_on_one_directory_see_each_others_uploads(
    repo: Repository, repo_dir: Path, db_url: str, trust: TrustStore, build: BuildFn
) -> None:
    record = repo.add(build(payload_of(100)))
    with Repository(repo_dir, db_url, trust) as other:
        assert other.get(record.id) == record
        assert other.add(build(payload_of(100))) == record


def test_download_counters_add_up_and_survive_a_reopen(
    repo_dir: Path, db_url: str, trust: TrustStore, build: BuildFn
) -> None:
    with Repository(repo_dir, db_url, trust) as repo:
        record = repo.add(build(payload_of(100)))
        repo.count(record.id, nbytes=1024, completed=False)
        repo.count(record.id, nbytes=500, completed=True)
        assert (repo.get(record.id).downloads, repo.get(record.id).bytes_served) == (1, 1524)
        repo.flush_counters()
        repo.count(record.id, nbytes=10, completed=True)
    with Repository(repo_dir, db_url, trust) as repo:
        got = repo.get(record.id)
        assert (got.downloads, got.bytes_served) == (2, 1534)


def test_calls_after_close_raise(repo_dir: Path, db_url: str, build: BuildFn) -> None:
    repo = Repository(repo_dir, db_url)
    repo.close()
    repo.close()
    with pytest.raises(RepositoryClosed):
        repo.list()
    assert repo.lookup("0" * 16) is None


def test_a_stale_temporary_file_from_a_crash_is_swept_at_open(repo_dir: Path, db_url: str) -> None:
    (repo_dir / "tmp").mkdir(parents=True)
    stale = repo_dir / "tmp" / "upload-crashed.part"
    fresh = repo_dir / "tmp" / "upload-running.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(stale, (0, 0))
    Repository(repo_dir, db_url).close()
    assert not stale.exists()
    assert fresh.exists()  # may belong to an upload in another process


def test_the_signature_check_uses_the_trust_store_given(
    repo_dir: Path, db_url: str, build: BuildFn
) -> None:
    other = TrustStore()
    other.add(b"someone-else", generate_key("ed25519").public_key())
    with Repository(repo_dir, db_url, other) as repo:
        with pytest.raises(UploadRejected) as info:
            repo.add(build(payload_of(10)))
    assert isinstance(info.value.cause, (UnknownKey, SignatureInvalid))
