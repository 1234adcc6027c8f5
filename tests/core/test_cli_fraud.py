"""The toll-fraud CLI (issue 18) end to end on both databases: `package add/set/show`, `account
set`, `account allow-destination/deny-destination`, `account show`, `quote --json`'s `rule`, and
bad input (one line naming the field, exit non-zero, nothing written)."""
from __future__ import annotations

import asyncio
import json

import pytest
import sqlalchemy as sa
from sqlalchemy import insert, select

from billing_core.api import BillingCore
from billing_core.store import migrate
from billing_core.store.tables import packages, plans

HEADER = "prefix,description,rate_per_min,connect_fee,initial_increment,increment\n"


@pytest.fixture
def seeded(cg, tmp_path):
    deck = tmp_path / "deck.csv"
    deck.write_text(HEADER + "1,NANP,0.0125,0,60,6\n1900,US premium,2.00,0,60,6\n44,UK,0.045,0.015,30,6\n"
                             "881,Iridium,9.00,0,60,60\n")
    cg("db", "upgrade")
    cg("plan", "import", "std", str(deck))
    cg("package", "add", "basic", "--plan", "std", "--low-balance", "5.00", "--max-calls", "2")
    cg("account", "add", "acme", "--name", "Acme Inc", "--email", "billing@acme.test", "--package", "basic")
    cg("endpoint", "add", "acme", "alice")
    cg("credit", "acme", "10.00", "--reason", "opening balance")
    return deck


def _json(result):
    return json.loads(result.output)


def test_package_add_defaults_and_show_json(cg, seeded):
    shown = _json(cg("package", "show", "basic", "--json"))
    assert shown["allow_regions"] == "CA,US" and shown["block_types"] == "PREMIUM_RATE,SHARED_COST,UAN"
    assert shown["deny_prefixes"] == "" and shown["max_rate_per_min"] is None
    cg("package", "add", "open", "--plan", "std", "--low-balance", "1", "--max-calls", "1", "--allow-regions", "*",
       "--block-types", "", "--deny-prefixes", "881,882", "--allow-prefixes", "8816", "--max-rate-per-min", "0.50")
    shown = _json(cg("package", "show", "open", "--json"))
    assert shown == {"package": "open", "plan": "std", "low_balance": "1.00", "max_calls": 1, "inbound_rate": "0.00",
                     "allow_regions": "*", "block_types": "", "deny_prefixes": "881,882", "allow_prefixes": "8816",
                     "max_rate_per_min": "0.50", "max_call_minutes": None,
                     "max_attempts_per_minute": None, "daily_cap": None, "monthly_cap": None,
                     "timezone": "America/Toronto", "anomaly_spend_per_hour": None, "anomaly_blocked_attempts": 10,
                     "anomaly_window_minutes": 60}
    assert "deny_prefixes" in cg("package", "show", "open").output


def test_quote_json_names_the_rule_and_package_set_changes_it(cg, seeded):
    q = _json(cg("quote", "acme", "19005550100", "--json"))
    assert q["allowed"] is False and q["reason"] == "destination_blocked" and q["rule"] == "number_type"
    q = _json(cg("quote", "acme", "011442079460000", "--json"))
    assert q["reason"] == "destination_blocked" and q["rule"] == "region"
    assert _json(cg("quote", "acme", "15145550100", "--json"))["rule"] is None
    cg("package", "set", "basic", "--allow-regions", "*", "--block-types", "", "--max-rate-per-min", "1.00")
    q = _json(cg("quote", "acme", "19005550100", "--json"))
    assert q["reason"] == "destination_blocked" and q["rule"] == "max_rate"
    cg("account", "allow-destination", "acme", "1900")
    assert _json(cg("quote", "acme", "19005550100", "--json"))["allowed"] is True
    cg("account", "deny-destination", "acme", "+44")
    q = _json(cg("quote", "acme", "011442079460000", "--json"))
    assert q["rule"] == "prefix"
    shown = _json(cg("account", "show", "acme", "--json"))
    assert shown["allow_destinations"] == ["1900"] and shown["deny_destinations"] == ["44"]
    assert shown["limits"]["max_rate_per_min"] == "1.00" and shown["balance"] == "10.00"
    text = cg("account", "show", "acme").output
    assert "allow_destinations: 1900" in text and "deny_destinations: 44" in text


def test_account_set_overrides(cg, seeded):
    cg("account", "set", "acme", "--allow-regions", "GB,CA", "--block-types", "")
    assert _json(cg("quote", "acme", "011442079460000", "--json"))["allowed"] is True
    assert _json(cg("quote", "acme", "12125551212", "--json"))["rule"] == "region"
    shown = _json(cg("account", "show", "acme", "--json"))
    assert shown["overrides"]["allow_regions"] == "GB,CA" and shown["limits"]["allow_regions"] == "GB,CA"
    assert "(account override)" in cg("account", "show", "acme").output
    cg("account", "set", "acme", "--allow-regions", "package")
    assert _json(cg("account", "show", "acme", "--json"))["overrides"]["allow_regions"] is None


