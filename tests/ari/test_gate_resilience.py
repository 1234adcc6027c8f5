"""Never stuck, never lost: injected faults, a dropped event socket, ApplicationReplaced, and a gate
killed mid-call and started again (re-adoption, settling what ended meanwhile, nothing twice)."""
from __future__ import annotations

import asyncio

import pytest

from ari_app.client import AriClient
from ari_app.gate import Gate
from callgate_fakes.ari_simulator import Party
from billing_core.domain.rating import Rate
from tests.ari.gate_support import (ARI_APP, ARI_PASSWORD, ARI_USER, SLACK_MS, TIME_SCALE, gate_settings, running_gate,
                                     sim_now_ms, wait_for)
from tests.factories import seed

NUMBER = "15145550100"
TRUNK = f"PJSIP/{NUMBER}@trunk"
PER_SECOND = [Rate("1", 60_000, 0, 1, 1, "NANP per second")]  # 0.001 per second


@pytest.fixture
async def sim(simulator_factory):
    return await simulator_factory(time_scale=TIME_SCALE)


def nothing_left(sim) -> bool:
    return not sim.channels and not sim.bridges


# ---------------------------------------------------------------------------------------- faults

def answered_time_ms(sim, channel_id: str) -> int:
    """The last ANSWEREDTIME_MS Asterisk set on the channel (what the dialplan's Dial measured)."""
    return [int(e["value"]) for e in sim.events_of(channel_id)
            if e["type"] == "ChannelVarset" and e["variable"] == "ANSWEREDTIME_MS" and e["value"]][-1]

async def test_core_that_raises_hangs_the_caller_up(sim, core):
    await seed(core)

    async def broken(**kw):
        raise RuntimeError("core bug")

    core.authorize_call = broken
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
        ok = await sim.place_call(endpoint="alice", exten=NUMBER)  # the next call is handled too
        await ok.ended(timeout=10)
    assert (out.sip_final, out.answered) == (503, False)
    assert gate.stats.failures == 2  # both calls hit the broken core, both ended cleanly
    assert nothing_left(sim)


@pytest.mark.parametrize("method, path, stage", [
    ("POST", r"^/channels/create$", "create"),
    ("POST", r"^/channels/[^/]+/dial$", "dial"),
    ("POST", r"^/bridges$", "bridge"),
    ("POST", r"^/channels/[^/]+/answer$", "answer"),
    ("POST", r"^/bridges/[^/]+/addChannel$", "addChannel"),
])
async def test_rest_fault_at_any_step_ends_the_call_cleanly(sim, core, method, path, stage):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    sim.inject_rest_fault(method, path, 500, "Internal Server Error")
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, caller_hangup_after=30)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
        await wait_for(lambda: nothing_left(sim), 5)
    assert out.ended_by == "app"
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled" and s.cost == 0  # nobody talked: nothing charged
    a = await core.account("acme")
    assert (a.held, a.live_calls, a.balance) == (0, 0, 10_000_000)


async def test_core_answer_failure_hangs_up_both_legs(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    real_answer = core.answer

    async def broken_answer(*a, **kw):
        raise ConnectionError("database went away")

    core.answer = broken_answer
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, caller_hangup_after=30)
        await call.ended(timeout=10)
        assert await gate.wait_idle(5)
        await wait_for(lambda: nothing_left(sim), 5)
    core.answer = real_answer
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled"


