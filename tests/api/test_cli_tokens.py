"""``fotakit tokens create|list|revoke`` on a real SQLite database (typer's runner)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fotakit.api import Role, TokenStore
from fotakit.cli import app
from fotakit.store import default_db_url


def test_create_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    r = runner.invoke(app, ["tokens", "create", "ci", "--role", "operator", *data])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("fk_")
    store = TokenStore.open(default_db_url(tmp_path))
    try:
        info = store.verify(token)
        assert info is not None and info.role is Role.OPERATOR and info.name == "ci"
    finally:
        store.close()
    r = runner.invoke(app, ["tokens", "list", *data])
    assert r.exit_code == 0 and info.id in r.stdout and token not in r.stdout
    r = runner.invoke(app, ["tokens", "revoke", info.id, *data])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["tokens", "revoke", info.id, *data])
    assert r.exit_code == 1 and "no token" in r.output
    r = runner.invoke(app, ["tokens", "create", "x", "--role", "root", *data])
    assert r.exit_code == 2 and "unknown role" in r.output
