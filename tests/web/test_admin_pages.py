"""The operator console's pages on both databases: accounts (search, paging, credit/debit once per
form, suspend/reactivate, notes), calls (filters, CSV = `calls --json`), the audit log."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest
from sqlalchemy import func, select

from billing_core import operators as ops
from billing_core.admin import Admin
from billing_core.store.tables import accounts, ledger
from billing_core.store.tables_operators import account_notes, audit_log
from callgate.commands.common import jsonable
from callgate.web.admin_pages import CALL_FIELDS, csv_cell

from .conftest import Browserless, add_customer, admin_sign_in


@pytest.fixture
async def admin_client(web_app, admin_op, clock):
    c = Browserless(web_app)
    await admin_sign_in(c, admin_op, clock)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def support_client(web_app, support_op, clock):
    c = Browserless(web_app)
    await admin_sign_in(c, support_op, clock)
    try:
        yield c
    finally:
        await c.close()


def field(body: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', body)
    assert m, f"no {name} field"
    return m.group(1)


def text_of(body: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)</', body, re.S)
    assert m, f"no #{element_id}"
    return re.sub(r"\s+", " ", m.group(1)).strip()


async def count(core, table, **where) -> int:
    def tx(conn):
        q = select(func.count()).select_from(table)
        for k, v in where.items():
            q = q.where(table.c[k] == v)
        return conn.execute(q).scalar_one()

    return await core.store.run(tx)


async def test_credit_once_per_form_with_its_audit_record(core, admin_client, alice):
    page = await admin_client.get("/admin/accounts/alice")
    assert page.status == 200 and text_of(page.body, "balance") == "10.00 CAD"
    form = {"csrf": field(page.body, "csrf"), "key": field(page.body, "key"), "direction": "credit",
            "amount": "2.50", "reason": "goodwill minute"}
    ledger_before = await count(core, ledger)
    first = await admin_client.post("/admin/accounts/alice/credit", form)
    assert first.status == 303 and first.headers["Location"] == "/admin/accounts/alice?done=credited"
    again = await admin_client.post("/admin/accounts/alice/credit", form)  # double submit / reload
    assert again.status == 303 and again.headers["Location"].endswith("done=replayed")
    assert (await core.account("alice")).balance == 12_500_000
    assert await count(core, ledger) == ledger_before + 1
    records = await core.store.run(ops.audit_page_tx)
    credit = [r for r in records if r.action == "account.credit"]
    assert len(credit) == 1
    assert (credit[0].actor, credit[0].target, credit[0].reason) == ("ops@example.test", "alice", "goodwill minute")
    assert json.loads(credit[0].before) == {"balance": "10.00"}
    assert json.loads(credit[0].after)["balance"] == "12.50"
    shown = await admin_client.get("/admin/accounts/alice?done=credited")
    assert "Credit recorded." in shown.body and text_of(shown.body, "balance") == "12.50 CAD"
    assert "goodwill minute" in shown.body  # in the ledger and in the operator actions


async def test_a_debit_below_the_credit_limit_is_refused_and_writes_nothing(core, admin_client, alice):
    page = await admin_client.get("/admin/accounts/alice")
    before = (await count(core, ledger), await count(core, audit_log))
    resp = await admin_client.post("/admin/accounts/alice/credit", {
        "csrf": field(page.body, "csrf"), "key": field(page.body, "key"), "direction": "debit", "amount": "50",
        "reason": "chargeback"})
    assert resp.status == 400 and "below its credit limit" in text_of(resp.body, "action-error")
    for bad, message in (("abc", "not a plain decimal number"), ("0", "non-zero"), ("1.0000001", "decimal places")):
        resp = await admin_client.post("/admin/accounts/alice/credit", {
            "csrf": field(page.body, "csrf"), "key": field(page.body, "key"), "direction": "credit", "amount": bad,
            "reason": "x"})
        assert resp.status == 400 and message in resp.body, bad
    resp = await admin_client.post("/admin/accounts/alice/credit", {
        "csrf": field(page.body, "csrf"), "key": field(page.body, "key"), "direction": "credit", "amount": "1",
        "reason": ""})
    assert resp.status == 400 and "reason: must not be empty" in resp.body
    assert (await count(core, ledger), await count(core, audit_log)) == before
    assert (await core.account("alice")).balance == 10_000_000


async def test_a_form_without_its_csrf_token_is_refused(core, admin_client, alice):
    page = await admin_client.get("/admin/accounts/alice")
    before = await count(core, ledger)
    resp = await admin_client.post("/admin/accounts/alice/credit", {
        "key": field(page.body, "key"), "direction": "credit", "amount": "5", "reason": "x"})
    assert resp.status == 403 and "Form refused" in resp.body
    resp = await admin_client.post("/admin/accounts/alice/credit", {
        "csrf": "forged", "key": field(page.body, "key"), "direction": "credit", "amount": "5", "reason": "x"})
    assert resp.status == 403
    assert await count(core, ledger) == before


async def test_suspend_and_reactivate_are_audited(core, admin_client, alice):
    csrf = field((await admin_client.get("/admin/accounts/alice")).body, "csrf")
    resp = await admin_client.post("/admin/accounts/alice/status", {"csrf": csrf, "action": "suspend",
                                                                    "reason": "fraud check"})
    assert resp.status == 303 and (await core.account("alice")).status == "suspended"
    refused = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice-phone")
    assert not refused.allowed
    resp = await admin_client.post("/admin/accounts/alice/status", {"csrf": csrf, "action": "reactivate"})
    assert resp.status == 303 and (await core.account("alice")).status == "active"
    actions = [(r.action, json.loads(r.before), json.loads(r.after), r.reason)
               for r in reversed(await core.store.run(ops.audit_page_tx)) if r.target == "alice"]
    assert actions == [("account.suspend", {"status": "active"}, {"status": "suspended"}, "fraud check"),
                       ("account.reactivate", {"status": "suspended"}, {"status": "active"}, "")]


async def test_support_adds_a_note_and_cannot_credit(core, support_client, alice):
    page = await support_client.get("/admin/accounts/alice")
    assert page.status == 200
    assert 'id="credit-form"' not in page.body and 'id="status-form"' not in page.body
    csrf = field(page.body, "csrf")
    resp = await support_client.post("/admin/accounts/alice/notes", {"csrf": csrf,
                                                                     "body": "Called about a refused call.\nExplained."})
    assert resp.status == 303
    shown = await support_client.get("/admin/accounts/alice")
    assert "Called about a refused call.\nExplained." in shown.body.split('id="notes"')[1].split("</ul>")[0]
    before = await count(core, ledger)
    resp = await support_client.post("/admin/accounts/alice/credit", {
        "csrf": csrf, "key": "abcdefgh12", "direction": "credit", "amount": "5", "reason": "x"})
    assert resp.status == 403
    assert await count(core, ledger) == before
    assert await count(core, account_notes) == 1
    assert [r.action for r in await core.store.run(ops.audit_page_tx) if r.target == "alice"] == ["account.note"]
    empty = await support_client.post("/admin/accounts/alice/notes", {"csrf": csrf, "body": "  "})
    assert empty.status == 400 and "note: must not be empty" in empty.body


async def test_unknown_account_is_404(admin_client):
    assert (await admin_client.get("/admin/accounts/nobody")).status == 404
    assert (await admin_client.get("/admin/accounts/bad%20ref")).status == 404


async def test_search_by_ref_name_email_endpoint_and_did_and_paging(core, admin_client, alice):
    await add_customer(core, "bob", "another long secret", did="15145552000", endpoint="bob-desk")

    def refs(body):
        return re.findall(r'<a href="/admin/accounts/([^"]+)">', body.split('id="accounts"')[1])

    for query, expected in (("ali", ["alice"]), ("BOB@EXAMPLE", ["bob"]), ("bob-desk", ["bob"]),
                            ("514-555-2000", ["bob"]), ("example.test", ["alice", "bob"]), ("zzz", [])):
        page = await admin_client.get("/admin/accounts", params={"q": query})
        assert refs(page.body) == expected, query

    for i in range(60):
        await core.admin.add_account(f"z{i:03d}", name=f"Zed {i}", email=f"z{i}@example.test", package="basic")
    first = await admin_client.get("/admin/accounts")
    assert len(refs(first.body)) == 50 and refs(first.body)[:2] == ["alice", "bob"]
    next_url = re.search(r'id="next-page" href="([^"]+)"', first.body).group(1).replace("&amp;", "&")
    second = await admin_client.get(next_url)
    assert refs(second.body) == [f"z{i:03d}" for i in range(48, 60)]
    assert 'id="next-page"' not in second.body


async def test_ledger_is_paged(core, admin_client, alice):
    for i in range(30):
        await core.credit("alice", 1_000_000, f"top-up {i}", idempotency_key=f"t{i}")
    page = await admin_client.get("/admin/accounts/alice")
    rows = page.body.split('id="ledger"')[1].split("</table>")[0].count("<tr>") - 1
    assert rows == 25 and "top-up 29" in page.body and "top-up 4<" not in page.body
    older = await admin_client.get(re.search(r'id="ledger-next" href="([^"]+)"', page.body).group(1))
    assert "top-up 4<" in older.body and "opening balance" in older.body
    assert 'id="ledger-next"' not in older.body


async def _calls(core, clock):
    ids = []
    for i, number in enumerate(("15145550100", "442079460000", "15145550101")):
        a = await core.authorize_call(direction="outbound", number=number if i != 1 else "011" + number,
                                      endpoint="alice-phone", channel_id=f"c{i}")
        assert a.allowed
        if i < 2:
            await core.answer(a.session_id, clock.now_ms())
            clock.advance(30)
            await core.settle(a.session_id, 29_000 if i == 0 else 0)
        ids.append(a.session_id)
        clock.advance(5)
    return ids


async def test_calls_filters_and_csv_match_calls_json(core, admin_client, alice, clock):
    await _calls(core, clock)
    page = await admin_client.get("/admin/calls")
    assert page.body.split('id="call-list"')[1].count("<tr>") == 4  # header + 3
    for params, numbers in (({"prefix": "44"}, ["+442079460000"]), ({"outcome": "answered"}, ["+15145550100"]),
                            ({"outcome": "live"}, ["+15145550101"]), ({"outcome": "unanswered"}, ["+442079460000"]),
                            ({"account": "nobody"}, []), ({"direction": "inbound"}, [])):
        resp = await admin_client.get("/admin/calls", params=params)
        assert resp.status == 200
        assert re.findall(r"<td>(\+\d+)</td>", resp.body) == numbers, params
    bad = await admin_client.get("/admin/calls", params={"since": "yesterday"})
    assert bad.status == 400 and "since: a date such as" in bad.body

    export = await admin_client.get("/admin/calls.csv")
    assert export.status == 200 and export.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.body)))
    expected = jsonable(await Admin(core).calls(limit=100))  # exactly what `callgate calls --json` prints
    assert len(rows) == len(expected) == 3
    for got, want in zip(rows, expected):
        assert got == {k: "" if want[k] is None else str(want[k]) for k in CALL_FIELDS}


def test_csv_cells_never_run_as_formulas():
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell("-2+3") == "'-2+3"
    assert csv_cell("+15145550100") == "+15145550100"
    assert csv_cell("-1.50") == "-1.50"
    assert csv_cell(None) == ""


async def test_refused_calls_are_listed_with_their_reason_and_exported(core, admin_client, alice, clock):
    await _calls(core, clock)
    await core.credit("alice", -(await core.account("alice")).balance, "empty it", kind="debit", allow_below_limit=True)
    for i in range(2):
        refused = await core.authorize_call(direction="outbound", number="15145550102", endpoint="alice-phone",
                                            channel_id=f"r{i}")
        assert refused.reason.value == "depleted"
        clock.advance(1)
    await core.authorize_call(direction="outbound", number="15145550102", endpoint="nobody-phone", channel_id="r9")
    page = await admin_client.get("/admin/calls", params={"outcome": "refused"})
    assert page.status == 200 and page.body.split('id="call-list"')[1].count("<tr>") == 4  # header + 3
    assert page.body.count('<span class="refusal-reason">depleted</span>') == 2
    assert '<span class="refusal-reason">unknown endpoint</span>' in page.body
    one = await admin_client.get("/admin/calls", params={"outcome": "refused", "reason": "unknown_endpoint"})
    assert one.body.split('id="call-list"')[1].count("<tr>") == 2
    bad = await admin_client.get("/admin/calls", params={"reason": "depleted"})
    assert bad.status == 400 and "reason: only with outcome refused" in bad.body
    log = await admin_client.get("/admin/calls", params={"outcome": "any"})  # the call log as before
    assert log.body.split('id="call-list"')[1].count("<tr>") == 4 and "refusal-reason" not in log.body

    export = await admin_client.get("/admin/calls.csv", params={"outcome": "refused", "account": "alice"})
    rows = list(csv.DictReader(io.StringIO(export.body)))
    assert list(rows[0]) == CALL_FIELDS + ["reason", "rule"]  # the call columns, then the refusal's
    expected = jsonable(await Admin(core).refusals(ref="alice"))  # what `callgate calls --refused --json` prints
    assert len(rows) == len(expected) == 2
    for got, want in zip(rows, expected):
        assert got == {k: "" if want[k] is None else str(want[k]) for k in CALL_FIELDS + ["reason", "rule"]}
        assert got["state"] == "refused" and got["reason"] == "depleted"
    plain = await admin_client.get("/admin/calls.csv")
    assert next(csv.reader(io.StringIO(plain.body))) == CALL_FIELDS


async def test_audit_log_pages_and_exports(core, admin_client, alice):
    actor = ops.Actor("cli")
    for i in range(60):
        await ops.add_operator(core, f"op{i}@example.test", "support", actor=actor)
    page = await admin_client.get("/admin/audit")
    assert page.status == 200
    assert page.body.split('id="audit"')[1].count("<tr>") == 51
    older = await admin_client.get(re.search(r'id="next-page" href="([^"]+)"', page.body).group(1))
    assert "op0@example.test" in older.body
    export = await admin_client.get("/admin/audit.csv")
    rows = list(csv.DictReader(io.StringIO(export.body)))
    assert len(rows) == await count(core, audit_log)
    assert rows[-1]["action"] == "operator.add" and rows[-1]["target"] == "ops@example.test"


async def test_dashboard_figures_and_server_side_charts(core, admin_client, alice, clock):
    from billing_core import read_model

    await _calls(core, clock)  # today: 29 s answered, one unanswered, one live
    dash = await core.store.run(read_model.dashboard, clock.now_ms())
    assert dash.live_calls == 1 and dash.started_last_minute >= 1
    assert dash.today_talk_ms == 29_000 and dash.today_revenue > 0
    assert len(dash.days) == 30 and dash.days[-1].revenue == dash.today_revenue
    assert sum(d.revenue for d in dash.days[:-1]) == 0
    page = await admin_client.get("/admin")
    assert page.status == 200
    assert '<dd id="live-calls"><a href="/admin/live">1</a></dd>' in page.body
    for chart in ("chart-minutes", "chart-revenue"):
        svg = page.body.split(f'<svg id="{chart}"')[1].split("</svg>")[0]
        assert svg.count('<rect class="bar"') == 30
    assert "<script" not in page.body
    # decisions per minute (issue 20): a stacked bar per minute, granted and refused
    svg = page.body.split('<svg id="chart-decisions"')[1].split("</svg>")[0]
    assert svg.count('<rect class="bar part-0"') == svg.count('<rect class="bar part-1"') == 60
    counts = re.findall(r"(\d+) granted, (\d+) refused</title></rect><rect class=\"bar part-1\"", svg)
    assert len(counts) == 60 and sum(int(g) for g, _ in counts) == 3 and {r for _, r in counts} == {"0"}


async def test_the_dashboard_shows_refusals_today_by_reason(core, admin_client, alice, clock):
    await core.authorize_call(direction="outbound", number="not-a-number", endpoint="alice-phone", channel_id="x1")
    await core.authorize_call(direction="outbound", number="15145550100", endpoint="nobody", channel_id="x2")
    await core.authorize_call(direction="outbound", number="15145550100", endpoint="nobody", channel_id="x3")
    page = await admin_client.get("/admin")
    table = page.body.split('id="refusals-today"')[1].split("</table>")[0]
    assert re.findall(r">([a-z ]+)</a></td><td class=\"num\">(\d+)<", table) == [("unknown endpoint", "2"),
                                                                                  ("invalid number", "1")]
    svg = page.body.split('<svg id="chart-decisions"')[1].split("</svg>")[0]
    assert "0 granted, 3 refused" in svg


async def test_live_calls_json_and_only_the_live_page_runs_a_script(core, admin_client, alice, clock):
    ids = await _calls(core, clock)
    resp = await admin_client.get("/admin/live.json")
    data = json.loads(resp.body)
    assert data["count"] == 1 and [c["id"] for c in data["calls"]] == [ids[2]]
    assert data["calls"][0]["account"] == "alice" and data["calls"][0]["number"] == "+15145550101"
    live = await admin_client.get("/admin/live")
    assert "script-src 'self'" in live.headers["Content-Security-Policy"]
    assert f'data-id="{ids[2]}"' in live.body
    other = await admin_client.get("/admin/calls")
    assert "script-src 'none'" in other.headers["Content-Security-Policy"]


async def test_operators_page_and_disable(core, admin_client, support_op):
    page = await admin_client.get("/admin/operators")
    assert page.status == 200 and "help@example.test" in page.body and "ops@example.test" in page.body
    csrf = field(page.body, "csrf")
    self_disable = await admin_client.post("/admin/operators/disable", {"csrf": csrf, "email": "ops@example.test"})
    assert self_disable.status == 400
    resp = await admin_client.post("/admin/operators/disable", {"csrf": csrf, "email": "help@example.test"})
    assert resp.status == 303
    assert [o["disabled"] for o in await ops.list_operators(core) if o["email"] == "help@example.test"] == [True]
    [record] = [r for r in await core.store.run(ops.audit_page_tx) if r.action == "operator.disable"]
    assert record.actor == "ops@example.test" and record.target == "help@example.test"


async def test_a_failed_alert_is_retried_and_audited(core, admin_client, alice):
    from sqlalchemy import update

    from billing_core.store.tables import outbox

    await core.credit("alice", -6_000_000, "spend", kind="debit", idempotency_key="spend")  # below threshold: alert
    await core.store.run(lambda conn: conn.execute(update(outbox).values(status="failed", last_error="550 no such user")))
    [alert_id] = await core.store.run(lambda conn: conn.execute(select(outbox.c.id)).scalars().all())
    page = await admin_client.get("/admin/alerts?status=failed")
    assert "550 no such user" in page.body and f'action="/admin/alerts/{alert_id}/retry"' in page.body
    resp = await admin_client.post(f"/admin/alerts/{alert_id}/retry", {"csrf": field(page.body, "csrf")})
    assert resp.status == 303
    assert await core.store.run(lambda conn: conn.execute(select(outbox.c.status)).scalar_one()) == "queued"
    again = await admin_client.post(f"/admin/alerts/{alert_id}/retry", {"csrf": field(page.body, "csrf")})
    assert again.status == 409 and "only failed alerts can be retried" in again.body
    assert [r.action for r in await core.store.run(ops.audit_page_tx)].count("alert.retry") == 1


async def test_admin_emails_a_reset_link_or_sets_the_password(core, admin_client, alice):
    from billing_core.store.tables import outbox

    page = await admin_client.get("/admin/accounts/alice")
    csrf = field(page.body, "csrf")
    resp = await admin_client.post("/admin/accounts/alice/password", {"csrf": csrf, "action": "email"})
    assert resp.status == 303 and resp.headers["Location"].endswith("done=reset_sent")
    [context] = await core.store.run(lambda conn: conn.execute(
        select(outbox.c.context).where(outbox.c.kind == "password_reset")).scalars().all())
    assert "/reset/" in json.loads(context)["reset_url"]
    short = await admin_client.post("/admin/accounts/alice/password", {"csrf": csrf, "action": "set",
                                                                       "password": "short"})
    assert short.status == 400 and "at least 10 characters" in short.body
    ok = await admin_client.post("/admin/accounts/alice/password", {"csrf": csrf, "action": "set",
                                                                    "password": "set by support desk"})
    assert ok.status == 303
    actions = [r.action for r in await core.store.run(ops.audit_page_tx) if r.target == "alice"]
    assert actions == ["account.password", "account.password_reset_email"]
    assert all("set by support desk" not in (r.after or "") for r in await core.store.run(ops.audit_page_tx))
