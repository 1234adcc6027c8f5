"""PostgreSQL's optimistic authorize (billing_core/store/pg_fast.py): an outbound grant is read with
the account row's version and written by one statement guarded by it; a row written in between
(another call, a credit, a settle) makes it decide again under the row lock, on the new row."""
from __future__ import annotations

import pytest

from billing_core.domain.rating import Rate
from billing_core.store import pg_fast
from tests.factories import seed

DECK = [Rate("1", 600_000, 0, 1, 1)]  # 0.60/min, per second: 0.01/s


@pytest.fixture
def pg_core(core):
    if core.store.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    return core


@pytest.fixture
def locked_runs(monkeypatch):
    """How many authorizations the locked transaction decided."""
    runs: list[str] = []
    original = pg_fast.PgFastPath._authorize_locked

    async def spy(self, conn, req, lim):
        runs.append(req.number)
        return await original(self, conn, req, lim)

    monkeypatch.setattr(pg_fast.PgFastPath, "_authorize_locked", spy)
    return runs


async def test_an_outbound_grant_is_decided_without_the_lock(pg_core, locked_runs):
    await seed(pg_core, balance="10.00", deck=DECK)
    a = await pg_core.authorize_call(direction="outbound", number="15145550100", endpoint="alice",
                                     pbx_id="p1", channel_id="c1")
    assert a.allowed and locked_runs == []
    acct = await pg_core.account("acme")
    session = await pg_core.get_session(a.session_id)
    assert acct.live_calls == 1 and acct.held == session.hold > 0
    # the replayed StasisStart finds the same session, and writes nothing
    again = await pg_core.authorize_call(direction="outbound", number="15145550100", endpoint="alice",
                                         pbx_id="p1", channel_id="c1")
    assert again.session_id == a.session_id and locked_runs == []
    assert (await pg_core.account("acme")).held == acct.held


async def test_a_row_written_between_read_and_write_is_decided_again_on_the_new_row(pg_core, locked_runs, monkeypatch):
    await seed(pg_core, balance="1.00", deck=DECK)  # 100 s of talk at 0.01/s
    original_q = pg_fast.PgFastPath._q
    credited = []

    async def q_then_credit(self, conn, key, fetch, **params):
        row = await original_q(self, conn, key, fetch, **params)
        if key == "by_endpoint_versioned" and not credited:  # a top-up lands after the optimistic read
            credited.append(await pg_core.credit("acme", 1_000_000, "top-up", idempotency_key="race-1"))
        return row

    monkeypatch.setattr(pg_fast.PgFastPath, "_q", q_then_credit)
    a = await pg_core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", full_hold=True)
    assert credited and locked_runs == ["15145550100"]
    # decided on the credited row: 2.00 buys 200 s, not the 100 s the stale read would have granted
    assert a.allowed and a.granted_seconds == 200
    acct = await pg_core.account("acme")
    assert acct.held == 2_000_000 and acct.live_calls == 1
    sessions = await pg_core.live_sessions()
    assert [s.session_id for s in sessions] == [a.session_id]
    assert await pg_core.admin.verify() == []


async def test_a_refusal_that_writes_is_decided_under_the_lock(pg_core, locked_runs):
    await seed(pg_core, balance="10.00", deck=DECK)
    await pg_core.admin.set_package("basic", deny_prefixes="881", max_attempts_per_minute="5")
    a = await pg_core.authorize_call(direction="outbound", number="+881612345678", endpoint="alice")
    assert not a.allowed and a.reason.value == "destination_blocked"
    assert locked_runs == ["+881612345678"]  # the attempt counts: a write the optimistic path leaves to the lock
    counted = await pg_core.store.run(
        lambda conn: conn.exec_driver_sql("SELECT attempts_count FROM accounts WHERE ref = 'acme'").scalar())
    assert counted == 1


async def test_a_refusal_that_writes_only_its_record_needs_no_lock(pg_core, locked_runs):
    await seed(pg_core, balance="10.00", deck=DECK, max_calls=1)
    first = await pg_core.authorize_call(direction="outbound", number="15145550100", endpoint="alice")
    second = await pg_core.authorize_call(direction="outbound", number="15145550100", endpoint="alice")
    assert first.allowed and not second.allowed and second.reason.value == "too_many_calls"
    assert locked_runs == []
    assert (await pg_core.account("acme")).live_calls == 1
    recorded = await pg_core.store.run(
        lambda conn: conn.exec_driver_sql("SELECT reason FROM call_refusals").scalars().all())
    assert recorded == ["too_many_calls"]  # the refusal's record, written by itself
