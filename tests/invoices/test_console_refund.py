"""The console's refund record (billing_core.console.record_refund) on SQLite and PostgreSQL: the
debit and its audit record in one transaction, once per PayPal refund id (a double-submitted form
gets PayPal's first refund back), at most what was paid."""
from __future__ import annotations

import asyncio
import json

from sqlalchemy import func, select

from billing_core import console, invoices
from billing_core import operators as ops
from billing_core.invoices import CaptureFacts, RefundFacts
from billing_core.operators import Actor
from billing_core.store.tables import ledger
from billing_core.store.tables_operators import audit_log
from tests.factories import seed

ADMIN = Actor("ops@example.test")


async def _counts(core) -> tuple[int, int]:
    def tx(conn):
        return (conn.execute(select(func.count()).select_from(ledger).where(ledger.c.kind == "refund")).scalar(),
                conn.execute(select(func.count()).select_from(audit_log)).scalar())

    return await core.store.run(tx)


async def _paid_invoice(core, amount="80.00"):
    inv = await invoices.create_invoice(core, "acme", amount)
    change = await invoices.apply_capture(core, CaptureFacts("CAP1", "COMPLETED", inv.amount, "CAD", inv.id, "O1"),
                                          source="web")
    assert change.invoice.status == "paid"
    return change.invoice


async def test_a_refund_recorded_twice_debits_and_audits_once(core):
    await seed(core, balance="0")
    inv = await _paid_invoice(core)
    facts = RefundFacts("REF1", "CAP1", "refund", 30_000_000, "CAD")
    first = await console.record_refund(core, ADMIN, facts, "customer asked")
    again = await console.record_refund(core, ADMIN, facts, "customer asked")  # the form submitted twice
    assert first.changed and first.outcome == "refunded" and first.invoice.refunded == 30_000_000
    assert not again.changed and again.outcome == "refunded"
    assert (await core.account("acme")).balance == 50_000_000
    assert await _counts(core) == (1, 1)
    (record,) = await core.store.run(ops.audit_page_tx)
    assert (record.action, record.target_kind, record.target, record.reason) == (
        "invoice.refund", "invoice", str(inv.id), "customer asked")
    assert json.loads(record.before) == {"status": "paid", "refunded": "0.00"}
    after = json.loads(record.after)
    assert (after["status"], after["refunded"], after["amount"], after["refund"], after["account"]) == (
        "refunded", "30.00", "30.00", "REF1", "acme")
    assert after["entry"] is not None


async def test_a_double_submit_racing_refunds_once(core):
    await seed(core, balance="0")
    await _paid_invoice(core)
    facts = RefundFacts("REF1", "CAP1", "refund", 25_000_000, "CAD")
    results = await asyncio.gather(*(console.record_refund(core, ADMIN, facts) for _ in range(2)))
    assert sorted(r.changed for r in results) == [False, True]
    assert (await core.account("acme")).balance == 55_000_000
    assert await _counts(core) == (1, 1)


async def test_more_than_was_paid_is_refused_and_debits_nothing(core):
    await seed(core, balance="0")
    inv = await _paid_invoice(core, "40.00")
    await console.record_refund(core, ADMIN, RefundFacts("REF1", "CAP1", "refund", 30_000_000, "CAD"))
    before = await _counts(core)
    too_much = await console.record_refund(core, ADMIN, RefundFacts("REF2", "CAP1", "refund", 10_000_001, "CAD"))
    assert not too_much.changed and too_much.outcome == "refused" and "exceeds what is left" in too_much.message
    assert await _counts(core) == before
    assert (await core.account("acme")).balance == 10_000_000
    assert (await invoices.get_invoice(core, inv.id)).refunded == 30_000_000


async def test_a_refund_the_webhook_applied_first_is_audited_once(core):
    await seed(core, balance="0")
    inv = await _paid_invoice(core)
    facts = RefundFacts("REF1", "CAP1", "refund", 80_000_000, "CAD")
    assert (await invoices.apply_refund(core, facts, source="webhook")).changed
    for _ in range(2):
        change = await console.record_refund(core, ADMIN, facts)
        assert not change.changed and change.outcome == "refunded"
    assert (await core.account("acme")).balance == 0
    assert await _counts(core) == (1, 1)
    (record,) = await core.store.run(ops.audit_page_tx)
    assert record.target == str(inv.id) and record.before is None and json.loads(record.after)["refund"] == "REF1"
