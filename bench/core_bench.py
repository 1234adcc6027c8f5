"""Billing core benchmarks (issue 2):

* authorize+hold with 32 concurrent callers on SQLite and PostgreSQL (target ≥ 2,000/s, p99 < 5 ms)
* rate-deck import of 300,000 rows on SQLite (target < 15 s)
* longest-prefix lookups in process (target ≥ 200,000/s)

PostgreSQL from CALLGATE_BENCH_PG_URL (default postgresql://127.0.0.1:5432/test) in a throw-away schema.
"""
from __future__ import annotations

import asyncio
import gc
import os
import random
import statistics
import sys
import tempfile
import time
import uuid

import asyncpg

from billing_core.api import BillingCore
from billing_core.domain.rating import Rate, RateTable
from billing_core.domain.ratedeck import parse_deck
from callgate.heap import freeze_startup_heap
from tests.factories import seed

PG = os.environ.get("CALLGATE_BENCH_PG_URL", "postgresql://127.0.0.1:5432/test")
#: CALLGATE_BENCH_FRAUD_RULES=1: every toll-fraud rule and limit of issue 18 on (destination rules,
#: high-cost guard, call length, attempts per minute — counted on every authorize —, spend caps,
#: anomaly thresholds),
#: set high enough that every benchmark call is still allowed.
FRAUD_RULES = os.environ.get("CALLGATE_BENCH_FRAUD_RULES", "") not in ("", "0")
CALLERS = 32
SECONDS = float(os.environ.get("CALLGATE_BENCH_SECONDS", "5"))


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def authorize_bench(url: str, label: str) -> None:
    core = await BillingCore.open(url)
    await core.create_schema()
    # One account per caller (as real traffic: many accounts), plenty of money and call slots.
    for i in range(CALLERS):
        await seed(core, account=f"acct{i}", endpoint=f"ep{i}", did=None, balance="100000.00", max_calls=1_000_000,
                   deck=[Rate("1", 12_500, 0, 60, 6)], allow_regions=None if FRAUD_RULES else "*", block_types=None if FRAUD_RULES else "")
    if FRAUD_RULES:
        await core.admin.set_package("basic", allow_regions="CA,US", block_types="PREMIUM_RATE,SHARED_COST,UAN",
                                     deny_prefixes="881,882,883,1900", allow_prefixes="1514", max_rate_per_min=1_000_000,
                                     max_call_minutes="240", max_attempts_per_minute="1000000",
                                     daily_cap=10**12, monthly_cap=10**13, anomaly_spend_per_hour=10**12,
                                     anomaly_blocked_attempts="10")
        label += " (every toll-fraud rule and limit on)"
    freeze_startup_heap()  # as the services do once started (callgate.heap); undone at the end
    latencies: list[float] = []
    stop = time.perf_counter() + SECONDS
    count = 0

    async def caller(i: int) -> None:
        nonlocal count
        while time.perf_counter() < stop:
            t = time.perf_counter()
            a = await core.authorize_call(direction="outbound", number="15145550100", endpoint=f"ep{i}")
            latencies.append((time.perf_counter() - t) * 1000)
            assert a.allowed, a
            count += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(CALLERS)))
    elapsed = time.perf_counter() - t0
    print(f"authorize+hold {label}, saturated (32 callers back to back): {count / elapsed:,.0f}/s; "
          f"p50 {statistics.median(latencies):.2f} ms, p99 {pct(latencies, 0.99):.2f} ms", flush=True)

    # Open loop: calls arrive at a fixed 2,000/s spread over the 32 callers (as SIP traffic does);
    # latency here is what a caller waits for the decision at the target rate.
    rate = 2000.0
    paced: list[float] = []
    lag = 0.0
    start = time.perf_counter()
    total = int(rate * min(SECONDS, 3))

    async def paced_caller(i: int) -> None:
        nonlocal lag
        for n in range(i, total, CALLERS):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t = time.perf_counter()
            a = await core.authorize_call(direction="outbound", number="15145550100", endpoint=f"ep{i}")
            paced.append((time.perf_counter() - t) * 1000)
            assert a.allowed, a

    await asyncio.gather(*(paced_caller(i) for i in range(CALLERS)))
    achieved = total / (time.perf_counter() - start)
    await core.close()
    gc.unfreeze()
    print(f"authorize+hold {label}, open loop at 2,000/s offered: achieved {achieved:,.0f}/s; "
          f"p50 {statistics.median(paced):.2f} ms, p99 {pct(paced, 0.99):.2f} ms (target ≥ 2,000/s, p99 < 5 ms)",
          flush=True)


async def import_bench(url: str) -> None:
    rng = random.Random(1)
    prefixes = set()
    while len(prefixes) < 300_000:
        prefixes.add(str(rng.randint(1, 999)) + str(rng.randint(0, 10**rng.randint(1, 8))))
    lines = ["prefix,description,rate_per_min,connect_fee,initial_increment,increment\n"]
    lines += [f"{p},dest {p},0.{rng.randint(1000, 99999):05d},0,60,6\n" for p in prefixes]
    core = await BillingCore.open(url)
    await core.create_schema()
    t0 = time.perf_counter()
    deck = parse_deck(lines)
    t1 = time.perf_counter()
    await core.admin.import_plan("big", deck)
    t2 = time.perf_counter()
    await core.close()
    print(f"plan import 300,000 rows on SQLite: {t2 - t0:.2f} s (parse {t1 - t0:.2f} s, store {t2 - t1:.2f} s; target < 15 s)")
    table = RateTable({r.prefix: r for r in deck})
    numbers = [str(rng.randint(10**10, 10**12)) for _ in range(200_000)]
    t0 = time.perf_counter()
    for n in numbers:
        table.lookup(n)
    dt = time.perf_counter() - t0
    print(f"longest-prefix lookups: {len(numbers) / dt:,.0f}/s in process (target ≥ 200,000/s)")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await authorize_bench(f"sqlite:///{tmp}/bench.db", "SQLite")
        await import_bench(f"sqlite:///{tmp}/import.db")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        await authorize_bench(f"{PG}?schema={schema}", "PostgreSQL")
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    asyncio.run(main())
