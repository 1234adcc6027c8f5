"""The ARI simulator's behaviours beyond the replayed scenarios (real sockets, 127.0.0.1)."""
from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pytest

from callgate_fakes.ari_simulator import Party
from tests.ari.trace_replay import load

AUTH = {"Authorization": "Basic " + base64.b64encode(b"callgate:secret").decode()}


class App:
    """A raw event socket plus a REST session: the simplest possible Stasis app."""

    def __init__(self, sim, subscribe_all: bool = False, app: str = "callgate") -> None:
        self.sim = sim
        self.app = app
        self.subscribe_all = subscribe_all
        self.events: list[dict] = []
        self.closed_by_server = asyncio.Event()

    async def __aenter__(self) -> "App":
        self.http = aiohttp.ClientSession(headers=AUTH)
        await self.connect()
        return self

    async def connect(self) -> None:
        url = self.sim.url.replace("http", "ws") + f"/ari/events?app={self.app}&api_key=callgate:secret"
        if self.subscribe_all:
            url += "&subscribeAll=true"
        self.ws = await self.http.ws_connect(url)
        self.reader = asyncio.create_task(self._read(self.ws))
        await self.sim.wait_app_connected(self.app)

    async def _read(self, ws) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(msg.data))
        self.closed_by_server.set()

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()
        self.reader.cancel()
        await self.http.close()

    async def rest(self, method: str, path: str, **params) -> tuple[int, object]:
        async with self.http.request(method, self.sim.url + "/ari" + path,
                                     params={k: str(v) for k, v in params.items()}) as resp:
            raw = await resp.read()
            return resp.status, (json.loads(raw) if raw else None)

    async def wait_for(self, pred, timeout: float = 5.0) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for e in self.events:
                if pred(e):
                    return e
            if loop.time() > deadline:
                raise AssertionError(f"no matching event; got {[e['type'] for e in self.events]}")
            await asyncio.sleep(0.005)

    def types_of(self, channel_id: str, skip_varsets: bool = True) -> list[str]:
        return [e["type"] for e in self.events
                if (e.get("channel") or {}).get("id") == channel_id
                and not (skip_varsets and e["type"] == "ChannelVarset")]


def is_type(t: str, channel_id: str | None = None):
    return lambda e: e["type"] == t and (channel_id is None or (e.get("channel") or {}).get("id") == channel_id)


async def bridge_call(app: App, sim, exten: str = "15145550100", **call_kw):
    """The traced gate flow up to both legs in a mixing bridge; returns (call, callee_id, bridge_id)."""
    call = await sim.place_call(exten=exten, **call_kw)
    ch = call.channel_id
    await app.wait_for(is_type("StasisStart", ch))
    await app.rest("POST", f"/channels/{ch}/ring")
    status, callee = await app.rest("POST", "/channels/create", endpoint=f"PJSIP/{exten}@trunk", app="callgate",
                                    appArgs="dialed", originator=ch)
    assert status == 200
    await app.wait_for(is_type("StasisStart", callee["id"]))
    assert (await app.rest("POST", f"/channels/{callee['id']}/dial", caller=ch, timeout=30))[0] == 204
    status, bridge = await app.rest("POST", "/bridges", type="mixing", name=f"callgate-{ch}")
    await app.wait_for(lambda e: e["type"] == "Dial" and e["dialstatus"] == "ANSWER"
                       and e["peer"]["id"] == callee["id"])
    assert (await app.rest("POST", f"/channels/{ch}/answer"))[0] == 204
    assert (await app.rest("POST", f"/bridges/{bridge['id']}/addChannel",
                           channel=f"{ch},{callee['id']}"))[0] == 204
    return call, callee["id"], bridge["id"]


# ---------------------------------------------------------------- hangup reason -> SIP sweep
async def test_hangup_reason_sip_mapping_matches_the_sweep(simulator):
    mapping = next(line for line in load("hangup_reason_sip_sweep.jsonl") if "mapping" in line)["mapping"]
    async with App(simulator) as app:
        for row in mapping:
            call = await simulator.place_call(exten="15145550100")
            await app.wait_for(is_type("StasisStart", call.channel_id))
            params = {"reason": row["reason"]} if "reason" in row else {"reason_code": row["reason_code"]}
            assert (await app.rest("DELETE", f"/channels/{call.channel_id}", **params))[0] == 204
            outcome = await call.ended(timeout=5)
            assert (f"{outcome.sip_final}", outcome.sip_reason) == (
                row["sip_final_response"].split()[0], row["sip_reason_header"]), row
            assert outcome.ended_by == "app" and not outcome.answered


