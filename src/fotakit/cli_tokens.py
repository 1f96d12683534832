"""``fotakit tokens create|list|revoke``: REST API tokens, on the database directly.

For bootstrapping and recovery (a lost admin token) on the machine that holds the
database; with a running server, admins can use ``/api/v1/tokens`` instead. The database
is the one ``fotakit server`` uses (``--data-dir`` / ``--db``). ``create`` prints the new
token once: only its SHA-256 is stored.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

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
    expires_in: Annotated[
        str | None,
        typer.Option(
            help="Lifetime of the token: a number of seconds, or with a unit: 90m, 12h, 30d, "
            "2w (default: it never expires)."
        ),
    ] = None,
    data_dir: DataDirOption = None,
    db: DbOption = None,
) -> None:
    """Create a token and print it (once)."""
    from fotakit.api.auth import Role

    try:
        parsed = Role.parse(role)
        lifetime = None if expires_in is None else parse_lifetime(expires_in)
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc
    store = _open(data_dir, db)
    try:
        info, plaintext = store.create(name, parsed, expires_in=lifetime)
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc
    finally:
        store.close()
    until = "" if info.expires_at is None else f", expires {info.expires_at.isoformat()}"
    err_console.print(f"created token {info.id} ({info.name}, {info.role.label}{until})")
    print(plaintext)


_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LIFETIME = re.compile(r"([0-9]{1,9})\s*([smhdw]?)")


def parse_lifetime(text: str) -> timedelta:
    """``--expires-in``: seconds, or a number with a unit (s, m, h, d, w); positive."""
    match = _LIFETIME.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(
            f"--expires-in {text!r}: give seconds or a number with a unit: 90m, 12h, 30d, 2w"
        )
    seconds = int(match[1]) * _UNITS[match[2] or "s"]
    if seconds <= 0:
        raise ValueError(f"--expires-in {text!r}: a token's lifetime must be positive")
    return timedelta(seconds=seconds)


@tokens_app.command("list")
def list_tokens(data_dir: DataDirOption = None, db: DbOption = None) -> None:
    """List tokens (never their secrets)."""
    store = _open(data_dir, db)
    try:
        infos = store.list()
    finally:
        store.close()
    table = Table("id", "name", "role", "created", "expires")
    for info in infos:
        if info.expires_at is None:
            expires = "never"
        else:
            expires = info.expires_at.isoformat() + (" (expired)" if info.expired() else "")
        table.add_row(info.id, info.name, info.role.label, info.created_at.isoformat(), expires)
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
