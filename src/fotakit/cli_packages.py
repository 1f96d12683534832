"""``fotakit keys ...`` and ``fotakit package ...``: signing keys and signed packages.

Registered in :mod:`fotakit.cli` as sub-apps. Format and checks: docs/package-format.md.
Every failure ends with one precise line on stderr and a non-zero exit, never a traceback;
a failed verification names the error and the Object 5 Update Result a device would
report. Private key material is never printed or logged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from fotakit.packages import (
    ALGORITHM_NAMES,
    KEY_ALGORITHMS,
    BuildError,
    DeviceIdentity,
    KeyFileError,
    PackageError,
    TrustStore,
    build_package,
    generate_key,
    inspect_package,
    key_id,
    load_private_key,
    verify_package,
    write_key_pair,
)
from fotakit.packages.manifest import MAX_SEQUENCE, InvalidVersion, check_version

keys_app = typer.Typer(
    help="Signing keys for firmware packages (Ed25519 or ECDSA P-256).", no_args_is_help=True
)
package_app = typer.Typer(
    help="Build, inspect and verify signed firmware packages.", no_args_is_help=True
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True)

#: Exit status of a package that fails verification (usage errors exit 2, as typer does).
EXIT_INVALID = 1
EXIT_USAGE = 2
_PROGRESS_THRESHOLD = 8 * 1024 * 1024


def _fail(message: str, code: int = EXIT_INVALID) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise _fail(f"{path} is not a readable file", EXIT_USAGE)


def _package_error_line(exc: PackageError) -> str:
    result = exc.update_result
    return f"{exc.code}: {exc} (Update Result {int(result)} {result.name})"


@keys_app.command("generate")
def keys_generate(
    name: Annotated[str, typer.Argument(help="Key name: writes NAME.pem and NAME.pub.pem.")],
    alg: Annotated[
        str, typer.Option("--alg", help="Key algorithm: ed25519 (default) or p256.")
    ] = "ed25519",
    directory: Annotated[Path, typer.Option("--dir", help="Directory for the key files.")] = Path(
        "."
    ),
) -> None:
    """Generate a signing key pair; the private key file is created with mode 0600."""
    if alg not in KEY_ALGORITHMS:
        raise _fail(f"unknown --alg {alg!r}: choose ed25519 or p256", EXIT_USAGE)
    key = generate_key(alg)
    try:
        private_path, public_path = write_key_pair(key, directory, name)
    except KeyFileError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"private key: {private_path} (mode 0600, keep it offline)", highlight=False)
    console.print(f"public key:  {public_path}", highlight=False)
    console.print(f"kid:         {key_id(key).hex()}", highlight=False)


def _progress(total: int) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console,
        transient=True,
        disable=total < _PROGRESS_THRESHOLD,
    )


@package_app.command("build")
def package_build(
    payload: Annotated[Path, typer.Argument(help="The firmware image to sign.")],
    version: Annotated[str, typer.Option(help="Version string, e.g. 1.4.2.")],
    vendor: Annotated[str, typer.Option(help="Vendor domain (vendor ID = UUID5 of it).")],
    class_name: Annotated[
        str, typer.Option("--class", help="Device class (class ID = UUID5 in the vendor ID).")
    ],
    sequence: Annotated[
        int, typer.Option(help="Sequence number (anti-rollback; e.g. UTC seconds).", min=0)
    ],
    key: Annotated[Path, typer.Option(help="Private key PEM (from `fotakit keys generate`).")],
    component: Annotated[str | None, typer.Option(help="Optional component name.")] = None,
    output: Annotated[
        Path | None, typer.Option(help="Output file (default PAYLOAD-VERSION.suit).")
    ] = None,
) -> None:
    """Sign PAYLOAD into a package: SUIT envelope (COSE_Sign1) followed by the payload."""
    if sequence > MAX_SEQUENCE:
        raise _fail("--sequence must be below 2^64", EXIT_USAGE)
    try:
        check_version(version)
    except InvalidVersion as exc:
        raise _fail(f"--version {exc} (see docs/package-format.md)", EXIT_USAGE) from None
    if not payload.is_file():
        raise _fail(f"payload {payload} is not a readable file", EXIT_USAGE)
    out = output or payload.with_name(f"{payload.name}-{version}.suit")
    try:
        private_key = load_private_key(key)
    except KeyFileError as exc:
        raise _fail(str(exc)) from exc
    size = payload.stat().st_size
    try:
        with _progress(size) as progress:
            task = progress.add_task("signing", total=2 * size)
            manifest = build_package(
                payload,
                out,
                version=version,
                vendor_domain=vendor,
                class_name=class_name,
                sequence=sequence,
                key=private_key,
                component=component,
                progress=lambda n: progress.advance(task, n),
            )
    except (BuildError, PackageError) as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"wrote {out}: version {manifest.version}, sequence {manifest.sequence}, "
        f"{manifest.payload_size} payload bytes, kid {manifest.kid.hex()}",
        highlight=False,
    )


def _info_dict(path: Path) -> dict[str, Any]:
    info = inspect_package(path)
    m = info.manifest
    return {
        "file": str(path),
        "total_size": info.total_size,
        "file_sha256": info.file_digest.hex(),
        "payload_offset": info.payload_offset,
        "payload_size": info.payload_size,
        "manifest_sha256": info.manifest_digest.hex(),
        "sequence": m.sequence,
        "version": m.version,
        "vendor_id": str(m.vendor_id),
        "class_id": str(m.class_id),
        "component": m.component,
        "payload_sha256": m.payload_digest.hex(),
        "signed_payload_size": m.payload_size,
        "base_sha256": m.base_digest.hex() if m.base_digest is not None else None,
        "kid": m.kid.hex(),
        "signatures": [
            {"kid": kid.hex(), "alg": alg, "alg_name": ALGORITHM_NAMES.get(alg, str(alg))}
            for kid, alg in info.signers
        ],
    }


@package_app.command("inspect")
def package_inspect(
    file: Annotated[Path, typer.Argument(help="Package file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show what a package claims. This does NOT verify it (use `package verify`)."""
    _require_file(file)
    try:
        data = _info_dict(file)
    except PackageError as exc:
        raise _fail(_package_error_line(exc)) from exc
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"{file} (not verified)", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for field, value in data.items():
        if field == "signatures":
            value = ", ".join(f"{s['alg_name']} kid {s['kid']}" for s in value)
        table.add_row(field, "-" if value is None else str(value))
    console.print(table)


