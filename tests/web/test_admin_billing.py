"""The console's packages, DIDs and invoices pages and the account page's package change, invoices,
emails and limits, on both databases: pages render with data and page, each admin action works and
is audited with before and after, support is refused (403, nothing written), a form without its
CSRF token is refused, bad input shows one clear error and writes nothing, and a double-submitted
refund form refunds once (through the PayPal stand-in)."""
from __future__ import annotations

import html
import json
import re

import pytest
from sqlalchemy import func, insert, select

from billing_core import invoices
from billing_core import operators as ops
from billing_core.store.tables import ledger, outbox
from callgate.paypal.checkout import complete_return, start_checkout
from tests.paypal.conftest import approve_over_http

from .conftest import Browserless, admin_sign_in
from .test_admin_access import snapshot
from .test_admin_pages import admin_client, field, support_client, text_of  # noqa: F401 (fixtures)


def next_page(body: str) -> str:
    return re.search(r'id="next-page" href="([^"]+)"', body).group(1).replace("&amp;", "&")


async def audit_of(core, action: str) -> list:
    return [r for r in await core.store.run(ops.audit_page_tx) if r.action == action]


# ------------------------------------------------------------------------------------ packages
async def test_packages_list_their_plan_limits_and_accounts_and_page(core, admin_client, alice, bob):
    await core.admin.set_package("basic", daily_cap=5_000_000, max_call_minutes=60)
    for i in range(50):
        await core.admin.add_package(f"pkg{i:02d}", plan="standard", low_balance=1_000_000, max_calls=2,
                                     inbound_rate=0)
    first = await admin_client.get("/admin/packages")
    assert first.status == 200
    row = re.search(r'<tr><td><a href="/admin/packages/basic">basic</a>.*?</tr>', first.body, re.S).group(0)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    assert cells[:4] == ["basic", "standard", "10", "5.00"] and cells[5] == "2"  # alice and bob
    assert "calls ≤ 60 min" in cells[4] and "5.00/day" in cells[4]
    assert first.body.count('href="/admin/packages/pkg') == 49  # 50 a page: basic + pkg00..pkg48
    second = await admin_client.get(next_page(first.body))
    assert second.status == 200 and "pkg49" in second.body and "pkg00" not in second.body
    assert 'id="next-page"' not in second.body and 'id="first-page"' in second.body


async def test_a_package_page_shows_every_field_of_package_show(core, support_client, alice):
    page = await support_client.get("/admin/packages/basic")
    assert page.status == 200
    shown = await core.admin.show_package("basic")
    for key, value in shown.items():
        assert text_of(page.body, f"p-{key}") == ("–" if value in (None, "") else str(value)), key
    assert 'id="package-form"' not in page.body  # support reads only
    assert (await support_client.get("/admin/packages/nosuch")).status == 404


async def test_admin_edits_a_package_through_package_sets_checks_audited(core, admin_client, alice):
    page = await admin_client.get("/admin/packages/basic")
    form = {k: v.replace("&amp;", "&") for k, v in re.findall(r'<input id="f-\w+" name="(\w+)" value="([^"]*)"',
                                                               page.body)}
    assert form["max_calls"] == "10" and form["daily_cap"] == ""
    resp = await admin_client.post("/admin/packages/basic/set", {
        **form, "csrf": field(page.body, "csrf"), "max_calls": "3", "daily_cap": "7.50", "deny_prefixes": "881,882",
        "reason": "fraud wave"})
    assert resp.status == 303 and resp.headers["Location"] == "/admin/packages/basic?done=saved"
    shown = await core.admin.show_package("basic")
    assert (shown["max_calls"], shown["daily_cap"], shown["deny_prefixes"]) == (3, "7.50", "881,882")
    (record,) = await audit_of(core, "package.set")
    assert (record.target_kind, record.target, record.reason) == ("package", "basic", "fraud wave")
    assert json.loads(record.before) == {"max_calls": 10, "daily_cap": None, "deny_prefixes": ""}
    assert json.loads(record.after) == {"max_calls": 3, "daily_cap": "7.50", "deny_prefixes": "881,882"}
    # the same form again changes nothing and writes no second record
    again = await admin_client.get("/admin/packages/basic?done=saved")
    assert "Package saved." in again.body
    form = dict(re.findall(r'<input id="f-\w+" name="(\w+)" value="([^"]*)"', again.body))
    resp = await admin_client.post("/admin/packages/basic/set", {**form, "csrf": field(page.body, "csrf")})
    assert resp.headers["Location"].endswith("done=unchanged") and len(await audit_of(core, "package.set")) == 1


