"""Issue 15 (outside probe), the client area: open redirects, odd ids, the PayPal return without a
session, the whole add-funds amount, return URLs from configuration only, headers on every answer,
and request errors logged without header values. Real HTTP on loopback, both databases."""
from __future__ import annotations

import asyncio
import logging
import unicodedata
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from billing_core import invoices as inv
from callgate.web.app import WebSettings, make_web_app

from .conftest import FAST_AUTH, Browserless

REDIRECT_PROBES = [
    "/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "/\r\n/evil.example", "/\x00/evil.example",
    "/\x0b/evil.example", "/\x0c/evil.example", "/ /evil.example", " //evil.example", "/\u3000/evil.example",
    "/\u2028/evil.example", "/\u200b/evil.example", "/\x7f/evil.example",
    "//evil.example", "///evil.example", "//evil.example/%2F..", "/\\evil.example", "/\\/evil.example",
    "\\\\evil.example", "\\/evil.example", "/\t\\evil.example",
    "https://evil.example", "http:evil.example", "javascript:alert(1)", "evil.example", "",
    "/..//evil.example", "/.//evil.example", "/%2e%2e//evil.example",
]


def _assert_same_site(location: str) -> None:
    """The Location a browser would follow stays on this site."""
    assert location.startswith("/"), location
    assert location[1:2] not in ("/", "\\"), location
    parts = urlsplit(location)
    assert not parts.scheme and not parts.netloc, location
    assert not any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in location), repr(location)


@pytest.mark.parametrize("target", REDIRECT_PROBES)
async def test_next_never_leaves_the_site_after_sign_in(client, alice, target):
    token = await client.csrf("/signin")
    resp = await client.post("/signin", {"csrf": token, "email": alice.email, "password": alice.password,
                                         "next": target})
    assert resp.status == 303
    _assert_same_site(resp.headers["Location"])
    assert resp.headers["Location"] == "/balance", (target, resp.headers["Location"])


async def test_next_never_leaves_the_site_when_already_signed_in(client, alice):
    await client.sign_in(alice.email, alice.password)
    for raw in ("/%09/evil.example", "/%0a/evil.example", "/%0d/evil.example", "/%0d%0a/evil.example",
                "%2F%2Fevil.example", "/%5Cevil.example", "%5C%5Cevil.example", "/%00/evil.example",
                "https%3A%2F%2Fevil.example", "/%E3%80%80/evil.example", "/%09%5C/evil.example"):
        resp = await client.get(f"/signin?next={raw}")
        assert resp.status == 303, raw
        _assert_same_site(resp.headers["Location"])
        assert resp.headers["Location"] == "/balance", (raw, resp.headers["Location"])


async def test_the_sign_in_form_carries_only_a_safe_next(client, alice):
    page = await client.get("/signin?next=/%09/evil.example")
    assert 'name="next" value="/balance"' in page.body
    page = await client.get("/signin?next=/calls")
    assert 'name="next" value="/calls"' in page.body


async def test_local_next_targets_still_work(client, alice):
    for target in ("/calls", "/invoices/3", "/balance?invoice=1&outcome=paid", "/dids#numbers"):
        token = await client.csrf("/signin")
        resp = await client.post("/signin", {"csrf": token, "email": alice.email, "password": alice.password,
                                             "next": target})
        assert resp.headers["Location"] == target
        await client.post("/signout", {"csrf": await client.csrf()})


# --------------------------------------------------------------------------------------- ids
ODD_IDS = ["%C2%B2", "%D9%A6", "1%C2%B2", "%EF%BC%91", "9223372036854775808", "99999999999999999999",
           "1" * 40, "-1", "+1", "1.0", "1e3", "0x1", "%201", "1%0A", "1%20"]