# ---------------------------------------------------------------- parties and outcomes
async def test_answered_call_caller_hangs_up(simulator):
    simulator.script_destination("PJSIP/15145550100@trunk", Party(answer_after=0.05))
    async with App(simulator) as app:
        call, callee, bridge = await bridge_call(app, simulator, caller_hangup_after=0.1)
        await app.wait_for(is_type("ChannelDestroyed", call.channel_id))
        assert (await app.rest("DELETE", f"/channels/{callee}"))[0] == 204
        assert (await app.rest("DELETE", f"/bridges/{bridge}"))[0] == 204
        outcome = await call.ended(timeout=5)
        assert outcome.answered and outcome.sip_final == 200 and outcome.ended_by == "caller"
        assert outcome.ringing and 100 <= outcome.talk_ms < 1000
        await app.wait_for(is_type("BridgeDestroyed"))
        assert app.types_of(call.channel_id)[-5:] == [
            "ChannelHangupRequest", "ChannelLeftBridge", "StasisEnd", "ChannelHangupRequest", "ChannelDestroyed"]
        assert app.types_of(callee)[-4:] == ["ChannelHangupRequest", "ChannelLeftBridge", "StasisEnd",
                                             "ChannelDestroyed"]
        assert simulator.channels == {} and simulator.bridges == {}


@pytest.mark.parametrize("party,cause,cause_txt,tech", [
    (Party(busy=True, reject_after=0.02), 17, "User busy", 486),
    (Party(fail_cause=34, reject_after=0.02), 34, "Circuit/channel congestion", 503),
])
async def test_failing_callee_gives_its_cause(simulator, party, cause, cause_txt, tech):
    simulator.script_destination_default(party)
    async with App(simulator) as app:
        call = await simulator.place_call(exten="15145550100")
        await app.wait_for(is_type("StasisStart", call.channel_id))
        _, callee = await app.rest("POST", "/channels/create", endpoint="PJSIP/15145550100@trunk",
                                   app="callgate", appArgs="dialed", originator=call.channel_id)
        await app.wait_for(is_type("StasisStart", callee["id"]))
        await app.rest("POST", f"/channels/{callee['id']}/dial", caller=call.channel_id, timeout=30)
        destroyed = await app.wait_for(is_type("ChannelDestroyed", callee["id"]))
        assert (destroyed["cause"], destroyed["cause_txt"], destroyed["tech_cause"]) == (cause, cause_txt, tech)
        assert not [e for e in app.events if e["type"] == "Dial" and e["dialstatus"] not in ("", "RINGING")]
        await app.rest("DELETE", f"/channels/{call.channel_id}", reason="busy")
        outcome = await call.ended(timeout=5)
        assert (outcome.sip_final, outcome.q850_cause) == (486, 17)


async def test_dial_timeout_cancels_a_ringing_callee_with_cause_19(simulator):
    simulator.script_destination_default(Party(no_answer=True))
    async with App(simulator) as app:
        call = await simulator.place_call(exten="15145550100")
        await app.wait_for(is_type("StasisStart", call.channel_id))
        _, callee = await app.rest("POST", "/channels/create", endpoint="PJSIP/15145550100@trunk",
                                   app="callgate", appArgs="dialed", originator=call.channel_id)
        await app.wait_for(is_type("StasisStart", callee["id"]))
        await app.rest("POST", f"/channels/{callee['id']}/dial", caller=call.channel_id, timeout=0)
        await app.rest("POST", f"/channels/{callee['id']}/dial", caller=call.channel_id)  # no-op check below
        destroyed = await app.wait_for(is_type("ChannelDestroyed", callee["id"]))
        assert destroyed["cause"] == 16   # the second dial tore it down (traced), not a timeout
    simulator.script_destination_default(Party(no_answer=True))
    async with App(simulator) as app:
        call = await simulator.place_call(exten="15145550100")
        await app.wait_for(is_type("StasisStart", call.channel_id))
        _, callee = await app.rest("POST", "/channels/create", endpoint="PJSIP/15145550100@trunk",
                                   app="callgate", appArgs="dialed", originator=call.channel_id)
        await app.wait_for(is_type("StasisStart", callee["id"]))
        await app.rest("POST", f"/channels/{callee['id']}/dial", caller=call.channel_id, timeout=1)
        destroyed = await app.wait_for(is_type("ChannelDestroyed", callee["id"]), timeout=5)
        assert (destroyed["cause"], destroyed["tech_cause"]) == (19, 480)
        await app.rest("DELETE", f"/channels/{call.channel_id}", reason="no_answer")
        assert (await call.ended(timeout=5)).sip_final == 480


async def test_caller_cancel_while_ringing(simulator):
    simulator.script_destination_default(Party(answer_after=None))
    async with App(simulator) as app:
        call = await simulator.place_call(exten="15145550100", caller_cancel_after=0.1)
        await app.wait_for(is_type("StasisStart", call.channel_id))
        hangup = await app.wait_for(is_type("ChannelHangupRequest", call.channel_id))
        assert (hangup["cause"], hangup["tech_cause"]) == (127, 487)
        outcome = await call.ended(timeout=5)
        # no originator subscription: the app's last event for the channel is StasisEnd (traced)
        assert app.types_of(call.channel_id) == ["StasisStart", "ChannelHangupRequest", "StasisEnd"]
        assert outcome.q850_cause == 127
        assert (outcome.sip_final, outcome.ended_by, outcome.answered) == (487, "caller", False)


