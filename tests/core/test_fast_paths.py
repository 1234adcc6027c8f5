"""The fast paths (billing_core/store/sqlite_fast.py, and PgFastConnection in pg_fast.py) read and
write exactly what SQLAlchemy would: same rows, same types (booleans stay booleans), same exception
classes, and inserts that leave columns to their defaults still get them. Every test runs on both
databases (the ``core`` fixture)."""
from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc

from billing_core.api import BillingCore
from billing_core.store import sqlite_fast
from billing_core.store import statements as sql
from billing_core.store.pg_fast import PgFastConnection
from billing_core.store.sqlite_fast import FastConnection
from tests.factories import seed


def _both(conn, stmt, params):
    """(fast result, SQLAlchemy result) of one statement, rows as plain dicts."""
    fast = conn.execute(stmt, params).mappings().all()
    slow = conn._conn.execute(stmt, params).mappings().all()
    return fast, [dict(r) for r in slow]


async def test_every_hot_statement_is_on_the_fast_path(core):
    registered = {id(s) for s in sqlite_fast.registered()}
    for name in ("Q_SESSION", "Q_SESSION_VIEW", "Q_ACCOUNT_BY_ID_LOCK", "Q_ACCOUNT_BY_ENDPOINT_LOCK",
                 "U_SESSION_ANSWER", "U_SESSION_SETTLED", "U_ACCOUNT_BALANCE", "I_SESSION", "I_LEDGER",
                 "Q_ANSWERED_CUTOFFS"):
        assert id(getattr(sql, name)) in registered, name


async def test_fast_rows_equal_sqlalchemy_rows_with_the_same_types(core):
    await seed(core, account="acme", endpoint="alice", balance="10.00")
    auth = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", pbx_id="p1",
                                     channel_id="c1")
    assert auth.allowed
    await core.answer(auth.session_id, at_ms=core.clock.now_ms())

    def check(conn):
        assert isinstance(conn, (FastConnection, PgFastConnection))
        out = {}
        for stmt, params in ((sql.Q_SESSION, {"sid": auth.session_id}),
                             (sql.Q_SESSION_VIEW, {"sid": auth.session_id}),
                             (sql.Q_SESSION_BY_CHANNEL, {"pbx_id": "p1", "channel_id": "c1"}),
                             (sql.Q_ACCOUNT_BY_ENDPOINT_LOCK, {"endpoint": "alice"}),
                             (sql.Q_ACCOUNT_BY_ID_LOCK, {"aid": 1}),
                             (sql.Q_LEDGER_BY_KEY, {"key": "seed:acme"})):
            fast, slow = _both(conn, stmt, params)
            assert fast == slow and len(fast) == 1
            for key, value in slow[0].items():
                assert type(fast[0][key]) is type(value), key
            out[stmt] = fast[0]
        return out

    rows = await core.store.run(check)
    session = rows[sql.Q_SESSION]
    assert session["emergency"] is False and session["stale"] is False  # Boolean, not 0
    assert session["state"] == "answered"
    assert rows[sql.Q_ACCOUNT_BY_ID_LOCK]["low_balance_armed"] in (True, False)


async def test_update_rowcount_and_literal_binds(core):
    await seed(core, account="acme", endpoint="alice", balance="10.00")
    auth = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", pbx_id="p1",
                                     channel_id="c1")

    at = core.clock.now_ms() + 1  # an answer after the authorize (earlier ones start at the authorize)

    def answer_twice(conn):
        params = {"sid": auth.session_id, "at": at, "now": 3}
        first = conn.execute(sql.U_SESSION_ANSWER, params)
        row = first.mappings().first()
        second = conn.execute(sql.U_SESSION_ANSWER, params)  # state == 'authorized' no longer holds
        return first.rowcount, row, second.rowcount, second.mappings().first()

    first, row, second, none = await core.store.run(answer_twice)
    assert (first, second, none) == (1, 0, None)
    # the cut-off computed from the row: answered at `at` + the 60 s granted; last seen never moves back
    assert (row["state"], row["answered_at"], row["cutoff_at"]) == ("answered", at, at + 60_000)
    assert row["last_seen_at"] == row["created_at"] > 3  # authorized later than the 3 passed: kept
    assert row["account_ref"] == "acme"


async def test_errors_are_sqlalchemy_errors_and_write_nothing(core):
    await seed(core, account="acme", endpoint="alice", balance="10.00")

    def duplicate_ledger_row(conn):
        row = conn.execute(sql.Q_LEDGER_BY_KEY, {"key": "seed:acme"}).mappings().one()
        conn.execute(sql.I_LEDGER, dict(row))

    with pytest.raises(sa_exc.IntegrityError):
        await core.store.run(duplicate_ledger_row)
    account = await core.account("acme")
    assert account.balance == 10_000_000


