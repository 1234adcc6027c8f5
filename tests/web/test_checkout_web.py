"""Add Funds through the PayPal stand-in over real HTTP (no browser): pay, cancel and pay later,
eCheque, PayPal down, and every PayPal step tried with another customer's ids."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from billing_core import invoices as inv


async def _add_funds(client, amount: str):
    resp = await client.post("/funds", {"csrf": await client.csrf("/funds"), "amount": amount})
    return resp


def _order_id(approval_url: str) -> str:
    return parse_qs(urlsplit(approval_url).query)["token"][0]


def _local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


async def test_add_funds_pays_through_paypal_and_credits_once(paying_site, pay_client, alice, core):
    c, standin = pay_client, paying_site.standin
    await c.sign_in(alice.email, alice.password)
    resp = await _add_funds(c, "50.00")
    assert resp.status == 303
    approval = resp.headers["Location"]
    assert approval.startswith(standin.base_url + "/checkoutnow?")
    [invoice] = await inv.list_invoices(core, "alice")
    assert invoice.status == inv.OUTSTANDING and invoice.amount == 50_000_000
    assert invoice.paypal_order_id == _order_id(approval)

    back = standin.approve(_order_id(approval), "paypal")
    assert back.startswith(paying_site.url + "/paypal/return?invoice=")
    ret = await c.get(_local(back))
    assert ret.status == 303 and ret.headers["Location"] == f"/balance?invoice={invoice.id}&outcome=paid"
    page = await c.get(ret.headers["Location"])
    assert re.search(r'id="balance">60\.00 CAD<', page.body)
    assert "Payment received: 50.00 CAD added to your balance" in page.body

    # PayPal's webhook for the same capture arrives: nothing more is credited.
    await standin.settle()
    assert standin.deliveries and all(d.status == 200 for d in standin.deliveries)
    assert (await core.account("alice")).balance == 60_000_000
    # A reload of the return page changes nothing either.
    again = await c.get(_local(back))
    assert again.status == 303
    assert (await core.account("alice")).balance == 60_000_000
    ledger = await core.admin.ledger("alice")
    assert [e["kind"] for e in ledger].count("payment") == 1


async def test_cancel_at_paypal_leaves_the_invoice_outstanding_to_pay_later(paying_site, pay_client, alice, core):
    c, standin = pay_client, paying_site.standin
    await c.sign_in(alice.email, alice.password)
    approval = (await _add_funds(c, "25.00")).headers["Location"]
    back = standin.approve(_order_id(approval), "cancel")
    resp = await c.get(_local(back))
    [invoice] = await inv.list_invoices(core, "alice")
    assert resp.status == 303 and resp.headers["Location"] == f"/invoices?cancelled={invoice.id}"
    page = await c.get(resp.headers["Location"])
    outstanding = page.body.split('id="outstanding"')[1].split("</table>")[0]
    assert f"#{invoice.id}" in outstanding and "Pay now" in outstanding
    assert "Payment cancelled at PayPal" in page.body
    assert invoice.status == inv.OUTSTANDING
    assert (await core.account("alice")).balance == 10_000_000
    assert "checkout_cancelled" in [e.kind for e in await inv.invoice_events_of(core, invoice.id)]

    # Later: Pay now → a new order → pay by card.
    pay = await c.post(f"/invoices/{invoice.id}/pay", {"csrf": await c.csrf("/invoices")})
    assert pay.status == 303
    second_order = _order_id(pay.headers["Location"])
    assert second_order != _order_id(approval)
    ret = await c.get(_local(standin.approve(second_order, "card")))
    page = await c.get(ret.headers["Location"])
    assert re.search(r'id="balance">35\.00 CAD<', page.body)
    assert (await inv.get_invoice(core, invoice.id)).status == inv.PAID
    page = await c.get("/invoices")
    assert 'id="no-outstanding"' in page.body
    assert f"#{invoice.id}" in page.body.split('id="history"')[1]


async def test_echeque_is_pending_until_it_clears(paying_site, pay_client, alice, core):
    c, standin = pay_client, paying_site.standin
    await c.sign_in(alice.email, alice.password)
    approval = (await _add_funds(c, "100.00")).headers["Location"]
    ret = await c.get(_local(standin.approve(_order_id(approval), "echeque")))
    page = await c.get(ret.headers["Location"])
    assert "is clearing" in page.body and re.search(r'id="balance">10\.00 CAD<', page.body)
    [invoice] = await inv.list_invoices(core, "alice")
    assert invoice.status == inv.PENDING
    invoices_page = await c.get("/invoices")
    row = invoices_page.body.split(f'id="invoice-{invoice.id}"')[1].split("</tr>")[0]
    assert "Payment clearing (eCheque)" in row and "Pay now" not in row
    await standin.settle()
    await standin.complete_pending(invoice.capture_id)
    await standin.settle()
    page = await c.get("/balance")
    assert re.search(r'id="balance">110\.00 CAD<', page.body)


async def test_paypal_down_keeps_the_invoice_outstanding(paying_site, pay_client, alice, core):
    c, standin = pay_client, paying_site.standin
    await c.sign_in(alice.email, alice.password)
    await standin.stop()
    resp = await _add_funds(c, "30.00")
    assert resp.status == 503
    [invoice] = await inv.list_invoices(core, "alice")
    assert f"#{invoice.id}" in resp.body and "stays outstanding" in resp.body
    assert invoice.status == inv.OUTSTANDING and (await core.account("alice")).balance == 10_000_000


async def test_add_funds_without_paypal_configured(client, alice, core):
    await client.sign_in(alice.email, alice.password)
    resp = await _add_funds(client, "30.00")
    assert resp.status == 503 and "not set up" in resp.body
    assert [i.status for i in await inv.list_invoices(core, "alice")] == [inv.OUTSTANDING]


async def test_return_without_a_session_still_captures_then_asks_to_sign_in(paying_site, pay_client, pay_client2,
                                                                             alice, core):
    c, standin = pay_client, paying_site.standin
    await c.sign_in(alice.email, alice.password)
    approval = (await _add_funds(c, "40.00")).headers["Location"]
    back = standin.approve(_order_id(approval), "paypal")
    resp = await pay_client2.get(_local(back))  # a browser without the cookie
    assert resp.status == 303 and resp.headers["Location"].startswith("/signin?next=")
    assert (await core.account("alice")).balance == 50_000_000


async def test_webhook_route_is_mounted_and_rejects_unsigned_posts(paying_site, pay_client, core):
    resp = await pay_client.http.post(paying_site.url + "/paypal/webhook", data=b'{"event_type": "x"}',
                                      headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["status"] == "rejected"


async def test_no_paypal_step_works_on_another_customers_invoice(paying_site, pay_client, pay_client2, alice, bob,
                                                                 core):
    a, b, standin = pay_client, pay_client2, paying_site.standin
    await a.sign_in(alice.email, alice.password)
    await b.sign_in(bob.email, bob.password)
    approval = (await _add_funds(b, "80.00")).headers["Location"]
    order = _order_id(approval)
    [bobs] = await inv.list_invoices(core, "bob")
    back = standin.approve(order, "paypal")
    cancel_url = f"/paypal/cancel?invoice={bobs.id}&token={order}"
    events = await inv.invoice_events_of(core, bobs.id)
    orders_before = len(standin.orders)
    balances = ((await core.account("alice")).balance, (await core.account("bob")).balance)
    csrf = await a.csrf()

    for method, path in (("GET", f"/invoices/{bobs.id}"), ("POST", f"/invoices/{bobs.id}/pay"),
                         ("GET", _local(back)), ("GET", cancel_url)):
        resp = await (a.get(path) if method == "GET" else a.post(path, {"csrf": csrf}))
        assert resp.status == 404, (method, path, resp.status)
        assert "80.00" not in resp.body

    assert len(standin.orders) == orders_before
    assert standin.orders[order].status == "APPROVED"  # not captured
    assert await inv.invoice_events_of(core, bobs.id) == events
    assert (await inv.get_invoice(core, bobs.id)).status == inv.OUTSTANDING
    assert ((await core.account("alice")).balance, (await core.account("bob")).balance) == balances
    # Alice's own pages show nothing of Bob's.
    for path in ("/balance", "/invoices", "/calls", "/dids"):
        page = await a.get(path)
        assert page.status == 200
        assert "bob" not in page.body.lower() and "+15145552000" not in page.body and f"#{bobs.id}<" not in page.body
    # Bob's invoice id in Alice's notices says nothing about it.
    page = await a.get(f"/balance?invoice={bobs.id}&outcome=paid")
    assert "notice" not in page.body and "80.00" not in page.body
    page = await a.get(f"/invoices?cancelled={bobs.id}")
    assert "Payment cancelled" not in page.body
    # Bob finishes his own payment normally.
    ret = await b.get(_local(back))
    assert ret.headers["Location"] == f"/balance?invoice={bobs.id}&outcome=paid"
    assert (await core.account("bob")).balance == balances[1] + 80_000_000
