"""Trace contract tests: each recorded scenario's REST calls replayed through the simulator.

For every scenario the simulator must answer each request with the recorded status, reason
phrase and error message (or body keys), and deliver, per channel, the recorded sequence of
events (types, causes, soft flags, tech causes, dial statuses, states, varset names), with the
recorded key order. See trace_replay.py.
"""
from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pytest

from callgate_fakes.ari_simulator import Party
from tests.ari.trace_replay import Replay, load

AUTH = {"Authorization": "Basic " + base64.b64encode(b"callgate:secret").decode()}
SCALE = 0.08   # 1 recorded second = 80 ms (room for a busy CI machine)

TRUNK = "PJSIP/15145550100@trunk"

SCENARIOS = {
    "outbound_answered_caller_hangup.jsonl": dict(
        parties={TRUNK: Party(answer_after=1.0)},
        calls=[dict(at=600, endpoint="alice", exten="15145550100", caller_hangup_after=3.0)]),
    "outbound_answered_callee_hangup.jsonl": dict(
        parties={TRUNK: Party(answer_after=1.0, hangup_after=3.0)},
        calls=[dict(at=600, endpoint="alice", exten="15145550100")]),
    "outbound_callee_busy.jsonl": dict(
        parties={TRUNK: Party(busy=True, reject_after=0.5)},
        calls=[dict(at=600, endpoint="alice", exten="15145550100")]),
    "outbound_no_answer.jsonl": dict(
        parties={TRUNK: Party(no_answer=True)},
        calls=[dict(at=600, endpoint="alice", exten="15145550100")]),
    "outbound_caller_cancels_while_ringing.jsonl": dict(
        parties={TRUNK: Party(answer_after=None)},
        calls=[dict(at=600, endpoint="alice", exten="15145550100", caller_cancel_after=2.0)]),
    "inbound_did_answered.jsonl": dict(
        parties={"PJSIP/alice": Party(answer_after=1.0)},
        calls=[dict(at=600, endpoint="trunk", exten="15145551000", context="from-trunk",
                    app_args=["inbound"], caller_id="15145557777", caller_hangup_after=3.0)]),
    "reject_insufficient_funds_early_media_reason_rejected.jsonl": dict(
        parties={}, calls=[dict(at=600, endpoint="alice", exten="15145550100")]),
    "reject_insufficient_funds_early_media_reason_code_21.jsonl": dict(
        parties={}, calls=[dict(at=600, endpoint="alice", exten="15145550100")]),
    "reject_insufficient_funds_early_media_reason_code_402.jsonl": dict(
        parties={}, calls=[dict(at=600, endpoint="alice", exten="15145550100")]),
    "midcall_cutoff_with_warning.jsonl": dict(
        parties={TRUNK: Party(answer_after=1.0)},
        calls=[dict(at=600, endpoint="alice", exten="15145550100")]),
    "two_concurrent_calls_same_caller.jsonl": dict(
        parties={"PJSIP/15145550101@trunk": Party(answer_after=1.0),
                 "PJSIP/15145550102@trunk": Party(answer_after=1.0)},
        calls=[dict(at=600, endpoint="alice", exten="15145550101", caller_hangup_after=3.0),
               dict(at=900, endpoint="alice", exten="15145550102", caller_hangup_after=4.0)]),
    "outbound_answered_caller_hangup_subscribeAll.jsonl": dict(
        subscribe_all=True, parties={TRUNK: Party(answer_after=1.0)},
        calls=[dict(at=600, endpoint="alice", exten="15145550100", caller_hangup_after=3.0)]),
    "websocket_drop_midcall.jsonl": dict(
        parties={TRUNK: Party(answer_after=1.0)},
        calls=[dict(at=600, endpoint="alice", exten="15145550100"),
               dict(at=4450, endpoint="alice", exten="15145550199")]),
    "continue_mode_dial_limit.jsonl": dict(
        parties={TRUNK: Party(answer_after=1.0)},
        calls=[dict(at=600, endpoint="alice", exten="15145550100")]),
    "continue_mode_dial_limit_subscribeAll.jsonl": dict(
        subscribe_all=True, parties={TRUNK: Party(answer_after=1.0)},
        calls=[dict(at=600, endpoint="alice", exten="15145550100")]),
    "continue_mode_channel_subscription.jsonl": dict(
        parties={TRUNK: Party(answer_after=1.0)},
        calls=[dict(at=600, endpoint="alice", exten="15145550100", context="callgate-outbound-continue",
                    app_args=["outbound", "continue"])]),
    "continue_mode_channel_subscription_caller_hangup.jsonl": dict(
        parties={TRUNK: Party(answer_after=1.0)},
        calls=[dict(at=600, endpoint="alice", exten="15145550100", context="callgate-outbound-continue",
                    app_args=["outbound", "continue"], caller_hangup_after=2.0)]),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_trace_replay(name, simulator_factory):
    spec = SCENARIOS[name]
    # the recording lab's continue route was Dial(...,L(${CALLGATE_MAX_MS}:2000))
    sim = await simulator_factory(time_scale=SCALE, continue_warn_ms=2000)
    for endpoint, party in spec["parties"].items():
        sim.script_destination(endpoint, party)
    replay = Replay(load(name), sim, SCALE, subscribe_all=spec.get("subscribe_all", False))
    await replay.run(spec["calls"])
    replay.compare_responses()
    replay.compare_events()
    if name == "websocket_drop_midcall.jsonl":
        # the recorded drop really happened: the beep's events were lost, the second call failed
        dropped = [e["type"] for _app, e in sim.events_dropped]
        assert "PlaybackStarted" in dropped and "PlaybackFinished" in dropped
        outcomes = [c._outcome.result() for c in sim.calls.values() if c.done]
        assert any(o.sip_final == 603 and o.ended_by == "pbx" for o in outcomes), outcomes


async def test_rest_errors_replay(simulator_factory):
    """rest_errors.jsonl: every recorded error (and success) status, reason phrase and message.

    Events are checked for the caller only at the end (the teardown of a dialplan Dial() by
    DELETE reason=rejected); the callee's events in this file come from a second POST /dial racing
    its own 180 and are not a contract.
    """
    sim = await simulator_factory(time_scale=SCALE)
    sim.script_destination(TRUNK, Party(ring_after=0.5, answer_after=None))
    replay = Replay(load("rest_errors.jsonl"), sim, SCALE)
    await replay.run([dict(at=600, endpoint="alice", exten="15145550100")], strict=False)
    replay.compare_responses()
    caller = replay.id_map[replay.trace_events()[0]["channel"]["id"]]
    tail = [(e["type"], e.get("dialstatus"), e.get("variable"), e.get("cause"), e.get("soft"),
             e.get("tech_cause"), e.get("cause_txt"))
            for e in replay.received if caller in (e.get("channel") or e.get("caller") or {}).get("id", "")][-5:]
    assert tail == [
        ("ChannelHangupRequest", None, None, 32, True, None, None),
        ("Dial", "CANCEL", None, None, None, None, None),
        ("ChannelVarset", None, "DIALSTATUS", None, None, None, None),
        ("ChannelHangupRequest", None, None, 16, True, None, None),
        ("ChannelDestroyed", None, None, 21, None, 403, "Call Rejected"),
    ]
    call = sim.calls[caller]
    outcome = await call.ended(timeout=5)
    assert (outcome.sip_final, outcome.sip_reason, outcome.progress) == (403, "Q.850;cause=21", True)


async def test_created_channel_stasis_race_replay(simulator_factory):
    """created_channel_stasis_race.jsonl: create + immediate answer, 25 times.

    Asterisk answered 412 while the created channel had already entered Stasis and, once
    (attempt 25), 409 "Channel not in Stasis application" when the answer overtook the Stasis
    entry: both are the recorded contract for that request. Everything else (create 200, DELETE
    204, and each leg's events) must match.
    """
    trace = load("created_channel_stasis_race.jsonl")
    answers = {x["req_id"] for x in trace if x["kind"] == "request" and x["path"].endswith("/answer")}
    recorded = {x["status"] for x in trace if x["kind"] == "response" and x["req_id"] in answers}
    assert recorded == {409, 412}
    sim = await simulator_factory(time_scale=SCALE, stasis_entry_delay=0.0)
    replay = Replay(trace, sim, SCALE)
    await replay.run([], strict=False)
    for line, status, reason, body in replay.responses:
        if line["req_id"] in answers:
            assert status in recorded and body["message"] in (
                "Channel in invalid state", "Channel not in Stasis application")
    replay.responses = [r for r in replay.responses if r[0]["req_id"] not in answers]
    replay.compare_responses()
    replay.compare_events()
    # and the other side of the race: an answer before the Stasis entry gets the 409
    slow = await simulator_factory(stasis_entry_delay=0.2)
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(slow.url + "/ari/channels/create",
                             params={"endpoint": TRUNK, "app": "callgate", "appArgs": "dialed"}) as resp:
            created = await resp.json()
        async with http.post(slow.url + f"/ari/channels/{created['id']}/answer") as resp:
            assert (resp.status, await resp.json()) == (409, {"message": "Channel not in Stasis application"})


async def test_application_replaced_replay(simulator_factory):
    """application_replaced.jsonl: ws1 gets exactly one ApplicationReplaced (recorded key order),
    stays open, ws2 gets nothing, GET /applications/callgate answers the recorded body."""
    trace = load("application_replaced.jsonl")
    recorded = [x["payload"] for x in trace if x["kind"] == "event"]
    assert [x.get("connection") for x in trace if x["kind"] == "event"] == ["ws1"]
    sim = await simulator_factory()
    url = sim.url.replace("http", "ws") + "/ari/events?app=callgate&api_key=callgate:secret"
    got: dict[str, list[dict]] = {"ws1": [], "ws2": []}
    async with aiohttp.ClientSession(headers=AUTH) as http:
        sockets = {}
        for name in ("ws1", "ws2"):
            sockets[name] = await http.ws_connect(url)
            await sim.wait_app_connected()
            await asyncio.sleep(0.05)
        for name, ws in sockets.items():
            try:
                while True:
                    msg = await ws.receive(timeout=0.2)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    got[name].append(json.loads(msg.data))
            except asyncio.TimeoutError:
                pass
        assert not sockets["ws1"].closed
        assert [list(e) for e in got["ws1"]] == [list(e) for e in recorded]
        assert got["ws1"][0]["type"] == "ApplicationReplaced" and got["ws2"] == []
        rec_body = next(x["body"] for x in trace if x["kind"] == "response")
        async with http.get(sim.url + "/ari/applications/callgate") as resp:
            assert await resp.json() == rec_body
        for ws in sockets.values():
            await ws.close()
