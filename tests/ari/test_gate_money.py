"""The cut-off follows the money: the gate re-reads it from the store, extends as a fallback, keeps
heartbeats going, and fails closed when billing cannot answer."""
from __future__ import annotations

import asyncio

import pytest

from callgate_fakes.ari_simulator import Party
from billing_core.api import CoreSettings
from billing_core.domain.rating import Rate
from tests.ari.gate_support import SLACK_MS, TIME_SCALE, gate_settings, running_gate, slack_ms, wait_for
from tests.factories import seed

NUMBER = "15145550100"
TRUNK = f"PJSIP/{NUMBER}@trunk"
PER_SECOND = [Rate("1", 60_000, 0, 1, 1, "NANP per second")]  # 0.001 per second


@pytest.fixture
def core_settings() -> CoreSettings:
    return CoreSettings(chunk_seconds=10)  # holds of 10 s so extensions happen within a short call


@pytest.fixture
async def sim(simulator_factory):
    return await simulator_factory(time_scale=TIME_SCALE)


async def test_gate_extends_holds_when_alone_and_cuts_when_money_ends(simulator_factory, core):
    # Each extension and the final warning happen in the window between "warning time" and the
    # cut-off. A stall longer than that window (CI saw one on 2 shared cores with 100 ms windows)
    # rightly cuts without a warning, so this test gives the window 400 ms of real time: 8 s of
    # warning at 1 simulated s = 50 ms.
    sim = await simulator_factory(time_scale=0.05)
    slack = slack_ms(sim.time_scale)
    await seed(core, balance="0.05", deck=PER_SECOND)  # 50 s of talk, granted 10 s at a time
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    async with running_gate(sim, core, gate_settings(sim, warning_seconds=8)) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        out = await call.ended(timeout=15)
        assert await gate.wait_idle(5)
    assert gate.stats.extended >= 4
    assert out.ended_by == "app" and abs(out.talk_ms - 50_000) <= slack
    assert out.heard == ["sound:beep"]  # one warning: before the final cut-off only
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert (s.state, s.granted_seconds, s.talk_ms, s.cost) == ("settled", 50, 50_000, 50_000)
    a = await core.account("acme")
    assert (a.balance, a.held) == (0, 0)


async def test_no_fallback_extension_means_cut_at_the_first_chunk(sim, core):
    await seed(core, balance="0.05", deck=PER_SECOND)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    async with running_gate(sim, core, gate_settings(sim, extend_below_seconds=0, warning_seconds=0)) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        out = await call.ended(timeout=15)
        assert await gate.wait_idle(5)
    assert out.ended_by == "app" and abs(out.talk_ms - 10_000) <= SLACK_MS and out.heard == []
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert (s.talk_ms, s.cost) == (10_000, 10_000)


async def test_cutoff_moved_later_by_the_sidecar_is_followed(simulator_factory, core):
    # the extension must land inside the first chunk (10 s): 500 ms real here, longer than a CI stall
    sim = await simulator_factory(time_scale=0.05)
    slack = slack_ms(sim.time_scale)
    await seed(core, balance="0.05", deck=PER_SECOND)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    settings = gate_settings(sim, extend_below_seconds=0, warning_seconds=0)
    async with running_gate(sim, core, settings) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        await wait_for(lambda: any(c.cutoff_at for c in gate.calls.values()), 5)
        s = await core.find_session(sim.asterisk_id, call.channel_id)
        s = await core.extend(s.session_id)  # what the sidecar does: cut-off 10 s later
        assert s.granted_seconds == 20
        out = await call.ended(timeout=15)
        assert await gate.wait_idle(5)
    assert abs(out.talk_ms - 20_000) <= slack
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert (s.talk_ms, s.cost) == (20_000, 20_000)


async def test_cutoff_moved_earlier_is_followed_within_a_second(simulator_factory, core):
    # slower simulated time here (1 s = 200 ms) so "within a second" is observable on a loaded machine
    sim = await simulator_factory(time_scale=0.2)
    slack = slack_ms(sim.time_scale)
    await seed(core, balance="0.05", deck=PER_SECOND, credit_limit="0")
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    settings = gate_settings(sim, extend_below_seconds=0, warning_seconds=0)
    async with running_gate(sim, core, settings) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        await wait_for(lambda: any(c.cutoff_at for c in gate.calls.values()), 5)
        s = await core.find_session(sim.asterisk_id, call.channel_id)
        assert s.granted_seconds == 10
        # the money went elsewhere (an operator debit): only 4 s of this call are still paid for
        await core.credit("acme", -46_000, "operator debit", kind="debit", idempotency_key="test-debit")
        # (the old cut-off was 10 s after the answer: the call must not last that long)
        moved = await core.extend(s.session_id)
        assert moved.cutoff_at < s.cutoff_at
        out = await call.ended(timeout=15)
        assert await gate.wait_idle(5)
    expected = moved.cutoff_at - moved.answered_at
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.talk_ms == expected and out.talk_ms <= expected + 1000 + slack  # not the old 10 s cut-off


async def test_heartbeats_mark_live_calls_seen(sim, core, clock):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        await wait_for(lambda: any(getattr(c, "cutoff_at", None) for c in gate.calls.values()), 5)
        target = int(sim.now() * 1000) + 30_000
        clock.set(target)  # the core's clock: heartbeats are stamped with it
        seen = []
        for _ in range(100):
            s = await core.find_session(sim.asterisk_id, call.channel_id)
            seen.append(s.last_seen_at)
            if seen[-1] >= target:
                break
            await asyncio.sleep(0.02)
        assert seen[-1] >= target
        await sim.hangup_channel(call.channel_id)
        await call.ended(timeout=5)
        assert await gate.wait_idle(5)


async def test_billing_unavailable_refuses_with_503_but_emergency_goes_through(sim, core):
    await seed(core)
    sim.script_destination("PJSIP/911@trunk", Party(answer_after=1.0))

    async def store_down(*a, **kw):
        raise ConnectionError("database is down")

    # the real core with its storage failing (both drivers): authorize fails closed
    core.store.run = store_down
    core.store.fast_path = None
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        out = await call.ended(timeout=10)
        emergency = await sim.place_call(endpoint="alice", exten="911", caller_hangup_after=2.0)
        eout = await emergency.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert (out.sip_final, out.q850_cause) == (503, 34) and out.heard == ["sound:all-circuits-busy-now"]
    assert eout.answered and eout.ended_by == "caller"  # the emergency call ran its course
