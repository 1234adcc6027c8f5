"""Continue mode (Stasis(callgate,outbound,continue) + Dial(...,L(${CALLGATE_MAX_MS}:<warning>)))."""
from __future__ import annotations

import pytest

from callgate_fakes.ari_simulator import Party
from billing_core.domain.rating import Rate
from tests.ari.gate_support import SLACK_MS, TIME_SCALE, running_gate, wait_for
from tests.factories import seed

NUMBER = "15145550100"
TRUNK = f"PJSIP/{NUMBER}@trunk"
PER_SECOND = [Rate("1", 60_000, 0, 1, 1, "NANP per second")]  # 0.001 per second
CONTINUE = dict(context="callgate-outbound-continue", app_args=["outbound", "continue"])


@pytest.fixture
async def sim(simulator_factory):
    return await simulator_factory(time_scale=TIME_SCALE)


def rest_steps(sim, channel_id):
    """The gate's REST calls about this channel, in order (method, last path part, query)."""
    out = []
    for r in sim.requests:
        if channel_id in r.path or channel_id in str(r.query):
            out.append((r.method, r.path.rsplit("/", 1)[-1], r.query))
    return out


async def test_allowed_sets_variables_subscribes_then_continues_and_settles_talk(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, caller_hangup_after=3.0, **CONTINUE)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.answered and out.ended_by == "caller"
    vars_ = call.continued["variables"]
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert vars_["CALLGATE_STATUS"] == "ALLOW" and vars_["CALLGATE_REASON"] == ""
    assert vars_["CALLGATE_SESSION"] == s.session_id
    assert int(vars_["CALLGATE_MAX_MS"]) == s.granted_seconds * 1000 and s.hold_mode == "full"
    steps = [(m, last) for m, last, _ in rest_steps(sim, call.channel_id)]
    first_set = steps.index(("POST", "variable"))
    sub = steps.index(("POST", "subscription"))
    cont = steps.index(("POST", "continue"))
    assert first_set < sub < cont  # variables, then the subscription, then continue
    # no DELETE …/subscription afterwards: Asterisk dropped it with the channel (it would answer 422)
    assert ("DELETE", "subscription") not in steps
    assert call.channel_id not in sim.channels  # destroyed, its subscription with it
    answered_time = [int(e["value"]) for e in sim.events_of(call.channel_id)
                     if e["type"] == "ChannelVarset" and e["variable"] == "ANSWEREDTIME_MS" and e["value"]][-1]
    # exact: what Dial() reported; the window is what the phone lived (a stalled CI loop lengthens
    # it in simulated time: SLACK_MS, as every timing window in these tests — one full-suite run
    # here saw 11,563 ms after a ~190 ms stall at time scale 0.02)
    assert s.state == "settled" and s.talk_ms == answered_time and 2_500 < s.talk_ms < 3_000 + SLACK_MS
    assert (await core.account("acme")).held == 0


async def test_limit_ends_the_call_at_the_grant(sim, core):
    await seed(core, balance="0.02", deck=PER_SECOND)  # 20 s
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, **CONTINUE)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert call.continued["variables"]["CALLGATE_MAX_MS"] == "20000"
    assert out.ended_by == "limit" and "sound:beep" in out.heard
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled" and 19_000 <= s.talk_ms <= 20_000 and s.cost <= 20_000
    a = await core.account("acme")
    assert a.held == 0 and a.balance == 20_000 - s.cost


async def test_denied_sets_deny_with_zero_max_ms_and_nothing_is_held(sim, core):
    await seed(core, balance="0")
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, **CONTINUE)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    vars_ = call.continued["variables"]
    assert (vars_["CALLGATE_STATUS"], vars_["CALLGATE_REASON"], vars_["CALLGATE_MAX_MS"]) == ("DENY", "depleted", "0")
    assert vars_["CALLGATE_SESSION"] == ""
    assert out.sip_final == 403  # the dialplan's Hangup(21)
    assert not any(r.path.endswith("/subscription") for r in sim.requests)
    assert await core.find_session(sim.asterisk_id, call.channel_id) is None


