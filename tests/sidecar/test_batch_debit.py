"""The set-based debit pass (workaround) gives exactly the money of the core's ``debit_due``.

Twin databases get the same accounts, calls and clock; one is driven by ``core.debit_due``, the
other by ``batch_debit.debit_due_batched``; every ledger entry, session, account and alert must
match. Run on SQLite and PostgreSQL.
"""
from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from billing_core.api import BillingCore
from billing_core.clock import FakeClock
from billing_core.sidecar.batch_debit import debit_due_batched
from billing_core.store.tables import accounts, call_sessions, ledger, outbox
from tests.conftest import _pg_exec
from tests.factories import seed

# account, balance, low balance, calls (number) — small balances force partial grants, crossings
# and depletion mid-call; one account carries three calls at once.
SCENARIO = [
    ("rich", "50.00", "5.00", ["15145550100", "15145550101", "011447700900123"]),
    ("thin", "0.10", "0.05", ["011447700900124"]),
    ("edge", "5.02", "5.00", ["15145550102"]),
    ("dry", "0.03", "1.00", ["15145550103"]),
]


async def _build(url: str, clock: FakeClock) -> tuple[BillingCore, dict[str, str]]:
    core = await BillingCore.open(url, clock=clock)
    await core.create_schema()
    channels: dict[str, str] = {}
    for ref, balance, low, numbers in SCENARIO:
        await seed(core, account=ref, endpoint=f"{ref}-ep", did=None, package=f"pkg-{ref}", balance=balance,
                   low_balance=low)
        for i, number in enumerate(numbers):
            clock.advance(1)  # distinct creation times: the same order of calls within an account
            a = await core.authorize_call(direction="outbound", number=number, endpoint=f"{ref}-ep", pbx_id="pbx",
                                          channel_id=f"{ref}-{i}")
            assert a.allowed, (ref, a)
            await core.answer(a.session_id, clock.now_ms())
            channels[a.session_id] = f"{ref}-{i}"
    return core, channels


async def _snapshot(core: BillingCore, channels: dict[str, str]):
    def norm(text):
        for sid, ch in channels.items():
            text = text.replace(sid, ch)
        return text

    def tx(conn):
        led = sorted((norm(r.idempotency_key), r.kind, r.amount, r.balance_after, norm(r.reason or ""))
                     for r in conn.execute(select(ledger)))
        ses = sorted((channels[r.id], r.state, r.granted_seconds, r.hold, r.charged, r.chunks_debited, r.cutoff_at)
                     for r in conn.execute(select(call_sessions)))
        acc = sorted((r.ref, r.balance, r.held, r.status, r.low_balance_armed, r.low_balance_crossings, r.depletions,
                      r.depleted_at) for r in conn.execute(select(accounts)))
        out = sorted((r.kind, r.dedupe_key, json.dumps(json.loads(r.context), sort_keys=True))
                     for r in conn.execute(select(outbox)))
        return led, ses, acc, out

    return await core.store.run(tx)


async def test_set_based_pass_matches_core_debit_due(core, db_url, backend, tmp_path):
    await core.close()  # the fixture's database hosts the core-driven twin
    if backend == "sqlite":
        twin_url = f"sqlite:///{tmp_path / 'twin.db'}"
    else:
        schema = f"cgtwin_{uuid.uuid4().hex[:10]}"
        await _pg_exec(f'CREATE SCHEMA "{schema}"')
        twin_url = db_url.split("?schema=")[0] + f"?schema={schema}"
    clock_a, clock_b = FakeClock(), FakeClock()
    a, ch_a = await _build(db_url, clock_a)
    b, ch_b = await _build(twin_url, clock_b)
    try:
        for step in range(40):  # 400 s in 10 s passes
            for clock in (clock_a, clock_b):
                clock.advance(10)
            ra = await a.debit_due(clock_a.now_ms(), lookahead_seconds=20)
            rb = await debit_due_batched(b, clock_b.now_ms(), lookahead_seconds=20, batch=2)
            assert ra["examined_due"] == rb["examined_due"], step
            if step == 15:  # one call of the rich account hangs up mid-chunk on both
                for core, chans in ((a, ch_a), (b, ch_b)):
                    sid = next(s for s, c in chans.items() if c == "rich-1")
                    await core.settle(sid, 95_300)
        snap_a, snap_b = await _snapshot(a, ch_a), await _snapshot(b, ch_b)
        for part, x, y in zip(("ledger", "sessions", "accounts", "outbox"), snap_a, snap_b):
            assert x == y, part
        led, ses, acc, out = snap_a
        assert sum(1 for e in led if e[1] == "chunk") > 20
        kinds = {o[0] for o in out}
        assert {"low_balance", "depleted"} <= kinds  # the scenario crossed and depleted mid-call
        thin = next(s for s in ses if s[0] == "thin-0")
        assert thin[2] < 400  # partial grant: the cut-off came early
    finally:
        await a.close()
        await b.close()
        if backend != "sqlite":
            await _pg_exec(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
