"""The client-area pages over real HTTP: what each shows, and form errors that write nothing."""
from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from billing_core import invoices as inv
from billing_core.domain import lifecycle
from billing_core.store.tables import accounts
from billing_core.store.tables_invoices import invoice_events, invoices
from callgate.cli import main


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_credit_balance_shows_balance_threshold_status_and_add_funds(client, alice):
    await client.sign_in(alice.email, alice.password)
    page = await client.get("/balance")
    text = _text(page.body)
    assert "Balance 10.00 CAD" in text
    assert "Low-balance alert threshold 5.00 CAD" in text
    assert "Status Active" in text
    assert 'href="/funds"' in page.body and "Add Funds" in text


async def test_credit_balance_shows_the_spend_caps_and_todays_spend(client, core, alice):
    """Issue 18: the client area shows the caps in force and what calls spent today."""
    await core.admin.set_account_rules("alice", daily_cap=2_000_000,
                                       monthly_cap=30_000_000)
    await client.sign_in(alice.email, alice.password)
    text = _text((await client.get("/balance")).body)
    assert "Calls today 0.00 CAD" in text and "Daily spending limit 2.00 CAD" in text
    assert "Monthly spending limit 30.00 CAD" in text and "Calls this month 0.00 CAD" in text


async def test_balance_below_threshold_warns(client, core):
    from .conftest import add_customer

    carol = await add_customer(core, "carol", "carol's long password", balance="3.00")
    await client.sign_in(carol.email, carol.password)
    assert "below your low-balance threshold" in (await client.get("/balance")).body


async def test_add_funds_form_shows_the_limits(client, alice):
    await client.sign_in(alice.email, alice.password)
    page = await client.get("/funds")
    assert "Minimum 25.00 CAD, maximum 1000.00 CAD." in _text(page.body)
    assert 'name="csrf"' in page.body and 'name="amount"' in page.body


@pytest.mark.parametrize("amount", ["24.99", "1000.01", "25.001", "0", "-30", "abc", "1e3", "NaN", "", " "])
async def test_bad_amounts_are_refused_next_to_the_field_and_write_nothing(client, alice, core, amount):
    await client.sign_in(alice.email, alice.password)
    csrf = await client.csrf("/funds")
    resp = await client.post("/funds", {"csrf": csrf, "amount": amount})
    assert resp.status == 400
    error = re.search(r'<p class="error field-error" id="amount-error" role="alert">([^<]*)</p>', resp.body)
    assert error, resp.body
    assert "between 25.00 and 1000.00 CAD" in error.group(1)
    assert 'aria-invalid="true"' in resp.body
    assert await inv.list_invoices(core, "alice") == []
    assert (await core.account("alice")).balance == 10_000_000


async def test_invoices_page_lists_outstanding_with_pay_now_and_the_history(client, alice, core):
    open_one = await inv.create_invoice(core, "alice", "40.00")
    gone = await inv.create_invoice(core, "alice", "30.00")
    await inv.cancel_invoice(core, gone.id, "made in error")
    await client.sign_in(alice.email, alice.password)
    page = await client.get("/invoices")
    outstanding = page.body.split('id="outstanding"')[1].split("</table>")[0]
    history = page.body.split('id="history"')[1].split("</table>")[0]
    assert f"#{open_one.id}" in outstanding and "40.00 CAD" in outstanding and "Pay now" in outstanding
    assert f'action="/invoices/{open_one.id}/pay"' in outstanding
    assert f"#{gone.id}" in history and "Cancelled" in history and "Pay now" not in history
    detail = await client.get(f"/invoices/{open_one.id}")
    assert detail.status == 200 and "Outstanding" in detail.body and "Pay now" in detail.body


async def test_pay_now_on_a_cancelled_invoice_changes_nothing(client, alice, core):
    gone = await inv.create_invoice(core, "alice", "30.00")
    await inv.cancel_invoice(core, gone.id, "made in error")
    await client.sign_in(alice.email, alice.password)
    events = await inv.invoice_events_of(core, gone.id)
    resp = await client.post(f"/invoices/{gone.id}/pay", {"csrf": await client.csrf()})
    assert resp.status == 409 and "nothing to pay" in resp.body
    assert await inv.invoice_events_of(core, gone.id) == events


