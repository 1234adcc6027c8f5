"""Bridge mode against the ARI simulator, on SQLite and PostgreSQL: allowed, refused, failed dials,
hang-ups on either side, cut-off with warning, inbound DIDs, emergency calls."""
from __future__ import annotations

import pytest

from ari_app.simulator import Party
from tests.ari.gate_support import (TIME_SCALE, callee_answer_ts, first_hangup_ts, requests_of, running_gate,
                                     wait_for)
from tests.factories import seed

NUMBER = "15145550100"
TRUNK = f"PJSIP/{NUMBER}@trunk"


@pytest.fixture
async def sim(simulator_factory):
    return await simulator_factory(time_scale=TIME_SCALE)


async def session_of(core, sim, call):
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s is not None, "no session recorded for the call"
    return s


async def test_outbound_answered_caller_hangs_up(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, caller_hangup_after=3.0)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.answered and out.sip_final == 200
    s = await session_of(core, sim, call)
    assert s.state == "settled"
    # talk runs from the callee's answer event to the caller's BYE (event timestamps)
    assert s.talk_ms == first_hangup_ts(sim, call.channel_id) - callee_answer_ts(sim, call)
    assert abs(s.talk_ms - 3000) < 500
    assert s.cost == 10_000  # 3 s → the 60 s initial increment at 0.01/min
    paths = [(r.method, r.path.split("/")[-1]) for r in sim.requests]
    assert [p for p in paths if p[1] in ("ring", "create", "dial", "answer", "addChannel")] == [
        ("POST", "ring"), ("POST", "create"), ("POST", "dial"), ("POST", "answer"), ("POST", "addChannel")]
    assert not sim.channels and not sim.bridges
