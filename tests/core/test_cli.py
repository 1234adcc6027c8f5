"""The `callgate` CLI end to end on both databases (click's runner, a real database)."""
from __future__ import annotations

import asyncio
import json

import pytest


HEADER = "prefix,description,rate_per_min,connect_fee,initial_increment,increment\n"


@pytest.fixture
def url(sync_db_url):
    return sync_db_url


@pytest.fixture
def seeded(cg, tmp_path):
    deck = tmp_path / "deck.csv"
    deck.write_text(HEADER + "1,NANP,0.0125,0,60,6\n44,UK,0.045,0.015,30,6\n")
    cg("db", "upgrade")
    cg("plan", "import", "std", str(deck))
    cg("package", "add", "basic", "--plan", "std", "--low-balance", "5.00", "--max-calls", "2", "--inbound-rate", "0")
    cg("account", "add", "acme", "--name", "Acme Inc", "--email", "billing@acme.test", "--package", "basic")
    cg("endpoint", "add", "acme", "alice")
    cg("credit", "acme", "10.00", "--reason", "opening balance")
    return deck


def test_quote_fields_and_the_issue_examples(cg, seeded):
    q = json.loads(cg("quote", "acme", "15145550100", "--seconds", "125", "--json").output)
    for key in ("number_e164", "prefix", "rate_per_min", "allowed", "reason", "max_talk_seconds", "billed_seconds", "cost"):
        assert key in q
    assert q["number_e164"] == "+15145550100" and q["prefix"] == "1" and q["allowed"] is True
    assert q["billed_seconds"] == 126 and q["cost"] == "0.02625" and q["rate_per_min"] == "0.0125"
    uk = json.loads(cg("quote", "acme", "011441234567890", "--seconds", "31", "--json").output)
    assert uk["cost"] == "0.042"
    bad = json.loads(cg("quote", "acme", "not-a-number", "--json").output)
    assert bad["allowed"] is False and bad["reason"] == "invalid_number"


def test_balance_account_ledger_json_amounts_are_strings(cg, seeded):
    bal = json.loads(cg("balance", "acme", "--json").output)
    assert bal["balance"] == "10.00" and bal["available"] == "10.00"
    acct = json.loads(cg("account", "show", "acme", "--json").output)
    assert acct["low_balance_threshold"] == "5.00" and acct["status"] == "active"
    cg("credit", "acme", "-2.50", "--reason", "manual correction")
    entries = json.loads(cg("ledger", "acme", "--json").output)
    assert [e["amount"] for e in entries] == ["-2.50", "10.00"]
    assert entries[0]["kind"] == "debit" and entries[0]["balance_after"] == "7.50"
    listed = json.loads(cg("account", "list", "--json").output)
    assert [a["ref"] for a in listed] == ["acme"]
    assert "ok" in cg("verify").output


def test_bad_row_names_line_and_column_and_keeps_the_old_plan(cg, seeded, tmp_path):
    before = cg("plan", "show", "std", "--json").output
    cases = {
        "1,NANP,0.0125,0,60,6\n2,X,abc,0,60,6\n": ("line 3", "rate_per_min"),
        "1,NANP,0.0125,0,60,6\n1,dup,0.01,0,60,6\n": ("line 3", "duplicate prefix"),
        "1,NANP,0.0125,0,0,6\n": ("line 2", "initial_increment"),
        "1,NANP,0.0125,0,60,-6\n": ("line 2", "increment"),
        "1a,NANP,0.0125,0,60,6\n": ("line 2", "prefix"),
        "1,NANP,0.0125,NaN,60,6\n": ("line 2", "connect_fee"),
        "1,NANP,1e3,0,60,6\n": ("line 2", "rate_per_min"),
    }
    for body, (where, what) in cases.items():
        bad = tmp_path / "bad.csv"
        bad.write_text(HEADER + body)
        r = cg("plan", "import", "std", str(bad), ok=False)
        assert r.exit_code != 0
        assert where in r.output and what in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1
    assert cg("plan", "show", "std", "--json").output == before


def test_replacing_a_plan_is_atomic_and_bumps_the_version(cg, seeded, tmp_path):
    new = tmp_path / "new.csv"
    new.write_text(HEADER + "1,NANP,0.02,0,1,1\n")
    cg("plan", "import", "std", str(new))
    shown = json.loads(cg("plan", "show", "std", "--json").output)
    assert shown["version"] == 2 and [r["prefix"] for r in shown["rates"]] == ["1"]
    q = json.loads(cg("quote", "acme", "15145550100", "--json").output)
    assert q["rate_per_min"] == "0.02"


@pytest.mark.parametrize("args,needle", [
    (("credit", "nobody", "5", "--reason", "x"), "unknown account"),
    (("credit", "acme", "abc", "--reason", "x"), "AMOUNT"),
    (("credit", "acme", "1.001", "--reason", "x"), "AMOUNT"),
    (("credit", "acme", "NaN", "--reason", "x"), "AMOUNT"),
    (("account", "add", "x1", "--name", "X", "--email", "not-an-email", "--package", "basic"), "--email"),
    (("account", "add", "x2", "--name", "X", "--email", "x@y.test", "--package", "nope"), "--package"),
    (("package", "add", "p2", "--plan", "std", "--low-balance", "five", "--max-calls", "1"), "--low-balance"),
    (("did", "assign", "15145559999", "acme"), "unknown DID"),
    (("endpoint", "add", "nobody", "bob"), "unknown account"),
    (("balance", "nobody"), "unknown account"),
])
def test_bad_input_is_one_line_and_writes_nothing(cg, seeded, args, needle):
    before = cg("ledger", "acme", "--json").output, cg("account", "list", "--json").output
    r = cg(*args, ok=False)
    assert r.exit_code == 1
    assert needle in r.output and r.output.startswith("error: ")
    assert len(r.output.strip().splitlines()) == 1
    assert (cg("ledger", "acme", "--json").output, cg("account", "list", "--json").output) == before


def test_did_lifecycle_and_calls(cg, seeded):
    cg("did", "add", "5145551000")
    cg("did", "assign", "5145551000", "acme", "--endpoint", "alice")
    dids = json.loads(cg("did", "list", "--json").output)
    assert dids == [{"number": "+15145551000", "account": "acme", "endpoint": "alice", "assigned_at": dids[0]["assigned_at"]}]
    cg("did", "release", "+15145551000")
    assert json.loads(cg("did", "list", "--json").output)[0]["account"] is None
    assert json.loads(cg("calls", "--active", "--json").output) == []


def test_verify_reports_violations(cg, seeded, url):
    from billing_core.store.engine import open_store

    async def corrupt():
        store = open_store(url)
        try:
            await store.run(lambda c: c.exec_driver_sql("UPDATE accounts SET balance = balance + 1"))
        finally:
            await store.close()

    asyncio.run(corrupt())
    r = cg("verify", ok=False)
    assert r.exit_code == 1 and "account acme: balance" in r.output
