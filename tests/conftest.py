"""Shared fixtures: ``db_url`` runs a test on SQLite always and on PostgreSQL when asked.

Set ``FOTAKIT_TEST_PG_URL`` (e.g. ``postgresql://postgres@127.0.0.1:5432/test``) to add the
PostgreSQL run. Each PostgreSQL test gets a fresh schema of its own (selected through the
connection's ``search_path``) that is dropped afterwards, so parallel and repeated runs
never see each other's rows.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from db_helpers import Commits
from fotakit.store import default_db_url

PG_ENV = "FOTAKIT_TEST_PG_URL"


class _JobBugs(logging.Handler):
    """Collects the log records the update engine marks as a bug of the pure job."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "fotakit_job_bug", False):
            self.seen.append(record.getMessage())


@pytest.fixture(autouse=True)
def no_job_table_violations() -> Iterator[None]:
    """Every test fails when an update job met an input its transition table has no row
    for (``table_violation``) or raised (the engine logs and survives both in production)."""
    bugs = _JobBugs()
    logger = logging.getLogger("fotakit.updates.engine")
    logger.addHandler(bugs)
    try:
        yield
    finally:
        logger.removeHandler(bugs)
    assert bugs.seen == [], f"update job bugs during the test: {bugs.seen}"


def _libpq_dsn(url: str) -> str:
    """The URL as psycopg itself understands it (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose default schema is new and empty; skipped without the env var."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} not set")
    schema = f"fotakit_test_{uuid.uuid4().hex[:16]}"
    dsn = _libpq_dsn(base)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The default SQLite URL in a fresh data directory."""
    return default_db_url(tmp_path / "data")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database URL: SQLite always, PostgreSQL when FOTAKIT_TEST_PG_URL is set."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def commits() -> Iterator[Commits]:
    """Counts the database commits made during a test (group commit is observed this way)."""
    counter = Commits()
    event.listen(Engine, "commit", counter)
    try:
        yield counter
    finally:
        event.remove(Engine, "commit", counter)
