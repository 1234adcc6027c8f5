"""Issue 15: a call that ends while no gate runs is billed on the end Asterisk recorded (the
[callgate-ended] hangup handler of asterisk-conf, AstDB ``callgate_ended``), not up to the restart.
The fallback (no handler in the dialplan) is tests/ari/test_gate_resilience.py
::test_a_call_that_ended_while_no_gate_ran_says_how_it_was_billed."""
from __future__ import annotations

import asyncio

import pytest

from ari_app.recorded_ends import ENDED_FAMILY
from callgate_fakes.ari_simulator import Party
from billing_core.domain.rating import Rate
from tests.ari.gate_support import gate_settings, requests_of, wait_for
from tests.ari.test_gate_resilience import kill, start_gate, stop
from tests.factories import seed

NUMBER = "15145550100"
TRUNK = f"PJSIP/{NUMBER}@trunk"
PER_SECOND = [Rate("1", 60_000, 0, 1, 1, "NANP per second")]  # 0.001 per second
#: 1 simulated second = 100 ms real: the 13 s between the hangup (5 s) and the restart (18 s) are
#: 1.3 s real, far more than a CI stall.
SCALE = 0.1


@pytest.fixture
async def sim(simulator_factory):
    return await simulator_factory(time_scale=SCALE)


def recorded(sim, caller_id: str) -> list[int]:
    """The ends (epoch ms) [callgate-ended] recorded for this call."""
    prefix = f"{ENDED_FAMILY}/{caller_id}/"
    return [int(key[len(prefix):]) for key in sim.astdb if key.startswith(prefix)]


async def answered_call(sim, core, **place):
    gate, task = await start_gate(sim, core, gate_settings(sim, orphan_grace=30.0))
    call = await sim.place_call(endpoint="alice", exten=NUMBER, **place)
    await wait_for(lambda: any(getattr(c, "cutoff_at", None) for c in gate.calls.values()), 5)
    return gate, task, call


async def test_a_call_that_ended_while_no_gate_ran_is_billed_to_its_recorded_end(sim, core):
    """The issue's case: gate killed mid-call, the caller hangs up 5 s into the call, the gate
    restarts at 18 s: billed 5 s (not 18), basis asterisk_hangup, the carrier leg hung up at the
    restart, the entry deleted, the money invariants hold."""
    await seed(core, balance="10.00", deck=PER_SECOND)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    gate, task, call = await answered_call(sim, core)
    before = await core.find_session(sim.asterisk_id, call.channel_id)
    await kill(gate, task)
    await asyncio.sleep(max(0.0, before.answered_at / 1000 + 5 - sim.now()) * SCALE)
    await sim.hangup_channel(call.channel_id)  # the caller leaves; the carrier leg stays in the bridge
    await call.ended(timeout=5)
    [end_ms] = recorded(sim, call.channel_id)
    assert sim.channels, "the carrier leg should still be up"
    await asyncio.sleep(max(0.0, before.answered_at / 1000 + 18 - sim.now()) * SCALE)

    gate2, task2 = await start_gate(sim, core, gate_settings(sim, orphan_grace=30.0))
    try:
        assert gate2.stats.settled_on_restart == 1
        await wait_for(lambda: not sim.channels and not sim.bridges, 2.0)  # not the orphan sweep's 30 s
    finally:
        await stop(gate2, task2)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled" and s.billing_basis == "asterisk_hangup"
    assert s.talk_ms == end_ms - before.answered_at
    assert 5_000 <= s.talk_ms < 18_000 - 5_000  # the 5 s talked, not the time up to the restart
    assert s.settled_at - before.answered_at >= 18_000
    assert 5_000 <= s.cost < 13_000  # 0.001 per second: the 5 s, not 18
    assert f"Asterisk recorded its end at {end_ms}" in (await core.admin.calls())[0]["settle_note"]
    assert recorded(sim, call.channel_id) == []  # read, settled, deleted
    assert await core.admin.verify() == []


