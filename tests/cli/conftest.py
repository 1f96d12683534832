"""The ``site`` fixture of the CLI tests (a :class:`cli_helpers.CliSite`, one per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cli_helpers import CliSite


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliSite]:
    live = CliSite(tmp_path_factory.mktemp("cli-site"))
    live.start()
    try:
        yield live
    finally:
        live.stop()