@pytest.mark.parametrize("name, value, message", [
    ("daily_cap", "abc", "--daily-cap:"),
    ("max_calls", "0", "--max-calls: must be a whole number"),
    ("low_balance", "-1", "--low-balance:"),
    ("allow_regions", "XX", "--allow-regions:"),
    ("timezone", "Mars/Olympus", "--timezone:"),
    ("max_call_minutes", "99999999", "--max-call-minutes: must be a whole number"),
    ("plan", "nosuch", "--plan: unknown plan"),
])
async def test_bad_package_input_names_the_field_and_writes_nothing(core, admin_client, alice, name, value, message):
    page = await admin_client.get("/admin/packages/basic")
    before = await snapshot(core)
    resp = await admin_client.post("/admin/packages/basic/set", {"csrf": field(page.body, "csrf"), "max_calls": "4",
                                                                 name: value})
    assert resp.status == 400
    error = html.unescape(text_of(resp.body, "action-error"))
    assert error.startswith(message) and error.endswith("Nothing was changed."), error
    assert resp.body.count('role="alert"') == 1
    assert await snapshot(core) == before


async def test_package_edits_need_an_admin_and_the_csrf_token(core, admin_client, support_client, alice):
    before = await snapshot(core)
    page = await support_client.get("/admin/packages/basic")
    resp = await support_client.post("/admin/packages/basic/set", {"csrf": field(page.body, "csrf"), "max_calls": "2"})
    assert resp.status == 403 and "may not do this" in resp.body
    resp = await admin_client.post("/admin/packages/basic/set", {"max_calls": "2"})
    assert resp.status == 403 and "Form refused" in resp.body
    assert await snapshot(core) == before


# ---------------------------------------------------------------------------------------- DIDs
async def test_the_did_pool_filters_searches_and_pages(core, admin_client, alice):
    for i in range(55):
        await core.admin.add_did(f"+1514555{7000 + i}")
    first = await admin_client.get("/admin/dids")
    assert first.status == 200 and "+15145551000" in first.body and 'href="/admin/accounts/alice"' in first.body
    seen = set(re.findall(r">(\+1514555\d{4})</a>", first.body))
    second = await admin_client.get(next_page(first.body))
    seen |= set(re.findall(r">(\+1514555\d{4})</a>", second.body))
    assert len(seen) == 56 and 'id="next-page"' not in second.body
    free = await admin_client.get("/admin/dids?state=free")
    assert "+15145551000" not in free.body and "+15145557000" in free.body
    assigned = await admin_client.get("/admin/dids?state=assigned")
    assert re.findall(r">(\+1514555\d{4})</a>", assigned.body) == ["+15145551000"]
    found = await admin_client.get("/admin/dids?q=514-555-7042")
    assert re.findall(r">(\+1514555\d{4})</a>", found.body) == ["+15145557042"]
    assert (await admin_client.get("/admin/dids?state=bogus")).status == 400


