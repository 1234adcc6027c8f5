"""Issue 15, money: the settle bound, the credit limit, manual debits below it and the storage
range — through the core, on both databases."""
from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from billing_core.domain.errors import BelowCreditLimit, InvalidInput
from billing_core.domain.money import STORAGE_MAX, AmountError, check_storage_range, parse_amount
from billing_core.domain.rating import Rate
from billing_core.store.tables import ledger
from tests.factories import seed

OUT = dict(direction="outbound", endpoint="alice")
DECK = [Rate("1", 12_500, 0, 60, 6, "NANP")]  # 0.0125/min, 60/6


def clamped(path: str, bound: str) -> float:
    return REGISTRY.get_sample_value("callgate_settle_clamped_total", {"path": path, "bound": bound}) or 0.0


async def test_settle_never_charges_more_talk_than_time_since_authorize(core, clock):
    """`settle,<session>,,1000000000000000` one ms after authorize charged 208 million."""
    await seed(core, balance="10.00", deck=DECK)
    a = await core.authorize_call(number="15145550100", full_hold=True, **OUT)
    clock.advance(ms=1)
    before = clamped("api", "elapsed")
    st = await core.settle(a.session_id, 1_000_000_000_000_000)  # never answered: nothing to pay
    assert st.cost == 0 and st.talk_ms == 0
    a = await core.authorize_call(number="15145550100", full_hold=True, channel_id="c2", **OUT)
    await core.answer(a.session_id, clock.now_ms() - 1_000_000_000_000_000)  # an absurd back-dated answer
    clock.advance(ms=1)
    st = await core.settle(a.session_id, 1_000_000_000_000_000)
    assert st.talk_ms == 1 and st.billable_seconds == 0 and st.cost == 0 and st.clamped == ("elapsed",)
    s = await core.get_session(a.session_id)
    assert s.talk_ms == 1 and s.billing_basis == "clamped" and s.answered_at == s.created_at
    assert clamped("api", "elapsed") == before + 1
    acct = await core.account("acme")
    assert acct.balance == 10_000_000 and acct.held == 0 and acct.live_calls == 0
    assert await core.admin.verify() == []


async def test_settle_is_bounded_by_the_answer_and_by_a_full_hold_grant(core, clock):
    await seed(core, balance="10.00", deck=DECK)
    # chunked (bridge): at most the time since the answer (+ the clock allowance), measured talk kept
    a = await core.authorize_call(number="15145550100", **OUT)
    clock.advance(30)
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(61)
    st = await core.settle(a.session_id, 61_000, path="bridge")
    assert st.talk_ms == 61_000 and st.clamped == () and st.billing_basis == "measured"
    a = await core.authorize_call(number="15145550100", channel_id="c2", **OUT)
    clock.advance(30)
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(10)
    before = clamped("bridge", "elapsed")
    st = await core.settle(a.session_id, 40_000, path="bridge")  # ring time is no talk
    assert st.talk_ms == 12_000 and st.clamped == ("elapsed",)
    assert clamped("bridge", "elapsed") == before + 1
    # full hold (continue mode, AGI): never more than the grant
    a = await core.authorize_call(number="15145550100", full_hold=True, channel_id="c3", **OUT)
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(10 * 3600)
    before = clamped("agi", "grant")
    st = await core.settle(a.session_id, 10 * 3600 * 1000, path="agi")
    assert st.talk_ms == a.granted_seconds * 1000 and st.clamped == ("grant",)
    assert clamped("agi", "grant") == before + 1
    assert await core.admin.verify() == []


async def test_settle_never_takes_the_account_below_its_credit_limit(core, clock):
    # 0.02 buys 96 s; the first chunk holds 60 s; the call goes on for an hour (a gate that lost
    # its cut-off): the charge stops at the credit limit, and the replay says the same
    await seed(core, balance="0.02", deck=DECK, credit_limit="0.01")
    a = await core.authorize_call(number="15145550100", **OUT)
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(3600)
    before = clamped("api", "credit_limit")
    st = await core.settle(a.session_id, 3600 * 1000)
    assert st.talk_ms == 3_600_000 and st.final_charge == 30_000 and st.cost == 30_000
    assert st.clamped == ("credit_limit",)
    assert clamped("api", "credit_limit") == before + 1
    acct = await core.account("acme")
    assert acct.balance == -10_000 and acct.held == 0
    again = await core.settle(a.session_id, 3600 * 1000)
    assert again.replayed and again.cost == 30_000
    assert await core.admin.verify() == []


