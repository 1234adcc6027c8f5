"""An operator ends a live ARI call from the console (issue 20): billing_core.console.end_call
moves its cut-off to now; the gate, at its next once-a-second read of the cut-offs, hangs both
legs up without the warning tone, and the call is settled at the talk so far. On SQLite and
PostgreSQL, against the ARI simulator."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from ari_app.gate import Gate
from billing_core import console
from billing_core.api import CoreSettings
from billing_core.domain.errors import InvalidInput
from billing_core.operators import Actor
from billing_core.store.tables import call_sessions
from billing_core.store.tables_operators import audit_log
from callgate_fakes.ari_simulator import Party
from tests.ari.gate_support import TIME_SCALE, gate_settings, requests_of, running_gate, wait_for
from tests.factories import seed

NUMBER = "15145550100"
TRUNK = f"PJSIP/{NUMBER}@trunk"
OPERATOR = Actor("ops@example.test", None)


@pytest.fixture
def core_settings() -> CoreSettings:
    # a one-hour chunk (72 s real at TIME_SCALE): the call is neither warned nor extended on its own
    # while the test ends it
    return CoreSettings(chunk_seconds=3600)


@pytest.fixture
async def sim(simulator_factory):
    return await simulator_factory(time_scale=TIME_SCALE)


def channel_hangups(sim) -> list:
    return [r for r in requests_of(sim, method="DELETE") if "/channels/" in r.path]


@pytest.mark.parametrize("skew_s", [0, 100], ids=["same_clock", "core_clock_ahead"])
async def test_an_ended_call_is_cut_at_the_next_read_without_the_tone_and_settled_at_the_talk_so_far(
        sim, core, clock, monkeypatch, skew_s):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    # what each refresh pass (the production interval: once a second) found when it started:
    # whether the call had been ended in the store, and whether its legs were being hung up yet
    passes: list[tuple[bool, int]] = []
    ended = asyncio.Event()
    original = Gate.refresh_once

    async def counted(self):
        passes.append((ended.is_set(), len(channel_hangups(sim))))
        await original(self)

    monkeypatch.setattr(Gate, "refresh_once", counted)
    async with running_gate(sim, core, gate_settings(sim, refresh_interval=1.0, warning_seconds=300)) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        await wait_for(lambda: any(getattr(c, "cutoff_at", None) for c in gate.calls.values()), timeout=10)
        s = await core.find_session(sim.asterisk_id, call.channel_id)
        assert s.state == "answered" and s.hold_mode == "chunked"
        # core_clock_ahead: the core's host clock 100 s ahead of the switch's: the new cut-off is
        # still ahead when the gate reads it (a read is at most 50 simulated s later), inside the
        # 300 s warning window, where a call running out of money is warned: an ended one is not.
        clock.advance(skew_s)
        result = await console.end_call(core, OPERATOR, s.session_id, "fraud suspected")
        ended.set()
        out = await call.ended(timeout=10)  # (a window longer than a CI stall; the logic is checked below)
        assert await gate.wait_idle(5)
    if not skew_s:
        after = [hangups for was_ended, hangups in passes if was_ended]
        # the gate's own logic: the first pass after the end reads the new cut-off and the call is
        # cut then, so the pass after it finds the legs hung up: within 2 s of the end
        assert len(after) < 2 or after[1] > 0, passes
    assert out.answered and out.ended_by == "app" and out.heard == []  # no warning tone
    assert {r.query.get("reason") for r in channel_hangups(sim)} == {"normal"}
    settled = await core.find_session(sim.asterisk_id, call.channel_id)
    note = await core.store.run(lambda conn: conn.execute(
        select(call_sessions.c.settle_note).where(call_sessions.c.id == s.session_id)).scalar_one())
    assert settled.state == "settled" and note == "ended by an operator"
    # settled at the talk up to the moment it was ended (the cut-off), never more
    assert settled.talk_ms == result["cutoff_at"] - settled.answered_at
    a = await core.account("acme")
    assert a.held == 0 and a.balance == 10_000_000 - settled.cost
    records = await core.store.run(lambda conn: conn.execute(
        select(audit_log.c.actor, audit_log.c.action, audit_log.c.target, audit_log.c.reason)).all())
    assert [tuple(r) for r in records] == [("ops@example.test", "call.end", s.session_id, "fraud suspected")]


async def test_a_call_the_console_cannot_end_is_refused_and_nothing_changes(sim, core):
    await seed(core)
    # a continue-mode call: after continue the dialplan's Dial L() holds its time limit
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    a = await core.authorize_call(direction="outbound", number=NUMBER, endpoint="alice", pbx_id="agi@pbx1",
                                  channel_id="agi-1", full_hold=True)
    await core.answer(a.session_id)
    before = await core.find_session("agi@pbx1", "agi-1")
    with pytest.raises(InvalidInput, match="time limit is in the dialplan"):
        await console.end_call(core, OPERATOR, a.session_id)
    assert await core.find_session("agi@pbx1", "agi-1") == before
    assert await core.store.run(lambda conn: conn.execute(select(audit_log)).all()) == []