async def test_assign_and_release_a_did_audited_with_its_history(core, admin_client, alice, bob):
    await core.admin.add_did("+15145559999")
    page = await admin_client.get("/admin/dids/+15145559999")
    assert page.status == 200 and text_of(page.body, "holder") == "free" and "Never assigned." in page.body
    csrf = field(page.body, "csrf")
    resp = await admin_client.post("/admin/dids/+15145559999/assign", {"csrf": csrf, "account": "bob",
                                                                       "endpoint": ""})
    assert resp.status == 303 and resp.headers["Location"] == "/admin/dids/%2B15145559999?done=assigned"
    assert {d["number"]: d["account"] for d in await core.admin.list_dids()}["+15145559999"] == "bob"
    resp = await admin_client.post("/admin/dids/+15145559999/release", {"csrf": csrf, "reason": "customer left"})
    assert resp.status == 303 and resp.headers["Location"].endswith("done=released")
    page = await admin_client.get("/admin/dids/%2B15145559999?done=released")
    assert "DID released to the pool." in page.body and text_of(page.body, "holder") == "free"
    history = page.body.split('id="history"')[1].split("</table>")[0]
    assert "bob" in history and "customer left" in history
    records = [(r.action, json.loads(r.before), json.loads(r.after), r.reason)
               for r in reversed(await core.store.run(ops.audit_page_tx)) if r.target == "+15145559999"]
    assert records == [
        ("did.assign", {"account": None, "endpoint": None}, {"account": "bob", "endpoint": "bob-phone"}, ""),
        ("did.release", {"account": "bob", "endpoint": "bob-phone"}, {"account": None, "endpoint": None},
         "customer left")]


@pytest.mark.parametrize("action, form, message", [
    ("assign", {"account": "bob"}, "NUMBER: DID +15145551000 is assigned to another account"),
    ("assign", {"account": "nosuch"}, "account: unknown account 'nosuch'"),
    ("assign", {"account": ""}, "account: enter the ref"),
    ("assign", {"account": "alice", "endpoint": "bob-phone"}, "--endpoint: 'bob-phone' is not an endpoint"),
    ("release", {"reason": ""}, "reason: must not be empty"),
])
async def test_bad_did_actions_show_one_error_and_write_nothing(core, admin_client, alice, bob, action, form, message):
    page = await admin_client.get("/admin/dids/+15145551000")
    before = await snapshot(core)
    resp = await admin_client.post(f"/admin/dids/+15145551000/{action}", {"csrf": field(page.body, "csrf"), **form})
    assert resp.status == 400 and message in html.unescape(text_of(resp.body, "action-error"))
    assert await snapshot(core) == before


async def test_did_actions_need_an_admin_and_the_csrf_token(core, admin_client, support_client, alice, bob):
    before = await snapshot(core)
    page = await support_client.get("/admin/dids/+15145551000")
    assert page.status == 200 and 'id="release-form"' not in page.body
    for action, form in (("assign", {"account": "bob"}), ("release", {"reason": "x"})):
        resp = await support_client.post(f"/admin/dids/+15145551000/{action}", {"csrf": field(page.body, "csrf"),
                                                                                **form})
        assert resp.status == 403
        resp = await admin_client.post(f"/admin/dids/+15145551000/{action}", form)
        assert resp.status == 403 and "Form refused" in resp.body
    assert await snapshot(core) == before
    assert (await admin_client.get("/admin/dids/+19999999999")).status == 404


# ----------------------------------------------------------------------------- account page
async def test_account_page_shows_invoices_emails_dids_and_limits(core, admin_client, alice):
    inv = await invoices.create_invoice(core, "alice", "25.00")
    await core.admin.set_account_rules("alice", daily_cap=3_000_000)

    def queue_email(conn):
        conn.execute(insert(outbox).values(
            account_id=conn.exec_driver_sql("select id from accounts where ref = 'alice'").scalar(),
            kind="low_balance", dedupe_key="alice:low:1", to_addr="alice@example.test", context="{}",
            status="sent", attempts=1, next_attempt_at=0, created_at=0, sent_at=1))

    await core.store.run(queue_email)
    page = await admin_client.get("/admin/accounts/alice")
    assert page.status == 200
    invoices_table = page.body.split('id="account-invoices"')[1].split("</table>")[0]
    assert f"<td>{inv.id}</td>" in invoices_table and "outstanding" in invoices_table
    emails = page.body.split('id="emails"')[1].split("</table>")[0]
    assert "low_balance" in emails and "alice@example.test" in emails and "sent" in emails
    limits = page.body.split('id="limits"')[1].split("</table>")[0]
    assert re.search(r"<td>daily_cap</td><td>3.00</td>\s*<td>3.00</td>", limits)
    assert 'href="/admin/dids/%2B15145551000"' in page.body
    assert (await admin_client.get("/admin/dids/%2B15145551000")).status == 200