async def test_a_settle_leaves_other_calls_their_holds(core, clock):
    await seed(core, balance="0.05", deck=DECK, max_calls=5)
    a = await core.authorize_call(number="15145550100", **OUT)
    b = await core.authorize_call(number="15145550101", channel_id="b", **OUT)
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(3600)
    await core.settle(a.session_id, 3600 * 1000)
    acct = await core.account("acme")
    assert acct.held == (await core.get_session(b.session_id)).hold > 0
    assert acct.balance >= acct.held  # b can still pay what it holds
    await core.settle(b.session_id, 0)
    assert await core.admin.verify() == []


async def test_settle_many_applies_the_same_bound(core, clock):
    await seed(core, balance="10.00", deck=DECK)
    a = await core.authorize_call(number="15145550100", full_hold=True, **OUT)
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(5)
    (st,) = await core.settle_many([(a.session_id, 10 ** 20, None)], stale=True, path="stale", basis="bounded_stale")
    assert st.talk_ms == 5000 and st.clamped == ("elapsed",)
    assert (await core.get_session(a.session_id)).billing_basis == "bounded_stale"
    with pytest.raises(InvalidInput, match="basis"):
        await core.settle(a.session_id, 0, basis="guessed")


async def test_manual_debit_below_the_credit_limit_needs_explicit_permission(core):
    await seed(core, balance="5.00", credit_limit="1.00")
    with pytest.raises(BelowCreditLimit, match="below its credit limit"):
        await core.credit("acme", -parse_amount("6.01"), "manual", kind="debit")
    assert (await core.account("acme")).balance == 5_000_000
    ok = await core.credit("acme", -parse_amount("6.00"), "manual", kind="debit")  # exactly at the limit
    assert ok.balance_after == -1_000_000
    e = await core.credit("acme", -parse_amount("2.00"), "write-off reversal", kind="debit", allow_below_limit=True)
    assert e.balance_after == -3_000_000
    flags = await core.store.run(lambda c: c.execute(select(ledger.c.below_limit_allowed).order_by(ledger.c.id)).scalars().all())
    assert flags == [False, False, True]
    assert await core.admin.verify() == []
    # …but only as far as permitted entries went: without the permission it is a violation again
    await core.store.run(lambda c: c.execute(ledger.update().values(below_limit_allowed=False)))
    problems = await core.admin.verify()
    assert len(problems) == 1 and "below -credit_limit" in problems[0]


def test_storage_range_helper():
    assert check_storage_range(STORAGE_MAX) == STORAGE_MAX
    with pytest.raises(AmountError, match="resulting balance: is beyond what can be stored"):
        check_storage_range(STORAGE_MAX + 1, field="resulting balance")
    assert issubclass(AmountError, InvalidInput)


async def test_the_tenth_huge_credit_is_refused_in_one_line(core):
    await seed(core, balance="0")
    big = parse_amount("999999999999.99")
    for _ in range(9):
        await core.credit("acme", big, "top-up")
    with pytest.raises(InvalidInput, match="resulting balance: is beyond what can be stored"):
        await core.credit("acme", big, "top-up")
    acct = await core.account("acme")
    assert acct.balance == 9 * big
    assert await core.admin.verify() == []


async def test_a_stale_sweep_records_its_basis_and_keeps_the_bound(core, clock):
    from billing_core.sidecar.stale import settle_stale

    await seed(core, balance="10.00", deck=DECK)
    a = await core.authorize_call(number="15145550100", **OUT)
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(300)  # the gate died; nobody reports the call
    report = await settle_stale(core, clock.now_ms(), 120)
    assert report.settled == 1
    s = await core.get_session(a.session_id)
    assert s.stale and s.billing_basis == "bounded_stale" and s.talk_ms == a.granted_seconds * 1000
    assert await core.admin.verify() == []
