"""Fixtures of the core's CLI tests."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from callgate.cli import main


@pytest.fixture
def cg(sync_db_url):
    """``cg(*args, ok=True, input=None)``: the callgate CLI on the test database, in process; ``ok``
    asserts exit 0; ``input`` is its standard input."""
    runner = CliRunner()

    def run(*args, ok=True, input=None):
        result = runner.invoke(main, ["--db", sync_db_url, *args], input=input, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run
