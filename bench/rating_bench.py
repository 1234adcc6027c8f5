"""Rating v2 benchmarks (issue 19):

* plan import of a 300,000-row deck with periods on SQLite (target < 20 s)
* authorize+hold with 32 concurrent callers when the dialled prefix has rates by period, next to
  the same run on a one-price prefix, on SQLite and PostgreSQL (target ≥ 2,000/s)
* callgate rerate of 100,000 settled calls on SQLite and PostgreSQL (target < 30 s)

PostgreSQL from CALLGATE_BENCH_PG_URL (default postgresql://127.0.0.1:5432/test) in a throw-away schema.
"""
from __future__ import annotations

import asyncio
import gc
import os
import random
import sys
import tempfile
import time
import uuid

import asyncpg
from sqlalchemy import select

from billing_core.api import BillingCore
from billing_core.domain.money import parse_amount
from billing_core.domain.ratedeck import parse_deck_rows
from billing_core.domain.rating import Rate
from billing_core.store import statements as sql
from billing_core.store.tables import call_sessions
from callgate.heap import freeze_startup_heap
from tests.factories import seed

PG = os.environ.get("CALLGATE_BENCH_PG_URL", "postgresql://127.0.0.1:5432/test")
CALLERS = 32
SECONDS = float(os.environ.get("CALLGATE_BENCH_SECONDS", "5"))
RERATE_CALLS = int(os.environ.get("CALLGATE_BENCH_RERATE_CALLS", "100000"))
HEADER = "prefix,description,rate_per_min,connect_fee,initial_increment,increment,days,start,end\n"


def period_rows(prefix: str, peak: str, off: str, inc: int = 6) -> list[str]:
    return [f"{prefix},d {prefix},{off},0,60,{inc},mon-fri,00:00,08:00\n",
            f"{prefix},d {prefix},{peak},0,60,{inc},mon-fri,08:00,18:00\n",
            f"{prefix},d {prefix},{off},0,60,{inc},mon-fri,18:00,24:00\n",
            f"{prefix},d {prefix},{off},0,60,{inc},sat-sun,,\n"]


async def import_bench(url: str) -> None:
    rng = random.Random(1)
    prefixes: set[str] = set()
    while len(prefixes) < 75_000:
        prefixes.add(str(rng.randint(1, 999)) + str(rng.randint(0, 10**rng.randint(1, 8))))
    lines = [HEADER]
    for p in prefixes:
        lines += period_rows(p, f"0.{rng.randint(10000, 99999):05d}", f"0.{rng.randint(1000, 9999):04d}")
    core = await BillingCore.open(url)
    await core.create_schema()
    t0 = time.perf_counter()
    deck = parse_deck_rows(lines)
    t1 = time.perf_counter()
    await core.admin.import_plan("big", deck, timezone="America/Toronto")
    t2 = time.perf_counter()
    await core.close()
    print(f"plan import {len(deck):,} rows with periods (75,000 prefixes x 4 periods) on SQLite: {t2 - t0:.2f} s "
          f"(parse and check {t1 - t0:.2f} s, store {t2 - t1:.2f} s; target < 20 s)", flush=True)


async def authorize_bench(url: str, label: str, periods: bool) -> None:
    core = await BillingCore.open(url)
    await core.create_schema()
    if periods:
        await core.admin.import_plan("p", parse_deck_rows([HEADER] + period_rows("1", "0.02", "0.01")))
    else:
        await core.admin.import_plan("p", [Rate("1", 12_500, 0, 60, 6)])
    for i in range(CALLERS):
        await seed(core, account=f"acct{i}", endpoint=f"ep{i}", did=None, balance="100000.00", max_calls=1_000_000,
                   plan="p")
    freeze_startup_heap()
    stop = time.perf_counter() + SECONDS
    count = 0

    async def caller(i: int) -> None:
        nonlocal count
        while time.perf_counter() < stop:
            a = await core.authorize_call(direction="outbound", number="15145550100", endpoint=f"ep{i}")
            assert a.allowed, a
            count += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(CALLERS)))
    elapsed = time.perf_counter() - t0
    await core.close()
    gc.unfreeze()
    what = "a prefix with 4 periods" if periods else "a one-price prefix"
    print(f"authorize+hold {label}, {what}, saturated (32 callers): {count / elapsed:,.0f}/s (target ≥ 2,000/s)",
          flush=True)


