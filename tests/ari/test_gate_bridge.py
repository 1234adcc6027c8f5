"""Bridge mode against the ARI simulator, on SQLite and PostgreSQL: allowed, refused, failed dials,
hang-ups on either side, cut-off with warning, inbound DIDs, emergency calls."""
from __future__ import annotations

import pytest

from callgate_fakes.ari_simulator import Party
from billing_core.domain.rating import Rate
from tests.ari.gate_support import (SLACK_MS, TIME_SCALE, callee_answer_ts, first_hangup_ts, gate_settings, requests_of,
                                     running_gate, ts_ms, wait_for)
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
    assert 3000 <= s.talk_ms <= 3000 + SLACK_MS  # + the gate's answer latency
    assert s.cost == 10_000  # 3 s → the 60 s initial increment at 0.01/min
    paths = [(r.method, r.path.split("/")[-1]) for r in sim.requests]
    assert [p for p in paths if p[1] in ("ring", "create", "dial", "answer", "addChannel")] == [
        ("POST", "ring"), ("POST", "create"), ("POST", "dial"), ("POST", "answer"), ("POST", "addChannel")]
    assert not sim.channels and not sim.bridges


PER_SECOND = [Rate("1", 60_000, 0, 1, 1, "NANP per second")]  # 0.001 per second, billed per second


async def account(core, ref="acme"):
    return await core.account(ref)


async def test_outbound_answered_callee_hangs_up(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0, hangup_after=2.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.answered and out.ended_by == "app"  # the gate hung the caller up after the callee's BYE
    s = await session_of(core, sim, call)
    assert s.state == "settled"
    assert s.talk_ms == first_hangup_ts(sim, call.callee_ids[0]) - callee_answer_ts(sim, call)
    deletes = requests_of(sim, method="DELETE")
    assert [r.path for r in deletes][:1] == [f"/ari/channels/{call.channel_id}"]
    assert any(r.path.startswith("/ari/bridges/") for r in deletes)
    assert not sim.channels and not sim.bridges
    assert (await account(core)).held == 0


@pytest.mark.parametrize("party, sip, cause", [
    (Party(busy=True), 486, 17),
    (Party(answer_after=None, no_answer=True), 480, 19),
    (Party(fail_cause=34), 503, 34),
], ids=["busy", "no_answer", "congestion"])
async def test_failed_dial_maps_the_callee_cause(sim, core, party, sip, cause):
    await seed(core)
    sim.script_destination(TRUNK, party)
    async with running_gate(sim, core, gate_settings(sim, dial_timeout=5)) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert not out.answered
    assert (out.sip_final, out.q850_cause) == (sip, cause)
    s = await session_of(core, sim, call)
    assert (s.state, s.talk_ms, s.cost) == ("settled", 0, 0)
    a = await account(core)
    assert (a.held, a.balance, a.live_calls) == (0, 10_000_000, 0)
    assert not sim.channels and not sim.bridges


async def test_caller_cancels_while_ringing(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=None, no_answer=True))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        await wait_for(lambda: call.callee_ids and call.callee_ids[0] in sim.channels
                       and sim.channels[call.callee_ids[0]]["state"] == "Ringing", 5)
        await sim.hangup_channel(call.channel_id)  # the caller CANCELs while the callee rings
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert (out.sip_final, out.ended_by) == (487, "caller")
    callee = call.callee_ids[0]
    assert any(r.method == "DELETE" and r.path == f"/ari/channels/{callee}" for r in sim.requests)
    s = await session_of(core, sim, call)
    assert (s.state, s.talk_ms, s.cost) == ("settled", 0, 0)
    assert (await account(core)).held == 0
    assert not sim.channels and not sim.bridges