async def test_odd_ids_are_404_on_every_route_that_takes_one(paying_site, pay_client, alice, core):
    c = pay_client
    await c.sign_in(alice.email, alice.password)
    csrf = await c.csrf()
    for raw in ODD_IDS:
        for method, path in (("GET", f"/invoices/{raw}"), ("POST", f"/invoices/{raw}/pay"),
                             ("GET", f"/paypal/return?invoice={raw}&token=ORDER1"),
                             ("GET", f"/paypal/cancel?invoice={raw}&token=ORDER1")):
            resp = await (c.get(path) if method == "GET" else c.post(path, {"csrf": csrf}))
            assert resp.status == 404, (method, path, resp.status, resp.body[:300])
        # Pages that only show a notice for an id ignore an odd one.
        for path in (f"/balance?invoice={raw}&outcome=paid", f"/invoices?cancelled={raw}"):
            resp = await c.get(path)
            assert resp.status == 200, (path, resp.status)
            assert "notice" not in resp.body
    assert await inv.list_invoices(core, "alice") == []


async def test_odd_ids_are_404_without_paypal_too(client, alice):
    await client.sign_in(alice.email, alice.password)
    for raw in ODD_IDS:
        assert (await client.get(f"/invoices/{raw}")).status == 404, raw


# ----------------------------------------------------------------------- PayPal return, no session
async def test_return_without_session_or_signature_looks_nothing_up(paying_site, pay_client, pay_client2, alice, core):
    c, standin = pay_client, paying_site.standin
    await c.sign_in(alice.email, alice.password)
    approval = (await c.post("/funds", {"csrf": await c.csrf("/funds"), "amount": "40.00"})).headers["Location"]
    order = parse_qs(urlsplit(approval).query)["token"][0]
    standin.approve(order, "paypal")
    [invoice] = await inv.list_invoices(core, "alice")
    requests_before = len(standin.requests)
    answers = set()
    for invoice_id in (invoice.id, invoice.id + 1000):
        for extra in ("", "&sig=forged", f"&sig={'0' * 64}"):
            path = f"/paypal/return?invoice={invoice_id}&token={order}&PayerID=P1{extra}"
            resp = await pay_client2.get(path)
            # An existing and a missing invoice answer alike: sign in, then come back here.
            location = resp.headers.get("Location", "")
            answers.add((resp.status, location.startswith("/signin?"),
                         parse_qs(urlsplit(location).query).get("next") == [path], resp.body))
    assert len(answers) == 1 and answers.pop()[:3] == (303, True, True)
    assert len(standin.requests) == requests_before  # no outbound PayPal call
    assert (await inv.get_invoice(core, invoice.id)).status == inv.OUTSTANDING
    assert (await core.account("alice")).balance == 10_000_000


async def test_a_return_link_signed_for_one_invoice_does_not_pay_another(paying_site, pay_client, pay_client2, alice,
                                                                          bob, core):
    a, b, standin = pay_client, pay_client2, paying_site.standin
    await a.sign_in(alice.email, alice.password)
    await b.sign_in(bob.email, bob.password)
    alice_back = standin.approve(parse_qs(urlsplit(
        (await a.post("/funds", {"csrf": await a.csrf("/funds"), "amount": "40.00"})).headers["Location"]).query)["token"][0])
    [alices] = await inv.list_invoices(core, "alice")
    bob_order = parse_qs(urlsplit(
        (await b.post("/funds", {"csrf": await b.csrf("/funds"), "amount": "80.00"})).headers["Location"]).query)["token"][0]
    standin.approve(bob_order, "paypal")
    [bobs] = await inv.list_invoices(core, "bob")
    sig = parse_qs(urlsplit(alice_back).query)["sig"][0]
    fresh = Browserless(paying_site.url)
    try:
        requests_before = len(standin.requests)
        resp = await fresh.get(f"/paypal/return?invoice={bobs.id}&token={bob_order}&sig={sig}")
        assert resp.status == 303 and resp.headers["Location"].startswith("/signin?next=")
        assert len(standin.requests) == requests_before
    finally:
        await fresh.close()
    assert (await inv.get_invoice(core, bobs.id)).status == inv.OUTSTANDING
    assert alices.status == inv.OUTSTANDING


# ------------------------------------------------------------------------------- add funds amount
@pytest.mark.parametrize("amount", ["25.00" + " " * 35 + "123", "25.00" + "0" * 40 + "1", "2" + " " * 39 + "5.00"])
async def test_the_whole_amount_is_validated(client, alice, core, amount):
    await client.sign_in(alice.email, alice.password)
    resp = await client.post("/funds", {"csrf": await client.csrf("/funds"), "amount": amount})
    assert resp.status == 400, resp.body[:300]
    assert await inv.list_invoices(core, "alice") == []


