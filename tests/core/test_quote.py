"""`quote` runs the gate's own decision (domain/authorize.py as a dry run): for any account, number
and state it gives the answer authorize_call gives — allowed, reason, max talk — and writes nothing."""
from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from billing_core.api import BillingCore
from billing_core.clock import FakeClock
from billing_core.domain import lifecycle
from billing_core.domain.errors import DenyReason
from billing_core.store.tables import accounts
from tests.factories import seed

RATED = ("15145550100", "011441234567890", "12125550100")
UNRATED = ("01186138001380000",)
INVALID = ("not-a-number", "12", "")
EMERGENCY = ("911", "9-1-1")


async def test_a_depleted_account_dialling_an_unrated_number_is_told_depleted_as_the_gate_says(core):
    await seed(core, balance="0")
    q = await core.admin.quote("acme", "01186138001380000")
    a = await core.authorize_call(direction="outbound", number="01186138001380000", endpoint="alice")
    assert a.reason == DenyReason.DEPLETED
    assert q["allowed"] is False and q["reason"] == "depleted" and q["max_talk_seconds"] == 0


async def test_a_suspended_account_dialling_an_invalid_number_is_told_suspended(core):
    await seed(core, balance="10.00")
    await core.admin.set_account_status("acme", lifecycle.SUSPENDED)
    q = await core.admin.quote("acme", "not-a-number")
    assert q["allowed"] is False and q["reason"] == "suspended"


async def test_quote_still_prices_the_number_for_a_refused_account(core):
    await seed(core, balance="0")
    q = await core.admin.quote("acme", "15145550100", 125)
    assert q["reason"] == "depleted" and q["max_talk_seconds"] == 0
    assert q["prefix"] == "1514" and q["rate_per_min"] == "0.01" and q["billed_seconds"] == 126


def _account_state(core, ref):
    async def read():
        acct = await core.account(ref)
        return acct.balance, acct.held, acct.live_calls, acct.status

    return read()


def _check_quote_equals_authorize(url: str, max_examples: int) -> None:
    loop = asyncio.new_event_loop()
    core = loop.run_until_complete(BillingCore.open(url, clock=FakeClock(1_795_000_000_000)))
    loop.run_until_complete(core.create_schema())
    serial = itertools.count()

    @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        status=st.sampled_from(lifecycle.STATUSES),
        balance=st.one_of(st.just(0), st.integers(-5_000_000, 30_000_000), st.integers(1, 20_000)),
        credit_limit=st.sampled_from((0, 0, 10_000, 2_000_000)),
        held=st.one_of(st.just(0), st.integers(0, 40_000_000)),
        max_calls=st.integers(1, 3),
        live_calls=st.integers(0, 3),
        number=st.sampled_from(RATED + UNRATED + INVALID + EMERGENCY),
    )
    def one(status, balance, credit_limit, held, max_calls, live_calls, number):
        loop.run_until_complete(_compare(core, next(serial), status, balance, credit_limit, held, max_calls,
                                         live_calls, number))

    try:
        one()
    finally:
        loop.run_until_complete(core.close())
        loop.close()


async def _compare(core, n, status, balance, credit_limit, held, max_calls, live_calls, number) -> None:
    ref, endpoint = f"q{n}", f"ep{n}"
    await seed(core, account=ref, endpoint=endpoint, balance="0", did=None, package=f"calls{max_calls}",
               max_calls=max_calls, credit_limit=f"{credit_limit / 1_000_000:.2f}")
    if balance:
        await core.credit(ref, balance, "state", kind="credit" if balance > 0 else "debit", allow_below_limit=True)
    await core.admin.set_account_status(ref, status)
    await core.store.run(lambda conn: conn.execute(
        update(accounts).where(accounts.c.ref == ref).values(held=held, live_calls=live_calls)))
    before = await _account_state(core, ref)
    q = await core.admin.quote(ref, number)
    assert await _account_state(core, ref) == before, "quote wrote to the account"
    a = await core.authorize_call(direction="outbound", number=number, endpoint=endpoint, pbx_id="quote-test",
                                  channel_id=f"chan-{n}")
    seen = (q["allowed"], q["reason"], q["max_talk_seconds"], q["emergency"])
    assert seen == (a.allowed, a.reason.value if a.reason else None, a.max_talk_seconds, a.emergency), (
        f"quote {seen} vs authorize {a} for status={status} balance={balance} credit_limit={credit_limit} "
        f"held={held} calls={live_calls}/{max_calls} number={number!r}")
    if a.allowed and not a.emergency:
        assert q["number_e164"] == a.number_e164 and q["prefix"] == a.prefix


def test_quote_and_authorize_give_the_same_answer(sync_db_url):
    # PostgreSQL: fewer examples (each seeds an account over the network); SQLite covers the breadth
    _check_quote_equals_authorize(sync_db_url, 120 if sync_db_url.startswith("sqlite") else 25)
