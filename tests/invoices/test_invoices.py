"""Deposit invoice operations on SQLite and PostgreSQL (no PayPal involved: facts are given)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from billing_core import invoices
from billing_core.domain.errors import InvalidInput, NotFound
from billing_core.invoices import CaptureFacts, RefundFacts
from billing_core.store.tables_invoices import invoice_events
from billing_core.store.tables_invoices import invoices as invoices_table
from tests.factories import seed

BAD_AMOUNTS = ["24.99", "1000.01", "25.001", "0", "0.00", "-25.00", "abc", "1e3", "NaN", "Infinity", "", " ",
               "1,000.00", "25.", ".5", "+", "100.5.0"]


async def _rows(core) -> tuple[int, int]:
    def tx(conn):
        return (conn.execute(select(func.count()).select_from(invoices_table)).scalar(),
                conn.execute(select(func.count()).select_from(invoice_events)).scalar())

    return await core.store.run(tx)


def _paid(inv, capture="CAP1", status="COMPLETED", amount=None, currency="CAD"):
    return CaptureFacts(capture, status, inv.amount if amount is None else amount, currency, inv.id, "ORDER1")


@pytest.mark.parametrize("text", ["25.00", "25", "1000.00", "1000", "99.9", "512.34"])
async def test_amounts_within_limits_are_accepted(core, text):
    await seed(core)
    inv = await invoices.create_invoice(core, "acme", text)
    assert inv.status == "outstanding" and inv.currency == "CAD" and inv.refunded == 0
    assert inv.amount == invoices.parse_deposit_amount(text)
    assert inv.payable and inv.refundable == 0


async def test_bad_amounts_are_refused_with_the_limits_and_write_nothing(core):
    await seed(core)
    for text in BAD_AMOUNTS:
        with pytest.raises(InvalidInput) as err:
            await invoices.create_invoice(core, "acme", text)
        message = str(err.value)
        assert message.startswith("amount:") and "between 25.00 and 1000.00 CAD" in message, (text, message)
    for micro in (24_990_000, 1_000_010_000, 25_000_001, 0, -25_000_000):
        with pytest.raises(InvalidInput, match="between 25.00 and 1000.00 CAD"):
            await invoices.create_invoice(core, "acme", micro)
    assert await _rows(core) == (0, 0)


async def test_unknown_account_writes_nothing(core):
    await seed(core)
    with pytest.raises(NotFound, match="nobody"):
        await invoices.create_invoice(core, "nobody", "25.00")
    assert await _rows(core) == (0, 0)


async def test_cancel_needs_a_reason_and_happens_once(core):
    await seed(core)
    inv = await invoices.create_invoice(core, "acme", "40.00")
    for reason in ("", "   ", None):
        with pytest.raises(InvalidInput, match="reason"):
            await invoices.cancel_invoice(core, inv.id, reason)
    done = await invoices.cancel_invoice(core, inv.id, "  customer asked  ")
    assert done.changed and done.invoice.status == "cancelled" and done.invoice.cancel_reason == "customer asked"
    again = await invoices.cancel_invoice(core, inv.id, "again")
    assert not again.changed and "already cancelled" in again.message and "nothing changed" in again.message
    assert (await invoices.get_invoice(core, inv.id)).cancel_reason == "customer asked"


async def test_a_paid_invoice_cannot_be_cancelled(core):
    await seed(core, balance="0")
    inv = await invoices.create_invoice(core, "acme", "25.00")
    await invoices.apply_capture(core, _paid(inv), source="return")
    refused = await invoices.cancel_invoice(core, inv.id, "oops")
    assert not refused.changed and "paid" in refused.message and refused.invoice.status == "paid"


async def test_payment_credits_once_with_the_capture_id_as_key(core):
    await seed(core, balance="0")
    inv = await invoices.create_invoice(core, "acme", "25.00")
    first = await invoices.apply_capture(core, _paid(inv), source="return")
    assert first.changed and first.outcome == "paid" and first.ledger_entry.idempotency_key == "CAP1"
    assert first.ledger_entry.kind == "payment" and first.ledger_entry.amount == 25_000_000
    second = await invoices.apply_capture(core, _paid(inv), source="webhook")
    assert not second.changed and second.outcome == "paid"
    assert (await core.account("acme")).balance == 25_000_000
    # a second, different capture for the same invoice is not credited
    other = await invoices.apply_capture(core, _paid(inv, capture="CAP2"), source="webhook")
    assert other.outcome == "refused" and not other.changed
    assert (await core.account("acme")).balance == 25_000_000


async def test_mismatch_credits_nothing(core):
    await seed(core, balance="0")
    inv = await invoices.create_invoice(core, "acme", "25.00")
    unreadable = CaptureFacts("CAP1", "COMPLETED", None, "CAD", inv.id, "ORDER1", amount_text="25.000")
    for facts in (_paid(inv, amount=25_010_000), _paid(inv, currency="USD"), unreadable):
        change = await invoices.apply_capture(core, facts, source="webhook")
        assert change.outcome == "mismatch" and not change.changed
    assert (await invoices.get_invoice(core, inv.id)).status == "outstanding"
    assert (await core.account("acme")).balance == 0


async def test_echeque_states(core):
    await seed(core, balance="0")
    inv = await invoices.create_invoice(core, "acme", "30.00")
    pending = await invoices.apply_capture(core, _paid(inv, status="PENDING"), source="return")
    assert pending.outcome == "pending" and pending.invoice.status == "pending"
    assert (await core.account("acme")).balance == 0
    denied = await invoices.apply_capture(core, _paid(inv, status="DECLINED"), source="webhook")
    assert denied.changed and denied.invoice.status == "outstanding"
    # a PENDING delivered late, after the decline, changes nothing
    late = await invoices.apply_capture(core, _paid(inv, status="PENDING"), source="webhook")
    assert late.outcome == "ignored" and (await invoices.get_invoice(core, inv.id)).status == "outstanding"
    # paid later with another capture
    paid = await invoices.apply_capture(core, _paid(inv, capture="CAP9"), source="return")
    assert paid.outcome == "paid" and (await core.account("acme")).balance == 30_000_000


async def test_refunds_partial_then_full_and_never_beyond(core):
    await seed(core, balance="0")
    inv = await invoices.create_invoice(core, "acme", "100.00")
    await invoices.apply_capture(core, _paid(inv), source="return")
    part = await invoices.apply_refund(core, RefundFacts("R1", "CAP1", "refund", 40_000_000, "CAD"), source="webhook")
    assert part.changed and part.invoice.status == "refunded" and "partly" in part.message
    assert part.ledger_entry.kind == "refund" and part.ledger_entry.amount == -40_000_000
    dup = await invoices.apply_refund(core, RefundFacts("R1", "CAP1", "refund", 40_000_000, "CAD"), source="webhook")
    assert not dup.changed
    too_much = await invoices.apply_refund(core, RefundFacts("R2", "CAP1", "refund", 60_000_001, "CAD"), source="webhook")
    assert too_much.outcome == "refused"
    rest = await invoices.apply_refund(core, RefundFacts("V1", "CAP1", "reversal", 60_000_000, "CAD"), source="webhook")
    assert rest.changed and "fully reversed" in rest.message and rest.invoice.refundable == 0
    assert rest.ledger_entry.kind == "reversal" and rest.ledger_entry.idempotency_key == "V1"
    assert (await core.account("acme")).balance == 0
    wrong_currency = await invoices.apply_refund(core, RefundFacts("R3", "CAP1", "refund", 1, "USD"), source="webhook")
    assert wrong_currency.outcome == "refused"


async def test_refund_of_an_unpaid_invoice_is_refused(core):
    await seed(core, balance="0")
    inv = await invoices.create_invoice(core, "acme", "25.00")
    await invoices.apply_capture(core, _paid(inv, status="PENDING"), source="return")
    change = await invoices.apply_refund(core, RefundFacts("R1", "CAP1", "refund", 5_000_000, "CAD"), source="webhook")
    assert change.outcome == "refused" and (await core.account("acme")).balance == 0


async def test_list_show_and_ownership(core):
    await seed(core)
    await seed(core, account="other", endpoint="bob", did=None)
    a1 = await invoices.create_invoice(core, "acme", "25.00")
    a2 = await invoices.create_invoice(core, "acme", "50.00")
    o1 = await invoices.create_invoice(core, "other", "75.00")
    await invoices.cancel_invoice(core, a1.id, "typo")
    assert [i.id for i in await invoices.list_invoices(core)] == [o1.id, a2.id, a1.id]
    assert [i.id for i in await invoices.list_invoices(core, "acme")] == [a2.id, a1.id]
    assert [i.id for i in await invoices.list_invoices(core, "acme", status="cancelled")] == [a1.id]
    with pytest.raises(InvalidInput, match="status"):
        await invoices.list_invoices(core, status="lost")
    with pytest.raises(NotFound):
        await invoices.list_invoices(core, "nobody")
    with pytest.raises(NotFound):
        await invoices.get_invoice(core, o1.id, account_ref="acme")
    for bad in ("abc", "-1", "0", "1.5", None):
        with pytest.raises(InvalidInput):
            await invoices.get_invoice(core, bad)
    with pytest.raises(NotFound):
        await invoices.get_invoice(core, 999_999)
    kinds = [e.kind for e in await invoices.invoice_events_of(core, a1.id)]
    assert kinds == ["created", "cancelled"]
