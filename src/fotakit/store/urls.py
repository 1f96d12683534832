"""Database URLs: the SQLite default under a data directory, and driver normalisation.

Operators write ``sqlite:///path/to/fotakit.db`` or ``postgresql://user@host/db``; the
store always talks to PostgreSQL through psycopg 3, so bare PostgreSQL URLs are mapped to
SQLAlchemy's ``postgresql+psycopg`` dialect.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from fotakit.store.errors import UnsupportedDatabase

DB_FILENAME = "fotakit.db"

_POSTGRES_ALIASES = frozenset({"postgresql", "postgres", "postgresql+psycopg"})
_SQLITE_NAMES = frozenset({"sqlite", "sqlite+pysqlite"})


def default_db_url(data_dir: Path) -> str:
    """The URL of the default SQLite database, ``fotakit.db`` in ``data_dir``."""
    path = (data_dir / DB_FILENAME).absolute()
    return URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)


def parse_url(url: str | URL) -> URL:
    """Parse and normalise ``url``; raise :class:`UnsupportedDatabase` for anything else."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UnsupportedDatabase(f"not a database URL: {url!r} ({exc})") from None
    name = parsed.drivername
    if name in _POSTGRES_ALIASES:
        return parsed.set(drivername="postgresql+psycopg")
    if name in _SQLITE_NAMES:
        return parsed.set(drivername="sqlite")
    raise UnsupportedDatabase(
        f"unsupported database URL scheme {name!r}: use sqlite:///path/to/fotakit.db "
        "or postgresql://user@host/dbname"
    )


def normalize_url(url: str | URL) -> str:
    """``url`` with the driver the store uses (``postgresql://`` → ``postgresql+psycopg://``).

    The password, if any, stays in the result: it is the URL to connect with, not to log.
    """
    return parse_url(url).render_as_string(hide_password=False)


def redacted(url: str | URL) -> str:
    """``url`` with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"
