"""The debit loop and stale sessions, on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from billing_core.api import BillingCore
from billing_core.domain.money import parse_amount
from billing_core.domain.rating import billable_seconds, cost, max_talk_seconds
from billing_core.store.tables import call_sessions, ledger
from tests.factories import DEFAULT_DECK, seed

from .helpers import account_row, make_sidecar
from .smtpd import free_port

MONTREAL = DEFAULT_DECK[1]  # 1514: 0.01/min, 60/6
UK = DEFAULT_DECK[2]  # 44: 0.045/min + 0.015 connect, 30/6


async def _call(core, n: int = 1, number: str = "15145550100", endpoint: str = "alice", pbx: str = "pbx"):
    a = await core.authorize_call(direction="outbound", number=number, endpoint=endpoint, pbx_id=pbx,
                                  channel_id=f"{endpoint}-{n}")
    assert a.allowed, a
    await core.answer(a.session_id, core.clock.now_ms())
    return a.session_id


async def _tick(core, seconds: float) -> None:
    """Time passes and the gate reports every live call alive (as a running gate does)."""
    core.clock.advance(seconds)
    await core.heartbeat([s.session_id for s in await core.live_sessions()])


async def _ledger_of(core, sid):
    def tx(conn):
        return conn.execute(select(ledger.c.kind, ledger.c.amount, ledger.c.idempotency_key)
                            .where(ledger.c.session_id == sid).order_by(ledger.c.id)).all()

    return await core.store.run(tx)


async def test_chunks_are_debited_once_and_settle_reconciles(core):
    await seed(core, balance="10.00")
    sidecar = make_sidecar(core, free_port())
    sid = await _call(core)
    await _tick(core, 125)
    for _ in range(3):  # replayed passes at the same instant change nothing
        await sidecar.run_once()
    s = await core.get_session(sid)
    assert s.chunks_debited == 2 and s.charged == cost(120, MONTREAL)
    entries = await _ledger_of(core, sid)
    assert [e.idempotency_key for e in entries] == [f"chunk:{sid}:1", f"chunk:{sid}:2"]
    assert s.granted_seconds >= 180 and s.cutoff_at == s.answered_at + s.granted_seconds * 1000  # next chunk held
    core.clock.advance(26)  # 151 s after the answer
    settled = await core.settle(sid, 150_400)
    assert settled.cost == cost(150, MONTREAL) and settled.final_charge == cost(150, MONTREAL) - cost(120, MONTREAL)
    assert sum(e.amount for e in await _ledger_of(core, sid)) == -cost(150, MONTREAL)
    acct = await account_row(core, "acme")
    assert acct["held"] == 0 and acct["balance"] == parse_amount("10.00") - cost(150, MONTREAL)
    await sidecar.run_once()
    assert sum(e.amount for e in await _ledger_of(core, sid)) == -cost(150, MONTREAL)


async def test_partial_grant_moves_the_cutoff_earlier_then_nothing_left(core):
    await seed(core, balance="0.10", low_balance="0.00")
    sidecar = make_sidecar(core, free_port())
    sid = await _call(core, number="011447700900123")
    first = await core.get_session(sid)
    assert first.granted_seconds == 60
    affordable = max_talk_seconds(parse_amount("0.10"), UK, cap=14_400)
    assert 60 < affordable < 120
    await _tick(core, 40)  # within chunk + look-ahead of the cut-off: the next chunk is due
    await sidecar.run_once()
    s = await core.get_session(sid)
    assert s.granted_seconds == affordable and s.cutoff_at == s.answered_at + affordable * 1000
    await _tick(core, affordable - 40 + 5)  # past the cut-off: nothing more to grant
    await sidecar.run_once()
    s = await core.get_session(sid)
    assert s.granted_seconds == affordable and s.cutoff_at <= core.clock.now_ms()
    acct = await account_row(core, "acme")
    assert acct["balance"] + acct["credit_limit"] - acct["held"] >= 0


async def test_settle_racing_a_debit_pass_never_double_charges(core):
    await seed(core, balance="50.00", max_calls=40)
    sidecar = make_sidecar(core, free_port())
    sids = [await _call(core, n) for n in range(20)]
    talks = {}
    for step in range(1, 6):
        await _tick(core, 61)
        ending = sids[(step - 1) * 4: step * 4]
        for sid in ending:
            talks[sid] = core.clock.now_ms() - (await core.get_session(sid)).answered_at
        await asyncio.gather(sidecar.run_once(), *(core.settle(sid, talks[sid]) for sid in ending),
                             sidecar.run_once())
    total = 0
    for sid in sids:
        expected = cost(billable_seconds(talks[sid]), MONTREAL)
        assert -sum(e.amount for e in await _ledger_of(core, sid)) == expected, sid
        total += expected
    acct = await account_row(core, "acme")
    assert acct["held"] == 0 and acct["live_calls"] == 0
    assert acct["balance"] == parse_amount("50.00") - total


async def test_two_sidecars_on_one_database_never_charge_a_chunk_twice(core, db_url):
    await seed(core, balance="100.00", max_calls=60)
    sids = [await _call(core, n) for n in range(50)]
    other = await BillingCore.open(db_url, clock=core.clock, settings=core.settings)
    try:
        one, two = make_sidecar(core, free_port()), make_sidecar(other, free_port())
        for _ in range(6):
            await _tick(core, 37)
            reports = await asyncio.gather(one.run_once(), two.run_once(), one.run_once())
            assert all(r.errors == () for r in reports), [r.errors for r in reports]
    finally:
        await other.close()
    elapsed_chunks = (6 * 37) // 60

    def tx(conn):
        keys = conn.execute(select(ledger.c.idempotency_key).where(ledger.c.kind == "chunk")).scalars().all()
        debited = conn.execute(select(func.sum(call_sessions.c.chunks_debited))).scalar()
        return keys, debited

    keys, debited = await core.store.run(tx)
    assert len(keys) == len(set(keys)) == 50 * elapsed_chunks == debited
    acct = await account_row(core, "acme")
    assert acct["balance"] == parse_amount("100.00") - 50 * cost(60 * elapsed_chunks, MONTREAL)


async def test_stale_answered_settled_at_granted_time_and_unanswered_closed_at_zero(core):
    await seed(core, balance="10.00")
    sidecar = make_sidecar(core, free_port(), stale_seconds=120)
    answered = await _call(core, 1)
    ringing = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", pbx_id="pbx",
                                        channel_id="alice-ring")
    alive = await _call(core, 3)
    for _ in range(6):  # 150 s: the gate reports only `alive`
        core.clock.advance(25)
        await core.heartbeat([alive])
        await sidecar.run_once()
    s = await core.get_session(answered)
    assert s.state == "settled" and s.stale
    # Silent since answer (t=0); found stale at t=125 with 60 s granted then extended ahead: it
    # cannot have talked past its cut-off nor past now.
    assert s.talk_ms == min(s.granted_seconds * 1000, 125_000)
    assert s.cost == cost(billable_seconds(s.talk_ms), MONTREAL)
    r = await core.get_session(ringing.session_id)
    assert r.state == "settled" and r.stale and r.talk_ms == 0 and r.cost == 0
    a = await core.get_session(alive)
    assert a.state == "answered" and not a.stale
    acct = await account_row(core, "acme")
    assert acct["live_calls"] == 1 and acct["held"] == a.hold


async def test_stale_settlement_and_a_late_gate_settle_charge_once(core):
    await seed(core, balance="10.00")
    sidecar = make_sidecar(core, free_port(), stale_seconds=30)
    sid = await _call(core)
    core.clock.advance(45)
    await asyncio.gather(sidecar.run_once(), core.settle(sid, 45_000))
    entries = await _ledger_of(core, sid)
    s = await core.get_session(sid)
    assert -sum(e.amount for e in entries) == s.cost
    assert (await account_row(core, "acme"))["held"] == 0


async def test_sqlite_sidecar_and_another_process_never_charge_a_chunk_twice(tmp_path, clock):
    import os
    import sys
    from pathlib import Path

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    core = await BillingCore.open(url, clock=clock)
    try:
        await core.create_schema()
        await seed(core, balance="100.00", max_calls=60)
        sids = [await _call(core, n) for n in range(40)]
        start = clock.now_ms()
        nows = [start + k * 31_000 for k in range(1, 9)]
        root = Path(__file__).resolve().parents[2]
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.sidecar.other_process", url, *map(str, nows), cwd=root,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(root)})
        sidecar = make_sidecar(core, free_port(), stale_seconds=3600)
        assert (await asyncio.wait_for(child.stdout.readline(), 60)).strip() == b"ready"
        for now in nows:
            clock.set(now)
            for _ in range(4):
                assert (await sidecar.run_once()).errors == ()
                await asyncio.sleep(0)
        out, err = await asyncio.wait_for(child.communicate(), 120)
        assert child.returncode == 0 and out.decode().startswith("ok 32"), (out, err[-2000:])
        clock.set(nows[-1])
        await sidecar.run_once()
        due = (nows[-1] - start) // 1000 // 60

        def tx(conn):
            keys = conn.execute(select(ledger.c.idempotency_key).where(ledger.c.kind == "chunk")).scalars().all()
            debited = conn.execute(select(func.sum(call_sessions.c.chunks_debited))).scalar()
            charged = conn.execute(select(func.sum(call_sessions.c.charged))).scalar()
            return keys, debited, charged

        keys, debited, charged = await core.store.run(tx)
        assert len(keys) == len(set(keys)) == 40 * due == debited
        assert charged == 40 * cost(60 * due, MONTREAL)
        acct = await account_row(core, "acme")
        assert acct["balance"] == parse_amount("100.00") - charged
        assert len(sids) == 40
    finally:
        await core.close()


async def test_stale_storm_is_settled_in_bounded_slices(core):
    await seed(core, balance="10.00", max_calls=20)
    sidecar = make_sidecar(core, free_port(), stale_seconds=30, stale_per_pass=4)
    for n in range(10):
        await _call(core, n)
    core.clock.advance(31)
    counts = [(await sidecar.run_once()).stale.settled for _ in range(4)]
    assert counts == [4, 4, 2, 0]
    assert (await account_row(core, "acme"))["live_calls"] == 0


async def test_full_hold_calls_are_not_stale_before_their_longest_possible_end(core):
    """Dial L() / AGI / continue-mode calls hold all their money and the switch enforces the
    limit: nobody has to report them; they are stale only after grant + the stale window."""
    await seed(core, balance="0.05")  # 0.01/min at 60/6: 300 s of talk
    sidecar = make_sidecar(core, free_port(), stale_seconds=120)
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", pbx_id="agi@x",
                                  channel_id="agi-1", full_hold=True)
    assert a.granted_seconds == 300
    await core.answer(a.session_id, core.clock.now_ms())
    for _ in range(16):  # 400 s, nobody reports the call
        core.clock.advance(25)
        await sidecar.run_once()
    assert (await core.get_session(a.session_id)).state == "answered"
    core.clock.advance(30)  # 430 s > 300 s granted + 120 s window
    await sidecar.run_once()
    s = await core.get_session(a.session_id)
    assert s.state == "settled" and s.stale and s.talk_ms == 300_000


async def test_the_sidecar_prices_chunks_and_extensions_by_period(core):
    """Issue 19: the sidecar's chunk debits and hold extensions use the period-aware pricing — a
    chunk starting at 18:00:30 local (off-peak) is debited at 0.01, the one before at 0.02."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from billing_core.domain.ratedeck import parse_deck_rows

    deck = ("prefix,description,rate_per_min,connect_fee,initial_increment,increment,days,start,end\n"
            "1,peak,0.02,0,60,60,mon-fri,08:00,18:00\n1,night,0.01,0,60,60,mon-fri,00:00,08:00\n"
            "1,evening,0.01,0,60,60,mon-fri,18:00,24:00\n1,weekend,0.01,0,60,60,sat-sun,,\n")
    core.clock.set(int(datetime(2026, 11, 17, 17, 59, 30, tzinfo=ZoneInfo("America/Toronto")).timestamp()) * 1000)
    await core.admin.import_plan("periods", parse_deck_rows(deck.splitlines(keepends=True)))
    await seed(core, balance="10.00", plan="periods", package="periods", did=None)
    sidecar = make_sidecar(core, free_port())
    sid = await _call(core)
    await _tick(core, 50)
    await sidecar.run_once()  # the hold extended over the boundary: 0.02 + 0.01
    assert (await core.get_session(sid)).hold == parse_amount("0.03")
    await _tick(core, 75)  # 125 s after the answer: two chunks due
    await sidecar.run_once()
    assert [e.amount for e in await _ledger_of(core, sid)] == [-parse_amount("0.02"), -parse_amount("0.01")]
    settled = await core.settle(sid, 125_000)
    assert settled.cost == parse_amount("0.03") + parse_amount("0.01")  # the third minute, off-peak too
    assert await core.admin.verify() == []