async def test_unanswered_continue_call_settles_zero(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(busy=True))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, **CONTINUE)
        await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert (s.state, s.talk_ms, s.cost) == ("settled", 0, 0)
    assert (await core.account("acme")).held == 0


async def test_core_failure_continues_with_deny(sim, core):
    await seed(core)

    async def broken(**kw):
        raise RuntimeError("core bug")

    core.authorize_call = broken
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, **CONTINUE)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    vars_ = call.continued["variables"]
    assert (vars_["CALLGATE_STATUS"], vars_["CALLGATE_REASON"], vars_["CALLGATE_MAX_MS"]) == (
        "DENY", "billing_unavailable", "0")
    # [callgate-deny] turns billing_unavailable into cause 34: 503, as bridge mode refuses it
    assert out.sip_final == 503 and not out.answered


INBOUND_CONTINUE = dict(endpoint="trunk", context="callgate-inbound-continue", app_args=["inbound", "continue"],
                        caller_id="15145557777")


async def test_inbound_continue_sets_the_endpoint_and_the_dialplan_rings_it(sim, core):
    await seed(core, inbound_rate="0.01")  # the DID owner pays 0.01/min to receive
    sim.script_destination("PJSIP/alice", Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(exten="15145551000", caller_hangup_after=3.0, **INBOUND_CONTINUE)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.answered and out.ended_by == "caller"
    vars_ = call.continued["variables"]
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.direction == "inbound" and s.hold_mode == "full"
    assert (vars_["CALLGATE_STATUS"], vars_["CALLGATE_ENDPOINT"]) == ("ALLOW", "alice")
    assert int(vars_["CALLGATE_MAX_MS"]) == s.granted_seconds * 1000 and vars_["CALLGATE_SESSION"] == s.session_id
    steps = [(m, last) for m, last, _ in rest_steps(sim, call.channel_id)]
    assert steps.index(("POST", "subscription")) < steps.index(("POST", "continue"))
    # the dialplan's Dial() rang the DID's endpoint (not the trunk), and the gate never created a channel
    dials = [e for e in sim.events_of(call.channel_id) if e["type"] == "Dial" and e.get("dialstring")]
    assert [e["dialstring"] for e in dials] == ["alice"]
    assert not any(r.path.endswith("/channels/create") for r in sim.requests)
    answered_time = [int(e["value"]) for e in sim.events_of(call.channel_id)
                     if e["type"] == "ChannelVarset" and e["variable"] == "ANSWEREDTIME_MS" and e["value"]][-1]
    assert s.state == "settled" and s.talk_ms == answered_time and 2_500 < s.talk_ms < 3_000 + SLACK_MS
    a = await core.account("acme")
    assert a.held == 0 and s.cost > 0 and a.balance == 10_000_000 - s.cost


@pytest.mark.parametrize("did,balance,reason,sip", [
    ("15145559999", "10.00", "unknown_did", 404),  # [callgate-deny]: cause 1
    ("15145551000", "0", "depleted", 403),         # the DID owner has no money: cause 21
])
async def test_inbound_continue_refusal_rings_nobody(sim, core, did, balance, reason, sip):
    await seed(core, balance=balance)
    sim.script_destination("PJSIP/alice", Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(exten=did, **INBOUND_CONTINUE)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    vars_ = call.continued["variables"]
    assert (vars_["CALLGATE_STATUS"], vars_["CALLGATE_REASON"], vars_["CALLGATE_MAX_MS"]) == ("DENY", reason, "0")
    assert "CALLGATE_ENDPOINT" not in vars_ and vars_["CALLGATE_SESSION"] == ""
    assert out.sip_final == sip and not out.answered
    assert not [e for e in sim.events_of(call.channel_id) if e["type"] == "Dial"]
    assert not any(r.path.endswith("/subscription") for r in sim.requests)
    assert await core.find_session(sim.asterisk_id, call.channel_id) is None


async def test_without_asterisks_array_function_the_variables_go_one_by_one(sim, core, caplog):
    """A modules.conf without func_strings.so: the gate notices on the first call, logs it once and
    sets each variable with its own request; the calls work the same."""
    await seed(core)
    sim.dialplan_functions.discard("ARRAY")
    sim.script_destination(TRUNK, Party(answer_after=0.5, hangup_after=1.0))
    async with running_gate(sim, core) as gate:
        first = await sim.place_call(endpoint="alice", exten=NUMBER, **CONTINUE)
        await first.ended(timeout=10)
        second = await sim.place_call(endpoint="alice", exten=NUMBER, **CONTINUE)
        await second.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert sum("has no ARRAY() function" in r.getMessage() for r in caplog.records) == 1
    for call in (first, second):
        vars_ = call.continued["variables"]
        s = await core.find_session(sim.asterisk_id, call.channel_id)
        assert vars_["CALLGATE_STATUS"] == "ALLOW" and vars_["CALLGATE_SESSION"] == s.session_id
        assert s.state == "settled" and s.talk_ms > 0
    names = [q["variable"] for m, last, q in rest_steps(sim, second.channel_id) if (m, last) == ("POST", "variable")]
    assert names == ["CALLGATE_MAX_MS", "CALLGATE_STATUS", "CALLGATE_REASON", "CALLGATE_SESSION"]


async def test_varsets_are_switched_on_for_continue_calls_and_off_after(sim, core):
    """The eventFilter keeps ChannelVarset off the socket while only bridged calls run; a continue-
    mode call switches it on before it continues (Dial's ANSWEREDTIME_MS must reach the gate), and
    the refresh loop switches it off again once the last continue-mode call has ended."""
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=0.5, hangup_after=1.0))

    def puts():
        return [("ChannelVarset" in {f["type"] for f in (r.body or {}).get("disallowed", [])})
                for r in sim.requests if r.method == "PUT" and r.path.endswith("/eventFilter")]

    async with running_gate(sim, core) as gate:
        assert puts() == [True]                                # connect: no continue call, varsets off
        call = await sim.place_call(endpoint="alice", exten=NUMBER, **CONTINUE)
        await call.ended(timeout=10)
        assert await gate.wait_idle(5)
        await wait_for(lambda: len(puts()) == 3, 5)
        assert puts() == [True, False, True]                   # on before continue, off after
        steps = [(m, last) for m, last, _ in rest_steps(sim, call.channel_id)]
        put_at = [i for i, r in enumerate(sim.requests) if r.method == "PUT"][1]
        cont_at = next(i for i, r in enumerate(sim.requests) if r.path.endswith(f"{call.channel_id}/continue"))
        assert put_at < cont_at and ("POST", "continue") in steps
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    answered_time = [int(e["value"]) for e in sim.events_of(call.channel_id)   # what the gate was sent
                     if e["type"] == "ChannelVarset" and e["variable"] == "ANSWEREDTIME_MS" and e["value"]]
    assert answered_time and s.talk_ms == answered_time[-1]  # settled from Dial's own figure


