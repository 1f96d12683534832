"""``fotakit package upload`` and ``fotakit package list``: the firmware repository's CLI.

Registered on :data:`fotakit.cli_packages.package_app` (``build``, ``inspect`` and
``verify`` live there). The repository directory defaults to ``<data-dir>/repository`` and
the database to the one ``fotakit server`` uses, so an upload here is served at once by a
running server sharing the data directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fotakit.cli_packages import package_app

console = Console(soft_wrap=True)
err_console = Console(stderr=True)

DataDirOption = Annotated[
    Path | None,
    typer.Option(help="Data directory (default ./data).", envvar="FOTAKIT_DATA_DIR"),
]
DbOption = Annotated[
    str | None,
    typer.Option(
        help="Database URL (postgresql://… or sqlite:///…) or a SQLite file path.",
        envvar="FOTAKIT_DB",
    ),
]
RepositoryOption = Annotated[
    Path | None,
    typer.Option(
        "--repository",
        help="Package directory (default <data-dir>/repository).",
        envvar="FOTAKIT_REPOSITORY",
    ),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def resolve_locations(
    data_dir: Path | None, db: str | None, repository: Path | None
) -> tuple[Path, str]:
    """(repository directory, database URL) as ``fotakit server`` resolves them."""
    from fotakit.cli import _resolve_db

    try:
        url = _resolve_db(data_dir, db)
    except typer.BadParameter as exc:
        raise _fail(str(exc), 2) from exc
    directory = repository or (data_dir or Path("data")) / "repository"
    return directory.expanduser().resolve(), url


@package_app.command("upload")
def package_upload(
    file: Annotated[Path, typer.Argument(help="A signed package (from `fotakit package build`).")],
    trust: Annotated[Path, typer.Option(help="Trusted public key PEM, or a directory of them.")],
    vendor: Annotated[
        str | None,
        typer.Option(
            help="The vendor domain the package was built with (its --vendor): shown "
            "instead of the vendor UUID, once checked against it."
        ),
    ] = None,
    class_name: Annotated[
        str | None,
        typer.Option(
            "--class",
            help="The class name the package was built with (its --class; needs --vendor): "
            "shown instead of the class UUID, once checked against it.",
        ),
    ] = None,
    data_dir: DataDirOption = None,
    db: DbOption = None,
    repository: RepositoryOption = None,
) -> None:
    """Verify a signed package and store it in the repository; print its id and paths."""
    if (vendor is None) != (class_name is None):
        raise _fail("give --vendor and --class together (the names of the build), or neither", 2)
    from fotakit.packages import KeyFileError, TrustStore
    from fotakit.repository import Repository, RepositoryError, UploadRejected
    from fotakit.store import StoreError

    if not file.is_file():
        raise _fail(f"{file} is not a readable file", 2)
    try:
        anchors = TrustStore.from_path(trust)
    except (KeyFileError, OSError, ValueError) as exc:
        raise _fail(f"cannot load trust anchors from {trust}: {exc}", 2) from exc
    directory, url = resolve_locations(data_dir, db, repository)
    try:
        with Repository(directory, url, anchors) as repo:
            record = repo.add(file, vendor_name=vendor, class_name=class_name)
    except UploadRejected as exc:
        cause = exc.cause
        result = getattr(cause, "update_result", None)
        suffix = f" (Update Result {int(result)} {result.name})" if result is not None else ""
        raise _fail(f"upload rejected: {exc}{suffix}") from exc
    except (RepositoryError, StoreError, OSError) as exc:
        raise _fail(f"upload failed: {exc}") from exc
    named = f" class {class_name} ({vendor})" if class_name else ""
    console.print(
        f"stored [bold]{record.id}[/bold] version {record.version}{named}", highlight=False
    )
    console.print(f"  package: /fw/{record.id}", highlight=False)
    console.print(f"  payload: /fw/{record.id}/payload", highlight=False)


@package_app.command("list")
def package_list(
    data_dir: DataDirOption = None,
    db: DbOption = None,
    repository: RepositoryOption = None,
    host: Annotated[str, typer.Option(help="Host name to show in the URIs.")] = "127.0.0.1",
    coap_port: Annotated[int, typer.Option(help="CoAP port to show in the URIs.")] = 5683,
    http_port: Annotated[
        int | None, typer.Option(help="HTTP port to show in the URIs (none: no HTTP URI).")
    ] = None,
) -> None:
    """List the stored packages with their download counters and URIs."""
    from fotakit.repository import Repository, RepositoryError
    from fotakit.store import StoreError

    directory, url = resolve_locations(data_dir, db, repository)
    try:
        with Repository(directory, url) as repo:
            records = repo.list()
            names = repo.class_names()
    except (RepositoryError, StoreError, OSError) as exc:
        raise _fail(f"cannot read the repository: {exc}") from exc
    table = Table(title=f"{len(records)} package(s) in {directory}")
    table.add_column("id", no_wrap=True)
    for name in ("version", "vendor / class", "size", "seq", "downloads", "URIs"):
        table.add_column(name, overflow="fold")
    for r in records:
        named = names.get(r.class_id)
        uris = [r.coap_uri(host, coap_port)]
        if http_port is not None:
            uris.append(r.http_uri(host, http_port))
        table.add_row(
            r.id,
            r.version,
            f"{r.vendor_id}\n{r.class_id}"
            if named is None
            else f"{named.vendor} / {named.name}\n({r.class_id})",
            f"{r.size:,}",
            str(r.sequence),
            f"{r.downloads} ({r.bytes_served:,} B)",
            "\n".join(uris),
        )
    console.print(table)