async def test_party_hangup_by_api(simulator):
    simulator.script_destination_default(Party(answer_after=0.02))
    async with App(simulator) as app:
        call, callee, _bridge = await bridge_call(app, simulator)
        await simulator.hangup_channel(callee)
        destroyed = await app.wait_for(is_type("ChannelDestroyed", callee))
        assert destroyed["cause"] == 16
        hangup = next(e for e in app.events if e["type"] == "ChannelHangupRequest"
                      and e["channel"]["id"] == callee)
        assert hangup["cause"] == 16 and "soft" not in hangup
        await app.rest("DELETE", f"/channels/{call.channel_id}")
        outcome = await call.ended(timeout=5)
        assert outcome.answered and outcome.ended_by == "app"


async def test_call_while_app_not_connected_gets_603(simulator):
    call = await simulator.place_call(exten="15145550100")
    outcome = await call.ended(timeout=2)
    assert (outcome.sip_final, outcome.q850_cause, outcome.ended_by) == (603, 16, "pbx")


# ---------------------------------------------------------------- async Stasis entry
async def test_created_channel_enters_stasis_asynchronously(simulator_factory):
    sim = await simulator_factory(stasis_entry_delay=0.2)
    async with App(sim) as app:
        call = await sim.place_call(exten="15145550100")
        await app.wait_for(is_type("StasisStart", call.channel_id))
        _, callee = await app.rest("POST", "/channels/create", endpoint="PJSIP/15145550100@trunk",
                                   app="callgate", appArgs="dialed", originator=call.channel_id)
        assert callee["state"] == "Down" and callee["dialplan"] == {
            "context": "from-trunk", "exten": "s", "priority": 1, "app_name": "", "app_data": ""}
        status, body = await app.rest("POST", f"/channels/{callee['id']}/answer")
        assert (status, body) == (409, {"message": "Channel not in Stasis application"})
        await app.wait_for(is_type("StasisStart", callee["id"]))
        for op in ("answer", "ring", "continue"):
            status, body = await app.rest("POST", f"/channels/{callee['id']}/{op}")
            assert (status, body) == (412, {"message": "Channel in invalid state"}), op
        assert app.types_of(callee["id"], skip_varsets=False) == ["ChannelDialplan", "ChannelVarset", "StasisStart"]


# ---------------------------------------------------------------- websocket drop / replaced
async def test_websocket_drop_loses_events_and_rest_keeps_working(simulator):
    simulator.script_destination_default(Party(answer_after=0.02))
    async with App(simulator) as app:
        call, callee, bridge = await bridge_call(app, simulator)
        simulator.drop_websockets()
        await asyncio.wait_for(app.closed_by_server.wait(), 5)
        status, pb = await app.rest("POST", f"/channels/{call.channel_id}/play", media="sound:beep")
        assert status == 201
        second = await simulator.place_call(exten="15145550199")
        assert (await second.ended(timeout=2)).sip_final == 603
        await asyncio.sleep(0.6)                  # the beep (0.425 s) finishes while nobody listens
        dropped = [e["type"] for _a, e in simulator.events_dropped]
        assert "PlaybackStarted" in dropped and "PlaybackFinished" in dropped
        n_before = len(app.events)
        app.closed_by_server.clear()
        await app.connect()
        status, chans = await app.rest("GET", "/channels")
        assert sorted(c["id"] for c in chans) == sorted([call.channel_id, callee])
        assert all(c["state"] == "Up" and c["dialplan"]["app_name"] == "Stasis" for c in chans)
        status, bridges = await app.rest("GET", "/bridges")
        assert bridges[0]["id"] == bridge and sorted(bridges[0]["channels"]) == sorted([call.channel_id, callee])
        status, application = await app.rest("GET", "/applications/callgate")
        assert application == {"name": "callgate", "channel_ids": [call.channel_id, callee], "bridge_ids": [bridge],
                               "endpoint_ids": [], "device_names": [], "events_allowed": [],
                               "events_disallowed": []}
        assert (await app.rest("GET", f"/playbacks/{pb['id']}")) == (404, {"message": "Playback not found"})
        assert len(app.events) == n_before       # nothing replayed on reconnect
        await app.rest("DELETE", f"/channels/{call.channel_id}", reason="normal")
        await app.wait_for(is_type("ChannelDestroyed", call.channel_id))   # flows on the new socket


async def test_second_socket_replaces_the_app(simulator):
    async with App(simulator) as first:
        async with App(simulator) as second:
            replaced = await first.wait_for(is_type("ApplicationReplaced"))
            assert list(replaced) == ["type", "timestamp", "application", "asterisk_id"]
            await asyncio.sleep(0.05)
            assert not first.closed_by_server.is_set()      # Asterisk does not close it
            call = await simulator.place_call(exten="15145550100")
            await second.wait_for(is_type("StasisStart", call.channel_id))
            assert [e["type"] for e in first.events] == ["ApplicationReplaced"]


# ---------------------------------------------------------------- continue mode
async def _continue_call(simulator, app, status: str | None, max_ms: str | None, subscribe: bool,
                         reason: str | None = None, **call_kw):
    call_kw.setdefault("app_args", ["outbound", "continue"])
    call = await simulator.place_call(exten="15145550100", context="callgate-outbound-continue", **call_kw)
    ch = call.channel_id
    await app.wait_for(is_type("StasisStart", ch))
    if reason is not None:
        await app.rest("POST", f"/channels/{ch}/variable", variable="CALLGATE_REASON", value=reason)
    if max_ms is not None:
        await app.rest("POST", f"/channels/{ch}/variable", variable="CALLGATE_MAX_MS", value=max_ms)
    if status is not None:
        await app.rest("POST", f"/channels/{ch}/variable", variable="CALLGATE_STATUS", value=status)
    if subscribe:
        assert (await app.rest("POST", "/applications/callgate/subscription", eventSource=f"channel:{ch}"))[0] == 200
    assert (await app.rest("POST", f"/channels/{ch}/continue"))[0] == 204
    return call


