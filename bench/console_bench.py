"""Operator console benchmark (issue 20): every list page on a big database, target < 300 ms each,
and the CSV export of 100,000 calls in < 5 s, on SQLite and PostgreSQL.

Database: 10,000 accounts and 1,000,000 settled calls (CALLGATE_BENCH_ACCOUNTS / _CALLS) spread
over 30 days, 1 % of them to +44, and a refused decision for every 10th call (CALLGATE_BENCH_REFUSALS,
100,000), inserted in bulk (not through authorize and settle: this measures reading; the account-day
totals settle keeps are then summed once from the calls, as migration 0012 does for an existing
database); 20 packages, a DID pool of 2 per account (half assigned) and 5 deposit invoices per
account in every status.
The app runs on 127.0.0.1 like `callgate web`; an operator signs in; each page is fetched
CALLGATE_BENCH_REPEAT (10) times over HTTP and the median and max wall times are printed.

PostgreSQL from CALLGATE_BENCH_PG_URL (default postgresql://127.0.0.1:5432/test) in a throw-away schema.
"""
from __future__ import annotations

import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
import uuid

from aiohttp import ClientSession, CookieJar
from sqlalchemy import insert

from billing_core import console, read_model
from billing_core import operators as ops
from billing_core.api import BillingCore
from billing_core.clock import FakeClock
from billing_core.domain.rating import Rate
from billing_core.store.tables import accounts, call_day_totals, call_refusals, call_sessions, dids
from billing_core.store.tables_invoices import invoices
from callgate.web.app import WebSettings
from callgate.web.auth import AuthSettings, Passwords
from callgate.web.server import start
from tests.factories import seed

from .sidecar_bench import pg_fresh, sqlite_fresh

