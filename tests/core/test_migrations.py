"""Alembic migrations build exactly the schema the code uses, on both databases."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from billing_core.store import migrate
from billing_core.store.schema import metadata


def _diff(conn):
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(ctx, metadata)


async def test_upgrade_head_matches_metadata(db_url):
    before, after = await migrate.upgrade(db_url)
    assert before is None
    assert after == migrate.head_revision()
    assert await migrate._run(db_url, _diff) == []


async def test_upgrade_twice_is_a_no_op(db_url):
    await migrate.upgrade(db_url)
    before, after = await migrate.upgrade(db_url)
    assert before == after == migrate.head_revision()
