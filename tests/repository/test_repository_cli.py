"""``fotakit package upload`` and ``list``: precise errors and exit codes, nothing kept."""

from __future__ import annotations

from pathlib import Path

from repo_helpers import BuildFn, files_under, payload_of
from typer.testing import CliRunner

from fotakit.cli import app
from fotakit.packages import PrivateKey, write_key_pair

runner = CliRunner()


def _keys(tmp_path: Path, key: PrivateKey) -> Path:
    directory = tmp_path / "keys"
    directory.mkdir()
    write_key_pair(key, directory, "signer")
    return directory


def test_upload_then_list_shows_the_package_and_its_uris(
    tmp_path: Path, signing_key: PrivateKey, build: BuildFn
) -> None:
    keys = _keys(tmp_path, signing_key)
    package = tmp_path / "fw.suit"
    package.write_bytes(build(payload_of(1000), version="9.9.9"))
    data = tmp_path / "data"

    up = runner.invoke(
        app, ["package", "upload", str(package), "--trust", str(keys), "--data-dir", str(data)]
    )
    assert up.exit_code == 0, up.output
    assert "stored" in up.output and "9.9.9" in up.output
    again = runner.invoke(
        app, ["package", "upload", str(package), "--trust", str(keys), "--data-dir", str(data)]
    )
    assert again.exit_code == 0
    assert again.output == up.output  # idempotent

    listed = runner.invoke(
        app,
        ["package", "list", "--data-dir", str(data), "--host", "fw.example", "--http-port", "80"],
        env={"COLUMNS": "300"},
    )
    assert listed.exit_code == 0, listed.output
    assert "1 package(s)" in listed.output
    assert "coap://fw.example:5683/fw/" in listed.output
    assert "http://fw.example:80/fw/" in listed.output


def test_upload_with_the_build_names_lists_the_class_by_name(
    tmp_path: Path, signing_key: PrivateKey, build: BuildFn
) -> None:
    keys = _keys(tmp_path, signing_key)
    package = tmp_path / "fw.suit"
    package.write_bytes(build(payload_of(1000), version="9.9.8"))
    data = tmp_path / "data"
    upload = ["package", "upload", str(package), "--trust", str(keys), "--data-dir", str(data)]

    wrong = runner.invoke(app, [*upload, "--vendor", "example.com", "--class", "board-x"])
    assert wrong.exit_code == 1, wrong.output
    assert "upload rejected: names: class 'board-x' of vendor 'example.com'" in wrong.output
    half = runner.invoke(app, [*upload, "--class", "sensor-v2"])
    assert half.exit_code == 2 and "--vendor and --class together" in half.output
    assert files_under(data / "repository") == []

    up = runner.invoke(app, [*upload, "--vendor", "example.com", "--class", "sensor-v2"])
    assert up.exit_code == 0, up.output
    assert "class sensor-v2 (example.com)" in up.output
    listed = runner.invoke(
        app, ["package", "list", "--data-dir", str(data)], env={"COLUMNS": "300"}
    )
    assert listed.exit_code == 0, listed.output
    assert "example.com / sensor-v2" in listed.output


def test_a_tampered_upload_exits_1_with_the_error_and_update_result(
    tmp_path: Path, signing_key: PrivateKey, build: BuildFn
) -> None:
    keys = _keys(tmp_path, signing_key)
    tampered = bytearray(build(payload_of(1000)))
    tampered[-10] ^= 0xFF
    package = tmp_path / "bad.suit"
    package.write_bytes(bytes(tampered))
    data = tmp_path / "data"

    result = runner.invoke(
        app, ["package", "upload", str(package), "--trust", str(keys), "--data-dir", str(data)]
    )
    assert result.exit_code == 1
    assert "upload rejected: digest-mismatch" in result.output
    assert "Update Result 5" in result.output
    assert files_under(data / "repository") == []


def test_bad_arguments_exit_2(tmp_path: Path, build: BuildFn) -> None:
    package = tmp_path / "fw.suit"
    package.write_bytes(build(payload_of(10)))
    missing = runner.invoke(app, ["package", "upload", str(tmp_path / "nope"), "--trust", "."])
    assert missing.exit_code == 2
    no_keys = runner.invoke(
        app, ["package", "upload", str(package), "--trust", str(tmp_path / "empty")]
    )
    assert no_keys.exit_code == 2
    assert "cannot load trust anchors" in no_keys.output
