"""Issue 18's --max-attempts-per-minute: counted in the database on the locked account row, so
gates sharing one database share the budget (two cores on the same PostgreSQL schema / SQLite
file); refusal rate_limited (SIP 503)."""
from __future__ import annotations

import asyncio

import pytest

from billing_core.api import BillingCore
from billing_core.domain import fraud_limits
from billing_core.domain.errors import DenyReason, InvalidInput
from tests.factories import seed

T0 = 1_795_000_020_000  # 20 s into a minute


def _acct(limit, minute=0, count=0, prev=0):
    return {"max_attempts_per_minute": limit, "attempts_minute": minute, "attempts_count": count,
            "attempts_prev": prev}


def test_sliding_window():
    assert fraud_limits.attempt(_acct(None), T0) is None
    m = T0 // 60_000
    assert fraud_limits.attempt(_acct(3, m, 2), T0) == fraud_limits.Attempt(True, m, 3, 0)
    assert not fraud_limits.attempt(_acct(3, m, 3), T0).allowed
    # a new minute: the previous one's 3 attempts still weigh 40 s / 60 s = 2 → one more fits
    start_next = (m + 1) * 60_000 + 20_000
    assert fraud_limits.attempt(_acct(3, m, 3), start_next) == fraud_limits.Attempt(True, m + 1, 1, 3)
    assert not fraud_limits.attempt(_acct(3, m + 1, 1, 3), start_next).allowed
    # two minutes later nothing is left of them
    assert fraud_limits.attempt(_acct(3, m, 3), (m + 2) * 60_000) == fraud_limits.Attempt(True, m + 2, 1, 0)
    # a clock a little behind another gate's keeps the newer window
    assert fraud_limits.attempt(_acct(3, m + 1, 3), start_next - 61_000).allowed is False
    # the account's override wins
    assert fraud_limits.attempt({**_acct(1, m, 1), "acct_max_attempts_per_minute": 5}, T0).allowed


async def test_attempts_over_the_limit_are_rate_limited_and_the_window_slides(core, clock):
    clock.set(T0)
    await seed(core, balance="10.00", allow_regions=None, block_types=None)
    await core.admin.set_package("basic", max_attempts_per_minute="3")
    numbers = ["15145550100", "011442079460000", "15145550101"]  # the blocked UK call counts too
    results = [await core.authorize_call(direction="outbound", number=n, endpoint="alice", channel_id=f"c{i}")
               for i, n in enumerate(numbers)]
    assert [r.reason for r in results] == [None, DenyReason.DESTINATION_BLOCKED, None]
    q = await core.admin.quote("acme", "15145550100")
    assert q["allowed"] is False and q["reason"] == "rate_limited"  # quote says so, and counts nothing
    a = await core.authorize_call(direction="outbound", number="15145550102", endpoint="alice", channel_id="c9")
    assert a.reason == DenyReason.RATE_LIMITED and a.session_id is None
    # a replayed channel is the same decision, not a new attempt
    assert (await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice",
                                      channel_id="c0")).allowed
    # emergency calls are never limited
    assert (await core.authorize_call(direction="outbound", number="911", endpoint="alice")).allowed
    clock.advance(ms=120_000)
    assert (await core.authorize_call(direction="outbound", number="15145550103", endpoint="alice")).allowed
    await core.admin.set_account_rules("acme", max_attempts_per_minute=100)
    for i in range(5):
        assert (await core.authorize_call(direction="outbound", number="15145550104", endpoint="alice")).allowed
    assert await core.admin.verify() == []


async def test_two_gates_on_one_database_share_the_budget(core, db_url, clock):
    """Two cores (two gates) on the same database, 24 concurrent attempts within one minute:
    exactly the limit gets through."""
    clock.set(T0)
    await seed(core, balance="100.00", max_calls=100)
    await core.admin.set_package("basic", max_attempts_per_minute="7")
    other = await BillingCore.open(db_url, clock=clock)
    try:
        async def attempt(gate, i):
            return await gate.authorize_call(direction="outbound", number="15145550100", endpoint="alice",
                                             pbx_id=f"pbx{i % 2}", channel_id=f"ch{i}")

        results = await asyncio.gather(*(attempt(core if i % 2 else other, i) for i in range(24)))
    finally:
        await other.close()
    assert sum(r.allowed for r in results) == 7
    assert {r.reason for r in results if not r.allowed} == {DenyReason.RATE_LIMITED}
    assert (await core.account("acme")).live_calls == 7


@pytest.mark.parametrize("value", ["0", "-3", "2.5", "x"])
async def test_bad_attempt_limits_name_the_field(core, value):
    await seed(core)
    with pytest.raises(InvalidInput, match="^--max-attempts-per-minute"):
        await core.admin.set_package("basic", max_attempts_per_minute=value)
