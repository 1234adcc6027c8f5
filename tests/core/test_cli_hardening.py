"""Issue 15: CLI numbers and amounts that once ended in a traceback, and manual debits below the
credit limit — one clear line, exit 1, nothing written; on both databases."""
from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from callgate.cli import main
from tests.core.test_cli import seeded, url  # noqa: F401  (fixtures; cg is tests/core/conftest.py's)

BIG = "100000000000000000000"  # 10^20


def _state(cg):
    return (cg("ledger", "acme", "--json").output, cg("account", "list", "--json").output,
            cg("invoice", "list", "--json").output)


@pytest.mark.parametrize("args,needle", [
    (("package", "add", "p3", "--plan", "std", "--low-balance", "5", "--max-calls", BIG), "--max-calls"),
    (("package", "add", "p3", "--plan", "std", "--low-balance", "5", "--max-calls", "1e20"), "--max-calls"),
    (("package", "add", "p3", "--plan", "std", "--low-balance", "5", "--max-calls", "2147483648"), "--max-calls"),
    (("plan", "show", "std", "--limit", BIG), "--limit"),
    (("plan", "show", "std", "--limit", "1e20"), "--limit"),
    (("ledger", "acme", "--limit", BIG), "--limit"),
    (("calls", "--limit", BIG), "--limit"),
    (("invoice", "list", "--limit", BIG), "--limit"),
    (("invoice", "show", BIG), "invoice"),
    (("invoice", "show", "10^20"), "invoice"),
    (("invoice", "show", "2147483648"), "invoice"),
    (("invoice", "cancel", BIG, "--reason", "x"), "invoice"),
    (("alerts", "retry", BIG), "ID"),
    (("quote", "acme", "15145550100", "--seconds", BIG), "--seconds"),
    (("credit", "acme", BIG, "--reason", "x"), "AMOUNT"),
    (("account", "add", "x3", "--name", "X", "--email", "x@y.test", "--package", "basic", "--credit-limit", BIG),
     "--credit-limit"),
    (("credit", "acme", "-10.01", "--reason", "manual"), "below its credit limit"),
])
def test_numbers_out_of_range_are_one_line_and_write_nothing(cg, seeded, args, needle):
    before = _state(cg)
    r = cg(*args, ok=False)
    assert r.exit_code == 1, r.output
    assert needle in r.output and r.output.startswith("error: "), r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert _state(cg) == before


def test_a_debit_below_the_limit_needs_the_flag_and_verify_stays_clean(cg, seeded):
    r = cg("credit", "acme", "-12.50", "--reason", "chargeback", ok=False)
    assert r.exit_code == 1 and "--allow-below-limit" in r.output
    cg("verify")
    out = json.loads(cg("credit", "acme", "-12.50", "--reason", "chargeback", "--allow-below-limit", "--json").output)
    assert out["balance_after"] == "-2.50"
    entry = json.loads(cg("ledger", "acme", "--json").output)[0]
    assert entry["below_limit_allowed"] is True
    cg("verify")  # exit 0: the permission is on record


def test_the_tenth_huge_credit_is_one_line(cg, seeded):
    for _ in range(9):
        cg("credit", "acme", "999999999999.99", "--reason", "probe")
    before = _state(cg)
    r = cg("credit", "acme", "999999999999.99", "--reason", "probe", ok=False)
    assert r.exit_code == 1 and r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1
    assert "resulting balance" in r.output and "beyond what can be stored" in r.output
    assert _state(cg) == before
    cg("verify")


def test_db_upgrade_against_a_missing_postgresql_database_is_one_line():
    base = os.environ.get("CALLGATE_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")
    missing = base.rsplit("/", 1)[0] + "/callgate_no_such_database"
    r = CliRunner().invoke(main, ["--db", missing, "db", "upgrade"], catch_exceptions=False)
    assert r.exit_code == 1
    assert r.output.startswith("error: database unavailable") and "does not exist" in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    r = CliRunner().invoke(main, ["--db", missing, "balance", "acme"], catch_exceptions=False)
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output


def test_calls_show_how_a_call_was_billed(cg, seeded, url):
    """A call billed on a bound (here: up to a gate restart) says so in `calls --json` and in
    `callgate calls`, so the operator can find it and refund; a measured one shows nothing."""
    import asyncio

    from billing_core.api import BillingCore
    from billing_core.clock import FakeClock

    async def two_calls():
        clock = FakeClock()
        core = await BillingCore.open(url, clock=clock)
        try:
            for channel, basis in (("c-measured", "measured"), ("c-restart", "bounded_at_restart")):
                a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice",
                                              channel_id=channel)
                await core.answer(a.session_id, clock.now_ms())
                clock.advance(18)
                await core.settle(a.session_id, 18_000, path="restart", basis=basis)
        finally:
            await core.close()

    asyncio.run(two_calls())
    rows = {r["channel_id"]: r for r in json.loads(cg("calls", "--json").output)}
    assert rows["c-measured"]["billing_basis"] == "measured"
    assert rows["c-restart"]["billing_basis"] == "bounded_at_restart"
    lines = cg("calls").output.strip().splitlines()
    assert sum("[bounded_at_restart]" in line for line in lines) == 1 and len(lines) == 2
    cg("verify")


def test_core_seconds_from_the_environment_are_range_checked(url, seeded):
    r = CliRunner().invoke(main, ["--db", url, "balance", "acme"], env={"CALLGATE_MAX_CALL_SECONDS": BIG},
                           catch_exceptions=False)
    assert r.exit_code == 1 and r.output.startswith("error: CALLGATE_MAX_CALL_SECONDS: must be between 1 and")
    assert len(r.output.strip().splitlines()) == 1