async def test_the_carrier_leg_hanging_up_first_is_the_end(sim, core):
    """Bridge mode, the far end hangs up while no gate runs: the carrier leg's handler (pushed by
    the gate in POST /channels/create's variables) records the end under the caller's id; the
    caller, left alone in the bridge until the restart, is not billed for that wait."""
    await seed(core, balance="10.00", deck=PER_SECOND)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    gate, task, call = await answered_call(sim, core)
    create = requests_of(sim, contains="/channels/create")[0]
    assert create.body == {"variables": {"CHANNEL(hangup_handler_push)": "callgate-ended,s,1",
                                         "CALLGATE_CALL": call.channel_id}}
    before = await core.find_session(sim.asterisk_id, call.channel_id)
    await kill(gate, task)
    await asyncio.sleep(3 * SCALE)
    [callee] = call.callee_ids
    await sim.hangup_channel(callee)
    await wait_for(lambda: callee not in sim.channels, 2.0)
    [end_ms] = recorded(sim, call.channel_id)
    await asyncio.sleep(10 * SCALE)

    gate2, task2 = await start_gate(sim, core)
    try:
        await call.ended(timeout=5)  # the restart ends the caller left in the bridge
    finally:
        await stop(gate2, task2)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert (s.state, s.billing_basis) == ("settled", "asterisk_hangup")
    assert s.talk_ms == end_ms - before.answered_at
    assert await core.admin.verify() == []


async def test_continue_mode_keeps_the_bounded_fallback(sim, core):
    """Continue mode records no end: once the gate set CALLGATE_* over ARI, Asterisk 22 blocks
    DB() in that channel's dialplan (so asterisk-conf does not push the handler there; the
    simulator plays both). Such a call is billed up to the restart, capped, and says so."""
    await seed(core, balance="10.00", deck=PER_SECOND)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    gate, task = await start_gate(sim, core)
    call = await sim.place_call(endpoint="alice", exten=NUMBER, app_args=["outbound", "continue"],
                                hangup_handler="callgate-ended,s,1")  # as if a dialplan pushed it anyway
    await wait_for(lambda: any(getattr(c, "answer_stored", False) for c in gate.calls.values()), 5)
    await kill(gate, task)
    await asyncio.sleep(3 * SCALE)
    await sim.hangup_channel(call.channel_id)
    await call.ended(timeout=5)
    assert recorded(sim, call.channel_id) == []
    assert sim.function_errors == ["Dangerous function DB write blocked"]
    gate2, task2 = await start_gate(sim, core)
    await stop(gate2, task2)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert (s.state, s.billing_basis) == ("settled", "bounded_at_restart")
    assert await core.admin.verify() == []


async def test_recorded_ends_are_cleared_while_the_gate_runs(sim, core):
    """Every ARI call leaves an entry, also while the gate runs (it saw those ends itself): the
    gate clears the family once its reconciliation is an interval old, never before."""
    await seed(core, balance="10.00", deck=PER_SECOND)
    sim.script_destination(TRUNK, Party(answer_after=0.5))
    gate, task = await start_gate(sim, core, gate_settings(sim, ended_clear_interval=0.6))
    try:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, caller_hangup_after=2.0)
        await call.ended(timeout=5)
        assert len(recorded(sim, call.channel_id)) == 1
        await wait_for(lambda: not sim.astdb, 3.0)
        clears = requests_of(sim, method="POST", contains="/channels")
        assert {r.query["endpoint"] for r in clears if r.path == "/ari/channels"} == {"Local/clear@callgate-ended"}
        assert await gate.wait_idle(2)
    finally:
        await stop(gate, task)


async def test_a_hangup_lost_in_a_websocket_gap_is_billed_to_its_recorded_end(sim, core):
    """The events socket is down for 10 s; the caller hangs up 2 s into it: the resync takes the
    end Asterisk recorded, not the gap's end (the earlier behaviour, still the fallback)."""
    await seed(core, balance="10.00", deck=PER_SECOND)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    gate, task, call = await answered_call(sim, core)
    try:
        before = await core.find_session(sim.asterisk_id, call.channel_id)
        sim.refuse_websockets(True)
        sim.drop_websockets()
        await wait_for(lambda: not gate.client.connected, 5)
        await asyncio.sleep(2 * SCALE)
        await sim.hangup_channel(call.channel_id)  # its events are lost
        await call.ended(timeout=5)
        [end_ms] = recorded(sim, call.channel_id)
        await asyncio.sleep(10 * SCALE)
        resyncs = gate.stats.resyncs
        sim.refuse_websockets(False)
        await wait_for(lambda: gate.stats.resyncs > resyncs, 5)
        assert await gate.wait_idle(5)
        await wait_for(lambda: not sim.channels and not sim.bridges, 5)
    finally:
        await stop(gate, task)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled" and s.talk_ms == end_ms - before.answered_at
    # left for the periodic clean-up; it kept the callee's later hangup from recording its own end
    assert recorded(sim, call.channel_id) == [end_ms]
    assert await core.admin.verify() == []
