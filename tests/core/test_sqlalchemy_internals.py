"""The fast paths run money statements through SQLAlchemy internals (billing_core/store/sqlite_fast.py,
and PgFastConnection in pg_fast.py). setup.cfg pins SQLAlchemy below its next minor version; these
tests say loudly, naming the internal, when the installed SQLAlchemy no longer has what they use,
instead of letting the PostgreSQL path fall back silently or a money statement misread its rows."""
from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import asyncpg as sa_asyncpg

from billing_core.store import pg_fast, sqlite_fast
from billing_core.store import statements as sql
from billing_core.store.pg_fast import PgFastConnection

WHERE = f"SQLAlchemy {sqlalchemy.__version__}"


def _internal(obj, name: str, user: str):
    assert hasattr(obj, name), (
        f"{WHERE} has no {type(obj).__name__}.{name}, which {user} uses on the money path: re-check the fast "
        f"path against this SQLAlchemy before raising the pin in setup.cfg")
    return getattr(obj, name)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect(), sa_asyncpg.dialect()], ids=lambda d: d.driver)
def test_compiled_statements_keep_the_internals_the_fast_paths_read(dialect):
    user = "billing_core/store/sqlite_fast.py (_Compiled)"
    for stmt in sqlite_fast.registered():
        compiled = stmt.compile(dialect=dialect)
        procs = _internal(compiled, "_bind_processors", user)
        assert isinstance(procs, dict), f"{WHERE}: SQLCompiler._bind_processors is no longer a dict ({user})"
        columns = _internal(compiled, "_result_columns", user)
        for entry in columns:
            assert len(entry) >= 4 and isinstance(entry[0], str), (
                f"{WHERE}: SQLCompiler._result_columns entries are no longer (keyname, name, objects, type) ({user})")
            _internal(entry[3], "_cached_result_processor", user)
        _internal(compiled, "positiontup", user)
        _internal(compiled, "params", user)
    # the fast path compiles every registered statement the way it runs them
    for stmt in sqlite_fast.registered():
        sqlite_fast._Compiled(stmt, dialect)


def test_the_asyncpg_adapter_keeps_the_internals_pg_fast_connection_uses():
    adapter = sa_asyncpg.AsyncAdapt_asyncpg_connection
    for name in pg_fast._ADAPTER_INTERNALS:
        _internal(adapter, name, "billing_core/store/pg_fast.py (PgFastConnection)")
    assert pg_fast.fast_supported(adapter)
    _internal(sqlalchemy.util, "await_only", "billing_core/store/pg_fast.py (PgFastConnection)")


async def test_postgresql_transactions_run_on_the_fast_connection(core):
    if core.store.dialect != "postgresql":
        pytest.skip("PostgreSQL only")

    def kind(conn):
        return type(conn), type(conn.connection.dbapi_connection)

    used, adapter = await core.store.run(kind)
    assert used is PgFastConnection, (
        f"{WHERE}: PostgreSQL transactions fell back to plain SQLAlchemy: the asyncpg adapter "
        f"{adapter.__name__} lacks one of {pg_fast._ADAPTER_INTERNALS} (billing_core/store/pg_fast.py)")


def test_sqlalchemy_is_pinned_below_its_next_minor_version():
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    line = next(r for r in cfg["options"]["install_requires"].splitlines() if r.strip().lower().startswith("sqlalchemy"))
    m = re.search(r">=\s*(\d+)\.(\d+)[^,]*,\s*<\s*(\d+)\.(\d+)", line)
    assert m, f"setup.cfg must pin SQLAlchemy to one minor version (>=X.Y,<X.Y+1): {line.strip()}"
    low, high = (int(m[1]), int(m[2])), (int(m[3]), int(m[4]))
    assert high == (low[0], low[1] + 1), f"the pin must allow exactly one minor version: {line.strip()}"
    installed = tuple(int(p) for p in sqlalchemy.__version__.split(".")[:2])
    assert installed == low, f"installed {WHERE} is outside the pin {line.strip()}"
