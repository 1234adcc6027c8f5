"""The Orders v2 client against the stand-in over real HTTP on 127.0.0.1."""
from __future__ import annotations

import dataclasses

import pytest

from callgate.paypal.client import PayPalClient, PayPalError
from tests.paypal.conftest import approve_over_http


async def _order(paypal, amount=25_000_000, invoice_id=7):
    return await paypal.create_order(invoice_id=invoice_id, amount=amount, currency="CAD",
                                     return_url="http://127.0.0.1:1/invoices/7/return?x=1",
                                     cancel_url="http://127.0.0.1:1/invoices/7/cancel")


async def test_create_order_sends_invoice_amount_and_urls(paypal, standin):
    order = await _order(paypal, 123_450_000)
    assert order.status == "CREATED" and order.custom_id == "7"
    assert (order.value, order.currency) == ("123.45", "CAD")
    assert order.approval_url.startswith(f"{standin.base_url}/checkoutnow?token={order.id}")
    kept = standin.orders[order.id]
    assert kept.return_url.endswith("/invoices/7/return?x=1") and kept.cancel_url.endswith("/invoices/7/cancel")
    assert ("POST", "/v1/oauth2/token") in standin.requests
    again = await paypal.get_order(order.id)
    assert again.id == order.id and again.status == "CREATED"


async def test_token_is_reused_and_renewed_after_a_401(paypal, standin):
    await _order(paypal)
    await _order(paypal)
    assert standin.requests.count(("POST", "/v1/oauth2/token")) == 1
    standin.tokens.clear()  # PayPal revoked it
    await _order(paypal)
    assert standin.requests.count(("POST", "/v1/oauth2/token")) == 2


async def test_wrong_credentials_and_unreachable_paypal_are_errors(standin):
    async with PayPalClient(standin.config(secret="wrong")) as bad:
        with pytest.raises(PayPalError) as err:
            await _order(bad)
    assert err.value.status == 401
    async with PayPalClient(dataclasses.replace(standin.config(), base_url="http://127.0.0.1:9", timeout=2)) as gone:
        with pytest.raises(PayPalError) as err:
            await _order(gone)
    assert err.value.unreachable


async def test_approve_then_capture_once(paypal, standin):
    order = await _order(paypal)
    with pytest.raises(PayPalError) as err:
        await paypal.capture_order(order.id)
    assert err.value.issue == "ORDER_NOT_APPROVED"
    location = await approve_over_http(order.approval_url, "card")
    assert location.startswith("http://127.0.0.1:1/invoices/7/return?x=1&token=" + order.id)
    assert "PayerID=" in location
    captured = await paypal.capture_order(order.id, request_id="capture-1")
    assert captured.status == "COMPLETED"
    (cap,) = captured.captures
    assert (cap.status, cap.value, cap.currency, cap.custom_id, cap.order_id) == ("COMPLETED", "25.00", "CAD", "7", order.id)
    facts = cap.facts()
    assert (facts.amount, facts.invoice_id, facts.capture_id) == (25_000_000, 7, cap.id)
    # the same request id replays PayPal's first answer; another one is refused
    replay = await paypal.capture_order(order.id, request_id="capture-1")
    assert replay.captures[0].id == cap.id
    with pytest.raises(PayPalError) as err:
        await paypal.capture_order(order.id, request_id="capture-2")
    assert err.value.issue == "ORDER_ALREADY_CAPTURED"
    assert (await paypal.get_capture(cap.id)).status == "COMPLETED"


async def test_echeque_capture_is_pending(paypal, standin):
    order = await _order(paypal)
    await approve_over_http(order.approval_url, "echeque")
    (cap,) = (await paypal.capture_order(order.id)).captures
    assert cap.status == "PENDING" and cap.status_reason == "ECHECK"


async def test_cancel_button_returns_to_the_cancel_url(paypal, standin):
    order = await _order(paypal)
    location = await approve_over_http(order.approval_url, "cancel")
    assert location == f"http://127.0.0.1:1/invoices/7/cancel?token={order.id}"
    assert standin.orders[order.id].status == "CREATED"


async def test_refunds_partial_then_rest_then_refused(paypal, standin):
    order = await _order(paypal, 40_000_000)
    await approve_over_http(order.approval_url, "paypal")
    (cap,) = (await paypal.capture_order(order.id)).captures
    part = await paypal.refund_capture(cap.id, amount=10_000_000, currency="CAD")
    assert (part.status, part.value, part.capture_id) == ("COMPLETED", "10.00", cap.id)
    assert part.facts().amount == 10_000_000 and part.facts().kind == "refund"
    rest = await paypal.refund_capture(cap.id)
    assert rest.value == "30.00" and rest.id != part.id
    with pytest.raises(PayPalError) as err:
        await paypal.refund_capture(cap.id, amount=1_000_000, currency="CAD")
    assert err.value.status == 422


async def test_ids_that_are_not_paypal_ids_never_reach_a_url(paypal):
    with pytest.raises(PayPalError) as err:
        await paypal.get_order("../v1/oauth2/token")
    assert err.value.name == "INVALID_RESOURCE_ID"
