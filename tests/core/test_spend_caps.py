"""Issue 18's daily and monthly spend caps on both databases: a second balance under the holds
(cap − charged in the period − live holds), days in the package's time zone; 50 concurrent
authorizations never take more than the cap; `verify` checks the counters and the caps."""
from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from billing_core.domain import fraud_limits
from billing_core.domain.errors import DenyReason, InvalidInput
from billing_core.domain.money import parse_amount
from billing_core.sidecar.batch_debit import debit_due_batched
from billing_core.store.tables import accounts
from tests.factories import seed

TORONTO = ZoneInfo("America/Toronto")
NOON = int(datetime(2026, 12, 7, 12, 0, tzinfo=TORONTO).timestamp() * 1000)
NUMBER = "15145550100"  # prefix 1514: 0.01/min, 60/6 increments


def test_period_keys_follow_the_zone():
    late = int(datetime(2026, 12, 7, 23, 30, tzinfo=TORONTO).timestamp() * 1000)
    assert fraud_limits.period_keys(late, "America/Toronto") == (20261207, 202612)
    assert fraud_limits.period_keys(late, "UTC") == (20261208, 202612)
    assert fraud_limits.period_start_ms(20261207, "America/Toronto") == \
        int(datetime(2026, 12, 7, tzinfo=TORONTO).timestamp() * 1000)
    assert fraud_limits.period_start_ms(202612, "UTC") == int(datetime(2026, 12, 1, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)


async def _settle_max(core, a):
    await core.answer(a.session_id, core.clock.now_ms())
    core.clock.advance(a.granted_seconds)
    return await core.settle(a.session_id, a.granted_seconds * 1000)


async def test_the_cap_shortens_grants_then_refuses_and_a_new_day_starts_again(core, clock):
    clock.set(NOON)
    await seed(core, balance="100.00")
    await core.admin.set_package("basic", daily_cap=parse_amount("0.05"), timezone="America/Toronto")
    q = await core.admin.quote("acme", NUMBER)
    assert q["allowed"] and q["max_talk_seconds"] == 300  # 0.05 at 0.01/min
    a = await core.authorize_call(direction="outbound", number=NUMBER, endpoint="alice", channel_id="c1",
                                  full_hold=True)
    assert a.allowed and a.granted_seconds == 300
    b = await core.authorize_call(direction="outbound", number=NUMBER, endpoint="alice", channel_id="c2")
    assert b.reason == DenyReason.SPEND_LIMIT  # the live hold takes the whole cap
    s = await _settle_max(core, a)
    assert s.cost == parse_amount("0.05")
    rules = await core.admin.account_rules("acme")
    assert rules["spend"] == {"today": "0.05", "this_month": "0.05", "remaining_cap": "0.00"}
    assert (await core.admin.quote("acme", NUMBER))["reason"] == "spend_limit"
    assert await core.admin.verify() == []
    clock.advance(ms=86_400_000)  # tomorrow: a fresh day, the month still counts
    await core.admin.set_account_rules("acme", monthly_cap=parse_amount("0.08"))
    a = await core.authorize_call(direction="outbound", number=NUMBER, endpoint="alice", channel_id="c3",
                                  full_hold=True)
    assert a.allowed and a.granted_seconds == 180  # what the month has left: 0.03
    rules = await core.admin.account_rules("acme")
    assert rules["spend"]["today"] == "0.00" and rules["spend"]["this_month"] == "0.05"
    assert rules["limits"]["monthly_cap"] == "0.08" and rules["limits"]["daily_cap"] == "0.05"


async def test_chunk_extensions_stop_at_the_cap(core, clock):
    clock.set(NOON)
    await seed(core, balance="100.00")
    await core.admin.set_package("basic", daily_cap=parse_amount("0.03"))
    a = await core.authorize_call(direction="outbound", number=NUMBER, endpoint="alice", channel_id="c1")
    assert a.granted_seconds == 60 and a.max_talk_seconds == 180
    await core.answer(a.session_id, clock.now_ms())
    for _ in range(6):
        clock.advance(ms=50_000)
        await core.debit_elapsed(a.session_id)
    assert (await core.get_session(a.session_id)).granted_seconds == 180
    clock.advance(ms=60_000)
    s = await core.settle(a.session_id, 400_000)  # reported beyond the grant: charged only up to the cap
    assert s.cost <= parse_amount("0.03") and "spend_cap" in s.clamped
    assert await core.admin.verify() == []


async def test_fifty_concurrent_authorizations_never_exceed_the_cap(core, clock):
    clock.set(NOON)
    await seed(core, balance="100.00", max_calls=100)
    cap = parse_amount("0.25")
    await core.admin.set_package("basic", daily_cap=cap)

    async def call(i):
        return await core.authorize_call(direction="outbound", number=NUMBER, endpoint="alice", pbx_id=f"p{i % 3}",
                                         channel_id=f"ch{i}", full_hold=bool(i % 2))

    results = await asyncio.gather(*(call(i) for i in range(50)))
    allowed = [r for r in results if r.allowed]
    assert allowed and {r.reason for r in results if not r.allowed} <= {DenyReason.SPEND_LIMIT}
    acct = await core.account("acme")
    assert acct.held <= cap
    for a in allowed:  # everybody talks as long as possible, chunked calls extending
        await core.answer(a.session_id, clock.now_ms())
    for i in range(10):  # the core's per-call debits and the sidecar's batched pass, in turn
        clock.advance(ms=30_000)
        if i % 2:
            await debit_due_batched(core, clock.now_ms(), lookahead_seconds=10)
        else:
            await asyncio.gather(*(core.debit_elapsed(a.session_id) for a in allowed))
    clock.advance(ms=3_600_000)
    await asyncio.gather(*(core.settle(a.session_id, 3_600_000) for a in allowed))
    rules = await core.admin.account_rules("acme")
    assert parse_amount(rules["spend"]["today"]) <= cap
    assert (await core.account("acme")).balance >= parse_amount("100.00") - cap
    assert await core.admin.verify() == []


async def test_verify_names_a_wrong_counter_and_a_cap_exceeded(core, clock):
    clock.set(NOON)
    await seed(core, balance="100.00")
    a = await core.authorize_call(direction="outbound", number=NUMBER, endpoint="alice", full_hold=True)
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(ms=120_000)
    await core.settle(a.session_id, 120_000)  # 0.02 spent, no cap yet
    assert await core.admin.verify() == []
    await core.admin.set_account_rules("acme", daily_cap=parse_amount("0.01"))
    assert any("exceed its daily cap" in p for p in await core.admin.verify())
    await core.admin.set_account_rules("acme", daily_cap="package")
    await core.store.run(lambda conn: conn.execute(update(accounts).values(spend_day=1)))
    assert any("this day's spend counter" in p for p in await core.admin.verify())


@pytest.mark.parametrize("kw, field", [
    (dict(daily_cap=-1), "--daily-cap"), (dict(monthly_cap=True), "--monthly-cap"),
    (dict(timezone="Mars/Olympus"), "--timezone"), (dict(timezone=""), "--timezone"),
])
async def test_bad_caps_name_the_field(core, kw, field):
    await seed(core)
    with pytest.raises(InvalidInput, match=f"^{field}"):
        await core.admin.set_package("basic", **kw)
