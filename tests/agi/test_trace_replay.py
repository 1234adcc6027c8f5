"""Replays the recorded Asterisk 22 FastAGI conversations (tests/agi/traces, copied from
/work/shared/agi/traces) against our server and the real core on both databases.

Asterisk's bytes are sent exactly as recorded; our server's bytes must equal the recorded server's
bytes, with the values that depend on the database mapped (session id ``s-123`` → the real one,
``CALLGATE_MAX_MS 5000`` → the granted ms). The first lab dialplan passed ``${CALLERID(num)}`` as
argument 1 where the product passes the direction: those env blocks are replayed with
``agi_arg_1: alice`` mapped to ``outbound`` (and once verbatim, which must be refused)."""
from __future__ import annotations

import asyncio
import logging

import pytest

from agi.routes import VAR_HANGUPCAUSE, VAR_MAX_MS, VAR_REASON, VAR_SESSION, VAR_STATUS
from billing_core.domain.rating import Rate
from tests.factories import seed

from .conftest import PBX, running
from .fakes import DelayedCore, after_env, env_block, load, play

DIAL_U = [
    "agi_dial_u_answered_and_hangup_handler_settle",
    "agi_dial_u_answered_and_hangup_handler_settle_limit_cut",
]


def sent_by_server(records, conn=None) -> bytes:
    return "".join(r["raw"] for r in after_env(records, conn) if r["direction"] == "agi->asterisk").encode()


def product_args(env: list[str]) -> list[str]:
    """The first lab dialplan's AGI(…/authorize,${CALLERID(num)},…) → the product's (…,outbound,…)."""
    return ["agi_arg_1: outbound\n" if line == "agi_arg_1: alice\n" else line for line in env]


async def session_of(core, uniqueid):
    s = await core.find_session(PBX, uniqueid)
    assert s is not None, uniqueid
    return s


@pytest.mark.parametrize("trace", DIAL_U)
async def test_authorize_answered_settle_byte_exact(core, trace):
    await seed(core, balance="10.00")
    records = load(trace)
    expected_talk = {"agi_dial_u_answered_and_hangup_handler_settle": 2006,
                     "agi_dial_u_answered_and_hangup_handler_settle_limit_cut": 5001}[trace]
    async with running(core) as srv:
        # agi1: authorize on the caller channel
        env1 = env_block(records, "agi1")
        played = await play(srv.host, srv.port, env1)
        uniqueid = next(l for l in env1 if l.startswith("agi_uniqueid: ")).split(": ", 1)[1].strip()
        s = await session_of(core, uniqueid)
        assert s.state == "authorized" and s.hold_mode == "full" and s.hold > 0
        want = sent_by_server(records, "agi1").decode()
        want = want.replace("s-123", s.session_id).replace("CALLGATE_MAX_MS 5000", f"CALLGATE_MAX_MS {s.granted_seconds * 1000}")
        assert played.received == want.encode()
        assert played.closed_by_server
        assert played.variables[VAR_STATUS] == "ALLOW"

        # agi2: Dial's U() on the callee channel: nothing sent, closed at once, answer recorded
        env2 = [l.replace("s-123", s.session_id) for l in env_block(records, "agi2")]
        played = await play(srv.host, srv.port, env2)
        assert played.received == sent_by_server(records, "agi2") == b""
        assert played.closed_by_server
        s = await core.get_session(s.session_id)
        assert s.state == "answered" and s.answered_at is not None

        # agi3: hangup handler settle, with ANSWEREDTIME / ANSWEREDTIME_MS as recorded
        core.clock.advance(ms=expected_talk)  # the talk took its time
        env3 = [l.replace("s-123", s.session_id) for l in env_block(records, "agi3")]
        before = await core.account("acme")
        played = await play(srv.host, srv.port, env3)
        assert played.received == sent_by_server(records, "agi3") == b""
        assert played.closed_by_server
        s = await core.get_session(s.session_id)
        assert s.state == "settled" and s.talk_ms == expected_talk
        after = await core.account("acme")
        assert after.held == 0 and after.balance == before.balance - s.cost

        # a repeated settle (e.g. the handler ran twice) changes nothing
        played = await play(srv.host, srv.port, env3)
        assert played.closed_by_server and played.received == b""
        assert await core.account("acme") == after


async def test_settle_server_down_then_back(core):
    """server_down trace: nothing listens when the hangup handler runs (Asterisk logs 'Connection
    refused', AGISTATUS=FAILURE); the hold stays. A server started later settles the call from the
    same arguments (s-123,2,2006, asterisk_log line 106)."""
    await seed(core, balance="10.00")
    records = load("agi_dial_u_answered_and_hangup_handler_settle_server_down")
    async with running(core) as srv:
        played = await play(srv.host, srv.port, env_block(records, "agi1"))
        assert played.variables[VAR_STATUS] == "ALLOW"
        s = await session_of(core, "1795853351.8")
        env2 = [l.replace("s-123", s.session_id) for l in env_block(records, "agi2")]
        assert (await play(srv.host, srv.port, env2)).closed_by_server
        host, port = srv.host, srv.port
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(host, port)
    s = await core.get_session(s.session_id)
    assert s.state == "answered" and s.hold > 0  # money still held, nothing lost
    core.clock.advance(30)  # the server comes back later

    settle_line = next(r["text"] for r in records if r["kind"] == "asterisk_log" and "agi://127.0.0.1:4573/settle," in r["text"])
    assert "settle,s-123,2,2006" in settle_line
    env3 = env_block(load("agi_dial_u_answered_and_hangup_handler_settle"), "agi3")  # same shape, settle,s-123,2,2006
    env3 = [l.replace("s-123", s.session_id).replace("1795853324.4", "1795853351.8").replace("alice-00000004", "alice-00000008")
            for l in env3]
    async with running(core) as srv:
        assert (await play(srv.host, srv.port, env3)).closed_by_server
    s = await core.get_session(s.session_id)
    assert s.state == "settled" and s.talk_ms == 2006