async def test_calls_page_shows_number_duration_and_cost(client, alice, core):
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice-phone",
                                  channel_id="c1")
    assert a.allowed
    await core.answer(a.session_id, core.clock.now_ms())
    core.clock.advance(46)  # the talk takes its time (a settle is bounded by the time since answer)
    settled = await core.settle(a.session_id, 45_400)
    core.clock.advance(60)
    live = await core.authorize_call(direction="outbound", number="011442079460000", endpoint="alice-phone",
                                     channel_id="c2")
    assert live.allowed
    await client.sign_in(alice.email, alice.password)
    page = await client.get("/calls")
    rows = page.body.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert len(rows) == 2
    newest, oldest = _text(rows[0]), _text(rows[1])
    assert "+442079460000" in newest and "in progress" in newest
    assert "+15145550100" in oldest and "0:45" in oldest
    from billing_core.domain.money import format_amount

    assert format_amount(settled.cost) in oldest


async def test_dids_page_lists_numbers_and_the_release_date_when_pre_suspended(client, alice, core):
    await client.sign_in(alice.email, alice.password)
    page = await client.get("/dids")
    assert "+15145551000" in page.body and "release-date" not in page.body
    presuspended = core.clock.now_ms()

    def presuspend(conn):  # test setup: the sidecar's job, done directly
        conn.execute(update(accounts).where(accounts.c.ref == "alice").values(
            status=lifecycle.PRE_SUSPENDED, presuspended_at=presuspended))

    await core.store.run(presuspend)
    page = await client.get("/dids")
    from callgate.web.app import when

    release = when(lifecycle.release_date_ms(presuspended, core.settings.did_release_days))
    assert re.search(r'id="release-date">' + re.escape(release) + "<", page.body)
    assert "pre-suspended" in page.body
    assert "Pre-suspended" in (await client.get("/balance")).body


async def test_unknown_pages_and_bad_ids_are_404_pages(client, alice):
    await client.sign_in(alice.email, alice.password)
    for path in ("/nope", "/invoices/abc", "/invoices/0", "/invoices/99999", "/invoices/-1"):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert "<html" in resp.body


def test_account_password_cli(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()

    def cg(*args, input=None):
        return runner.invoke(main, ["--db", url, *args], input=input, catch_exceptions=False)

    deck = tmp_path / "deck.csv"
    deck.write_text("prefix,description,rate_per_min,connect_fee,initial_increment,increment\n1,NANP,0.0125,0,60,6\n")
    assert cg("db", "upgrade").exit_code == 0
    assert cg("plan", "import", "std", str(deck)).exit_code == 0
    assert cg("package", "add", "basic", "--plan", "std", "--low-balance", "5.00", "--max-calls", "2",
              "--inbound-rate", "0").exit_code == 0
    assert cg("account", "add", "acme", "--name", "Acme", "--email", "billing@acme.test", "--package",
              "basic").exit_code == 0

    short = cg("account", "password", "acme", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "password: must be at least 10 characters" in short.output
    unknown = cg("account", "password", "nobody", "--password-stdin", input="long enough password\n")
    assert unknown.exit_code == 1 and "unknown account 'nobody'" in unknown.output
    ok = cg("account", "password", "acme", "--password-stdin", "--json", input="long enough password\n")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output) == {"account": "acme", "email": "billing@acme.test", "password_set": True}


async def test_release_date_follows_the_sidecars_setting(core, alice):
    from callgate.web.app import WebSettings, when
    from callgate.web.server import start

    from .conftest import FAST_AUTH, Browserless

    from callgate import config as cfgmod

    def web_settings(environ) -> WebSettings:  # the one configuration path: file + environment
        return cfgmod.web_settings(cfgmod.load(None, environ=environ))

    settings = web_settings({"CALLGATE_WEB_LISTEN": "127.0.0.1:0", "CALLGATE_DID_RELEASE_DAYS": "2.5"})
    assert settings.did_release_days == 2.5 and settings.listen == "127.0.0.1:0"
    with pytest.raises(ValueError, match="CALLGATE_DID_RELEASE_DAYS"):
        web_settings({"CALLGATE_DID_RELEASE_DAYS": "soon"})
    presuspended = core.clock.now_ms()

    def presuspend(conn):
        conn.execute(update(accounts).where(accounts.c.ref == "alice").values(
            status=lifecycle.PRE_SUSPENDED, presuspended_at=presuspended))

    await core.store.run(presuspend)
    runner, url = await start(core, WebSettings(listen="127.0.0.1:0", did_release_days=2.5, auth=FAST_AUTH))
    c = Browserless(url)
    try:
        await c.sign_in(alice.email, alice.password)
        page = await c.get("/dids")
        assert f'id="release-date">{when(presuspended + 216_000_000)}<' in page.body
    finally:
        await c.close()
        await runner.cleanup()