@pytest.mark.parametrize("setup, exten, media, sip", [
    ({"balance": "0.50", "deck": [Rate("1", 1_000_000, 0, 60, 6)]}, NUMBER,  # first minute costs 1.00
     "sound:cannot-complete-as-dialed", 403),
    ({"balance": "0"}, NUMBER, "sound:cannot-complete-as-dialed", 403),
    ({"status": "suspended"}, NUMBER, "sound:cannot-complete-as-dialed", 403),
    ({}, "33123456789", "sound:ss-noservice", 404),
    ({}, "12", "sound:ss-noservice", 404),
    ({"max_calls": 1, "live_call": True}, NUMBER, "sound:all-circuits-busy-now", 486),
], ids=["insufficient_funds", "depleted", "suspended", "no_rate", "invalid_number", "too_many_calls"])
async def test_refusals_early_media_announcement_and_sip_code(sim, core, setup, exten, media, sip):
    await seed(core, balance=setup.get("balance", "10.00"), max_calls=setup.get("max_calls", 10),
               deck=setup.get("deck"))
    if "status" in setup:
        await core.admin.set_account_status("acme", setup["status"])
    if setup.get("live_call"):  # the account's only call slot is taken (on another PBX)
        held = await core.authorize_call(direction="outbound", number=NUMBER, endpoint="alice", pbx_id="other-pbx",
                                         channel_id="1.1")
        assert held.allowed
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=exten)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.progress and out.heard == [media]
    assert (out.sip_final, out.answered) == (sip, False)
    assert not requests_of(sim, contains="/create")  # nothing dialled
    assert await core.find_session(sim.asterisk_id, call.channel_id) is None  # nothing charged
    order = [r.path.rsplit("/", 1)[-1] for r in sim.requests if r.method in ("POST", "DELETE")]
    assert order == ["progress", "play", call.channel_id]


async def test_unknown_endpoint_is_rejected(sim, core):
    await seed(core)
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="mallory", exten=NUMBER)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.sip_final == 403 and out.progress


async def test_announcement_is_configurable_and_can_be_off(sim, core):
    await seed(core, balance="0")
    settings = gate_settings(sim, announcements={"depleted": "sound:number-not-in-service"})
    async with running_gate(sim, core, settings) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.heard == ["sound:number-not-in-service"] and out.sip_final == 403
    settings = gate_settings(sim, announcements={})
    async with running_gate(sim, core, settings) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.heard == [] and out.sip_final == 403 and out.progress


async def test_inbound_did_rings_its_endpoint(sim, core):
    await seed(core)
    sim.script_destination("PJSIP/alice", Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="trunk", exten="15145551000", context="from-trunk",
                                    app_args=["inbound"], caller_id="15145557777", caller_hangup_after=3.0)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.answered
    create = requests_of(sim, contains="/channels/create")[0]
    assert create.query["endpoint"] == "PJSIP/alice" and create.query["appArgs"] == "dialed"
    s = await session_of(core, sim, call)
    assert s.direction == "inbound" and s.state == "settled" and s.talk_ms > 2500


async def test_inbound_unknown_did_never_rings(sim, core):
    await seed(core)
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="trunk", exten="15145559999", context="from-trunk",
                                    app_args=["inbound"], caller_id="15145557777")
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.sip_final == 404 and out.heard == ["sound:ss-noservice"]
    assert not requests_of(sim, contains="/channels/create")


async def test_cutoff_with_warning_tone(sim, core):
    await seed(core, balance="0.02", deck=PER_SECOND)  # 20 s of talk
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    # 15 s of warning = 300 ms real: longer than a CI stall, which would rightly cut without a tone
    async with running_gate(sim, core, gate_settings(sim, warning_seconds=15)) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.answered and out.ended_by == "app" and out.heard == ["sound:beep"]
    assert out.sip_reason == "Q.850;cause=16"  # reason=normal
    assert abs(out.talk_ms - 20_000) <= SLACK_MS
    beep = next(e for e in sim.events_of(call.channel_id, generated=True) if e["type"] == "PlaybackStarted")
    assert abs(ts_ms(beep) - callee_answer_ts(sim, call) - 5_000) <= SLACK_MS  # 15 s before the cut-off
    s = await session_of(core, sim, call)
    assert (s.state, s.talk_ms, s.cost) == ("settled", 20_000, 20_000)
    a = await account(core)
    assert (a.balance, a.held) == (0, 0)
    hangups = [r for r in requests_of(sim, method="DELETE") if "/channels/" in r.path]
    assert {r.query.get("reason") for r in hangups} == {"normal"} and len(hangups) == 2