async def test_admin_changes_an_accounts_package_audited(core, admin_client, support_client, alice):
    await core.admin.add_package("premium", plan="standard", low_balance=0, max_calls=30, inbound_rate=0)
    page = await admin_client.get("/admin/accounts/alice")
    assert '<option value="premium"' in page.body
    csrf = field(page.body, "csrf")
    support_page = await support_client.get("/admin/accounts/alice")
    assert 'id="package-form"' not in support_page.body
    before = await snapshot(core)
    assert (await support_client.post("/admin/accounts/alice/package", {
        "csrf": field(support_page.body, "csrf"), "package": "premium"})).status == 403
    assert (await admin_client.post("/admin/accounts/alice/package", {"package": "premium"})).status == 403
    bad = await admin_client.post("/admin/accounts/alice/package", {"csrf": csrf, "package": "nosuch"})
    assert bad.status == 400 and "package: unknown package 'nosuch'" in html.unescape(text_of(bad.body, "action-error"))
    assert await snapshot(core) == before
    resp = await admin_client.post("/admin/accounts/alice/package", {"csrf": csrf, "package": "premium",
                                                                     "reason": "upgrade"})
    assert resp.status == 303 and resp.headers["Location"] == "/admin/accounts/alice?done=package"
    assert (await core.account("alice")).package == "premium"
    again = await admin_client.post("/admin/accounts/alice/package", {"csrf": csrf, "package": "premium"})
    assert again.status == 303
    (record,) = await audit_of(core, "account.package")
    assert (json.loads(record.before), json.loads(record.after), record.reason) == (
        {"package": "basic"}, {"package": "premium"}, "upgrade")
    shown = await admin_client.get("/admin/accounts/alice?done=package")
    assert "Package changed" in shown.body and "at most 30 calls at once" in shown.body


# ------------------------------------------------------------------------------------ invoices
async def test_invoices_filter_by_status_and_account_and_page(core, admin_client, alice, bob):
    made = [await invoices.create_invoice(core, "alice" if i % 2 else "bob", "25.00") for i in range(55)]
    await invoices.cancel_invoice(core, made[0].id, "typo")
    first = await admin_client.get("/admin/invoices")
    assert first.status == 200
    ids = [int(i) for i in re.findall(r'<tr id="invoice-(\d+)"', first.body)]
    assert ids == [i.id for i in reversed(made)][:50]
    second = await admin_client.get(next_page(first.body))
    assert [int(i) for i in re.findall(r'<tr id="invoice-(\d+)"', second.body)] == [i.id for i in made[:5]][::-1]
    cancelled = await admin_client.get("/admin/invoices?status=cancelled")
    assert re.findall(r'<tr id="invoice-(\d+)"', cancelled.body) == [str(made[0].id)] and "typo" in cancelled.body
    of_alice = await admin_client.get("/admin/invoices?account=alice")
    assert len(re.findall(r'<tr id="invoice-', of_alice.body)) == 27 and "/admin/accounts/bob" not in of_alice.body
    assert (await admin_client.get("/admin/invoices?status=bogus")).status == 400
    assert 'id="no-paypal"' in first.body and "refund-form" not in first.body