PG = os.environ.get("CALLGATE_BENCH_PG_URL", "postgresql://127.0.0.1:5432/test")
ACCOUNTS = int(os.environ.get("CALLGATE_BENCH_ACCOUNTS", "10000"))
CALLS = int(os.environ.get("CALLGATE_BENCH_CALLS", "1000000"))
REFUSALS = int(os.environ.get("CALLGATE_BENCH_REFUSALS", str(CALLS // 10)))
REPEAT = int(os.environ.get("CALLGATE_BENCH_REPEAT", "10"))
PACKAGES = 20
TARGET_MS = 300
CSV_ROWS, CSV_TARGET_S = 100_000, 5.0
DAY = 86_400_000
AUTH = AuthSettings(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)
PASSWORD = "bench operator password"


async def populate(core: BillingCore, clock: FakeClock) -> int:
    """Accounts and calls in bulk; returns the epoch ms 3 days back (the CSV export's period start)."""
    await seed(core, account="a00000", endpoint="ep00000", did=None, balance="100.00",
               deck=[Rate("1", 12_500, 0, 60, 6), Rate("44", 45_000, 0, 30, 6)])
    pkg = await core.store.run(lambda conn: conn.exec_driver_sql("select id from packages").scalar())
    now = clock.now_ms()

    def add_accounts(conn, lo, hi):
        conn.execute(insert(accounts), [dict(
            ref=f"a{i:05d}", name=f"Customer {i}", email=f"c{i}@example.test", package_id=pkg, currency="CAD",
            balance=10_000_000 + i, credit_limit=0, held=0, live_calls=0, status="active", low_balance_armed=True,
            low_balance_crossings=0, depletions=0, created_at=now, updated_at=now) for i in range(lo, hi)])

    for lo in range(1, ACCOUNTS, 5000):
        await core.store.run(add_accounts, lo, min(lo + 5000, ACCOUNTS))
    first_id = await core.store.run(lambda conn: conn.exec_driver_sql("select min(id) from accounts").scalar())
    for i in range(PACKAGES - 1):
        await core.admin.add_package(f"pkg{i:02d}", plan="standard", low_balance=1_000_000, max_calls=2,
                                     inbound_rate=0, daily_cap=5_000_000)
    statuses = ("outstanding", "paid", "refunded", "cancelled", "pending")

    def add_dids_and_invoices(conn, lo, hi):
        # DIDs +1438NNNNNNN: the even ones held by an account, the odd ones free
        conn.execute(insert(dids), [dict(
            number=f"+1438{n:07d}", account_id=first_id + n // 2 if n % 2 == 0 else None,
            endpoint=None, assigned_at=now if n % 2 == 0 else None, created_at=now) for n in range(2 * lo, 2 * hi)])
        conn.execute(insert(invoices), [dict(
            account_id=first_id + n // 5, amount=25_000_000, currency="CAD", status=statuses[n % 5],
            refunded=25_000_000 if n % 5 == 2 else 0, created_at=now, updated_at=now,
            paid_at=now if n % 5 in (1, 2) else None) for n in range(5 * lo, 5 * hi)])

    for lo in range(0, ACCOUNTS, 2000):
        await core.store.run(add_dids_and_invoices, lo, min(lo + 2000, ACCOUNTS))
    span = 30 * DAY

    def add_calls(conn, lo, hi):
        rows = []
        for n in range(lo, hi):
            at = now - span + n * span // CALLS
            uk = n % 100 == 0
            talk = (n * 7919) % 600_000 if n % 5 else 0
            rows.append(dict(
                id=f"{n:012d}-{uuid.UUID(int=n).hex[:20]}", pbx_id="bench", channel_id=f"ch-{n}",
                account_id=first_id + n % ACCOUNTS, direction="outbound",
                number=("011442079460" if uk else "1514555") + f"{n % 10000:04d}",
                number_e164=("+442079460" if uk else "+1514555") + f"{n % 10000:04d}",
                endpoint="ep", prefix="44" if uk else "1", rate_per_min=45_000 if uk else 12_500,
                state="settled", hold_mode="chunked", created_at=at, answered_at=at + 3000 if talk else None,
                last_seen_at=at + talk, settled_at=at + 3000 + talk, talk_ms=talk, cost=talk * 12_500 // 60_000,
                charged=talk * 12_500 // 60_000, billing_basis="measured"))
        conn.execute(insert(call_sessions), rows)

    reasons = ("depleted", "insufficient_funds", "no_rate", "destination_blocked", "too_many_calls")

    def add_refusals(conn, lo, hi):
        conn.execute(insert(call_refusals), [dict(
            at=now - span + n * span // REFUSALS, pbx_id="bench", channel_id=f"rf-{n}",
            account_id=first_id + n % ACCOUNTS, direction="outbound", number=f"1514666{n % 10000:04d}",
            number_e164=f"+1514666{n % 10000:04d}", reason=reasons[n % len(reasons)],
            rule="region" if n % len(reasons) == 3 else None, endpoint="ep") for n in range(lo, hi)])

    started = time.perf_counter()
    for lo in range(0, CALLS, 20_000):
        await core.store.run(add_calls, lo, min(lo + 20_000, CALLS))
    for lo in range(0, REFUSALS, 20_000):
        await core.store.run(add_refusals, lo, min(lo + 20_000, REFUSALS))
    await core.store.run(lambda conn: conn.execute(
        insert(call_day_totals).from_select([c.name for c in call_day_totals.columns], read_model.settled_day_sums())))
    if core.store.url.dialect == "postgresql":
        # what autovacuum does after bulk changes within a minute or so: without statistics the
        # planner scans a million calls for "created in the last minute" (0.28 s) — an artifact of
        # reading right after a bulk load, not of the pages
        await core.store.run(lambda conn: conn.exec_driver_sql("ANALYZE"))
    print(f"  populated {ACCOUNTS:,} accounts, {CALLS:,} calls and {REFUSALS:,} refusals in {time.perf_counter() - started:.0f} s", flush=True)
    return now - 3 * DAY


async def timed_get(http: ClientSession, url: str) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    async with http.get(url) as r:
        body = await r.read()
        status = r.status
    return (time.perf_counter() - t0) * 1000, status, len(body)


async def run(label: str, fresh) -> list[str]:
    lines = []
    async with fresh() as url:
        clock = FakeClock()
        core = await BillingCore.open(url, clock=clock)
        await core.create_schema()
        csv_since = await populate(core, clock)
        actor = ops.Actor("bench")
        await ops.add_operator(core, "bench@example.test", "admin", actor=actor)
        await ops.set_operator_password(core, "bench@example.test", await Passwords(AUTH).hash(PASSWORD), actor=actor)
        for i in range(200):
            await console.add_note(core, actor, f"a{i:05d}", "bench note")
        runner, base = await start(core, WebSettings(listen="127.0.0.1:0", auth=AUTH))
        try:
            async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
                async with http.get(base + "/admin/signin") as r:
                    token = re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)
                async with http.post(base + "/admin/signin", data={"csrf": token, "email": "bench@example.test",
                                                                    "password": PASSWORD}) as r:
                    assert r.status == 200 and r.url.path == "/admin", r.status
                day = time.strftime("%Y-%m-%d", time.gmtime((clock.now_ms() - 10 * DAY) / 1000))
                pages = [
                    ("/admin/accounts", "accounts, first page"),
                    (f"/admin/accounts?after=a{ACCOUNTS // 2:05d}", "accounts, a page in the middle"),
                    (f"/admin/accounts?q=Customer%20{ACCOUNTS // 3}", "accounts, search by name"),
                    (f"/admin/accounts?q=c{ACCOUNTS // 3}%40example", "accounts, search by email"),
                    (f"/admin/accounts/a{ACCOUNTS // 3:05d}", "account page (ledger, calls, notes, actions)"),
                    ("/admin/calls", "calls, first page"),
                    (f"/admin/calls?account=a{ACCOUNTS // 3:05d}", "calls of one account"),
                    (f"/admin/calls?since={day}&until={day}", "calls of one day"),
                    ("/admin/calls?prefix=44", "calls to +44 (1 %)"),
                    ("/admin/calls?outcome=unanswered", "calls, unanswered (20 %)"),
                    ("/admin/calls?outcome=refused", "refused calls"),
                    ("/admin/calls?outcome=refused&reason=no_rate", "refused calls, one reason (20 %)"),
                    (f"/admin/calls?outcome=refused&account=a{ACCOUNTS // 3:05d}", "refused calls of one account"),
                    ("/admin/live", "live calls"),
                    ("/admin/packages", "packages (with accounts per package)"),
                    ("/admin/packages/basic", "package page"),
                    ("/admin/dids", "DIDs, first page"),
                    (f"/admin/dids?state=free&after=%2B1438{ACCOUNTS:07d}", "DIDs, free, a page in the middle"),
                    (f"/admin/dids?q={ACCOUNTS // 3:07d}", "DIDs, search by number"),
                    (f"/admin/dids/%2B1438{ACCOUNTS // 3 * 2:07d}", "DID page (history)"),
                    ("/admin/invoices", "invoices, first page"),
                    ("/admin/invoices?status=paid", "invoices, paid (20 %)"),
                    (f"/admin/invoices?account=a{ACCOUNTS // 3:05d}", "invoices of one account"),
                    ("/admin/audit", "audit log"),
                    ("/admin", "dashboard (30 days of totals, decisions per minute)"),
                ]
                for path, what in pages:
                    times = []
                    for _ in range(REPEAT):
                        ms, status, _ = await timed_get(http, base + path)
                        assert status == 200, (path, status)
                        times.append(ms)
                    med, worst = statistics.median(times), max(times)
                    flag = "" if med < TARGET_MS else "  ** over target **"
                    lines.append(f"{label:<10} {what:<48} median {med:7.1f} ms  max {worst:7.1f} ms{flag}")
                    print(lines[-1], flush=True)
                since = time.strftime("%Y-%m-%d", time.gmtime(csv_since / 1000))
                ms, status, size = await timed_get(http, base + f"/admin/calls.csv?since={since}")
                rows = CALLS * 3 // 30
                lines.append(f"{label:<10} {'CSV export, ~' + format(rows, ',') + ' calls (3 days)':<48} "
                             f"{ms / 1000:7.2f} s ({size / 1e6:.1f} MB){'' if ms / 1000 < CSV_TARGET_S else '  ** over **'}")
                print(lines[-1], flush=True)
        finally:
            await runner.cleanup()
            await core.close()
    return lines


async def main(argv: list[str]) -> int:
    which = argv or ["sqlite", "pg"]
    if "sqlite" in which:
        with tempfile.TemporaryDirectory() as tmp:
            await run("SQLite", sqlite_fresh(tmp))
    if "pg" in which:
        await run("PostgreSQL", pg_fresh())
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
