"""Checkout end to end over real HTTP: the stand-in's approval page, the capture on return, the
signed webhooks it posts to the receiver, on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select

from billing_core import invoices
from billing_core.store.tables import outbox
from callgate.paypal.checkout import CheckoutError, cancel_return, complete_return, refund_invoice, start_checkout
from tests.factories import seed
from tests.paypal.conftest import approve_over_http

RETURN = "http://127.0.0.1:1/invoices/{id}/return"
CANCEL = "http://127.0.0.1:1/invoices/{id}/cancel"


async def _balance(core, ref="acme") -> int:
    return (await core.account(ref)).balance


async def _payments(core, ref="acme") -> list[dict]:
    return [r for r in await core.admin.ledger(ref) if r["kind"] in ("payment", "refund", "reversal")]


async def _checkout(core, paypal, amount="25.00", method="paypal", ref="acme"):
    inv = await invoices.create_invoice(core, ref, amount, source="web")
    url = await start_checkout(core, paypal, inv.id, RETURN.format(id=inv.id), CANCEL.format(id=inv.id), account_ref=ref)
    location = await approve_over_http(url, method)
    order_id = location.split("token=", 1)[1].split("&", 1)[0]
    return inv, order_id, location


async def _webhook_outcomes(standin):
    await standin.settle()
    return [(d.webhook.event["event_type"], d.status) for d in standin.deliveries]


@pytest.mark.parametrize("method", ["paypal", "card"])
async def test_pay_on_return_credits_once_and_queues_the_receipt(core, paypal, standin, receiver, method):
    await seed(core, balance="10.00")
    inv, order_id, location = await _checkout(core, paypal, "30.00", method)
    assert location.startswith(RETURN.format(id=inv.id) + "?token=")
    result = await complete_return(core, paypal, inv.id, order_id, account_ref="acme")
    assert result.outcome == "paid" and result.changed and result.invoice.status == "paid"
    assert await _balance(core) == 40_000_000
    (entry,) = await _payments(core)
    assert entry["kind"] == "payment" and entry["amount"] == 30_000_000
    assert entry["idempotency_key"] == result.invoice.capture_id
    # PayPal's COMPLETED webhook follows: accepted, changes nothing more
    assert await _webhook_outcomes(standin) == [("PAYMENT.CAPTURE.COMPLETED", 200)]
    assert await _balance(core) == 40_000_000
    # a reload of the return page: same answer, nothing new
    again = await complete_return(core, paypal, inv.id, order_id, account_ref="acme")
    assert again.outcome == "paid" and not again.changed
    assert len(await _payments(core)) == 1
    receipts = await core.store.run(lambda c: c.execute(select(outbox).where(outbox.c.kind == "topup_receipt")).all())
    assert len(receipts) == 1 and json.loads(receipts[0].context)["amount"] == "30.00"


@pytest.mark.parametrize("timing", ["before", "concurrent"])
async def test_webhook_and_return_racing_credit_once(core, paypal, standin, receiver, timing):
    await seed(core, balance="0")
    standin.webhook_timing = timing
    inv, order_id, _ = await _checkout(core, paypal, "100.00")
    results = await asyncio.gather(*(complete_return(core, paypal, inv.id, order_id) for _ in range(3)))
    await standin.settle()
    assert all(r.outcome == "paid" for r in results), results
    assert [d.status for d in standin.deliveries] == [200]
    assert await _balance(core) == 100_000_000
    assert len(await _payments(core)) == 1
    events = [e.kind for e in await invoices.invoice_events_of(core, inv.id)]
    assert events.count("paid") == 1


async def test_webhook_alone_pays_when_the_customer_never_returns(core, paypal, standin, receiver):
    await seed(core, balance="0")
    inv, order_id, _ = await _checkout(core, paypal, "25.00")
    await paypal.capture_order(order_id)  # e.g. captured, then the browser closed
    assert await _webhook_outcomes(standin) == [("PAYMENT.CAPTURE.COMPLETED", 200)]
    assert (await invoices.get_invoice(core, inv.id)).status == "paid"
    assert await _balance(core) == 25_000_000
    late = await complete_return(core, paypal, inv.id, order_id)
    assert late.outcome == "paid" and not late.changed and await _balance(core) == 25_000_000


async def test_depleted_account_is_reactivated_by_a_payment(core, paypal, standin, receiver):
    await seed(core, balance="1.00")
    await core.credit("acme", -1_000_000, "used up", kind="debit")
    assert (await core.account("acme")).status == "depleted"
    inv, order_id, _ = await _checkout(core, paypal, "25.00")
    assert (await complete_return(core, paypal, inv.id, order_id)).outcome == "paid"
    assert (await core.account("acme")).status == "active"


async def test_cancel_at_paypal_leaves_it_outstanding_to_pay_later(core, paypal, standin, receiver):
    await seed(core, balance="0")
    inv, order_id, location = await _checkout(core, paypal, "50.00", "cancel")
    assert location == CANCEL.format(id=inv.id) + f"?token={order_id}"
    result = await cancel_return(core, inv.id, order_id, account_ref="acme")
    assert result.outcome == "cancelled" and result.invoice.status == "outstanding"
    assert "Pay now" in result.message
    assert await _balance(core) == 0
    # later: pay now
    url = await start_checkout(core, paypal, inv.id, RETURN.format(id=inv.id), CANCEL.format(id=inv.id))
    location = await approve_over_http(url, "card")
    paid = await complete_return(core, paypal, inv.id, location.split("token=")[1].split("&")[0])
    assert paid.outcome == "paid" and await _balance(core) == 50_000_000


async def test_echeque_pending_then_completed(core, paypal, standin, receiver):
    await seed(core, balance="5.00")
    inv, order_id, _ = await _checkout(core, paypal, "60.00", "echeque")
    result = await complete_return(core, paypal, inv.id, order_id)
    assert result.outcome == "pending" and result.invoice.status == "pending"
    assert await _webhook_outcomes(standin) == [("PAYMENT.CAPTURE.PENDING", 200)]
    assert await _balance(core) == 5_000_000 and await _payments(core) == []
    # pending cannot be paid again nor cancelled
    with pytest.raises(CheckoutError):
        await start_checkout(core, paypal, inv.id, RETURN, CANCEL)
    assert not (await invoices.cancel_invoice(core, inv.id, "customer asked")).changed
    delivery = await standin.complete_pending(result.invoice.capture_id)
    assert delivery.status == 200
    assert (await invoices.get_invoice(core, inv.id)).status == "paid"
    assert await _balance(core) == 65_000_000
    (entry,) = await _payments(core)
    assert entry["idempotency_key"] == result.invoice.capture_id


async def test_echeque_denied_goes_back_to_outstanding_and_can_be_paid_by_card(core, paypal, standin, receiver):
    await seed(core, balance="0")
    inv, order_id, _ = await _checkout(core, paypal, "25.00", "echeque")
    pending = await complete_return(core, paypal, inv.id, order_id)
    delivery = await standin.deny(pending.invoice.capture_id)
    assert delivery.status == 200
    after = await invoices.get_invoice(core, inv.id)
    assert after.status == "outstanding" and after.capture_status == "DECLINED"
    assert await _balance(core) == 0
    url = await start_checkout(core, paypal, inv.id, RETURN, CANCEL)
    location = await approve_over_http(url, "card")
    paid = await complete_return(core, paypal, inv.id, location.split("token=")[1].split("&")[0])
    assert paid.outcome == "paid" and await _balance(core) == 25_000_000


@pytest.mark.parametrize("tamper", [{"value": "24.99"}, {"value": "250.00"}, {"currency": "USD"}])
async def test_amount_or_currency_mismatch_credits_nothing(core, paypal, standin, receiver, tamper, caplog):
    await seed(core, balance="0")
    inv, order_id, _ = await _checkout(core, paypal, "25.00")
    standin.tamper_capture(order_id, **tamper)
    result = await complete_return(core, paypal, inv.id, order_id)
    await standin.settle()
    assert result.outcome == "mismatch" and not result.changed
    assert (await invoices.get_invoice(core, inv.id)).status == "outstanding"
    assert await _balance(core) == 0 and await _payments(core) == []
    kinds = [e.kind for e in await invoices.invoice_events_of(core, inv.id)]
    assert kinds.count("mismatch") == 2  # the return and the webhook both refused it
    assert "not credited" in caplog.text


async def test_refund_partial_then_full_through_paypal(core, paypal, standin, receiver):
    await seed(core, balance="0")
    inv, order_id, _ = await _checkout(core, paypal, "80.00")
    await complete_return(core, paypal, inv.id, order_id)
    part = await refund_invoice(core, paypal, inv.id, 30_000_000)
    assert part.changed and part.invoice.status == "refunded" and part.invoice.refunded == 30_000_000
    assert await _balance(core) == 50_000_000
    rest = await refund_invoice(core, paypal, inv.id)
    assert rest.invoice.refunded == 80_000_000 and await _balance(core) == 0
    outcomes = await _webhook_outcomes(standin)
    assert outcomes.count(("PAYMENT.CAPTURE.REFUNDED", 200)) == 2  # the webhooks change nothing more
    assert await _balance(core) == 0
    entries = await _payments(core)
    assert sorted(e["kind"] for e in entries) == ["payment", "refund", "refund"]
    assert {e["idempotency_key"] for e in entries if e["kind"] == "refund"} == set(standin.refunds)
    with pytest.raises(CheckoutError, match="nothing to refund"):
        await refund_invoice(core, paypal, inv.id)


async def test_refund_and_reversal_made_at_paypal_arrive_by_webhook(core, paypal, standin, receiver):
    await seed(core, balance="0")
    inv, order_id, _ = await _checkout(core, paypal, "100.00")
    paid = await complete_return(core, paypal, inv.id, order_id)
    capture_id = paid.invoice.capture_id
    refund, delivery = await standin.refund(capture_id, "40.00")
    assert delivery.status == 200
    assert await _balance(core) == 60_000_000
    reversal, delivery = await standin.reverse(capture_id)
    assert delivery.status == 200
    after = await invoices.get_invoice(core, inv.id)
    assert after.status == "refunded" and after.refunded == 100_000_000
    assert await _balance(core) == 0
    by_kind = {e["kind"]: e for e in await _payments(core)}
    assert by_kind["refund"]["idempotency_key"] == refund["id"] and by_kind["refund"]["amount"] == -40_000_000
    assert by_kind["reversal"]["idempotency_key"] == reversal["id"] and by_kind["reversal"]["amount"] == -60_000_000
    # the same refund delivered again under a new transmission id: debits nothing more
    again = await standin.send_webhook("PAYMENT.CAPTURE.REFUNDED", refund)
    assert again.status == 200 and await _balance(core) == 0


async def test_only_the_owner_can_check_out_and_nothing_else_is_payable(core, paypal, standin, receiver):
    from billing_core.domain.errors import NotFound

    await seed(core, balance="0")
    await seed(core, account="other", endpoint="bob", did=None, balance="0")
    inv = await invoices.create_invoice(core, "acme", "25.00")
    with pytest.raises(NotFound):
        await start_checkout(core, paypal, inv.id, RETURN, CANCEL, account_ref="other")
    with pytest.raises(NotFound):
        await complete_return(core, paypal, inv.id, "O1", account_ref="other")
    await invoices.cancel_invoice(core, inv.id, "duplicate")
    with pytest.raises(CheckoutError, match="cancelled"):
        await start_checkout(core, paypal, inv.id, RETURN, CANCEL, account_ref="acme")
    # an order made for one invoice cannot pay another
    a, order_a, _ = await _checkout(core, paypal, "25.00")
    b = await invoices.create_invoice(core, "acme", "25.00")
    wrong = await complete_return(core, paypal, b.id, order_a)
    assert wrong.outcome == "refused" and await _balance(core) == 0
    for token in ("ONOSUCHORDER1", "../../v1/oauth2/token"):
        made_up = await complete_return(core, paypal, b.id, token)
        assert made_up.outcome == "refused" and "does not belong" in made_up.message
    assert standin.orders[order_a].status == "APPROVED"  # not captured: nothing charged


async def test_paypal_down_at_checkout_and_at_capture(core, paypal, standin, receiver):
    await seed(core, balance="0")
    inv, order_id, _ = await _checkout(core, paypal, "25.00")
    standin.fail_next["capture"] = (503, {"name": "SERVICE_UNAVAILABLE", "message": "try later"})
    result = await complete_return(core, paypal, inv.id, order_id)
    assert result.outcome == "unconfirmed" and (await invoices.get_invoice(core, inv.id)).status == "outstanding"
    # the customer reloads: the capture goes through now, once
    result = await complete_return(core, paypal, inv.id, order_id)
    assert result.outcome == "paid" and await _balance(core) == 25_000_000


async def test_instrument_declined_at_capture_leaves_it_outstanding(core, paypal, standin, receiver):
    await seed(core, balance="0")
    inv, order_id, _ = await _checkout(core, paypal, "25.00", "card")
    standin.fail_next["capture"] = (422, {"name": "UNPROCESSABLE_ENTITY", "message": "declined",
                                          "details": [{"issue": "INSTRUMENT_DECLINED"}]})
    result = await complete_return(core, paypal, inv.id, order_id)
    assert result.outcome == "denied" and "nothing was charged" in result.message
    assert (await invoices.get_invoice(core, inv.id)).status == "outstanding" and await _balance(core) == 0