async def test_a_refund_without_paypal_is_refused_and_writes_nothing(core, admin_client, alice):
    inv = await invoices.create_invoice(core, "alice", "25.00")
    page = await admin_client.get("/admin/invoices")
    before = await snapshot(core)
    resp = await admin_client.post(f"/admin/invoices/{inv.id}/refund", {"csrf": field(page.body, "csrf"),
                                                                        "key": "k" * 20, "amount": ""})
    assert resp.status == 400 and "PayPal is not configured" in text_of(resp.body, "action-error")
    assert await snapshot(core) == before


async def _paid_invoice(core, paypal, ref="alice", amount="40.00"):
    inv = await invoices.create_invoice(core, ref, amount, source="web")
    url = await start_checkout(core, paypal, inv.id, "http://127.0.0.1:1/r", "http://127.0.0.1:1/c", account_ref=ref)
    location = await approve_over_http(url, "paypal")
    order_id = location.split("token=", 1)[1].split("&", 1)[0]
    result = await complete_return(core, paypal, inv.id, order_id, account_ref=ref)
    assert result.invoice.status == "paid"
    return result.invoice


async def _refunds(core) -> int:
    return await core.store.run(lambda conn: conn.execute(
        select(func.count()).select_from(ledger).where(ledger.c.kind == "refund")).scalar())


async def test_a_double_submitted_refund_form_refunds_once_audited(core, paying_site, admin_op, support_op, clock,
                                                                   alice):
    inv = await _paid_invoice(core, paying_site.paypal)
    await paying_site.standin.settle()
    balance = (await core.account("alice")).balance
    admin, support = Browserless(paying_site.url), Browserless(paying_site.url)
    try:
        await admin_sign_in(admin, admin_op, clock)
        await admin_sign_in(support, support_op, clock)
        page = await admin.get("/admin/invoices")
        form_html = page.body.split(f'action="/admin/invoices/{inv.id}/refund"')[1].split("</form>")[0]
        form = {"csrf": field(page.body, "csrf"), "key": field(form_html, "key"), "reason": "customer asked"}
        before = await snapshot(core)
        support_page = await support.get("/admin/invoices")
        assert "refund-form" not in support_page.body
        refused = await support.post(f"/admin/invoices/{inv.id}/refund", {**form, "csrf": field(support_page.body,
                                                                                               "csrf")})
        assert refused.status == 403
        assert (await admin.post(f"/admin/invoices/{inv.id}/refund", {**form, "csrf": ""})).status == 403
        for bad, message in (("abc", "amount:"), ("40.01", "amount: must be more than 0 and at most 40.00"),
                             ("1.001", "amount:")):
            resp = await admin.post(f"/admin/invoices/{inv.id}/refund", {**form, "amount": bad})
            assert resp.status == 400 and message in text_of(resp.body, "action-error"), bad
        assert await snapshot(core) == before and not paying_site.standin.refunds

        first = await admin.post(f"/admin/invoices/{inv.id}/refund", {**form, "amount": "15.00"})
        assert first.status == 303 and first.headers["Location"] == "/admin/invoices?done=refunded"
        again = await admin.post(f"/admin/invoices/{inv.id}/refund", {**form, "amount": "15.00"})
        assert again.status == 303 and again.headers["Location"] == "/admin/invoices?done=replayed"
        await paying_site.standin.settle()  # PayPal's REFUNDED webhook changes nothing more
        assert len(paying_site.standin.refunds) == 1 and await _refunds(core) == 1
        assert (await core.account("alice")).balance == balance - 15_000_000
        after = await invoices.get_invoice(core, inv.id)
        assert (after.status, after.refunded) == ("refunded", 15_000_000)
        (record,) = await audit_of(core, "invoice.refund")
        assert (record.actor, record.target, record.reason) == ("ops@example.test", str(inv.id), "customer asked")
        assert json.loads(record.after)["amount"] == "15.00"
        shown = await admin.get("/admin/invoices?done=refunded")
        assert "Refund made at PayPal" in shown.body and "15.00" in shown.body
    finally:
        await admin.close()
        await support.close()