@pytest.mark.parametrize("args, field", [
    (("package", "set", "basic", "--allow-regions", "CA,XX"), "--allow-regions"),
    (("package", "set", "basic", "--block-types", "PREMIUM"), "--block-types"),
    (("package", "set", "basic", "--deny-prefixes", "881,abc"), "--deny-prefixes"),
    (("package", "set", "basic", "--allow-prefixes", "1-800"), "--allow-prefixes"),
    (("package", "set", "basic", "--max-rate-per-min", "-1"), "--max-rate-per-min"),
    (("package", "set", "basic", "--max-rate-per-min", "lots"), "--max-rate-per-min"),
    (("package", "set", "nope", "--deny-prefixes", "881"), "unknown package 'nope'"),
    (("package", "add", "p2", "--plan", "std", "--low-balance", "1", "--max-calls", "1", "--allow-regions", "QQ"),
     "--allow-regions"),
    (("account", "set", "acme", "--allow-regions", "Canada"), "--allow-regions"),
    (("account", "set", "nobody", "--allow-regions", "CA"), "unknown account 'nobody'"),
    (("account", "allow-destination", "acme", "9x"), "PREFIX"),
    (("account", "deny-destination", "nobody", "881"), "unknown account 'nobody'"),
])
def test_bad_input_is_one_line_exit_nonzero_nothing_written(cg, seeded, args, field):
    package_before = cg("package", "show", "basic", "--json").output
    account_before = cg("account", "show", "acme", "--json").output
    r = cg(*args, ok=False)
    assert r.exit_code != 0
    assert field in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert cg("package", "show", "basic", "--json").output == package_before
    assert cg("account", "show", "acme", "--json").output == account_before
    assert cg("package", "show", "p2", ok=False).exit_code != 0


async def test_packages_from_before_the_upgrade_allow_everything(db_url):
    """Migration 0009: an existing package gets allowed regions * and no blocked types (no change
    in behaviour on upgrade); docs/OPERATIONS.md says so."""
    await migrate.upgrade(db_url, "0008")

    def old_package(conn):
        pid = conn.execute(insert(plans).values(name="std", version=1, rate_count=0, created_at=0, updated_at=0)
                           ).inserted_primary_key[0]
        old = sa.table("packages", *(sa.column(c) for c in ("name", "plan_id", "low_balance", "max_calls",
                                                             "inbound_rate", "created_at", "updated_at")))
        conn.execute(insert(old).values(name="old", plan_id=pid, low_balance=0, max_calls=1, inbound_rate=0,
                                        created_at=0, updated_at=0))

    await migrate._run(db_url, old_package)
    await migrate.upgrade(db_url)

    def read(conn):
        return conn.execute(select(packages.c.allow_regions, packages.c.block_types, packages.c.deny_prefixes,
                                   packages.c.max_rate_per_min).where(packages.c.name == "old")).one()

    assert tuple(await migrate._run(db_url, read)) == ("*", "", "", None)


def test_fraud_events_reactivate_and_account_show_suspension(cg, seeded, sync_db_url):
    cg("package", "set", "basic", "--anomaly-blocked-attempts", "1", "--anomaly-window-minutes", "30",
       "--anomaly-spend-per-hour", "5.00")
    shown = _json(cg("package", "show", "basic", "--json"))
    assert shown["anomaly_blocked_attempts"] == 1 and shown["anomaly_window_minutes"] == 30
    assert shown["anomaly_spend_per_hour"] == "5.00"
    assert _json(cg("fraud", "events", "--json")) == []
    r = cg("account", "reactivate", "acme", "--reason", "x", ok=False)
    assert r.exit_code != 0 and "not suspended" in r.output and len(r.output.strip().splitlines()) == 1
    assert cg("fraud", "events", "--account", "nobody", ok=False).exit_code != 0

    async def flood():  # a hijacked endpoint dials premium numbers (the gate's call to the core)
        core = await BillingCore.open(sync_db_url)
        try:
            for i in range(2):
                await core.authorize_call(direction="outbound", number="19005550100", endpoint="alice",
                                          channel_id=f"f{i}")
        finally:
            await core.close()

    asyncio.run(flood())
    shown = _json(cg("account", "show", "acme", "--json"))
    assert shown["status"] == "suspended" and shown["suspension"]["reason"] == "fraud_suspected"
    assert shown["spend"]["today"] == "0.00" and "remaining_cap" in shown["spend"]
    events = _json(cg("fraud", "events", "--json"))
    assert [(e["account"], e["kind"], e["reason"]) for e in events] == [("acme", "suspended", "fraud_suspected")]
    assert "fraud_suspected" in cg("fraud", "events").output
    cg("account", "reactivate", "acme", "--reason", "customer called")
    assert _json(cg("account", "show", "acme", "--json"))["status"] == "active"
    assert [e["kind"] for e in _json(cg("fraud", "events", "--account", "acme", "--json"))] == ["reactivated", "suspended"]
