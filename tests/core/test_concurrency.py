"""The invariant under concurrency, on both databases: many tasks on several BillingCore instances
(as several gates/PBXs sharing one database) authorize, extend, debit and settle on ONE account.

No account ever goes below −credit_limit, the ledger sums to the balance, no hold is left open."""
from __future__ import annotations

import asyncio
import random

from billing_core.api import BillingCore, CoreSettings
from billing_core.domain.rating import Rate
from tests.factories import seed

DECK = [Rate("1", 600_000, 0, 1, 1)]  # 0.60/min, per second → 0.01/s


async def _one_call(core: BillingCore, rng: random.Random, pbx: str, n: int, clock) -> str:
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", pbx_id=pbx,
                                  channel_id=f"{pbx}-{n}")
    if not a.allowed:
        return a.reason.value
    await asyncio.sleep(rng.random() * 0.002)
    if rng.random() < 0.2:  # never answered
        await core.settle(a.session_id, 0)
        return "unanswered"
    answered = clock.now_ms()
    s = await core.answer(a.session_id, answered)
    for _ in range(rng.randint(0, 3)):
        if rng.random() < 0.5:
            s = await core.extend(a.session_id)
        else:
            s = await core.debit_elapsed(a.session_id, answered + s.granted_seconds * 1000)
    talk_ms = rng.randint(0, s.granted_seconds * 1000)
    st = await core.settle(a.session_id, talk_ms)
    assert st.overrun == 0
    again = await core.settle(a.session_id, talk_ms)
    assert again.replayed and again.cost == st.cost
    return "settled"


async def test_holds_keep_concurrent_calls_within_the_money(db_url, clock):
    settings = CoreSettings(chunk_seconds=30)
    cores = [await BillingCore.open(db_url, clock=clock, settings=settings, pool_size=4) for _ in range(3)]
    await cores[0].create_schema()
    try:
        await seed(cores[0], balance="3.00", credit_limit="0.50", max_calls=25, deck=DECK)
        rng = random.Random(42)
        tasks = [
            _one_call(cores[i % 3], random.Random(rng.random()), f"pbx{i % 3}", i, clock)
            for i in range(90)
        ]
        outcomes = await asyncio.gather(*tasks)
        assert "settled" in outcomes
        acct = await cores[0].account("acme")
        assert acct.balance >= -acct.credit_limit
        assert acct.held == 0 and acct.live_calls == 0
        assert await cores[1].admin.verify() == []
    finally:
        for c in cores:
            await c.close()


async def test_parallel_credits_with_one_key_credit_once(db_url, clock):
    cores = [await BillingCore.open(db_url, clock=clock, pool_size=4) for _ in range(3)]
    await cores[0].create_schema()
    try:
        await seed(cores[0], balance="0")
        entries = await asyncio.gather(*[
            cores[i % 3].credit("acme", 25_000_000, "PayPal", kind="payment", idempotency_key="CAPTURE-XYZ")
            for i in range(12)
        ])
        assert len({e.entry_id for e in entries}) == 1
        assert sum(not e.replayed for e in entries) == 1
        assert (await cores[0].account("acme")).balance == 25_000_000
        assert await cores[2].admin.verify() == []
    finally:
        for c in cores:
            await c.close()


async def test_overlapping_batched_and_single_settles_charge_once(db_url, clock):
    cores = [await BillingCore.open(db_url, clock=clock, pool_size=4) for _ in range(2)]
    await cores[0].create_schema()
    try:
        await seed(cores[0], balance="50.00", max_calls=60, deck=DECK)
        await seed(cores[0], account="beta", endpoint="bob", did=None, balance="50.00", max_calls=60, deck=DECK)
        ids = []
        for n in range(40):
            a = await cores[n % 2].authorize_call(direction="outbound", number="15145550100",
                                                  endpoint="alice" if n % 3 else "bob")
            await cores[0].answer(a.session_id, clock.now_ms())
            ids.append(a.session_id)
        items = [(sid, 10_000 + i * 100, "stale") for i, sid in enumerate(ids)]
        results = await asyncio.gather(
            cores[0].settle_many(items[:30], stale=True, batch=7),
            cores[1].settle_many(list(reversed(items[10:])), stale=True, batch=5),
            *[cores[i % 2].settle(sid, talk) for i, (sid, talk, _) in enumerate(items[5:15])],
        )
        flat = [r for part in results for r in (part if isinstance(part, list) else [part])]
        fresh = [r.session_id for r in flat if not r.replayed]
        assert sorted(fresh) == sorted(ids)  # each session settled exactly once
        assert await cores[1].admin.verify() == []
    finally:
        for c in cores:
            await c.close()


async def test_cancelled_calls_mid_transaction_lose_nothing(core):
    """A gate torn down mid-call (kill, stop) cancels its extend / settle / heartbeat wherever they
    are. Before, on PostgreSQL, a cancelled transaction could leave its pooled connection so that a
    later settle on it reported success and committed nothing, and an extend that lost the race to
    a settle left a hold on the settled call. Now every store operation ends (commit or rollback)
    whatever happens to its caller, extend re-checks the state under the account lock, and after
    each call is settled again by "the new gate" the books balance exactly."""
    await seed(core, balance="100.00")
    rng = random.Random(7)
    calls = 60
    for i in range(calls):
        a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice",
                                      pbx_id="p", channel_id=f"c{i}")
        await core.answer(a.session_id, core.clock.now_ms())
        core.clock.advance(30)
        doomed = [asyncio.create_task(core.extend(a.session_id)), asyncio.create_task(core.settle(a.session_id, 30_000)),
                  asyncio.create_task(core.heartbeat([a.session_id]))]
        await asyncio.sleep(rng.random() * 0.004)
        for t in doomed:
            t.cancel()
        await asyncio.gather(*doomed, return_exceptions=True)
        await core.settle(a.session_id, 30_000)
        s = await core.get_session(a.session_id)
        acct = await core.account("acme")
        assert (s.state, s.hold, acct.held, acct.live_calls) == ("settled", 0, 0, 0), i
    acct = await core.account("acme")
    assert acct.balance == 100_000_000 - calls * 10_000  # 60 s minimum at the 1514 rate (0.01/min), once each
    assert await core.admin.verify() == []