# ------------------------------------------------------------------------ websocket drop, replaced
async def test_hangup_during_websocket_drop_is_found_by_the_resync(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        await wait_for(lambda: any(getattr(c, "cutoff_at", None) for c in gate.calls.values()), 5)
        resyncs = gate.stats.resyncs
        sim.refuse_websockets(True)
        sim.drop_websockets()
        await wait_for(lambda: not gate.client.connected, 5)
        await sim.hangup_channel(call.channel_id)  # the caller's BYE: its events are lost
        await call.ended(timeout=5)
        assert sim.events_dropped
        sim.refuse_websockets(False)
        await wait_for(lambda: gate.stats.resyncs > resyncs, 5)
        assert await gate.wait_idle(5)
        await wait_for(lambda: nothing_left(sim), 5)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled" and s.talk_ms > 0
    assert s.talk_ms <= s.granted_seconds * 1000


async def test_call_survives_a_websocket_drop(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, caller_hangup_after=6.0)
        await wait_for(lambda: any(getattr(c, "cutoff_at", None) for c in gate.calls.values()), 5)
        sim.drop_websockets()
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert gate.client.reconnects >= 1 and gate.stats.resyncs >= 2
    assert out.answered and out.ended_by == "caller"
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled" and abs(s.talk_ms - 6_000) <= SLACK_MS
    assert nothing_left(sim)


async def test_application_replaced_stops_the_gate(sim, core):
    await seed(core)
    async with running_gate(sim, core) as gate:
        run_task = next(t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "Gate.run")
        other = AriClient(sim.url, ARI_USER, ARI_PASSWORD, ARI_APP)
        other_task = asyncio.create_task(other.run())
        try:
            await asyncio.wait_for(run_task, 5)  # the gate's run() returns: it stopped serving
            assert gate.replaced
        finally:
            await other.close()
            other_task.cancel()


# ----------------------------------------------------------------------------------- restarts
async def start_gate(sim, core, settings=None):
    client = AriClient(sim.url, ARI_USER, ARI_PASSWORD, ARI_APP, backoff_initial=0.02, backoff_max=0.1)
    gate = Gate(client, core, settings or gate_settings(sim), now_ms=sim_now_ms(sim))
    task = asyncio.create_task(gate.run())
    assert await client.wait_connected(5)
    return gate, task


async def kill(gate: Gate, task: asyncio.Task) -> None:
    """As kill -9 would: nothing more is sent to Asterisk nor written to the store."""
    for call in list(gate.calls.values()):
        call.task.cancel()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await gate.client.close()
    # what the dead gate had already handed to the database ends now, as it would have at a real
    # kill -9 (a PostgreSQL heartbeat in flight still committed after the cancel and moved last_seen_at)
    await gate.core.store.wait_idle()


async def stop(gate: Gate, task: asyncio.Task) -> None:
    await gate.stop()
    await asyncio.wait_for(task, 5)
    await gate.client.close()


async def test_a_call_that_ended_while_no_gate_ran_says_how_it_was_billed(sim, core):
    """Issue 15: the caller left while no gate ran; nobody saw the end. The restart bills up to
    itself, capped at the grant, records that basis (and when the gate last saw the call alive)
    so an operator can find and refund it, and hangs up the carrier leg still in our bridge at
    once instead of after the orphan sweep's grace.
    The FALLBACK: an admin's own dialplan without asterisk-conf's [callgate-ended] hangup handler,
    so Asterisk recorded no end (the carrier leg the gate created has it, but stays up until the
    restart, which reads before hanging it up)."""
    await seed(core, balance="10.00", deck=PER_SECOND)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    gate, task = await start_gate(sim, core)
    call = await sim.place_call(endpoint="alice", exten=NUMBER, hangup_handler=None)
    await wait_for(lambda: any(getattr(c, "cutoff_at", None) for c in gate.calls.values()), 5)
    await asyncio.sleep(0.2)  # a heartbeat or two
    await kill(gate, task)
    await sim.hangup_channel(call.channel_id)  # the caller leaves; the carrier leg stays in the bridge
    await call.ended(timeout=5)
    carrier = [cid for cid in sim.channels]
    assert carrier, "the carrier leg should still be up"
    before = await core.find_session(sim.asterisk_id, call.channel_id)
    await asyncio.sleep(2 * TIME_SCALE)

    # an orphan sweep 30 s away: only the restart's own clean-up can end the carrier leg in time
    gate2, task2 = await start_gate(sim, core, gate_settings(sim, orphan_grace=30.0))
    try:
        assert gate2.stats.settled_on_restart == 1
        await wait_for(lambda: not sim.channels and not sim.bridges, 2.0)  # real seconds, far below 30
    finally:
        await stop(gate2, task2)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    elapsed = s.settled_at - before.answered_at
    assert s.state == "settled" and 0 < s.talk_ms <= min(elapsed, before.granted_seconds * 1000)
    assert s.billing_basis == "bounded_at_restart"
    rows = await core.admin.calls()  # what `callgate calls --json` prints
    assert rows[0]["billing_basis"] == "bounded_at_restart"
    assert f"last seen alive at {before.last_seen_at}" in rows[0]["settle_note"]


async def test_restart_readopts_a_bridged_call_and_cuts_it_at_the_stored_cutoff(sim, core):
    # 40 s of talk, the tone 15 s before the cut-off: the kill (~5 s in) and the re-adoption come well
    # before the tone, and the tone's window (300 ms real) is longer than a CI stall
    await seed(core, balance="0.04", deck=PER_SECOND)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    settings = gate_settings(sim, warning_seconds=15)
    gate, task = await start_gate(sim, core, settings)
    call = await sim.place_call(endpoint="alice", exten=NUMBER)
    await wait_for(lambda: any(getattr(c, "cutoff_at", None) for c in gate.calls.values()), 5)
    await asyncio.sleep(5 * TIME_SCALE)
    await kill(gate, task)
    before = await core.find_session(sim.asterisk_id, call.channel_id)
    assert before.state == "answered"

    gate2, task2 = await start_gate(sim, core, settings)
    try:
        assert gate2.stats.adopted == 1
        out = await call.ended(timeout=10)
        assert await gate2.wait_idle(5)
    finally:
        await stop(gate2, task2)
    assert out.ended_by == "app" and out.heard == ["sound:beep"]
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert (s.state, s.talk_ms, s.cost) == ("settled", 40_000, 40_000)
    assert (await core.account("acme")).balance == 0  # charged once
    assert nothing_left(sim)


async def test_restart_settles_a_call_that_ended_while_the_gate_was_down(sim, core):
    await seed(core, balance="0.05", deck=PER_SECOND)  # 50 s, granted 50 s? no: one chunk (60 s cap 50)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    gate, task = await start_gate(sim, core)
    call = await sim.place_call(endpoint="alice", exten=NUMBER)
    await wait_for(lambda: any(getattr(c, "cutoff_at", None) for c in gate.calls.values()), 5)
    await kill(gate, task)
    await asyncio.sleep(3 * TIME_SCALE)
    await sim.hangup_channel(call.channel_id)
    await call.ended(timeout=5)
    for cid in list(sim.channels):  # the orphaned callee leg, as Asterisk would after the BYE
        await sim.hangup_channel(cid)
    before = await core.find_session(sim.asterisk_id, call.channel_id)
    assert before.state == "answered"
    await asyncio.sleep(2 * TIME_SCALE)

    gate2, task2 = await start_gate(sim, core)
    try:
        assert gate2.stats.settled_on_restart == 1
    finally:
        await stop(gate2, task2)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    elapsed = int(sim.now() * 1000) - before.answered_at
    assert s.state == "settled" and 0 < s.talk_ms <= min(elapsed, before.granted_seconds * 1000)
    a = await core.account("acme")
    assert a.held == 0 and a.balance == 50_000 - s.cost

    # a third start finds nothing to do: nothing is charged twice
    gate3, task3 = await start_gate(sim, core)
    try:
        assert gate3.stats.settled_on_restart == 0 and gate3.stats.adopted == 0
    finally:
        await stop(gate3, task3)
    assert (await core.account("acme")).balance == 50_000 - s.cost


async def test_restart_ends_a_call_that_was_still_ringing(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=None, no_answer=True))
    gate, task = await start_gate(sim, core, gate_settings(sim, dial_timeout=600))
    call = await sim.place_call(endpoint="alice", exten=NUMBER)
    await wait_for(lambda: any(c.bridge_id for c in gate.calls.values()), 5)
    await kill(gate, task)
    gate2, task2 = await start_gate(sim, core)
    try:
        out = await call.ended(timeout=5)
        await wait_for(lambda: nothing_left(sim), 5)  # the orphaned callee is swept too
    finally:
        await stop(gate2, task2)
    assert out.sip_final == 503 and not out.answered
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert (s.state, s.cost) == ("settled", 0)
    assert (await core.account("acme")).held == 0


