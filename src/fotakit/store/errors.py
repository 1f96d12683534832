"""Errors raised by the persistence layer (:mod:`fotakit.store`).

Every write is one transaction; whenever one of these is raised by a write, that write
has been rolled back and the database holds exactly what it held before the call.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class UnsupportedDatabase(StoreError):
    """A database URL whose scheme the store cannot use (only SQLite and PostgreSQL)."""


class SchemaVersionError(StoreError):
    """The database was written by a fotakit with a schema this version cannot read."""

    def __init__(self, found: int, supported: int, url: str) -> None:
        self.found = found
        self.supported = supported
        self.url = url
        if found > supported:
            advice = "upgrade fotakit or point it at another database"
        else:
            advice = "this version is not a fotakit schema version; the table is corrupt"
        super().__init__(
            f"database {url} has schema version {found}, but this fotakit supports "
            f"only version {supported}: {advice}; nothing was changed"
        )


class InvalidRecord(StoreError, ValueError):
    """A record or change that cannot be stored as given (too long, NUL, naive time...)."""


class UnknownRegistration(StoreError, LookupError):
    """A write that refers to a registration ID that is not stored."""

    def __init__(self, registration_id: str) -> None:
        self.registration_id = registration_id
        super().__init__(f"no registration with ID {registration_id!r}")


class Conflict(StoreError):
    """A write that violates a uniqueness or reference constraint (e.g. a reused ID)."""


class StoreClosed(StoreError):
    """A call on a store after :meth:`close`."""
