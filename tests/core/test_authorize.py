"""authorize_call on both databases: every deny reason, holds, emergency, inbound, fail closed."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from billing_core.api import BillingCore, CoreSettings
from billing_core.domain.errors import DenyReason
from billing_core.domain.money import parse_amount
from billing_core.domain.rating import Rate
from billing_core.store.tables import outbox
from tests.factories import seed

OUT = dict(direction="outbound", endpoint="alice")


async def test_funded_call_holds_the_first_chunk(core):
    await seed(core, balance="10.00")
    a = await core.authorize_call(number="15145550100", **OUT)
    assert a.allowed and a.reason is None and a.session_id
    assert a.account_ref == "acme" and a.number_e164 == "+15145550100" and a.prefix == "1514"
    assert a.granted_seconds == 60  # one chunk (60 s) at 60/6
    acct = await core.account("acme")
    assert acct.held == 10_000  # 0.01/min for 60 s
    assert acct.live_calls == 1
    assert acct.available == acct.balance - 10_000


@pytest.mark.parametrize("number,reason", [("abc", DenyReason.INVALID_NUMBER), ("01186138001380000", DenyReason.NO_RATE)])
async def test_number_problems_are_values(core, number, reason):
    await seed(core)
    a = await core.authorize_call(number=number, **OUT)
    assert not a.allowed and a.reason == reason and a.session_id is None
    assert (await core.account("acme")).held == 0


async def test_unknown_endpoint_and_did(core):
    await seed(core)
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="mallory")
    assert a.reason == DenyReason.UNKNOWN_ENDPOINT
    b = await core.authorize_call(direction="inbound", number="15145559999", did="15145559999")
    assert b.reason == DenyReason.UNKNOWN_DID


async def test_zero_and_negative_balances_are_refused_both_ways(core):
    await seed(core, balance="0")
    out = await core.authorize_call(number="15145550100", **OUT)
    assert out.reason == DenyReason.DEPLETED
    inbound = await core.authorize_call(direction="inbound", number="15145551000", did="15145551000")
    assert inbound.reason == DenyReason.DEPLETED


async def test_insufficient_funds_when_first_increment_is_unaffordable(core):
    await seed(core, balance="0.01", deck=[Rate("1", 1_000_000, 0, 60, 60)])  # 1.00/min, 60 s minimum
    a = await core.authorize_call(number="15145550100", **OUT)
    assert a.reason == DenyReason.INSUFFICIENT_FUNDS


async def test_suspended_and_depleted_status(core):
    await seed(core)
    await core.admin.set_account_status("acme", "suspended")
    assert (await core.authorize_call(number="15145550100", **OUT)).reason == DenyReason.SUSPENDED
    await core.admin.set_account_status("acme", "pre_suspended")
    assert (await core.authorize_call(number="15145550100", **OUT)).reason == DenyReason.DEPLETED


async def test_too_many_calls(core):
    await seed(core, max_calls=2)
    for n in range(2):
        assert (await core.authorize_call(number="15145550100", **OUT)).allowed
    a = await core.authorize_call(number="15145550100", **OUT)
    assert a.reason == DenyReason.TOO_MANY_CALLS


async def test_full_hold_reserves_the_whole_grant(core):
    await seed(core, balance="1.00", deck=[Rate("1", 12_500, 0, 60, 6)])
    a = await core.authorize_call(number="15145550100", full_hold=True, **OUT)
    assert a.granted_seconds == 4800 == a.max_talk_seconds
    assert a.granted_ms == 4_800_000
    assert (await core.account("acme")).held == 1_000_000
    b = await core.authorize_call(number="15145550100", **OUT)
    assert b.reason == DenyReason.INSUFFICIENT_FUNDS


@pytest.mark.parametrize("status", ["depleted", "suspended"])
async def test_emergency_always_allowed_never_charged(core, status):
    await seed(core, balance="0")
    await core.admin.set_account_status("acme", status)
    for number in ("911", "933"):
        a = await core.authorize_call(number=number, **OUT)
        assert a.allowed and a.emergency and a.session_id
        await core.answer(a.session_id, core.clock.now_ms())
        s = await core.settle(a.session_id, 600_000)
        assert s.cost == 0 and s.final_charge == 0
    acct = await core.account("acme")
    assert (acct.balance, acct.held, acct.live_calls) == (0, 0, 0)  # never held, never counted
    stranger = await core.authorize_call(direction="outbound", number="911", endpoint="nobody")
    assert stranger.allowed and stranger.emergency
    assert await core.admin.verify() == []


async def test_inbound_free_and_rated(core):
    await seed(core, inbound_rate="0")
    a = await core.authorize_call(direction="inbound", number="15145551000", did="+15145551000")
    assert a.allowed and a.ring_endpoint == "alice" and a.rate_per_min == 0
    assert (await core.account("acme")).held == 0
    await seed(core, account="beta", endpoint="bob", did="15145552000", package="paid", inbound_rate="0.01", balance="1.00")
    b = await core.authorize_call(direction="inbound", number="15145552000", did="15145552000")
    assert b.allowed and b.ring_endpoint == "bob" and b.rate_per_min == 10_000
    assert (await core.account("beta")).held == 10_000  # 60 s at 0.01/min, per-second billing


async def test_released_did_is_unknown(core):
    await seed(core)
    await core.admin.release_did("15145551000", "test")
    a = await core.authorize_call(direction="inbound", number="15145551000", did="15145551000")
    assert a.reason == DenyReason.UNKNOWN_DID
    hist = await core.admin.did_history("15145551000")
    assert hist[0]["account"] == "acme" and hist[0]["released_at"] is not None


async def test_same_channel_twice_is_one_session(core):
    await seed(core)
    a = await core.authorize_call(number="15145550100", pbx_id="pbx1", channel_id="ch-1", **OUT)
    b = await core.authorize_call(number="15145550100", pbx_id="pbx1", channel_id="ch-1", **OUT)
    assert a.session_id == b.session_id
    assert (await core.account("acme")).live_calls == 1
    c = await core.authorize_call(number="15145550100", pbx_id="pbx2", channel_id="ch-1", **OUT)
    assert c.session_id != a.session_id


async def test_storage_failure_fails_closed_but_emergency_passes(tmp_path, clock):
    core = await BillingCore.open(f"sqlite:///{tmp_path / 'empty.db'}", clock=clock)  # no schema at all
    try:
        a = await core.authorize_call(number="15145550100", **OUT)
        assert not a.allowed and a.reason == DenyReason.BILLING_UNAVAILABLE
        e = await core.authorize_call(number="911", **OUT)
        assert e.allowed and e.emergency
    finally:
        await core.close()


async def test_pg_unreachable_fails_closed(clock):
    core = await BillingCore.open("postgresql://127.0.0.1:1/nothing", clock=clock)
    try:
        a = await core.authorize_call(number="15145550100", **OUT)
        assert a.reason == DenyReason.BILLING_UNAVAILABLE
    finally:
        await core.close()


async def test_configurable_emergency_numbers(db_url, clock):
    core = await BillingCore.open(db_url, clock=clock, settings=CoreSettings(emergency_numbers=frozenset({"112"})))
    await core.create_schema()
    try:
        await seed(core, balance="0")
        assert (await core.authorize_call(number="112", **OUT)).emergency
        assert (await core.authorize_call(number="911", **OUT)).reason == DenyReason.DEPLETED
    finally:
        await core.close()
