"""Sidecar benchmark (issue 4): one full pass over 10,000 live calls, target < 2 s, SQLite and PostgreSQL.

A full pass = stale-session scan, chunk debits + hold extensions, lifecycle time rules, outbox.
Three situations, all with 10,000 answered live calls on 500 accounts:

* steady state: answers spread evenly over a minute, the clock moves 10 s per pass (the default
  CALLGATE_DEBIT_INTERVAL) → about a sixth of the calls have a chunk due each pass;
* worst case: every call answered in the same second, the pass runs when all 10,000 have a chunk
  due and a hold to extend at once;
* stale storm: the gate went silent; all 10,000 calls are settled as stale, at most
  CALLGATE_STALE_PER_PASS (500) per pass.

PostgreSQL from CALLGATE_BENCH_PG_URL (default postgresql://127.0.0.1:5432/test) in a throw-away schema.
"""
from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid

import asyncpg

from billing_core.api import BillingCore
from billing_core.clock import FakeClock
from billing_core.domain.rating import Rate
from billing_core.mail.render import Renderer
from billing_core.mail.smtp import SmtpSender, SmtpSettings
from billing_core.sidecar import Sidecar, SidecarSettings
from tests.factories import seed

PG = os.environ.get("CALLGATE_BENCH_PG_URL", "postgresql://127.0.0.1:5432/test")
CALLS = int(os.environ.get("CALLGATE_BENCH_CALLS", "10000"))
ACCOUNTS = 500
TARGET_S = 2.0


async def _setup(core: BillingCore, clock: FakeClock, *, spread_ms: int) -> list[str]:
    per = CALLS // ACCOUNTS
    for i in range(ACCOUNTS):
        await seed(core, account=f"a{i}", endpoint=f"ep{i}", did=None, package=f"p{i}", balance="100000.00",
                   max_calls=per + 1, deck=[Rate("1", 12_500, 0, 60, 6)])
    start = clock.now_ms()
    sids: list[str] = []

    async def one(n: int) -> None:
        a = await core.authorize_call(direction="outbound", number="15145550100", endpoint=f"ep{n % ACCOUNTS}",
                                      pbx_id="bench", channel_id=f"ch-{n}")
        assert a.allowed, a
        await core.answer(a.session_id, start + (n * spread_ms // CALLS if spread_ms else 0))
        sids.append(a.session_id)

    sem = asyncio.Semaphore(64)

    async def guarded(n: int) -> None:
        async with sem:
            await one(n)

    await asyncio.gather(*(guarded(n) for n in range(CALLS)))
    return sids


def _sidecar(core: BillingCore, clock: FakeClock) -> Sidecar:
    # Nothing is queued in the outbox (huge balances); the sender is never reached.
    sender = SmtpSender(SmtpSettings(host="127.0.0.1", port=9, mail_from="bench@localhost", timeout=1))
    return Sidecar(core, SidecarSettings(stale_seconds=120), clock, sender=sender, renderer=Renderer())


async def _timed(sidecar: Sidecar):
    t = time.perf_counter()
    report = await sidecar.run_once()
    assert report.errors == (), report.errors
    return time.perf_counter() - t, report


async def run(url: str, label: str, fresh) -> list[str]:
    lines = []

    # steady state ------------------------------------------------------------------------
    async with fresh() as u:
        clock = FakeClock()
        core = await BillingCore.open(u, clock=clock)
        await core.create_schema()
        sids = await _setup(core, clock, spread_ms=60_000)
        clock.advance(60)
        await core.heartbeat(sids)
        sidecar = _sidecar(core, clock)
        first, rep = await _timed(sidecar)  # catch-up after setup
        times, processed = [], []
        for _ in range(12):
            clock.advance(10)
            await core.heartbeat(sids)
            dt, rep = await _timed(sidecar)
            times.append(dt)
            processed.append(rep.debits.processed)
        await core.close()
    lines.append(f"{label} steady state, {CALLS:,} live calls, 10 s per pass: median {statistics.median(times):.3f} s, "
                 f"max {max(times):.3f} s ({statistics.median(processed):.0f} calls debited/extended per pass; "
                 f"first catch-up pass {first:.3f} s)")

    # worst case: everything due at once ----------------------------------------------------
    async with fresh() as u:
        clock = FakeClock()
        core = await BillingCore.open(u, clock=clock)
        await core.create_schema()
        sids = await _setup(core, clock, spread_ms=0)
        clock.advance(61)
        await core.heartbeat(sids)
        sidecar = _sidecar(core, clock)
        dt, rep = await _timed(sidecar)
        assert rep.debits.processed == CALLS, rep
        clock.advance(10)
        await core.heartbeat(sids)
        quiet, _ = await _timed(sidecar)

        # stale storm: the gate stops reporting; settled in slices of stale_per_pass per pass
        clock.advance(130)
        storm_passes, settled = [], 0
        while settled < CALLS:
            dt_s, srep = await _timed(sidecar)
            storm_passes.append(dt_s)
            settled += srep.stale.settled
            assert srep.stale.settled > 0, srep
        await core.close()
    lines.append(f"{label} worst case, all {CALLS:,} calls due in one pass: {dt:.3f} s; the next pass (all "
                 f"{CALLS:,} hold their next chunk again) {quiet:.3f} s")
    lines.append(f"{label} stale storm, {CALLS:,} calls gone silent: {len(storm_passes)} passes of ≤ "
                 f"{sidecar.settings.stale_per_pass} settlements, median {statistics.median(storm_passes):.3f} s, "
                 f"max {max(storm_passes):.3f} s (total {sum(storm_passes):.1f} s)")
    for line in lines:
        print(line, flush=True)
    return lines


def sqlite_fresh(tmp: str):
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def fresh():
        yield f"sqlite:///{tmp}/{uuid.uuid4().hex}.db"

    return fresh


def pg_fresh():
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def fresh():
        schema = f"bench_side_{uuid.uuid4().hex[:8]}"
        dsn = PG.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.close()
        try:
            yield f"{PG}{'&' if '?' in PG else '?'}schema={schema}"
        finally:
            conn = await asyncpg.connect(dsn)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()

    return fresh


async def main(argv: list[str]) -> int:
    which = argv or ["sqlite", "pg"]
    if "sqlite" in which:
        with tempfile.TemporaryDirectory() as tmp:
            await run("", "SQLite", sqlite_fresh(tmp))
    if "pg" in which:
        await run(PG, "PostgreSQL", pg_fresh())
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