async def test_inserts_leave_the_key_to_the_database_and_defaults_to_sqlalchemy(core):
    """A ledger row without its id (the database assigns it) runs on the fast path; a row that
    also leaves out a column with a default (``reason``) goes through SQLAlchemy, which applies it."""
    await seed(core, account="acme", endpoint="alice", balance="10.00")

    def insert_partial(conn):
        row = dict(conn.execute(sql.Q_LEDGER_BY_KEY, {"key": "seed:acme"}).mappings().one())
        first_id = row.pop("id")
        row["idempotency_key"] = "copy"
        assert sqlite_fast.bind(sql.I_LEDGER, row, (), {}, conn.dialect) is not None  # fast
        conn.execute(sql.I_LEDGER, row)
        defaults = {k: v for k, v in row.items() if k != "reason"} | {"idempotency_key": "copy-2"}
        assert sqlite_fast.bind(sql.I_LEDGER, defaults, (), {}, conn.dialect) is None  # SQLAlchemy
        conn.execute(sql.I_LEDGER, defaults)
        return first_id, [conn.execute(sql.Q_LEDGER_BY_KEY, {"key": k}).mappings().one() for k in ("copy", "copy-2")]

    first_id, (copy, with_default) = await core.store.run(insert_partial)
    assert first_id < copy["id"] < with_default["id"] and copy["amount"] == 10_000_000
    assert with_default["reason"] == ""


async def test_released_pool_connections_are_reset_only_after_an_open_transaction():
    """pg_fast's pool skips asyncpg's reset query on release, except for a connection left inside a
    transaction (an interrupted authorize), which gets the full reset. (PostgreSQL only.)"""
    import asyncpg

    from billing_core.store.pg_fast import _reset_if_needed
    from tests.conftest import PG_URL, _asyncpg_dsn

    conn = await asyncpg.connect(_asyncpg_dsn(PG_URL))
    try:
        await conn.execute("SET application_name = 'kept'")
        await _reset_if_needed(conn)   # idle: nothing sent, the session setting stays
        assert await conn.fetchval("SHOW application_name") == "kept"
        tx = conn.transaction()
        await tx.start()
        await _reset_if_needed(conn)   # left inside a transaction: rolled back and reset
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SHOW application_name") != "kept"
    finally:
        await conn.close()


async def test_postgres_pool_has_no_overflow_and_a_full_pool_is_a_storage_error():
    """PostgresStore keeps ``pool_size`` connections and opens no overflow ones (a returned overflow
    connection is closed: churn). When none comes free in time, store.run says "database busy"
    as a StorageError, the error every caller already handles (authorize refuses with 503)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from billing_core.store.engine import PostgresStore, StorageError, parse_db_url
    from tests.conftest import PG_URL

    store = PostgresStore(parse_db_url(PG_URL), pool_size=2)
    assert (store.engine.pool.size(), store.engine.pool._max_overflow) == (2, 0)
    await store.close()
    store._engine = create_async_engine(store.engine.url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        async with store.engine.connect() as held:    # the only connection, taken
            await held.execute(text("SELECT 1"))
            with pytest.raises(StorageError, match="database busy"):
                await store.run(lambda conn: conn.execute(text("SELECT 1")).scalar())
        assert await store.run(lambda conn: conn.execute(text("SELECT 1")).scalar()) == 1  # free again
    finally:
        await store.close()


async def test_the_fast_paths_error_policy_is_the_generic_one():
    """pg_fast.run_fast_op: deadlocks and serialization failures retried, a database that cannot
    answer is StorageError (fail closed), a duplicate key SQLAlchemy's IntegrityError, anything
    else raised as it is."""
    import asyncpg

    from billing_core.store.engine import StorageError
    from billing_core.store.pg_fast import run_fast_op

    attempts = []

    async def deadlocked_twice(value):
        attempts.append(value)
        if len(attempts) < 3:
            raise (asyncpg.DeadlockDetectedError if len(attempts) == 1 else asyncpg.SerializationError)("victim")
        return value

    assert await run_fast_op(deadlocked_twice, "ok") == "ok" and attempts == ["ok"] * 3

    async def always_deadlocked():
        attempts.append(1)
        raise asyncpg.DeadlockDetectedError("victim")

    attempts.clear()
    with pytest.raises(asyncpg.DeadlockDetectedError):
        await run_fast_op(always_deadlocked)
    assert len(attempts) == 5

    for exc in (asyncpg.AdminShutdownError("shutting down"), asyncpg.UndefinedTableError("no table"),
                asyncpg.InvalidCatalogNameError("no database"), ConnectionRefusedError(111, "refused"),
                asyncpg.InterfaceError("connection is closed"), TimeoutError()):
        async def failing(exc=exc):
            raise exc

        with pytest.raises(StorageError, match="database unavailable"):
            await run_fast_op(failing)

    async def duplicate():
        raise asyncpg.UniqueViolationError("duplicate key value violates unique constraint")

    with pytest.raises(sa_exc.IntegrityError):
        await run_fast_op(duplicate)

    async def bad_value():
        raise asyncpg.NumericValueOutOfRangeError("bigint out of range")

    with pytest.raises(asyncpg.NumericValueOutOfRangeError):
        await run_fast_op(bad_value)