async def test_restart_follows_a_continued_call(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    gate, task = await start_gate(sim, core)
    call = await sim.place_call(endpoint="alice", exten=NUMBER, context="callgate-outbound-continue",
                                app_args=["outbound", "continue"])
    await wait_for(lambda: any(getattr(c, "answer_stored", False) for c in gate.calls.values()), 5)
    await kill(gate, task)
    gate2, task2 = await start_gate(sim, core)
    try:
        assert gate2.stats.adopted == 1
        await sim.hangup_channel(call.channel_id)
        await call.ended(timeout=10)
        assert await gate2.wait_idle(5)
    finally:
        await stop(gate2, task2)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    answered_time = answered_time_ms(sim, call.channel_id)
    assert s.state == "settled" and s.talk_ms == answered_time > 0


async def test_restart_settles_a_handler_reported_continue_call_exactly(sim, core):
    """asterisk-conf's route: no subscription, the answer is not stored while the call runs. After a
    restart mid-call the new gate follows the call and settles Dial's talk time that the hangup
    handler reports (the same when the report reaches a gate that has no call object for it)."""
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    gate, task = await start_gate(sim, core)
    calls = [await sim.place_call(endpoint="alice", exten=NUMBER, context="callgate-outbound-continue",
                                  app_args=["outbound", "continue", "hangup-handler"]) for _ in range(2)]
    await wait_for(lambda: all(c.continued is not None for c in calls), 5)
    await wait_for(lambda: all((c.channel or {}).get("state") == "Up" for c in calls), 5)
    await kill(gate, task)
    gate2, task2 = await start_gate(sim, core)
    try:
        assert gate2.stats.adopted == 2
        # the second call's object is gone (as if its report raced the adoption): the report alone settles it
        gate2.call_finished(gate2.calls[calls[1].channel_id])
        gate2._finished.pop(calls[1].channel_id)
        # at least 2 simulated seconds of talk: a talk under 501 ms bills 0 s (rating.billable_seconds),
        # and a quick restart once left 377 ms, so "cost > 0" below said nothing about the gate
        await asyncio.sleep(2 * TIME_SCALE)
        for c in calls:
            await sim.hangup_channel(c.channel_id)
            await c.ended(timeout=10)
        assert await gate2.wait_idle(5)
        await wait_for(lambda: gate2.stats.settled_on_restart == 1, 5)
    finally:
        await stop(gate2, task2)
    for c in calls:
        s = await core.find_session(sim.asterisk_id, c.channel_id)
        assert s.state == "settled" and s.talk_ms == int(c.variables["ANSWEREDTIME_MS"]) > 0 and s.cost > 0
    assert (await core.account("acme")).held == 0

async def test_a_handler_reported_continue_call_that_ended_while_no_gate_ran_is_billed_to_the_bound(sim, core):
    """asterisk-conf's continue route stores no answer while the call runs: the dialplan's settle
    handler reports it at the end. When that end came while no gate ran, Stasis(callgate,settle,…)
    failed and nobody heard it; whether and when the call was answered is unknown. The restart then
    bills the bound of every missed end — up to itself, here from the authorize, capped at the grant
    — and records it as ``bounded_at_restart`` for the operator, never a silent 0 (carrier minutes
    nobody pays)."""
    await seed(core, balance="10.00", deck=PER_SECOND)
    sim.script_destination(TRUNK, Party(answer_after=0.5))
    gate, task = await start_gate(sim, core)
    call = await sim.place_call(endpoint="alice", exten=NUMBER, context="callgate-outbound-continue",
                                app_args=["outbound", "continue", "hangup-handler"])
    await wait_for(lambda: call.continued is not None, 5)
    await wait_for(lambda: (call.channel or {}).get("state") == "Up", 5)
    await kill(gate, task)
    await sim.hangup_channel(call.channel_id)
    await call.ended(timeout=10)
    before = await core.find_session(sim.asterisk_id, call.channel_id)
    assert before.state == "authorized" and before.answered_at is None  # the answer was never stored
    gate2, task2 = await start_gate(sim, core)
    try:
        assert gate2.stats.settled_on_restart == 1
    finally:
        await stop(gate2, task2)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled" and s.billing_basis == "bounded_at_restart"
    assert int(call.variables["ANSWEREDTIME_MS"]) <= s.talk_ms <= min(s.settled_at - s.created_at,
                                                                       s.granted_seconds * 1000)
    assert s.cost > 0
    rows = await core.admin.calls()  # what `callgate calls --json` prints
    assert rows[0]["billing_basis"] == "bounded_at_restart" and "answer unknown" in rows[0]["settle_note"]
    assert (await core.account("acme")).held == 0


async def test_stopped_gate_leaves_live_calls_to_the_next_one(sim, core):
    """A graceful stop neither hangs up nor settles calls in progress; the next gate takes them."""
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    gate, task = await start_gate(sim, core)
    call = await sim.place_call(endpoint="alice", exten=NUMBER)
    await wait_for(lambda: any(getattr(c, "cutoff_at", None) for c in gate.calls.values()), 5)
    await stop(gate, task)
    assert not gate.calls and call.channel_id in sim.channels and not call.done
    assert (await core.find_session(sim.asterisk_id, call.channel_id)).state == "answered"
    gate2, task2 = await start_gate(sim, core)
    try:
        assert gate2.stats.adopted == 1
        await sim.hangup_channel(call.channel_id)
        await call.ended(timeout=5)
        assert await gate2.wait_idle(5)
    finally:
        await stop(gate2, task2)
    assert (await core.find_session(sim.asterisk_id, call.channel_id)).state == "settled"
    assert nothing_left(sim)


async def test_settle_is_retried_while_the_store_is_briefly_down(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    real_settle = core.settle
    failures = []

    async def flaky_settle(session_id, talk_ms, **kw):
        if len(failures) < 2:
            failures.append(talk_ms)
            raise ConnectionError("database restarting")
        return await real_settle(session_id, talk_ms, **kw)

    core.settle = flaky_settle
    async with running_gate(sim, core, gate_settings(sim, settle_retry_delays=(0.05, 0.05, 0.05))) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, caller_hangup_after=3.0)
        await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled" and failures == [s.talk_ms, s.talk_ms] and s.talk_ms > 0
    assert gate.stats.failures == 0


async def test_draining_gate_refuses_new_calls_and_keeps_live_ones(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        live = await sim.place_call(endpoint="alice", exten=NUMBER, caller_hangup_after=5.0)
        await wait_for(lambda: any(getattr(c, "cutoff_at", None) for c in gate.calls.values()), 5)
        gate.draining = True
        new = await sim.place_call(endpoint="alice", exten=NUMBER)
        new_continue = await sim.place_call(endpoint="alice", exten=NUMBER, context="callgate-outbound-continue",
                                            app_args=["outbound", "continue"])
        out_new, out_cont, out_live = (await new.ended(timeout=5), await new_continue.ended(timeout=5),
                                       await live.ended(timeout=10))
        assert await gate.wait_idle(5)
    assert (out_new.sip_final, out_new.q850_cause) == (503, 34)
    # continue mode: DENY with reason shutting_down, which [callgate-deny] turns into 503 as well
    assert out_cont.sip_final == 503 and new_continue.continued["variables"]["CALLGATE_STATUS"] == "DENY"
    assert out_live.answered and out_live.ended_by == "caller"
    assert await core.find_session(sim.asterisk_id, new.channel_id) is None
    assert (await core.find_session(sim.asterisk_id, live.channel_id)).state == "settled"


async def test_two_pbxs_share_one_store_without_touching_each_other(simulator_factory, core):
    """One gate per Asterisk on one database: sessions are keyed by Asterisk id + channel id (the two
    simulators number their channels alike), and a restart re-adopts only its own PBX."""
    sim_a = await simulator_factory(time_scale=TIME_SCALE, asterisk_id="02:fc:00:00:00:0a")
    sim_b = await simulator_factory(time_scale=TIME_SCALE, asterisk_id="02:fc:00:00:00:0b")
    await seed(core)
    for sim in (sim_a, sim_b):
        sim.script_destination(TRUNK, Party(answer_after=1.0))
    gate_a, task_a = await start_gate(sim_a, core)
    gate_b, task_b = await start_gate(sim_b, core)
    try:
        call_a = await sim_a.place_call(endpoint="alice", exten=NUMBER)
        call_b = await sim_b.place_call(endpoint="alice", exten=NUMBER)
        for gate in (gate_a, gate_b):
            await wait_for(lambda g=gate: any(getattr(c, "cutoff_at", None) for c in g.calls.values()), 5)
        sa = await core.find_session(sim_a.asterisk_id, call_a.channel_id)
        sb = await core.find_session(sim_b.asterisk_id, call_b.channel_id)
        assert sa.session_id != sb.session_id and (sa.state, sb.state) == ("answered", "answered")
        assert (await core.account("acme")).live_calls == 2
        await kill(gate_a, task_a)
        gate_a, task_a = await start_gate(sim_a, core)
        assert gate_a.stats.adopted == 1 and gate_a.stats.settled_on_restart == 0
        await sim_a.hangup_channel(call_a.channel_id)
        await sim_b.hangup_channel(call_b.channel_id)
        await call_a.ended(timeout=5), await call_b.ended(timeout=5)
        assert await gate_a.wait_idle(5) and await gate_b.wait_idle(5)
    finally:
        await stop(gate_a, task_a)
        await stop(gate_b, task_b)
    sa = await core.find_session(sim_a.asterisk_id, call_a.channel_id)
    sb = await core.find_session(sim_b.asterisk_id, call_b.channel_id)
    assert (sa.state, sb.state) == ("settled", "settled")
    a = await core.account("acme")
    assert (a.live_calls, a.held) == (0, 0)


async def test_restart_during_ringing_of_a_continued_call_still_bills_its_talk(sim, core):
    """The answer happens while no gate listens: Dial's ANSWEREDTIME_MS at the end gives the talk."""
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=3.0))
    gate, task = await start_gate(sim, core)
    call = await sim.place_call(endpoint="alice", exten=NUMBER, context="callgate-outbound-continue",
                                app_args=["outbound", "continue"])
    await wait_for(lambda: call.continued is not None, 5)
    await kill(gate, task)
    await wait_for(lambda: sim.channels.get(call.channel_id, {}).get("state") == "Up", 5)  # answered meanwhile
    gate2, task2 = await start_gate(sim, core)
    try:
        assert gate2.stats.adopted == 1
        await asyncio.sleep(2 * TIME_SCALE)
        await sim.hangup_channel(call.channel_id)
        await call.ended(timeout=10)
        assert await gate2.wait_idle(5)
    finally:
        await stop(gate2, task2)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    answered_time = answered_time_ms(sim, call.channel_id)
    assert s.state == "settled" and s.talk_ms == answered_time > 0 and s.cost > 0


