"""Issue 18's anomaly suspension on both databases (both authorize drivers, the core's and the
sidecar's money paths): fraud_suspected once per suspension, its two emails, live calls cut,
payments do not lift it, `account reactivate` does, and every step is an audit record."""
from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select

from billing_core.api import CoreSettings
from billing_core.domain.errors import DenyReason, InvalidInput
from billing_core.domain.money import parse_amount
from billing_core.sidecar.batch_debit import debit_due_batched
from billing_core.store.tables import ledger, outbox
from tests.factories import seed

OPERATOR = CoreSettings(operator_email="noc@provider.test")
PREMIUM = ["19005550100", "19005551234", "011881631234567", "011882161234567"]


async def _outbox(core):
    def tx(conn):
        return [dict(r) for r in conn.execute(select(outbox).order_by(outbox.c.id)).mappings()]
    return await core.store.run(tx)


async def _ledger_kinds(core):
    return await core.store.run(lambda conn: [r.kind for r in conn.execute(select(ledger.c.kind))])


@pytest.mark.parametrize("core_settings", [OPERATOR], ids=["operator"])
async def test_a_flood_to_blocked_destinations_suspends_once_and_cuts_live_calls(core, clock):
    await seed(core, balance="10.00", max_calls=50, allow_regions=None, block_types=None)  # new-package defaults
    live = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", channel_id="live")
    await core.answer(live.session_id, clock.now_ms())
    waiting = await core.authorize_call(direction="outbound", number="15145550101", endpoint="alice", channel_id="ring")

    async def call(i):
        return await core.authorize_call(direction="outbound", number=PREMIUM[i % len(PREMIUM)], endpoint="alice",
                                         pbx_id=f"pbx{i % 2}", channel_id=f"fraud{i}")

    results = []
    for wave in range(3):  # 30 calls, 10 at a time
        results += await asyncio.gather(*(call(wave * 10 + i) for i in range(10)))
        clock.advance(ms=3_000)
    assert {r.reason for r in results} == {DenyReason.DESTINATION_BLOCKED}
    rules = await core.admin.account_rules("acme")
    assert rules["suspension"]["suspended"] and rules["suspension"]["reason"] == "fraud_suspected"
    assert rules["suspension"]["suspensions"] == 1
    events = await core.admin.fraud_events("acme")
    assert [(e["kind"], e["reason"], e["actor"]) for e in events] == [("suspended", "fraud_suspected", "callgate")]
    assert "blocked destinations" in events[0]["detail"]
    mails = [(m["kind"], m["to_addr"]) for m in await _outbox(core) if m["kind"].startswith("fraud")]
    assert mails == [("fraud_suspected", "acme@example.test"), ("fraud_suspected_operator", "noc@provider.test")]
    # nothing charged; the answered call is cut now (the gate follows the cut-off within a second)
    assert await _ledger_kinds(core) == ["credit"]
    cut = {c.session_id: c.cutoff_at for c in await core.live_cutoffs("local")}
    assert cut[live.session_id] <= clock.now_ms()
    assert (await core.get_session(waiting.session_id)).granted_seconds == 0
    a = await core.authorize_call(direction="outbound", number="15145550102", endpoint="alice", channel_id="after")
    assert a.reason == DenyReason.SUSPENDED
    assert (await core.authorize_call(direction="outbound", number="911", endpoint="alice")).allowed


@pytest.mark.parametrize("core_settings", [OPERATOR], ids=["operator"])
async def test_spend_anomaly_payment_keeps_it_reactivate_lifts_it_and_emails_once_per_suspension(core, clock):
    await seed(core, balance="100.00", max_calls=10)
    await core.admin.set_package("basic", anomaly_spend_per_hour=parse_amount("0.10"))

    async def talk(seconds, ch):
        a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", channel_id=ch)
        assert a.allowed, a
        await core.answer(a.session_id, clock.now_ms())
        clock.advance(seconds)
        return await core.settle(a.session_id, seconds * 1000)

    await talk(360, "c1")  # 0.06
    assert not (await core.admin.account_rules("acme"))["suspension"]["suspended"]
    await talk(360, "c2")  # 0.12 within the hour: above 0.10
    rules = await core.admin.account_rules("acme")
    assert rules["suspension"]["reason"] == "fraud_suspected"
    await core.credit("acme", parse_amount("5.00"), "top-up", kind="payment")
    assert (await core.account("acme")).status == "suspended"  # a payment does not lift it
    with pytest.raises(InvalidInput, match="^--reason"):
        await core.admin.reactivate("acme", "")
    assert (await core.admin.reactivate("acme", "customer confirmed the calls"))["status"] == "active"
    with pytest.raises(InvalidInput, match="not suspended"):
        await core.admin.reactivate("acme", "again")
    clock.advance(ms=2 * 3_600_000)
    # a second anomaly through the sidecar's batched chunk debits: a second suspension, two more emails
    await core.admin.set_account_rules("acme", anomaly_spend_per_hour=parse_amount("0.01"))
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", channel_id="c3")
    await core.answer(a.session_id, clock.now_ms())
    for _ in range(4):  # 200 s: three chunks of 0.01 debited by the batched pass, extending as it goes
        clock.advance(ms=50_000)
        await debit_due_batched(core, clock.now_ms(), lookahead_seconds=10)
    events = await core.admin.fraud_events("acme")
    assert [e["kind"] for e in events] == ["suspended", "reactivated", "suspended"]
    assert events[1]["detail"] == "customer confirmed the calls" and events[1]["actor"] == "operator"
    kinds = [m["kind"] for m in await _outbox(core) if m["kind"].startswith("fraud")]
    assert kinds == ["fraud_suspected", "fraud_suspected_operator"] * 2
    cut = {c.session_id: c.cutoff_at for c in await core.live_cutoffs("local")}
    assert cut[a.session_id] <= clock.now_ms()
    assert await core.admin.verify() == []
    ctx = json.loads((await _outbox(core))[-1]["context"])
    assert ctx["account_ref"] == "acme" and "per hour" in ctx["detail"]


async def test_no_operator_address_no_operator_email_and_quote_counts_nothing(core):
    await seed(core, balance="10.00", allow_regions=None, block_types=None)
    await core.admin.set_package("basic", anomaly_blocked_attempts="2")
    for _ in range(5):
        await core.admin.quote("acme", "19005550100")
    assert not (await core.admin.account_rules("acme"))["suspension"]["suspended"]
    for i in range(3):
        await core.authorize_call(direction="outbound", number="19005550100", endpoint="alice", channel_id=f"x{i}")
    kinds = [m["kind"] for m in await _outbox(core)]
    assert kinds.count("fraud_suspected") == 1 and "fraud_suspected_operator" not in kinds


def test_the_emails_render():
    from billing_core.mail.render import Renderer

    facts = {"account_ref": "acme", "account_name": "Acme", "currency": "CAD", "balance": "1.00", "threshold": "5.00",
             "detail": "more than 10 refused attempts to blocked destinations in 60 min"}
    for kind in ("fraud_suspected", "fraud_suspected_operator"):
        mail = Renderer().render(kind, facts)
        assert "acme" in mail.subject and "blocked destinations" in mail.text and "blocked destinations" in mail.html
