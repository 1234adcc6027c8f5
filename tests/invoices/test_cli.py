"""`callgate invoice …` end to end on both databases; bad input prints one line and writes nothing."""
from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from callgate.cli import main
from tests.invoices.test_invoices import BAD_AMOUNTS


@pytest.fixture
def url(db_url):
    return db_url


@pytest.fixture
def cg(url, tmp_path):
    runner = CliRunner()

    def run(*args, ok=True):
        result = runner.invoke(main, ["--db", url, *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    deck = tmp_path / "deck.csv"
    deck.write_text("prefix,description,rate_per_min,connect_fee,initial_increment,increment\n1,NANP,0.0125,0,60,6\n")
    run("db", "upgrade")
    run("plan", "import", "std", str(deck))
    run("package", "add", "basic", "--plan", "std", "--low-balance", "5.00", "--max-calls", "2")
    run("account", "add", "acme", "--name", "Acme", "--email", "billing@acme.test", "--package", "basic")
    run("account", "add", "other", "--name", "Other", "--email", "o@other.test", "--package", "basic")
    return run


def _listed(cg, *args):
    return json.loads(cg("invoice", "list", *args, "--json").output)


def test_create_list_show_cancel(cg):
    created = json.loads(cg("invoice", "create", "acme", "25.00", "--json").output)
    assert created["amount"] == "25.00" and created["currency"] == "CAD" and created["status"] == "outstanding"
    assert created["account_ref"] == "acme"
    text = cg("invoice", "create", "other", "1000").output
    assert "1000.00 CAD for other, outstanding" in text
    assert [i["account_ref"] for i in _listed(cg)] == ["other", "acme"]
    assert [i["id"] for i in _listed(cg, "acme")] == [created["id"]]
    shown = json.loads(cg("invoice", "show", str(created["id"]), "--json").output)
    assert shown["id"] == created["id"] and [e["kind"] for e in shown["events"]] == ["created"]
    assert shown["events"][0]["amount"] == "25.00"
    out = cg("invoice", "cancel", str(created["id"]), "--reason", "customer changed their mind").output
    assert "cancelled" in out
    assert [i["id"] for i in _listed(cg, "--status", "cancelled")] == [created["id"]]
    assert _listed(cg, "acme", "--status", "outstanding") == []
    assert "no invoices" in cg("invoice", "list", "acme", "--status", "paid").output
    assert f"{created['id']:>6}" in cg("invoice", "list").output
    assert "customer changed their mind" in cg("invoice", "show", str(created["id"])).output


def test_bad_amounts_print_the_limits_and_write_nothing(cg):
    for text in BAD_AMOUNTS:
        result = cg("invoice", "create", "acme", text, ok=False)
        assert result.exit_code != 0, text
        assert "between 25.00 and 1000.00 CAD" in result.output, (text, result.output)
        assert result.output.startswith("error: amount:")
    result = cg("invoice", "create", "acme", "--", "-30.00", ok=False)
    assert result.exit_code == 1 and "between 25.00 and 1000.00 CAD" in result.output
    assert _listed(cg) == []


def test_other_errors_are_one_line_and_write_nothing(cg):
    result = cg("invoice", "create", "nobody", "25.00", ok=False)
    assert result.exit_code == 1 and "unknown account 'nobody'" in result.output
    assert cg("invoice", "show", "42", ok=False).output.strip() == "error: unknown invoice 42"
    assert "not an invoice number" in cg("invoice", "show", "abc", ok=False).output
    assert cg("invoice", "list", "--status", "lost", ok=False).exit_code == 2
    assert "unknown account" in cg("invoice", "list", "nobody", ok=False).output
    inv = json.loads(cg("invoice", "create", "acme", "30.00", "--json").output)
    missing = cg("invoice", "cancel", str(inv["id"]), ok=False)
    assert missing.exit_code == 2 and "--reason" in missing.output
    blank = cg("invoice", "cancel", str(inv["id"]), "--reason", "  ", ok=False)
    assert blank.exit_code == 1 and "needs a reason" in blank.output
    assert _listed(cg, "acme")[0]["status"] == "outstanding"
    cg("invoice", "cancel", str(inv["id"]), "--reason", "duplicate")
    twice = cg("invoice", "cancel", str(inv["id"]), "--reason", "again", ok=False)
    assert twice.exit_code == 1 and "already cancelled; nothing changed" in twice.output
    assert _listed(cg, "acme")[0]["cancel_reason"] == "duplicate"


def test_a_paid_invoice_cannot_be_cancelled_from_the_cli(cg, url):
    from billing_core import invoices
    from billing_core.api import BillingCore

    inv = json.loads(cg("invoice", "create", "acme", "25.00", "--json").output)

    async def pay():
        core = await BillingCore.open(url)
        try:
            await invoices.apply_capture(core, invoices.CaptureFacts("CAPCLI1", "COMPLETED", 25_000_000, "CAD", inv["id"]),
                                         source="webhook")
        finally:
            await core.close()

    asyncio.run(pay())
    result = cg("invoice", "cancel", str(inv["id"]), "--reason", "oops", ok=False)
    assert result.exit_code == 1 and "is paid and cannot be cancelled" in result.output
    shown = json.loads(cg("invoice", "show", str(inv["id"]), "--json").output)
    assert shown["status"] == "paid" and shown["capture_id"] == "CAPCLI1"
    assert json.loads(cg("balance", "acme", "--json").output)["balance"] == "25.00"


async def test_refund_through_paypal_from_the_cli(url, cg, monkeypatch):
    """`invoice refund` against the stand-in (the CLI runs in a thread: it has its own event loop)."""
    from billing_core import invoices
    from billing_core.api import BillingCore
    from callgate.paypal.client import PayPalClient
    from callgate_fakes.paypal_standin import PayPalStandIn
    from tests.paypal.conftest import approve_over_http

    async with PayPalStandIn() as standin:
        for key, value in standin.env().items():
            monkeypatch.setenv(key, value)
        core = await BillingCore.open(url)
        try:
            inv = await invoices.create_invoice(core, "acme", "60.00")
            async with PayPalClient(standin.config()) as paypal:
                order = await paypal.create_order(invoice_id=inv.id, amount=inv.amount, currency="CAD",
                                                  return_url="http://127.0.0.1:1/r", cancel_url="http://127.0.0.1:1/c")
                await approve_over_http(order.approval_url, "paypal")
                (cap,) = (await paypal.capture_order(order.id)).captures
            await invoices.apply_capture(core, cap.facts(), source="return")
        finally:
            await core.close()

        bad = await asyncio.to_thread(cg, "invoice", "refund", str(inv.id), "60.001", ok=False)
        assert bad.exit_code == 1 and "amount" in bad.output
        too_much = await asyncio.to_thread(cg, "invoice", "refund", str(inv.id), "70.00", ok=False)
        assert too_much.exit_code == 1 and "at most 60.00 CAD" in too_much.output
        part = await asyncio.to_thread(cg, "invoice", "refund", str(inv.id), "20.00")
        assert "partly refunded" in part.output
        rest = json.loads((await asyncio.to_thread(cg, "invoice", "refund", str(inv.id), "--json")).output)
        assert rest["status"] == "refunded" and rest["refunded"] == "60.00"
        none_left = await asyncio.to_thread(cg, "invoice", "refund", str(inv.id), ok=False)
        assert none_left.exit_code == 1 and "nothing to refund" in none_left.output
        balance = json.loads((await asyncio.to_thread(cg, "balance", "acme", "--json")).output)
        assert balance["balance"] == "0.00"
        assert len(standin.refunds) == 2


def test_a_cancel_reason_or_refund_note_with_a_control_character_is_refused_and_nothing_changes(cg):
    created = json.loads(cg("invoice", "create", "acme", "25.00", "--json").output)
    for reason in ("changed mind\n", "x\r\nBcc: evil@x.test", "nul\x00"):
        r = cg("invoice", "cancel", str(created["id"]), "--reason", reason, ok=False)
        assert r.exit_code == 1 and r.output.startswith("error: --reason: must not contain a control character")
    assert json.loads(cg("invoice", "show", str(created["id"]), "--json").output)["status"] == "outstanding"
    r = cg("invoice", "refund", str(created["id"]), "--note", "sorry\nBcc: x", ok=False)
    assert r.exit_code == 1 and r.output.startswith("error: --note: must not contain a control character")
