"""Database helpers shared by the store and server tests."""

from __future__ import annotations

from sqlalchemy import Connection, create_engine, text

from fotakit.store import normalize_url


class Commits:
    """Counts every COMMIT of every SQLAlchemy engine while installed (the ``commits``
    fixture in tests/conftest.py installs it)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, _conn: Connection) -> None:
        self.count += 1


def refuse_endpoint(db_url: str, endpoint: str) -> None:
    """Make the database itself refuse any new registration row of ``endpoint``."""
    engine = create_engine(normalize_url(db_url))
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                conn.execute(
                    text(
                        "CREATE TRIGGER refuse_ep BEFORE INSERT ON registrations "
                        f"WHEN NEW.endpoint = '{endpoint}' "
                        "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
                    )
                )
            else:
                conn.execute(
                    text(
                        "CREATE FUNCTION refuse_ep() RETURNS trigger AS $$ BEGIN "
                        f"IF NEW.endpoint = '{endpoint}' THEN "
                        "RAISE EXCEPTION 'refused by the test trigger'; END IF; "
                        "RETURN NEW; END $$ LANGUAGE plpgsql"
                    )
                )
                conn.execute(
                    text(
                        "CREATE TRIGGER refuse_ep BEFORE INSERT ON registrations "
                        "FOR EACH ROW EXECUTE FUNCTION refuse_ep()"
                    )
                )
    finally:
        engine.dispose()
