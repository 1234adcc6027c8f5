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


def _downgrade(conn, target: str) -> None:
    from alembic import command

    cfg = migrate.alembic_config()
    cfg.attributes["connection"] = conn
    command.downgrade(cfg, target)


def _tables(conn) -> set[str]:
    from sqlalchemy import inspect

    return set(inspect(conn).get_table_names())


async def test_0012_fills_the_day_totals_from_settled_calls_and_goes_down_cleanly(db_url):
    """Issue 20's migration: calls settled before it are in call_day_totals (per account and UTC
    day of their start; calls without an account under 0), live calls are not; down removes both
    tables and up again rebuilds the same totals."""
    from sqlalchemy import text

    await migrate.upgrade(db_url, "0011")
    day = 86_400_000
    t0 = 1_795_000_000_000 - 1_795_000_000_000 % day

    def add_calls(conn):
        conn.execute(text(
            "INSERT INTO plans (id, name, version, rate_count, created_at, updated_at) VALUES (1, 'p', 1, 0, 0, 0)"))
        conn.execute(text(
            "INSERT INTO packages (id, name, plan_id, low_balance, max_calls, inbound_rate, created_at, updated_at) "
            "VALUES (1, 'k', 1, 0, 1, 0, 0, 0)"))
        conn.execute(text(
            "INSERT INTO accounts (id, ref, name, email, package_id, currency, balance, credit_limit, held, live_calls, "
            "status, low_balance_armed, low_balance_crossings, depletions, created_at, updated_at) "
            "VALUES (7, 'a', 'A', 'a@example.test', 1, 'CAD', 0, 0, 0, 0, 'active', true, 0, 0, 0, 0)"))
        for n, (account, at, state, talk, cost) in enumerate([
                (7, t0 + 5, "settled", 60_000, 12_500), (7, t0 + day - 1, "settled", 6_000, 1_250),
                (7, t0 + day, "settled", 0, 0), (None, t0 + 9, "settled", 20_000, 0), (7, t0 + 10, "answered", None, None)]):
            conn.execute(text(
                "INSERT INTO call_sessions (id, pbx_id, channel_id, account_id, direction, number, state, hold_mode, "
                "emergency, created_at, last_seen_at, talk_ms, cost, rate_per_min, connect_fee, initial_increment, "
                "increment, chunk_seconds, granted_seconds, hold, charged, chunks_debited, stale) VALUES "
                "(:id, 'p', :ch, :aid, 'outbound', '1', :state, 'chunked', false, :at, :at, :talk, :cost, 0, 0, 1, 1, "
                "60, 0, 0, 0, 0, false)"),
                dict(id=f"s{n}", ch=f"c{n}", aid=account, state=state, at=at, talk=talk, cost=cost))

    def totals(conn):
        return sorted(tuple(r) for r in conn.execute(text(
            "SELECT day_ms, account_id, calls, talk_ms, revenue FROM call_day_totals")))

    await migrate._run(db_url, add_calls)
    await migrate.upgrade(db_url, "0012")
    want = [(t0, 0, 1, 20_000, 0), (t0, 7, 2, 66_000, 13_750), (t0 + day, 7, 1, 0, 0)]
    assert await migrate._run(db_url, totals) == want
    assert {"call_refusals", "call_day_totals"} <= await migrate._run(db_url, _tables)

    await migrate._run(db_url, _downgrade, "0011")
    assert await migrate.current(db_url) == "0011"
    assert not {"call_refusals", "call_day_totals"} & await migrate._run(db_url, _tables)
    await migrate.upgrade(db_url, "0012")
    assert await migrate._run(db_url, totals) == want