async def test_answer_lost_in_a_websocket_drop_is_found_by_the_resync(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=3.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        await wait_for(lambda: any(getattr(c, "bridge_id", None) for c in gate.calls.values()), 5)
        sim.refuse_websockets(True)
        drop_at = int(sim.now() * 1000)
        sim.drop_websockets()
        await wait_for(lambda: call.callee_ids and sim.channels.get(call.callee_ids[0], {}).get("state") == "Up", 5)
        answered_at = int(sim.now() * 1000)  # the callee really answered (by now)
        await asyncio.sleep(1.0 * TIME_SCALE)  # the gap goes on a (simulated) second after the answer
        sim.refuse_websockets(False)  # the callee's answer (and its Dial ANSWER) were lost
        await wait_for(lambda: any(getattr(c, "cutoff_at", None) for c in gate.calls.values()), 5)
        await asyncio.sleep(2 * TIME_SCALE)
        await sim.hangup_channel(call.channel_id)
        out = await call.ended(timeout=5)
        assert await gate.wait_idle(5)
    assert out.answered  # the caller was answered and bridged after the resync
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled" and s.talk_ms > 0
    # The lost answer is stamped at the gap's start (the cut-off is never late), not at the resync
    # (which would give the call the whole gap for free).
    assert drop_at <= s.answered_at <= answered_at
    assert nothing_left(sim)
