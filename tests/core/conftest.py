"""Fixtures of the core's CLI tests."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from callgate.cli import main


@pytest.fixture
def cg(sync_db_url):
    """``cg(*args, ok=True)``: the callgate CLI on the test database, in process; ``ok`` asserts exit 0."""
    runner = CliRunner()

    def run(*args, ok=True):
        result = runner.invoke(main, ["--db", sync_db_url, *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run