# ---------------------------------------------------------------- settled by the dialplan's hangup handler
# asterisk-conf's continue contexts push [callgate-continue-settle] before Stasis() and say so with a
# third argument; the handler re-enters Stasis(callgate,settle,<session>,<ANSWEREDTIME_MS>) when the
# caller hangs up (recorded on Asterisk 22: StasisStart then StasisEnd on the hung-up channel, before
# ChannelDestroyed). The gate then needs no channel subscription: after continue Asterisk builds no
# event of the call for it (a subscription made it build ~48 per call, most of them ChannelVarset).
HANDLER = dict(context="callgate-outbound-continue", app_args=["outbound", "continue", "hangup-handler"])


def events_after_continue(sim, call):
    """What the gate was sent about the caller once it had continued it."""
    sent = sim.events_of(call.channel_id)
    first_end = next(i for i, e in enumerate(sent) if e["type"] == "StasisEnd")
    return sent[first_end + 1:]


async def test_handler_call_is_settled_from_the_handler_without_a_subscription(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, caller_hangup_after=3.0, **HANDLER)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
        filters = [r for r in sim.requests if r.method == "PUT" and r.path.endswith("/eventFilter")]
    assert out.answered and out.ended_by == "caller"
    assert not any(r.path.endswith("/subscription") for r in sim.requests)
    assert len(filters) == 1  # the connect's; ChannelVarset is never switched on for this call
    after = events_after_continue(sim, call)
    assert [e["type"] for e in after] == ["StasisStart", "StasisEnd"]
    answered_ms = int(call.variables["ANSWEREDTIME_MS"])
    assert after[0]["args"] == ["settle", call.continued["variables"]["CALLGATE_SESSION"], str(answered_ms)]
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled" and s.talk_ms == answered_ms and 2_500 < s.talk_ms < 3_000 + SLACK_MS
    assert s.answered_at is not None and s.cost > 0
    assert (await core.account("acme")).held == 0
    # the settle StasisStart is not a new call: no request about the hung-up channel after continue
    steps = [(m, last) for m, last, _ in rest_steps(sim, call.channel_id)]
    assert steps[-1] == ("POST", "continue")