async def test_emergency_bypasses_billing(sim, core):
    await seed(core, balance="0")
    sim.script_destination("PJSIP/911@trunk", Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten="911", caller_hangup_after=3.0)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.answered and not out.progress
    s = await session_of(core, sim, call)
    assert s.emergency and s.state == "settled" and s.cost == 0 and s.cutoff_at is None


async def test_two_concurrent_calls_of_one_caller(sim, core):
    await seed(core)
    sim.script_destination("PJSIP/15145550101@trunk", Party(answer_after=1.0))
    sim.script_destination("PJSIP/15145550102@trunk", Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        c1 = await sim.place_call(endpoint="alice", exten="15145550101", caller_hangup_after=3.0)
        # further apart than a stalled CI loop can blur (SLACK_MS): timers held back by a stall
        # fire together, and the later-placed call would then have talked less (the [pg] flake)
        c2 = await sim.place_call(endpoint="alice", exten="15145550102", caller_hangup_after=3.0 + SLACK_MS / 1000)
        o1, o2 = await c1.ended(timeout=10), await c2.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert o1.answered and o2.answered
    s1, s2 = await session_of(core, sim, c1), await session_of(core, sim, c2)
    assert s1.session_id != s2.session_id
    assert s1.talk_ms < s2.talk_ms and {s1.state, s2.state} == {"settled"}
    assert len(sim.bridges) == 0 and len({r.path for r in requests_of(sim, method="DELETE", contains="/bridges/")}) == 2


async def test_gate_asks_asterisk_not_to_send_the_events_it_ignores(sim, core):
    """PUT /applications/{app}/eventFilter on connect: the ignored types stay off the socket, and
    with no continue-mode call live, every ChannelVarset too (a bridged call reads none)."""
    from ari_app.gate import IGNORED_EVENTS

    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        app = (await gate.client.get_application())
        assert {f["type"] for f in app["events_disallowed"]} == set(IGNORED_EVENTS) | {"ChannelVarset"}
        assert app["events_allowed"] == []
        call = await sim.place_call(endpoint="alice", exten=NUMBER, caller_hangup_after=2.0)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.answered
    sent = {e["type"] for e in sim.events_of()}
    filtered = {ev["type"] for _, ev, fate in sim.events_generated if fate == "filtered"}
    assert not sent & (set(IGNORED_EVENTS) | {"ChannelVarset"})
    assert {"ChannelDialplan", "ChannelEnteredBridge", "BridgeDestroyed", "ChannelVarset"} <= filtered  # held back
    assert {"StasisStart", "Dial", "ChannelStateChange", "ChannelDestroyed"} <= sent
    put = [r for r in sim.requests if r.method == "PUT" and r.path.endswith("/eventFilter")]
    assert len(put) == 1 and put[0].status == 200


async def test_gate_works_when_asterisk_refuses_the_event_filter(sim, core):
    """An Asterisk without eventFilter (or refusing it): the gate drops the same events itself."""
    await seed(core)
    sim.inject_rest_fault("PUT", r"/applications/.*/eventFilter", 501, "Not implemented", times=10)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, caller_hangup_after=2.0)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.answered and out.ended_by == "caller"
    assert "ChannelDialplan" in {e["type"] for e in sim.events_of()}  # nothing filtered: all sent
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled" and s.talk_ms > 0