async def rerate_bench(url: str, label: str) -> None:
    core = await BillingCore.open(url)
    await core.create_schema()
    await core.admin.import_plan("std", parse_deck_rows([HEADER] + period_rows("1", "0.02", "0.01", 60)))
    accounts = 100
    for i in range(accounts):
        await seed(core, account=f"a{i}", endpoint=f"e{i}", did=None, balance="100000.00", max_calls=1_000_000,
                   plan="std")
    since = core.clock.now_ms()
    # One real call per account, then copies of its settled session spread over the last days (the
    # calls rerate reads: settled, of the plan, in the window).
    templates = []
    for i in range(accounts):
        a = await core.authorize_call(direction="outbound", number="15145550100", endpoint=f"e{i}")
        await core.answer(a.session_id)
        await core.settle(a.session_id, 0)
        templates.append(a.session_id)
    rows = await core.store.run(lambda conn: [dict(r) for r in conn.execute(
        select(call_sessions).where(call_sessions.c.id.in_(templates))).mappings()])
    rng = random.Random(7)
    step = 7 * 86_400_000 // RERATE_CALLS

    def insert(conn, batch):
        conn.execute(sql.I_SESSION, batch)

    batch = []
    for n in range(RERATE_CALLS):
        r = dict(rows[n % accounts])
        start = since - 7 * 86_400_000 + n * step
        talk = rng.randint(1, 600) * 1000
        r.update(id=uuid.uuid4().hex, channel_id=f"bench{n}", created_at=start, answered_at=start + 5000,
                 settled_at=start + 5000 + talk, last_seen_at=start + 5000 + talk, talk_ms=talk,
                 cost=(talk // 60_000 + 1) * 20_000)
        batch.append(r)
        if len(batch) == 5000:
            await core.store.run(insert, batch)
            batch = []
    if batch:
        await core.store.run(insert, batch)
    await core.admin.import_plan("std", parse_deck_rows([HEADER] + period_rows("1", "0.015", "0.008", 60)),
                                 effective_at=since - 8 * 86_400_000, correction=True)
    t0 = time.perf_counter()
    dry = await core.admin.rerate("std", since=since - 8 * 86_400_000, dry_run=True)
    t1 = time.perf_counter()
    done = await core.admin.rerate("std", since=since - 8 * 86_400_000)
    t2 = time.perf_counter()
    again = await core.admin.rerate("std", since=since - 8 * 86_400_000)
    t3 = time.perf_counter()
    problems = await core.admin.verify()
    await core.close()
    print(f"rerate {label}: {done['calls_examined']:,} calls examined, {done['calls_changed']:,} changed: "
          f"{t2 - t1:.2f} s (target < 30 s); dry run {t1 - t0:.2f} s ({dry['calls_changed']:,} would change); "
          f"second run {t3 - t2:.2f} s ({again['calls_changed']} changed); verify: "
          f"{'clean' if not problems else problems[:3]}", flush=True)


async def main(which: set[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if "import" in which:
            await import_bench(f"sqlite:///{tmp}/import.db")
        if "authorize" in which:
            await authorize_bench(f"sqlite:///{tmp}/a1.db", "SQLite", False)
            await authorize_bench(f"sqlite:///{tmp}/a2.db", "SQLite", True)
        if "rerate" in which:
            await rerate_bench(f"sqlite:///{tmp}/rerate.db", "SQLite")
    conn = await asyncpg.connect(PG)
    try:
        for kind in ("authorize", "rerate"):
            if kind not in which:
                continue
            for variant in ((False, True) if kind == "authorize" else (None,)):
                schema = f"bench_{uuid.uuid4().hex[:8]}"
                await conn.execute(f'CREATE SCHEMA "{schema}"')
                try:
                    url = f"{PG}?schema={schema}"
                    if kind == "authorize":
                        await authorize_bench(url, "PostgreSQL", variant)
                    else:
                        await rerate_bench(url, "PostgreSQL")
                finally:
                    await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    asyncio.run(main(set(sys.argv[1:]) or {"import", "authorize", "rerate"}))
