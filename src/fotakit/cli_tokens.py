"""``fotakit tokens create|list|revoke``: REST API tokens, on the database directly.

For bootstrapping and recovery (a lost admin token) on the machine that holds the
database; with a running server, admins can use ``/api/v1/tokens`` instead. The database
is the one ``fotakit server`` uses (``--data-dir`` / ``--db``). ``create`` prints the new
token once: only its SHA-256 is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from fotakit.cli_repository import DataDirOption, DbOption

if TYPE_CHECKING:
    from fotakit.api.auth import TokenStore

tokens_app = typer.Typer(
    help="REST API tokens (stored hashed in the server's database).", no_args_is_help=True
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _open(data_dir: Path | None, db: str | None) -> TokenStore:
    from fotakit.api.auth import TokenStore
    from fotakit.cli import _resolve_db

    try:
        url = _resolve_db(data_dir, db)
    except typer.BadParameter as exc:
        raise _fail(str(exc), 2) from exc
    try:
        return TokenStore.open(url)
    except Exception as exc:
        raise _fail(f"cannot open the database: {exc}") from exc


@tokens_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name for the token (1-64 characters).")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
    data_dir: DataDirOption = None,
    db: DbOption = None,
) -> None:
    """Create a token and print it (once)."""
    from fotakit.api.auth import Role

    try:
        parsed = Role.parse(role)
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc
    store = _open(data_dir, db)
    try:
        info, plaintext = store.create(name, parsed)
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc
    finally:
        store.close()
    err_console.print(f"created token {info.id} ({info.name}, {info.role.label})")
    print(plaintext)


@tokens_app.command("list")
def list_tokens(data_dir: DataDirOption = None, db: DbOption = None) -> None:
    """List tokens (never their secrets)."""
    store = _open(data_dir, db)
    try:
        infos = store.list()
    finally:
        store.close()
    table = Table("id", "name", "role", "created")
    for info in infos:
        table.add_row(info.id, info.name, info.role.label, info.created_at.isoformat())
    console.print(table)


@tokens_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `fotakit tokens list`).")],
    data_dir: DataDirOption = None,
    db: DbOption = None,
) -> None:
    """Revoke a token (it stops working at once)."""
    store = _open(data_dir, db)
    try:
        found = store.revoke(token_id)
    finally:
        store.close()
    if not found:
        raise _fail(f"no token {token_id!r}")
    console.print(f"revoked {token_id}")