async def test_reject_insufficient_funds(core):
    """agi_reject_insufficient_funds: the recorded server's first SET is `CALLGATE_MAX_MS 0`; ours
    sends that same line first, then the rest of the DENY, and closes at once (the caller's 403
    only leaves Asterisk after the close). Progress/Playback/Hangup(21) run in the dialplan."""
    await seed(core, balance="0.05", deck=[Rate("1", 500_000, 0, 60, 6, "NANP at 0.50/min")])
    records = load("agi_reject_insufficient_funds")
    async with running(core) as srv:
        played = await play(srv.host, srv.port, product_args(env_block(records)))
    recorded_set = next(r["raw"] for r in after_env(records) if r["raw"].startswith("SET VARIABLE"))
    assert recorded_set == "SET VARIABLE CALLGATE_MAX_MS 0\n"
    assert played.received == (
        "SET VARIABLE CALLGATE_MAX_MS 0\n"
        'SET VARIABLE CALLGATE_SESSION ""\n'
        "SET VARIABLE CALLGATE_REASON insufficient_funds\n"
        "SET VARIABLE CALLGATE_HANGUPCAUSE 21\n"
        "SET VARIABLE CALLGATE_STATUS DENY\n"
    ).encode()
    assert played.closed_by_server
    assert played.variables == {VAR_MAX_MS: "0", VAR_SESSION: "", VAR_REASON: "insufficient_funds",
                                VAR_HANGUPCAUSE: "21", VAR_STATUS: "DENY"}
    assert await core.find_session(PBX, "1795802937.228") is None
    assert (await core.account("acme")).held == 0


async def test_caller_hangs_up_before_the_reply(core):
    """agi_caller_hangup_before_reply: HANGUP arrives while the decision is still being made. The
    SETs still get 200 (dead-safe), the server sees HANGUP and releases the hold at once."""
    await seed(core, balance="10.00")
    records = load("agi_caller_hangup_before_reply")


    async with running(DelayedCore(core, 0.3)) as srv:
        played = await play(srv.host, srv.port, product_args(env_block(records)), hangup_after_env=0.05)
    assert played.closed_by_server
    assert played.variables[VAR_STATUS] == "ALLOW"  # set on the dead channel; the dialplan never dials
    s = await session_of(core, "1795802932.227")
    assert s.state == "settled" and s.talk_ms == 0 and s.cost == 0
    acct = await core.account("acme")
    assert acct.held == 0 and acct.balance == 10_000_000 and acct.live_calls == 0


async def test_hangup_between_command_and_reply(core):
    """agi_authorize_dial_caller_hangup: `HANGUP` can come between a command and its reply; it is
    not taken as the reply, the reply after it is, and the grant is released."""
    await seed(core, balance="10.00")
    records = load("agi_authorize_dial_caller_hangup")
    async with running(core) as srv:
        played = await play(srv.host, srv.port, product_args(env_block(records)), hangup_before_command=1)
    assert played.closed_by_server
    assert [c.split(" ")[2] for c in played.commands] == [VAR_MAX_MS, VAR_SESSION, VAR_STATUS]
    s = await session_of(core, "1795802916.223")
    assert s.state == "settled" and s.talk_ms == 0
    assert (await core.account("acme")).held == 0


async def test_callee_hangup_trace_env_is_an_allow(core):
    """agi_authorize_dial_callee_hangup's environment: a plain ALLOW, the hold kept for the Dial."""
    await seed(core, balance="10.00")
    records = load("agi_authorize_dial_callee_hangup")
    async with running(core) as srv:
        played = await play(srv.host, srv.port, product_args(env_block(records)))
    s = await session_of(core, "1795802925.225")
    assert played.received == (f"SET VARIABLE CALLGATE_MAX_MS {s.granted_seconds * 1000}\n"
                               f"SET VARIABLE CALLGATE_SESSION {s.session_id}\n"
                               "SET VARIABLE CALLGATE_STATUS ALLOW\n").encode()
    assert s.state == "authorized" and s.hold > 0


async def test_first_lab_dialplan_args_verbatim_are_refused(core, caplog):
    """Replayed verbatim, `authorize,alice,15145550100` has no direction: refused, fail closed."""
    await seed(core, balance="10.00")
    records = load("agi_authorize_dial_caller_hangup")
    caplog.set_level(logging.ERROR, logger="callgate.agi")
    async with running(core) as srv:
        played = await play(srv.host, srv.port, env_block(records))
    assert played.variables[VAR_STATUS] == "DENY"
    assert played.variables[VAR_REASON] == "billing_unavailable" and played.variables[VAR_HANGUPCAUSE] == "34"
    assert "argument 1 must be outbound or inbound (got 'alice')" in caplog.text
    assert await core.find_session(PBX, "1795802916.223") is None
