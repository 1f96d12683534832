"""``fotakit keys`` and ``fotakit package``: files, exit codes, messages, no key leaks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fotakit.cli import app
from fotakit.packages import TrustStore, inspect_package, key_id, load_private_key, verify_package

runner = CliRunner()
PAYLOAD = os.urandom(30_000)


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.stdout, result.stderr


def _secret_lines(private_pem: Path) -> list[str]:
    return [ln for ln in private_pem.read_text().splitlines() if ln and not ln.startswith("-")]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "fw.bin").write_bytes(PAYLOAD)
    return tmp_path


def make_key(workdir: Path, name: str = "signer", alg: str = "ed25519") -> Path:
    code, _, err = invoke("keys", "generate", name, "--alg", alg, "--dir", str(workdir / "keys"))
    assert code == 0, err
    return workdir / "keys" / f"{name}.pem"


def make_package(workdir: Path, key: Path, *extra: str) -> Path:
    out = workdir / "fw.suit"
    code, _, err = invoke(
        "package", "build", str(workdir / "fw.bin"), "--version", "1.2.3",
        "--vendor", "example.com", "--class", "board-x", "--sequence", "12",
        "--key", str(key), "--output", str(out), *extra,
    )  # fmt: skip
    assert code == 0, err
    return out


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_keys_generate_writes_a_0600_private_key_and_prints_only_public_facts(
    workdir: Path, alg: str
) -> None:
    code, out, err = invoke("keys", "generate", "signer", "--alg", alg, "--dir", str(workdir))
    assert code == 0, err
    private = workdir / "signer.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert (workdir / "signer.pub.pem").is_file()
    assert key_id(load_private_key(private)).hex() in out
    for line in _secret_lines(private):
        assert line not in out and line not in err


def test_keys_generate_refuses_to_overwrite(workdir: Path) -> None:
    private = make_key(workdir)
    before = private.read_bytes()
    code, _, err = invoke("keys", "generate", "signer", "--dir", str(workdir / "keys"))
    assert code != 0
    assert "already exists" in err
    assert private.read_bytes() == before


def test_keys_generate_rejects_an_unknown_algorithm(workdir: Path) -> None:
    code, _, err = invoke("keys", "generate", "k", "--alg", "rsa", "--dir", str(workdir))
    assert code == 2
    assert "ed25519 or p256" in err
    assert not (workdir / "k.pem").exists()


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_build_then_verify_succeeds(workdir: Path, alg: str) -> None:
    key = make_key(workdir, alg=alg)
    package = make_package(workdir, key, "--component", "app")
    store = TrustStore.from_directory(workdir / "keys")
    verified = verify_package(package, store)
    assert verified.manifest.version == "1.2.3"
    assert verified.manifest.component == "app"
    assert package.read_bytes()[verified.payload_offset :] == PAYLOAD
    code, out, err = invoke(
        "package", "verify", str(package), "--trust", str(workdir / "keys"),
        "--vendor", "example.com", "--class", "board-x", "--min-sequence", "12",
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("OK ")
    assert "sequence 12" in out


def test_build_default_output_name_and_no_key_material_in_output(workdir: Path) -> None:
    key = make_key(workdir)
    code, out, err = invoke(
        "package", "build", str(workdir / "fw.bin"), "--version", "2.0",
        "--vendor", "example.com", "--class", "board-x", "--sequence", "1", "--key", str(key),
    )  # fmt: skip
    assert code == 0, err
    assert (workdir / "fw.bin-2.0.suit").is_file()
    for line in _secret_lines(key):
        assert line not in out and line not in err


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("1.0 beta", "must not contain whitespace"),
        ("v" * 65, "must be at most 64 characters"),
        ("", "must be a non-empty string"),
    ],
)
def test_build_refuses_a_version_against_the_rule_with_exit_2(
    workdir: Path, version: str, message: str
) -> None:
    key = make_key(workdir)
    code, _, err = invoke(
        "package", "build", str(workdir / "fw.bin"), "--version", version, "--vendor", "e.com",
        "--class", "c", "--sequence", "1", "--key", str(key),
    )  # fmt: skip
    assert code == 2, err
    assert f"--version {message}" in err
    assert not list(workdir.glob("*.suit"))


def test_build_with_a_missing_payload_or_bad_key_fails_cleanly(workdir: Path) -> None:
    key = make_key(workdir)
    code, _, err = invoke(
        "package", "build", str(workdir / "nope.bin"), "--version", "1", "--vendor", "e.com",
        "--class", "c", "--sequence", "1", "--key", str(key),
    )  # fmt: skip
    assert code == 2 and "nope.bin" in err
    code, _, err = invoke(
        "package", "build", str(workdir / "fw.bin"), "--version", "1", "--vendor", "e.com",
        "--class", "c", "--sequence", "1", "--key", str(workdir / "keys" / "signer.pub.pem"),
    )  # fmt: skip
    assert code == 1 and "not an unencrypted PEM private key" in err
    assert not list(workdir.glob("*.suit"))


def test_inspect_prints_a_table_and_json(workdir: Path) -> None:
    package = make_package(workdir, make_key(workdir))
    code, out, _ = invoke("package", "inspect", str(package))
    assert code == 0
    assert "not verified" in out and "1.2.3" in out
    code, out, _ = invoke("package", "inspect", str(package), "--json")
    assert code == 0
    data = json.loads(out)
    info = inspect_package(package)
    assert data["file_sha256"] == info.file_digest.hex()
    assert data["payload_offset"] == info.payload_offset
    assert data["payload_size"] == len(PAYLOAD)
    assert data["sequence"] == 12
    assert data["signatures"][0]["alg"] == -8


def _verify(package: Path, trust: Path, *extra: str) -> tuple[int, str]:
    code, out, err = invoke("package", "verify", str(package), "--trust", str(trust), *extra)
    assert "Traceback" not in out + err
    return code, err.strip()


def test_verify_failures_name_the_error_and_its_update_result(workdir: Path) -> None:
    key = make_key(workdir)
    other = make_key(workdir, "other")
    package = make_package(workdir, key)
    keys = workdir / "keys"
    data = package.read_bytes()

    tampered = workdir / "tampered.suit"
    tampered.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    truncated = workdir / "truncated.suit"
    truncated.write_bytes(data[:-10])
    garbage = workdir / "garbage.suit"
    garbage.write_bytes(b"\x00garbage" * 100)

    cases: list[tuple[Path, Path, list[str], str, int]] = [
        (tampered, keys, [], "digest-mismatch", 5),
        (truncated, keys, [], "truncated", 5),
        (garbage, keys, [], "unsupported-format", 6),
        (package, other.with_name("other.pub.pem"), [], "unknown-key", 5),
        (package, keys, ["--vendor", "example.com", "--class", "board-y"], "wrong-class", 6),
        (package, keys, ["--vendor", "example.org"], "wrong-vendor", 6),
        (package, keys, ["--min-sequence", "13"], "rollback", 6),
    ]
    for pkg, trust, extra, name, result in cases:
        code, message = _verify(pkg, trust, *extra)
        assert code == 1, (name, message)
        assert message.startswith(f"error: {name}:"), message
        assert f"(Update Result {result} " in message
        assert len(message.splitlines()) == 1


def test_verify_usage_errors_exit_2(workdir: Path) -> None:
    package = make_package(workdir, make_key(workdir))
    code, message = _verify(package, workdir / "no-such-dir")
    assert code == 2 and "no-such-dir" in message
    code, message = _verify(workdir / "missing.suit", workdir / "keys")
    assert code == 2
    code, message = _verify(package, workdir / "keys", "--class", "board-x")
    assert code == 2 and "--vendor" in message


def test_installed_entry_point_runs_as_a_process(workdir: Path) -> None:
    # A real process: exit status and stderr as a shell sees them, no traceback.
    proc = subprocess.run(
        [sys.executable, "-m", "fotakit.cli", "package", "verify", str(workdir / "fw.bin"),
         "--trust", str(workdir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2  # no keys in workdir
    assert "Traceback" not in proc.stderr
    make_key(workdir)
    proc = subprocess.run(
        [sys.executable, "-m", "fotakit.cli", "package", "verify", str(workdir / "fw.bin"),
         "--trust", str(workdir / "keys")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "unsupported-format" in proc.stderr and "Update Result 6" in proc.stderr
    assert "Traceback" not in proc.stderr
