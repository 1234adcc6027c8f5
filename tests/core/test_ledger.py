"""Ledger, holds, answer/extend/debit/settle and lifecycle alerts on both databases."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from billing_core.domain.errors import InvalidInput, NotFound
from billing_core.domain.rating import Rate
from billing_core.store.tables import ledger, outbox
from tests.factories import seed

OUT = dict(direction="outbound", endpoint="alice")


async def _alerts(core):
    rows = await core.store.run(lambda c: c.execute(select(outbox.c.kind, outbox.c.dedupe_key, outbox.c.context).order_by(outbox.c.id)).all())
    return [(k, d, json.loads(ctx)) for k, d, ctx in rows]


async def test_credit_is_idempotent(core):
    await seed(core, balance="0")
    e1 = await core.credit("acme", 5_000_000, "top-up", kind="payment", idempotency_key="CAP-1")
    e2 = await core.credit("acme", 5_000_000, "top-up", kind="payment", idempotency_key="CAP-1")
    assert not e1.replayed and e2.replayed and e1.entry_id == e2.entry_id
    assert (await core.account("acme")).balance == 5_000_000
    with pytest.raises(InvalidInput, match="idempotency key"):
        await core.credit("acme", 6_000_000, "top-up", kind="payment", idempotency_key="CAP-1")
    receipts = [a for a in await _alerts(core) if a[0] == "topup_receipt"]
    assert len(receipts) == 1 and receipts[0][2]["amount"] == "5.00"


async def test_credit_rejects_bad_input_and_unknown_refs(core):
    await seed(core)
    with pytest.raises(NotFound):
        await core.credit("nobody", 1, "x")
    with pytest.raises(InvalidInput):
        await core.credit("acme", 0, "x")
    with pytest.raises(InvalidInput):
        await core.credit("acme", 1, "  ")
    with pytest.raises(InvalidInput):
        await core.credit("acme", 1.5, "x")  # type: ignore[arg-type]


async def test_call_lifecycle_settles_once(core, clock):
    await seed(core, balance="10.00", deck=[Rate("1", 12_500, 0, 60, 6)])
    a = await core.authorize_call(number="15145550100", **OUT)
    s = await core.answer(a.session_id, clock.now_ms())
    assert s.state == "answered" and s.cutoff_at == clock.now_ms() + 60_000
    clock.advance(61)
    st1 = await core.settle(a.session_id, 61_000)
    assert st1.cost == 13_750 and st1.final_charge == 13_750 and not st1.replayed
    st2 = await core.settle(a.session_id, 999_000)
    assert st2.replayed and st2.cost == 13_750
    acct = await core.account("acme")
    assert acct.balance == 10_000_000 - 13_750 and acct.held == 0 and acct.live_calls == 0
    assert await core.admin.verify() == []


async def test_answer_returns_what_is_stored_and_answers_once(core, clock):
    """answer() builds its result from the row it read plus what its UPDATE wrote: it must equal a
    fresh read; a second answer changes nothing; an answer after settle leaves the settled row."""
    await seed(core)
    a = await core.authorize_call(number="15145550100", **OUT)
    clock.advance(1)  # an answer comes after the authorize (an earlier one starts at the authorize)
    at = clock.now_ms() - 250
    first = await core.answer(a.session_id, at)
    assert first == await core.get_session(a.session_id)
    assert (first.state, first.answered_at) == ("answered", at) and first.cutoff_at == at + a.granted_seconds * 1000
    clock.advance(5)
    assert await core.answer(a.session_id, clock.now_ms()) == first   # the first answer stands
    b = await core.authorize_call(number="15145550100", **OUT)
    await core.settle(b.session_id, 0)
    late = await core.answer(b.session_id, clock.now_ms())
    assert late.state == "settled" and late.answered_at is None and late == await core.get_session(b.session_id)
    e = await core.authorize_call(number="911", **OUT)
    emergency = await core.answer(e.session_id, clock.now_ms())
    assert emergency.state == "answered" and emergency.cutoff_at is None  # no cut-off, ever
    assert emergency == await core.get_session(e.session_id)
    with pytest.raises(NotFound):
        await core.answer("no-such-session", clock.now_ms())


async def test_unanswered_settles_at_zero(core):
    await seed(core)
    a = await core.authorize_call(number="15145550100", **OUT)
    assert (await core.account("acme")).live_calls == 1
    st = await core.settle(a.session_id, 50_000)  # never answered: talk ignored
    assert st.cost == 0 and st.talk_ms == 0
    acct = await core.account("acme")
    assert acct.balance == 10_000_000 and acct.held == 0 and acct.live_calls == 0  # hold and slot released
    assert await core.admin.verify() == []


async def test_settle_records_an_answer_it_is_given_in_its_own_transaction(core, clock):
    """Continue mode and FastAGI learn the answer only at the end: settle(answered_at_ms=…) records
    it as answer() would (the talk is then charged), and a call already answered keeps its first."""
    await seed(core, balance="10.00", deck=[Rate("1", 12_500, 0, 60, 6)])
    a = await core.authorize_call(number="15145550100", **OUT, full_hold=True)
    clock.advance(70)
    st = await core.settle(a.session_id, 61_000, answered_at_ms=clock.now_ms() - 61_000)
    assert (st.talk_ms, st.cost) == (61_000, 13_750)
    s = await core.get_session(a.session_id)
    assert s.state == "settled" and s.answered_at == clock.now_ms() - 61_000
    b = await core.authorize_call(number="15145550100", **OUT, full_hold=True)
    clock.advance(1)
    first = clock.now_ms()
    await core.answer(b.session_id, first)
    clock.advance(30)
    await core.settle(b.session_id, 30_000, answered_at_ms=first + 10_000)
    assert (await core.get_session(b.session_id)).answered_at == first  # the first answer stands
    c = await core.authorize_call(number="15145550100", **OUT, full_hold=True)
    assert (await core.settle(c.session_id, 0)).cost == 0  # no answer given, never answered: free
    assert (await core.settle(c.session_id, 5_000, answered_at_ms=clock.now_ms())).replayed  # settled stays
    assert (await core.get_session(c.session_id)).answered_at is None
    assert await core.admin.verify() == []


async def test_extend_holds_next_chunk_and_partial_grant_moves_cutoff(core, clock):
    await seed(core, balance="0.02", deck=[Rate("1", 12_500, 0, 60, 6)])  # 0.0125/min → 96 s max
    a = await core.authorize_call(number="15145550100", **OUT)
    assert a.granted_seconds == 60
    t0 = clock.now_ms()
    await core.answer(a.session_id, t0)
    s = await core.extend(a.session_id)
    assert s.granted_seconds == 96 and s.cutoff_at == t0 + 96_000  # partial: what is left
    assert (await core.account("acme")).held == 20_000
    s2 = await core.extend(a.session_id)
    assert s2.granted_seconds == 96


async def test_manual_debit_mid_call_pulls_the_cutoff_in(core, clock):
    await seed(core, balance="1.00", deck=[Rate("1", 600_000, 0, 6, 6)])  # 0.60/min = 0.01/s
    a = await core.authorize_call(number="15145550100", **OUT)
    t0 = clock.now_ms()
    await core.answer(a.session_id, t0)
    await core.credit("acme", -960_000, "manual debit", kind="debit")  # leaves 0.04 beside the 0.60 hold... over-committed
    s = await core.extend(a.session_id)
    assert s.granted_seconds < 60 and s.cutoff_at == t0 + s.granted_seconds * 1000


async def test_debit_chunks_idempotent_and_settle_reconciles(core, clock):
    await seed(core, balance="10.00", deck=[Rate("1", 60_000, 0, 1, 1)])  # 0.06/min = 0.001/s
    a = await core.authorize_call(number="15145550100", **OUT)
    t0 = clock.now_ms()
    await core.answer(a.session_id, t0)
    clock.advance(130)
    s = await core.debit_elapsed(a.session_id)
    assert s.chunks_debited == 1 and s.charged == 60_000  # only the granted first minute can be debited
    s = await core.debit_elapsed(a.session_id)  # replay: the extension now covers chunk 2
    assert s.chunks_debited == 2 and s.charged == 120_000
    s = await core.debit_elapsed(a.session_id)
    assert s.chunks_debited == 2 and s.charged == 120_000
    keys = await core.store.run(lambda c: c.execute(select(ledger.c.idempotency_key).where(ledger.c.kind == "chunk")).scalars().all())
    assert sorted(keys) == [f"chunk:{a.session_id}:1", f"chunk:{a.session_id}:2"]
    st = await core.settle(a.session_id, 130_000)
    assert st.cost == 130_000 and st.charged_by_chunks == 120_000 and st.final_charge == 10_000
    acct = await core.account("acme")
    assert acct.balance == 10_000_000 - 130_000 and acct.held == 0
    assert await core.admin.verify() == []


async def test_settle_shorter_than_debited_gives_money_back(core, clock):
    await seed(core, balance="10.00", deck=[Rate("1", 60_000, 0, 1, 1)])
    a = await core.authorize_call(number="15145550100", **OUT)
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(61)
    await core.debit_elapsed(a.session_id)
    st = await core.settle(a.session_id, 59_000)  # the gate measured slightly less
    assert st.final_charge == -1_000
    assert (await core.account("acme")).balance == 10_000_000 - 59_000
    assert await core.admin.verify() == []


async def test_low_balance_once_per_crossing_and_depleted(core, clock):
    await seed(core, balance="6.00", low_balance="5.00")
    await core.credit("acme", -2_000_000, "debit", kind="debit")   # 4.00 < 5.00 → alert
    await core.credit("acme", -1_000_000, "debit", kind="debit")   # 3.00 still below → nothing
    await core.credit("acme", 3_000_000, "top-up", kind="payment")  # 6.00 → re-armed
    await core.credit("acme", -2_000_000, "debit", kind="debit")   # 4.00 → second alert
    await core.credit("acme", -4_000_000, "debit", kind="debit")   # 0.00 → depleted
    acct = await core.account("acme")
    assert acct.status == "depleted"
    kinds = [(k, d) for k, d, _ in await _alerts(core)]
    assert [k for k, _ in kinds] == ["low_balance", "topup_receipt", "low_balance", "depleted"]
    first = (await _alerts(core))[0][2]
    assert first["balance"] == "4.00" and first["threshold"] == "5.00"
    await core.credit("acme", 30_000_000, "top-up", kind="payment")
    assert (await core.account("acme")).status == "active"


async def test_overrun_is_charged_and_reported(core, clock):
    await seed(core, balance="10.00", deck=[Rate("1", 60_000, 0, 1, 1)])
    a = await core.authorize_call(number="15145550100", **OUT)
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(90)
    st = await core.settle(a.session_id, 90_000)
    assert st.cost == 90_000 and st.overrun == 30_000
    assert (await core.account("acme")).balance == 10_000_000 - 90_000


async def test_debit_due_touches_only_calls_with_work(core, clock):
    await seed(core, balance="10.00", deck=[Rate("1", 60_000, 0, 1, 1)], max_calls=50)
    ids = []
    sessions = [await core.authorize_call(number="15145550100", **OUT) for _ in range(5)]
    clock.advance(100)
    for n, a in enumerate(sessions):
        await core.answer(a.session_id, clock.now_ms() - n * 25_000)  # answered 0, 25, 50, 75, 100 s ago
        ids.append(a.session_id)
    first = await core.debit_due(lookahead_seconds=10)
    assert first["processed"] >= 3
    again = await core.debit_due(lookahead_seconds=10)  # a replayed pass charges nothing more
    charged = [(await core.get_session(i)).charged for i in ids]
    assert again["processed"] <= first["processed"]
    assert charged == [(await core.get_session(i)).charged for i in ids]
    assert charged[4] == 60_000  # 100 s in: one full 60 s chunk
    assert await core.admin.verify() == []


async def test_settle_many_settles_each_once(core, clock):
    await seed(core, balance="10.00", deck=[Rate("1", 60_000, 0, 1, 1)], max_calls=50)
    await seed(core, account="beta", endpoint="bob", did=None, balance="10.00", max_calls=50)
    ids = []
    for ep in ("alice", "bob", "alice"):
        a = await core.authorize_call(direction="outbound", number="15145550100", endpoint=ep)
        await core.answer(a.session_id, clock.now_ms())
        ids.append(a.session_id)
    clock.advance(30)
    first = await core.settle(ids[0], 10_000)
    results = await core.settle_many([(ids[0], 30_000, "x"), (ids[1], 20_000, "stale"), (ids[2], 5_000, None)], stale=True)
    by_id = {r.session_id: r for r in results}
    assert by_id[ids[0]].replayed and by_id[ids[0]].cost == first.cost
    assert not by_id[ids[1]].replayed and by_id[ids[1]].talk_ms == 20_000
    assert (await core.get_session(ids[1])).stale
    assert await core.admin.verify() == []
    assert (await core.account("acme")).live_calls == 0 and (await core.account("beta")).live_calls == 0