async def test_continued_calls_dial_bridge_is_listed_but_not_the_applications(simulator_factory):
    """Seen on a real Asterisk 22 (tests/asterisk, a gate restarted during a continued call):
    GET /bridges lists every bridge, Dial()'s basic bridge included; operations on it answer 409
    (res/ari/resource_bridges.c find_bridge: "Bridge not in Stasis application")."""
    recorded = next(line["payload"]["bridge"] for line in load("continue_mode_dial_limit_subscribeAll.jsonl")
                    if line["kind"] == "event" and line["payload"]["type"] == "BridgeCreated")
    sim = await simulator_factory(time_scale=0.05)
    sim.script_destination("PJSIP/15145550100@trunk", Party(answer_after=0.5))
    async with App(sim) as app:
        call = await _continue_call(sim, app, "ALLOW", "60000", subscribe=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:
            status, bridges = await app.rest("GET", "/bridges")
            if status == 200 and any(len(b["channels"]) == 2 for b in bridges):
                break
            assert loop.time() < deadline, bridges
            await asyncio.sleep(0.02)
        [dial] = bridges
        assert list(dial) == list(recorded)
        assert (dial["bridge_class"], dial["bridge_type"], dial["creator"], dial["name"]) == ("basic", "mixing", "", "")
        assert call.channel_id in dial["channels"]
        assert (await app.rest("GET", f"/bridges/{dial['id']}"))[1]["id"] == dial["id"]
        assert await app.rest("DELETE", f"/bridges/{dial['id']}") == (
            409, {"message": "Bridge not in Stasis application"})
        await sim.hangup_channel(call.channel_id)
        await call.ended(timeout=5)
        assert (await app.rest("GET", "/bridges")) == (200, [])


def test_simulator_warns_as_the_product_dialplan_does():
    from pathlib import Path

    from callgate_fakes.ari_simulator.dialplan import CONTINUE_WARN_MS

    dialplan = (Path(__file__).resolve().parents[2] / "asterisk-conf" / "extensions.conf").read_text()
    assert f"\nCALLGATE_WARN_MS={CONTINUE_WARN_MS}\n" in dialplan
    assert "L(${CALLGATE_MAX_MS}:${IF($[${CALLGATE_MAX_MS} <= ${CALLGATE_WARN_MS}]?$[${CALLGATE_MAX_MS} - 1]:" \
           "${CALLGATE_WARN_MS})})" in dialplan


@pytest.mark.parametrize("max_ms, dial_limit, warned", [
    ("4000", "L(4000:3999)", True),      # shorter than CALLGATE_WARN_MS: warned at the answer
    ("70000", "L(70000:60000)", True),   # 60 s before the limit
    ("1", "L(1:0)", False),              # no room for a warning strictly inside the limit
])
async def test_continue_limit_warning_is_the_product_dialplans(simulator_factory, max_ms, dial_limit, warned):
    """Seen on a real Asterisk 22 (tests/asterisk): L() plays a warning only when it lies strictly
    inside the limit (bridge_builtin_interval_features.c, warning < duration), so the product
    dialplan asks for at most grant - 1 ms; with L(5000:60000) a short grant heard no warning."""
    sim = await simulator_factory(time_scale=0.01)
    sim.script_destination("PJSIP/15145550100@trunk", Party(answer_after=0.5, hangup_after=11.0))
    async with App(sim) as app:
        call = await _continue_call(sim, app, "ALLOW", max_ms, subscribe=True)
        outcome = await call.ended(timeout=5)
        dial = [e for e in app.events if e["type"] == "ChannelDialplan" and e.get("dialplan_app") == "Dial"]
        assert dial and dial[0]["dialplan_app_data"].endswith("," + dial_limit)
        assert outcome.heard == (["sound:beep"] if warned else [])


async def test_continue_allow_ends_at_the_limit(simulator_factory):
    sim = await simulator_factory(time_scale=0.02)
    sim.script_destination("PJSIP/15145550100@trunk", Party(answer_after=1.0))
    async with App(sim) as app:
        call = await _continue_call(sim, app, "ALLOW", "4000", subscribe=True)
        outcome = await call.ended(timeout=5)
        assert (outcome.ended_by, outcome.sip_final, outcome.q850_cause) == ("limit", 200, 16)
        assert 3900 <= outcome.talk_ms <= 4600 and 3900 <= outcome.callee_talk_ms <= 4600
        assert outcome.heard == ["sound:beep"]            # L()'s warning (a 4 s grant: at the answer)
        assert call.continued["variables"]["CALLGATE_MAX_MS"] == "4000"
        destroyed = await app.wait_for(is_type("ChannelDestroyed", call.channel_id))
        assert destroyed["cause"] == 16
        dials = [e["dialstatus"] for e in app.events if e["type"] == "Dial"]
        assert dials == ["", "RINGING", "ANSWER"]
        answered_ms = [e["value"] for e in app.events if e.get("variable") == "ANSWEREDTIME_MS"]
        assert answered_ms[0] == "" and 3900 <= int(answered_ms[-1]) <= 4600
        assert (await app.rest("DELETE", "/applications/callgate/subscription",
                               eventSource=f"channel:{call.channel_id}")) == (
            422, {"message": "Event source was not subscribed to"})


async def test_continue_without_subscription_sees_nothing_after_stasis_end(simulator_factory):
    sim = await simulator_factory(time_scale=0.02)
    sim.script_destination_default(Party(answer_after=0.5))
    async with App(sim) as app:
        call = await _continue_call(sim, app, "ALLOW", "1000", subscribe=False, caller_hangup_after=0.5)
        outcome = await call.ended(timeout=5)
        assert outcome.ended_by == "caller" and outcome.answered
        assert app.types_of(call.channel_id, skip_varsets=False)[-1] == "StasisEnd"



# Recorded on Asterisk 22 (GIT-22-69535d4837) with a subscribeAll app, asterisk-conf's continue route
# with [callgate-continue-settle] pushed before Stasis(callgate,outbound,continue,hangup-handler): after
# Dial() returns (ANSWEREDTIME_MS set), the handler runs on the hung-up caller: GotoIf, Stasis,
# StasisStart ["settle", <session>, <ANSWEREDTIME_MS>] (state Up), StasisEnd, STASISSTATUS=SUCCESS,
# NoOp, Return, then ChannelDestroyed. Without a subscription the app sees only StasisStart/StasisEnd.
async def test_continue_hangup_handler_reenters_stasis_before_the_channel_is_destroyed(simulator_factory):
    sim = await simulator_factory(time_scale=0.02)
    sim.script_destination_default(Party(answer_after=0.5))
    async with App(sim, subscribe_all=True) as app:
        call = await sim.place_call(exten="15145550100", context="callgate-outbound-continue",
                                    app_args=["outbound", "continue", "hangup-handler"], caller_hangup_after=1.0)
        ch = call.channel_id
        await app.wait_for(is_type("StasisStart", ch))
        for name, value in (("CALLGATE_MAX_MS", "60000"), ("CALLGATE_SESSION", "sess-1"), ("CALLGATE_STATUS", "ALLOW")):
            await app.rest("POST", f"/channels/{ch}/variable", variable=name, value=value)
        assert (await app.rest("POST", f"/channels/{ch}/continue"))[0] == 204
        outcome = await call.ended(timeout=5)
        assert outcome.answered and outcome.ended_by == "caller"
        await app.wait_for(is_type("ChannelDestroyed", ch))
    mine = [e for e in app.events if (e.get("channel") or {}).get("id") == ch]
    kinds = [e["type"] for e in mine]
    answered = max(i for i, e in enumerate(mine) if e.get("variable") == "ANSWEREDTIME_MS")
    settle = max(i for i, k in enumerate(kinds) if k == "StasisStart")
    assert answered < settle and kinds[settle + 1] == "StasisEnd" and kinds[-1] == "ChannelDestroyed"
    assert mine[settle]["args"] == ["settle", "sess-1", mine[answered]["value"]]
    assert mine[settle]["channel"]["state"] == "Up"
    assert mine[settle]["channel"]["dialplan"]["context"] == "callgate-continue-settle"
    assert [(e["variable"], e["value"]) for e in mine[settle:] if e["type"] == "ChannelVarset"][-1:] == [
        ("STASISSTATUS", "SUCCESS")]


async def test_continue_hangup_handler_without_a_session_or_an_app(simulator_factory):
    sim = await simulator_factory(time_scale=0.02)
    sim.script_destination_default(Party(answer_after=0.2))
    async with App(sim) as app:
        refused = await _continue_call(sim, app, "DENY", "0", subscribe=True, reason="depleted",
                                       app_args=["outbound", "continue", "hangup-handler"])
        await refused.ended(timeout=5)
        # no CALLGATE_SESSION: the handler's GotoIf skips Stasis()
        assert [e["type"] for e in app.events if (e.get("channel") or {}).get("id") == refused.channel_id
                ].count("StasisStart") == 1
        allowed = await sim.place_call(exten="15145550100", context="callgate-outbound-continue",
                                       app_args=["outbound", "continue", "hangup-handler"])
        ch = allowed.channel_id
        await app.wait_for(is_type("StasisStart", ch))
        for name, value in (("CALLGATE_MAX_MS", "60000"), ("CALLGATE_SESSION", "s"), ("CALLGATE_STATUS", "ALLOW")):
            await app.rest("POST", f"/channels/{ch}/variable", variable=name, value=value)
        assert (await app.rest("POST", f"/channels/{ch}/continue"))[0] == 204
    await asyncio.sleep(0.05)  # the app is gone when the caller hangs up: Stasis() fails in the handler
    await sim.hangup_channel(allowed.channel_id)
    await allowed.ended(timeout=5)
    assert allowed.variables["STASISSTATUS"] == "FAILED"


# The simulator runs the product's route (asterisk-conf/extensions.conf): a refusal goes through
# [callgate-deny], whose cause follows CALLGATE_REASON. (The lab route of the traces hung up with 21
# whatever the reason; the Stasis/continue/event behaviour is the same.)
@pytest.mark.parametrize("status,max_ms,reason,sip,cause", [
    ("DENY", "0", "depleted", 403, 21),
    ("DENY", "0", "insufficient_funds", 403, 21),
    ("DENY", "0", "unknown_did", 404, 1),
    ("DENY", "0", "too_many_calls", 486, 17),
    ("DENY", "0", "billing_unavailable", 503, 34),
    ("DENY", "0", None, 503, 34),
    (None, None, None, 503, 34),   # the gate set nothing: fail closed
    ("ALLOW", "", None, 503, 34),  # an empty L() value is a refusal, never an unlimited Dial
])
async def test_continue_deny_hangs_up_with_the_cause_of_the_reason(simulator, status, max_ms, reason, sip, cause):
    async with App(simulator) as app:
        call = await _continue_call(simulator, app, status, max_ms, subscribe=True, reason=reason)
        outcome = await call.ended(timeout=5)
        assert (outcome.sip_final, outcome.q850_cause, outcome.ended_by, outcome.answered) == (sip, cause, "app", False)


# ---------------------------------------------------------------- REST validation, auth, faults
async def test_rest_validation_auth_and_faults(simulator):
    async with App(simulator) as app:
        call = await simulator.place_call(exten="15145550100")
        ch = call.channel_id
        await app.wait_for(is_type("StasisStart", ch))
        assert await app.rest("GET", "/no/such/resource") == (404, {"message": "Resource not found"})
        assert await app.rest("PUT", "/channels") == (405, {"message": "Invalid method"})
        assert await app.rest("POST", "/applications/callgate/subscription") == (
            400, {"message": "Missing parameter eventSource"})
        assert await app.rest("POST", "/bridges/x/addChannel") == (400, {"message": "Missing parameter channel"})
        assert (await app.rest("POST", f"/channels/{ch}/dial", timeout="soon"))[0] == 400
        assert await app.rest("DELETE", f"/channels/{ch}", reason="busy", reason_code="17") == (
            400, {"message": "The reason and reason_code can't both be specified"})
        assert await app.rest("DELETE", f"/channels/{ch}", reason_code="abc") == (
            400, {"message": "Invalid reason for hangup reason code provided"})
        assert await app.rest("POST", f"/channels/{ch}/play") == (
            500, {"message": "Failed to queue media for playback"})
        simulator.inject_rest_fault("POST", r"/channels/.*/ring$", 500, "Internal Server Error", times=1)
        assert await app.rest("POST", f"/channels/{ch}/ring") == (500, {"message": "Internal Server Error"})
        assert (await app.rest("POST", f"/channels/{ch}/ring"))[0] == 204
        async with aiohttp.ClientSession() as anon:
            async with anon.get(simulator.url + "/ari/channels") as resp:
                assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Basic")
                assert await resp.json() == {"message": "Authentication required"}
            async with anon.get(simulator.url + "/ari/channels?api_key=callgate:secret") as resp:
                assert resp.status == 200
                assert resp.headers["Server"] == "Asterisk/GIT-22-69535d4837"
        statuses = [(r.method, r.status) for r in simulator.requests if r.path.endswith("/ring")]
        assert statuses == [("POST", 500), ("POST", 204)]


@pytest.mark.parametrize("party,call_kw,expect", [
    (Party(answer_after=0.5, hangup_after=1.0), {}, (200, 16, "callee", True)),
    (Party(busy=True, reject_after=0.3), {}, (486, 17, "callee", False)),
    (Party(no_answer=True), {}, (480, 19, "callee", False)),          # Dial(...,30,...) times out
    (Party(fail_cause=34, reject_after=0.3), {}, (503, 34, "callee", False)),
    (Party(answer_after=None), {"caller_cancel_after": 5.0}, (487, 127, "caller", False)),
])
async def test_continue_dial_outcomes(simulator_factory, party, call_kw, expect):
    sim = await simulator_factory(time_scale=0.01)
    sim.script_destination_default(party)
    async with App(sim) as app:
        call = await _continue_call(sim, app, "ALLOW", "60000", subscribe=True, **call_kw)
        outcome = await call.ended(timeout=5)
        assert (outcome.sip_final, outcome.q850_cause, outcome.ended_by, outcome.answered) == expect
        destroyed = await app.wait_for(is_type("ChannelDestroyed", call.channel_id))
        assert destroyed["cause"] == expect[1]
        assert sim.channels == {}
        if expect[3]:
            assert 900 <= outcome.callee_talk_ms <= 1500
            assert [e["dialstatus"] for e in app.events if e["type"] == "Dial"] == ["", "RINGING", "ANSWER"]


# ---------------------------------------------------------------- PUT /applications/{app}/eventFilter
async def test_event_filter_by_type_disallowed_first(simulator):
    simulator.script_destination("PJSIP/15145550100@trunk", Party(answer_after=0.05))
    async with App(simulator) as app:
        url = simulator.url + "/ari/applications/callgate/eventFilter"
        body = {"allowed": [{"type": "StasisStart"}, {"type": "ChannelVarset"}, {"type": "Dial"},
                            {"type": "ChannelDestroyed"}, {"type": "StasisEnd"}],
                "disallowed": [{"type": "ChannelVarset"}]}
        async with app.http.put(url, json=body) as resp:
            assert resp.status == 200
            shown = await resp.json()
        assert shown["events_allowed"] == body["allowed"] and shown["events_disallowed"] == body["disallowed"]
        assert (await app.rest("GET", "/applications/callgate"))[1]["events_disallowed"] == body["disallowed"]

        call, callee, bridge = await bridge_call(app, simulator, caller_hangup_after=0.1)
        await app.wait_for(is_type("ChannelDestroyed", call.channel_id))
        types = {e["type"] for e in app.events}
        assert types <= {"StasisStart", "Dial", "ChannelDestroyed", "StasisEnd"}  # varsets: disallowed wins
        assert "ChannelDestroyed" in types and "Dial" in types

        # a body naming one list keeps the other; an empty body clears both
        async with app.http.put(url, json={"allowed": []}) as resp:
            assert (await resp.json())["events_disallowed"] == body["disallowed"]
        async with app.http.put(url, json={}) as resp:
            cleared = await resp.json()
        assert cleared["events_allowed"] == [] and cleared["events_disallowed"] == []
        await app.rest("DELETE", f"/channels/{callee}")
        await app.rest("DELETE", f"/bridges/{bridge}")


async def test_event_filter_bad_body_and_unknown_app(simulator):
    async with App(simulator) as app:
        async with app.http.put(simulator.url + "/ari/applications/callgate/eventFilter",
                                json={"allowed": [{"kind": "StasisStart"}]}) as resp:
            assert resp.status == 400
            assert (await resp.json())["message"].startswith("Invalid format definition: allowed must be a list")
        async with app.http.put(simulator.url + "/ari/applications/callgate/eventFilter",
                                json={"allowed": "StasisStart"}) as resp:
            assert resp.status == 400
        async with app.http.put(simulator.url + "/ari/applications/callgate/eventFilter",
                                json={"disallowed": "StasisStart"}) as resp:
            assert resp.status == 400
            assert "disallowed must be a list" in (await resp.json())["message"]
        assert (await app.rest("GET", "/applications/callgate"))[1]["events_allowed"] == []
        async with app.http.put(simulator.url + "/ari/applications/nope/eventFilter", json={}) as resp:
            assert resp.status == 404 and (await resp.json()) == {"message": "Application not found"}


# ---------------------------------------------------------------- dialplan functions as variable names
async def test_set_variable_runs_array_as_asterisk_does(simulator):
    """ARRAY(A,B,C)=a,b sets A, B, then C (missing values set ""), one ChannelVarset each; the
    function's own name is never a variable. Without func_strings nothing is set, still 204."""
    async with App(simulator) as app:
        call = await simulator.place_call(exten="15145550100")
        ch = call.channel_id
        await app.wait_for(is_type("StasisStart", ch))
        status, _ = await app.rest("POST", f"/channels/{ch}/variable", variable="ARRAY(X_A,X_B,X_C)", value='1,"2,3"')
        assert status == 204
        assert {k: v for k, v in simulator.channel_variables(ch).items() if k.startswith("X_")} == \
            {"X_A": "1", "X_B": "2,3", "X_C": ""}
        await app.wait_for(lambda e: e["type"] == "ChannelVarset" and e["variable"] == "X_C")
        assert [(e["variable"], e["value"]) for e in app.events if e["type"] == "ChannelVarset"] == \
            [("X_A", "1"), ("X_B", "2,3"), ("X_C", "")]
        simulator.dialplan_functions.discard("ARRAY")
        status, _ = await app.rest("POST", f"/channels/{ch}/variable", variable="ARRAY(X_D,X_E)", value="4,5")
        assert status == 204 and simulator.function_errors == ["Function ARRAY not registered"]
        assert "X_D" not in simulator.channel_variables(ch)
        assert not any(k.startswith("ARRAY") for k in simulator.channel_variables(ch))
        await app.rest("DELETE", f"/channels/{ch}")


# ------------------------------------------------- issue 15: the recorded end (AstDB, as on Asterisk 22)
async def test_the_callgate_ended_handler_records_the_first_end_also_with_no_app_connected(simulator):
    """asterisk-conf's bridge contexts push [callgate-ended]; it runs at the hangup whether or not
    an app is connected, keyed by CALLGATE_CALL (the carrier leg) or the channel's own id, and
    the first leg to end wins (checked on the lab: `database show callgate_ended`)."""
    sim = simulator
    sim.script_destination("PJSIP/15145550100@trunk", Party(answer_after=0.0))
    async with App(sim) as app:
        call, callee, bridge = await bridge_call(app, sim)
    await asyncio.sleep(0.05)  # the app is gone
    before_ms = int(sim.now() * 1000)
    await sim.hangup_channel(call.channel_id)
    await call.ended(timeout=5)
    [key] = sim.astdb
    family, caller, end = key.split("/")
    assert (family, caller) == ("callgate_ended", call.channel_id)
    assert before_ms <= int(end) <= int(sim.now() * 1000)
    assert sim.astdb[key].startswith("PJSIP/alice-")
    await sim.hangup_channel(callee)  # created without CALLGATE_CALL: its own id
    await asyncio.sleep(0.05)
    assert [k for k in sim.astdb if k != key] == []  # bridge_call creates the callee without the handler


async def test_a_created_channel_gets_the_handler_from_its_create_variables(simulator):
    sim = simulator
    async with App(sim) as app:
        call = await sim.place_call(exten="15145550100", hangup_handler=None)
        await app.wait_for(is_type("StasisStart", call.channel_id))
        async with app.http.post(sim.url + "/ari/channels/create",
                                 params={"endpoint": "PJSIP/15145550100@trunk", "app": "callgate"},
                                 json={"variables": {"CHANNEL(hangup_handler_push)": "callgate-ended,s,1",
                                                     "CALLGATE_CALL": call.channel_id}}) as resp:
            callee = (await resp.json())["id"]
        status, body = await app.rest("GET", f"/channels/{callee}/variable", variable="CALLGATE_CALL")
        assert (status, body) == (200, {"value": call.channel_id})
        assert (await app.rest("DELETE", f"/channels/{callee}"))[0] == 204
        await app.wait_for(is_type("ChannelDestroyed", callee))
        assert [k.split("/")[1] for k in sim.astdb] == [call.channel_id]
        await app.rest("DELETE", f"/channels/{call.channel_id}")
        await call.ended(timeout=5)
    assert len(sim.astdb) == 1  # the caller had no handler (hangup_handler=None)


async def test_astdb_through_ari_as_asterisk_22_answers(simulator):
    """What the lab's Asterisk 22 answered: /asterisk/variable evaluates no function; DB() and
    DB_DELETE() are dangerous reads (500); DB_EXISTS() says 1 but cannot hand the value over;
    DB_KEYS() lists; DB_DELETE() may be written without a channel; Local/clear@callgate-ended
    runs DBdeltree(callgate_ended)."""
    sim = simulator
    sim.astdb.update({"callgate_ended/1.1/1796549013464": "PJSIP/alice-00000001",
                      "callgate_ended/1.10/1796549013999": "PJSIP/alice-00000002"})
    async with App(sim) as app:
        assert await app.rest("GET", "/asterisk/variable", variable="DB(callgate_ended/1.1)") == (200, {"value": ""})
        status, helper = await app.rest("POST", "/channels/create", endpoint="Local/read@callgate-ended",
                                        app="callgate", channelId="reader")
        assert status == 200 and helper["name"].startswith("Local/read@callgate-ended-") and helper["name"].endswith(";1")
        for func in ("DB", "DB_DELETE"):
            status, body = await app.rest("GET", "/channels/reader/variable", variable=f"{func}(callgate_ended/1.1)")
            assert (status, body["message"]) == (500, "Unable to read provided function")
        assert await app.rest("GET", "/channels/reader/variable",
                              variable="DB_EXISTS(callgate_ended/1.1/1796549013464)") == (200, {"value": "1"})
        assert await app.rest("GET", "/channels/reader/variable", variable="DB_RESULT") == (200, {"value": ""})
        assert await app.rest("GET", "/channels/reader/variable",
                              variable="DB_KEYS(callgate_ended/1.1)") == (200, {"value": "1796549013464"})
        assert await app.rest("GET", "/channels/reader/variable",
                              variable="DB_KEYS(callgate_ended/nothere)") == (200, {"value": ""})
        assert (await app.rest("POST", "/asterisk/variable",
                               variable="DB_DELETE(callgate_ended/1.1/1796549013464)"))[0] == 204
        assert list(sim.astdb) == ["callgate_ended/1.10/1796549013999"]
        assert await app.rest("GET", "/asterisk/variable", variable="DB_RESULT") == (200, {"value": "PJSIP/alice-00000001"})
        status, _ = await app.rest("POST", "/channels", endpoint="Local/clear@callgate-ended", app="callgate",
                                   channelId="clearer", otherChannelId="clearer2")
        assert status == 200 and sim.astdb == {}
        await app.wait_for(is_type("ChannelDestroyed", "clearer"))
        await app.rest("DELETE", "/channels/reader")


async def test_db_is_blocked_on_a_channel_ari_set_a_variable_on(simulator):
    """Asterisk 22 (res/stasis/control.c): after ARI sets a channel variable, dangerous functions
    stay inhibited on that channel's thread, so the handler's DB() write is refused (logged
    "Dangerous function DB write blocked"; seen on the lab in continue mode)."""
    sim = simulator
    async with App(sim) as app:
        call = await sim.place_call(exten="15145550100", hangup_handler="callgate-ended,s,1")
        await app.wait_for(is_type("StasisStart", call.channel_id))
        assert (await app.rest("POST", f"/channels/{call.channel_id}/variable", variable="CALLGATE_STATUS",
                               value="ALLOW"))[0] == 204
        await app.rest("DELETE", f"/channels/{call.channel_id}")
        await call.ended(timeout=5)
    assert sim.astdb == {} and sim.function_errors == ["Dangerous function DB write blocked"]
