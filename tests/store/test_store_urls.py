"""Database URLs: the default location and the psycopg 3 mapping for PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from fotakit.store import Store, UnsupportedDatabase, default_db_url, normalize_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://fk@db.example/fotakit", "postgresql+psycopg://fk@db.example/fotakit"),
        (
            "postgres://fk:s3cret@127.0.0.1:5433/x",
            "postgresql+psycopg://fk:s3cret@127.0.0.1:5433/x",
        ),
        ("postgresql+psycopg://h/db?sslmode=require", "postgresql+psycopg://h/db?sslmode=require"),
        ("sqlite:////var/lib/fotakit/fotakit.db", "sqlite:////var/lib/fotakit/fotakit.db"),
        ("sqlite+pysqlite:///rel.db", "sqlite:///rel.db"),
    ],
)
def test_normalize_url_selects_the_driver_the_store_uses(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/fk", "unsupported database URL scheme 'mysql'"),
        ("postgresql+psycopg2://h/db", "unsupported database URL scheme 'postgresql\\+psycopg2'"),
        ("not a url", "not a database URL"),
    ],
)
def test_other_databases_are_refused_with_a_precise_error(url: str, message: str) -> None:
    with pytest.raises(UnsupportedDatabase, match=message):
        normalize_url(url)
    with pytest.raises(UnsupportedDatabase, match=message):
        Store.open(url)


def test_default_db_url_is_fotakit_db_in_the_data_directory(tmp_path: Path) -> None:
    url = default_db_url(tmp_path / "data")

    assert url == f"sqlite:///{tmp_path}/data/fotakit.db"
    Store.open(url).close()
    assert (tmp_path / "data" / "fotakit.db").is_file()


def test_default_db_url_of_a_relative_directory_is_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert default_db_url(Path("rel")) == f"sqlite:///{tmp_path}/rel/fotakit.db"