# ------------------------------------------------------------------------- return URLs from config
async def _serve_app(app):
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def test_return_urls_never_come_from_the_host_header(paying_site, pay_client, alice):
    c, standin = pay_client, paying_site.standin
    await c.sign_in(alice.email, alice.password)
    resp = await c.post("/funds", {"csrf": await c.csrf("/funds"), "amount": "30.00"},
                        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"})
    assert resp.status == 303
    order = standin.orders[parse_qs(urlsplit(resp.headers["Location"]).query)["token"][0]]
    for url in (order.return_url, order.cancel_url):
        assert url.startswith(paying_site.url + "/paypal/"), url
        assert "evil" not in url


async def test_checkout_needs_public_url_outside_loopback(core, alice):
    from callgate.paypal.client import PayPalClient
    from callgate_fakes.paypal_standin import PayPalStandIn

    standin = await PayPalStandIn().start()
    paypal = PayPalClient(standin.config())
    # Configured to listen on a public address with no public_url (served on loopback for the test).
    settings = WebSettings(listen="192.0.2.10:8080", auth=FAST_AUTH)
    runner, url = await _serve_app(make_web_app(core, paypal, settings))
    c = Browserless(url)
    try:
        await c.sign_in(alice.email, alice.password)
        resp = await c.post("/funds", {"csrf": await c.csrf("/funds"), "amount": "30.00"},
                            headers={"Host": "evil.example"})
        assert resp.status == 503 and "not set up" in resp.body
        assert standin.orders == {}
        [invoice] = await inv.list_invoices(core, "alice")
        assert invoice.status == inv.OUTSTANDING
    finally:
        await c.close()
        await runner.cleanup()
        await paypal.close()
        await standin.stop()
    # With public_url the same configuration starts checkout at that URL.
    standin = await PayPalStandIn().start()
    paypal = PayPalClient(standin.config())
    settings = WebSettings(listen="192.0.2.10:8080", public_url="https://pay.example.test", auth=FAST_AUTH)
    runner, url = await _serve_app(make_web_app(core, paypal, settings))
    c = Browserless(url)
    try:
        await c.sign_in(alice.email, alice.password)
        resp = await c.post("/funds", {"csrf": await c.csrf("/funds"), "amount": "30.00"})
        assert resp.status == 303
        [order] = standin.orders.values()
        assert order.return_url.startswith("https://pay.example.test/paypal/return?")
    finally:
        await c.close()
        await runner.cleanup()
        await paypal.close()
        await standin.stop()


# ------------------------------------------------------------------------------------ headers
def _no_server_software(resp) -> None:
    server = resp.headers.get("Server", "")
    assert "python" not in server.lower() and "aiohttp" not in server.lower(), server


async def test_security_headers_on_redirects_and_errors_and_no_server_software(client, alice):
    for path in ("/", "/balance", "/signin?next=/calls", "/nope", "/invoices/%C2%B2"):
        resp = await client.get(path)
        for header in ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "Content-Security-Policy",
                       "Cache-Control"):
            assert header in resp.headers, (path, resp.status, header)
        _no_server_software(resp)
    token = await client.csrf("/signin")
    resp = await client.post("/signin", {"csrf": token, "email": alice.email, "password": alice.password})
    assert resp.status == 303 and resp.headers["X-Frame-Options"] == "DENY"
    _no_server_software(resp)


async def _raw_request(base: str, request: bytes) -> bytes:
    host, port = urlsplit(base).hostname, urlsplit(base).port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_oversized_cookie_is_refused_without_logging_the_token(web_app, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "LIVE-SESSION-TOKEN-" + "x" * 40
    for size in (9_000, 70_000):
        answer = await _raw_request(web_app, b"GET /balance HTTP/1.1\r\nHost: x\r\nCookie: callgate_session="
                                    + secret.encode() + b"A" * size + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
        head = answer.split(b"\r\n\r\n")[0].decode()
        assert "Python" not in head and "aiohttp" not in head
    logged = "\n".join(r.getMessage() + (caplog.handler.format(r) if r.exc_info else "") for r in caplog.records)
    assert "LIVE-SESSION-TOKEN" not in logged
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("bad request" in r.getMessage().lower() for r in caplog.records)
