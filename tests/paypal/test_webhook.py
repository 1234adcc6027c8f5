"""The webhook endpoint over HTTP: forged, replayed and stale transmissions are rejected, logged,
and change nothing; genuine ones are applied once."""
from __future__ import annotations

import logging

import aiohttp
import pytest
from sqlalchemy import func, select

from billing_core import invoices
from billing_core.store.tables_invoices import paypal_webhooks
from callgate_fakes.paypal_standin import make_signing_key
from callgate.paypal.webhook import handle_webhook
from tests.factories import seed


async def _invoice_with_capture(core, standin, amount="25.00"):
    """An outstanding invoice and a COMPLETED capture for it at the stand-in (no return, no webhook yet)."""
    await seed(core, balance="0")
    inv = await invoices.create_invoice(core, "acme", amount)
    resource = {"id": f"CAPT{inv.id}XYZ", "status": "COMPLETED", "amount": {"currency_code": "CAD", "value": amount},
                "custom_id": str(inv.id), "supplementary_data": {"related_ids": {"order_id": "O1"}}}
    return inv, resource


async def _transmissions(core) -> int:
    return await core.store.run(lambda c: c.execute(select(func.count()).select_from(paypal_webhooks)).scalar())


@pytest.mark.parametrize("tamper", [
    {"tamper_body": True}, {"bad_signature": True}, {"webhook_id": "WHSOMEONEELSE"},
    {"age": 3600}, {"cert_url": "https://evil.invalid/v1/notifications/certs/CERT-x"},
])
async def test_forged_or_stale_webhooks_change_nothing(core, standin, receiver, caplog, tamper):
    inv, resource = await _invoice_with_capture(core, standin)
    caplog.set_level(logging.WARNING, logger="callgate.paypal.webhook")
    delivery = await standin.send_webhook("PAYMENT.CAPTURE.COMPLETED", resource, **tamper)
    assert delivery.status == 400, delivery.body
    assert (await invoices.get_invoice(core, inv.id)).status == "outstanding"
    assert (await core.account("acme")).balance == 0
    assert await _transmissions(core) == 0  # a forged id cannot block the genuine one later
    assert "paypal webhook rejected" in caplog.text and delivery.webhook.transmission_id in caplog.text


async def test_signed_by_another_key_is_forged(core, standin, receiver):
    inv, resource = await _invoice_with_capture(core, standin)
    other, _ = make_signing_key()
    delivery = await standin.send_webhook("PAYMENT.CAPTURE.COMPLETED", resource, signing_key=other)
    assert delivery.status == 400 and '"forged"' in delivery.body
    assert (await core.account("acme")).balance == 0


async def test_replayed_transmission_is_rejected_and_credits_once(core, standin, receiver, caplog):
    inv, resource = await _invoice_with_capture(core, standin)
    signed = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", resource)
    first = await standin.deliver(signed)
    assert first.status == 200 and '"paid"' in first.body
    caplog.set_level(logging.WARNING, logger="callgate.paypal.webhook")
    replay = await standin.deliver(signed)
    assert replay.status == 409 and "replayed" in replay.body
    assert "replayed" in caplog.text
    assert (await core.account("acme")).balance == 25_000_000
    assert await _transmissions(core) == 1
    # the same transmission id re-signed with fresh content is still a replay
    again = await standin.send_webhook("PAYMENT.CAPTURE.COMPLETED", resource, transmission_id=signed.transmission_id)
    assert again.status == 409


async def test_same_event_in_a_new_transmission_is_accepted_but_credits_once(core, standin, receiver):
    inv, resource = await _invoice_with_capture(core, standin)
    for _ in range(2):
        delivery = await standin.send_webhook("PAYMENT.CAPTURE.COMPLETED", resource)
        assert delivery.status == 200
    assert (await core.account("acme")).balance == 25_000_000
    assert len([e for e in await core.admin.ledger("acme") if e["kind"] == "payment"]) == 1


async def test_unknown_events_and_unknown_invoices_are_acknowledged_and_ignored(core, standin, receiver):
    inv, resource = await _invoice_with_capture(core, standin)
    other = await standin.send_webhook("CHECKOUT.ORDER.APPROVED", {"id": "O1", "status": "APPROVED"})
    assert other.status == 200 and '"ignored"' in other.body
    stranger = await standin.send_webhook("PAYMENT.CAPTURE.COMPLETED",
                                          {**resource, "id": "CAPNOBODY", "custom_id": "999999"})
    assert stranger.status == 200 and "unknown_invoice" in stranger.body
    assert (await core.account("acme")).balance == 0


async def test_storage_down_answers_503_so_paypal_retries(standin, verifier):
    from billing_core.api import BillingCore

    down = await BillingCore.open("postgresql://127.0.0.1:1/nowhere")  # nothing listens there
    try:
        resource = {"id": "CAPX", "status": "COMPLETED", "amount": {"currency_code": "CAD", "value": "25.00"},
                    "custom_id": "1"}
        signed = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", resource)
        result = await handle_webhook(down, signed.headers, signed.body, verifier=verifier)
        assert result.status == "error" and result.http_status == 503
    finally:
        await down.close()


async def test_oversized_body_is_refused(core, standin, receiver):
    async with aiohttp.ClientSession() as session:
        async with session.post(receiver, data=b"x" * (300 * 1024)) as resp:
            assert resp.status == 413


async def test_a_reversal_reported_on_the_capture_itself_debits_once(core, standin, receiver):
    inv, resource = await _invoice_with_capture(core, standin, "40.00")
    assert (await standin.send_webhook("PAYMENT.CAPTURE.COMPLETED", resource)).status == 200
    reversed_capture = {**resource, "status": "REVERSED"}  # no refund id, no "up" link
    for _ in range(2):
        delivery = await standin.send_webhook("PAYMENT.CAPTURE.REVERSED", reversed_capture)
        assert delivery.status == 200
    (entry,) = [e for e in await core.admin.ledger("acme") if e["kind"] == "reversal"]
    assert entry["amount"] == -40_000_000 and entry["idempotency_key"] == f"{resource['id']}-REVERSAL"
    assert (await core.account("acme")).balance == 0


def test_custom_id_names_an_invoice_only_in_ascii_decimal():
    from callgate.paypal.models import invoice_id_or_none

    assert invoice_id_or_none("42") == 42
    for odd in ("²", "٦", "4²", "9223372036854775808", "-1", "0", "", None, 42, " 42"):
        assert invoice_id_or_none(odd) is None, odd