async def test_handler_call_unanswered_settles_zero(sim, core):
    await seed(core)
    sim.script_destination(TRUNK, Party(busy=True))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, **HANDLER)
        await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert (s.state, s.talk_ms, s.cost) == ("settled", 0, 0)
    assert (await core.account("acme")).held == 0
    assert [e["args"] for e in events_after_continue(sim, call) if e["type"] == "StasisStart"] == [
        ["settle", s.session_id, ""]]


async def test_handler_call_cut_at_the_limit_is_billed_at_most_the_grant(sim, core):
    await seed(core, balance="0.02", deck=PER_SECOND)  # 20 s
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, **HANDLER)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.ended_by == "limit" and "sound:beep" in out.heard
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled" and 19_000 <= s.talk_ms <= 20_000 and s.cost <= 20_000
    a = await core.account("acme")
    assert a.held == 0 and a.balance == 20_000 - s.cost


async def test_handler_refusal_runs_no_settle(sim, core):
    await seed(core, balance="0")
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, **HANDLER)
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.sip_final == 403 and call.continued["variables"]["CALLGATE_SESSION"] == ""
    # the handler has no session to report: it does not enter Stasis again
    assert [e["type"] for e in sim.events_of(call.channel_id)].count("StasisStart") == 1
    assert await core.find_session(sim.asterisk_id, call.channel_id) is None


async def test_handler_call_when_the_gate_is_gone_at_hangup_leaves_the_hold_to_a_restarted_gate(sim, core):
    """The handler's Stasis() fails while no gate is connected (STASISSTATUS=FAILED): the money stays
    held (fail closed) and the next gate settles the session when it finds the channel gone."""
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=0.5))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten=NUMBER, **HANDLER)
        await wait_for(lambda: call.continued is not None, 5)
        await wait_for(lambda: call.answered_at is not None or (call.channel or {}).get("state") == "Up", 5)
        assert (await core.account("acme")).held > 0
    await sim.hangup_channel(call.channel_id)
    await call.ended(timeout=5)
    assert call.variables["STASISSTATUS"] == "FAILED"
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state != "settled" and (await core.account("acme")).held > 0
    async with running_gate(sim, core) as gate:
        await wait_for(lambda: gate.stats.settled_on_restart == 1, 5)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled" and (await core.account("acme")).held == 0


async def test_inbound_handler_call_rings_the_endpoint_and_is_settled_from_the_handler(sim, core):
    await seed(core, inbound_rate="0.01")
    sim.script_destination("PJSIP/alice", Party(answer_after=1.0))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(exten="15145551000", caller_hangup_after=3.0,
                                    **dict(INBOUND_CONTINUE, app_args=["inbound", "continue", "hangup-handler"]))
        out = await call.ended(timeout=10)
        assert await gate.wait_idle(5)
    assert out.answered and call.continued["variables"]["CALLGATE_ENDPOINT"] == "alice"
    assert not any(r.path.endswith("/subscription") for r in sim.requests)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.direction == "inbound" and s.state == "settled"
    assert s.talk_ms == int(call.variables["ANSWEREDTIME_MS"]) and 2_500 < s.talk_ms < 3_000 + SLACK_MS
    a = await core.account("acme")
    assert a.held == 0 and s.cost > 0 and a.balance == 10_000_000 - s.cost
