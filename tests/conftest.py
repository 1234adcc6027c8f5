"""Shared fixtures: a real SQLite file and a throw-away schema on the real PostgreSQL server.

PostgreSQL comes from CALLGATE_TEST_PG_URL (default postgresql://127.0.0.1:5432/test). Every test
gets its own schema ``cg_<run>_<n>`` (dropped afterwards), so two runs — or two CI jobs — never
collide. PostgreSQL tests are *not* skipped when the server is missing: they fail, because the
contract says they run (set CALLGATE_TEST_PG=skip to opt out locally).
"""
from __future__ import annotations

import asyncio
import itertools
import os
import uuid

import asyncpg
import pytest

from billing_core.api import BillingCore, CoreSettings
from billing_core.clock import FakeClock

PG_URL = os.environ.get("CALLGATE_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")
RUN_ID = uuid.uuid4().hex[:8]
_counter = itertools.count()


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _pg_exec(sql: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(PG_URL))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _backends():
    out = [pytest.param("sqlite", id="sqlite")]
    if os.environ.get("CALLGATE_TEST_PG") != "skip":
        out.append(pytest.param("postgresql", id="pg", marks=pytest.mark.postgres))
    return out


@pytest.fixture(params=_backends())
def backend(request) -> str:
    return request.param


@pytest.fixture
async def db_url(backend, tmp_path):
    """A fresh, empty database URL on the parametrized backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'callgate.db'}"
        return
    schema = f"cg_{RUN_ID}_{next(_counter)}"
    await _pg_exec(f'CREATE SCHEMA "{schema}"')
    try:
        yield _schema_url(schema)
    finally:
        await _pg_exec(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=_backends())
def sync_db_url(request, tmp_path):
    """``db_url`` for synchronous tests (the CLI runs its own event loop through click's runner)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cli.db'}"
        return
    schema = f"cg_{RUN_ID}_{next(_counter)}"
    asyncio.run(_pg_exec(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _schema_url(schema)
    finally:
        asyncio.run(_pg_exec(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def _schema_url(schema: str) -> str:
    return f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_795_000_000_000)


@pytest.fixture
def core_settings() -> CoreSettings:
    return CoreSettings()


@pytest.fixture
async def core(db_url, clock, core_settings):
    """An open BillingCore with the schema created, on both databases."""
    c = await BillingCore.open(db_url, clock=clock, settings=core_settings)
    await c.create_schema()
    try:
        yield c
    finally:
        await c.close()