@package_app.command("verify")
def package_verify(
    file: Annotated[Path, typer.Argument(help="Package file.")],
    trust: Annotated[Path, typer.Option(help="Trusted public key PEM, or a directory of them.")],
    vendor: Annotated[
        str | None, typer.Option(help="Require this vendor domain (vendor ID binding).")
    ] = None,
    class_name: Annotated[
        str | None, typer.Option("--class", help="Require this device class (needs --vendor).")
    ] = None,
    min_sequence: Annotated[
        int | None,
        typer.Option(help="Reject sequence numbers below this (the device's current one).", min=0),
    ] = None,
) -> None:
    """Verify signature, digest, size, class binding and sequence; exit 0 only if all pass."""
    _require_file(file)
    if class_name is not None and vendor is None:
        raise _fail("--class needs --vendor (the class ID is derived from the vendor ID)", 2)
    try:
        store = TrustStore.from_path(trust)
    except KeyFileError as exc:
        raise _fail(str(exc), EXIT_USAGE) from exc
    identity = DeviceIdentity.from_names(vendor, class_name) if vendor is not None else None
    try:
        verified = verify_package(file, store, identity=identity, min_sequence=min_sequence)
    except PackageError as exc:
        raise _fail(_package_error_line(exc)) from exc
    m = verified.manifest
    console.print(
        f"OK {file}: version {m.version}, sequence {m.sequence}, {m.payload_size} payload "
        f"bytes, signed by kid {verified.kid.hex()} "
        f"({ALGORITHM_NAMES.get(verified.algorithm, verified.algorithm)})",
        highlight=False,
    )
