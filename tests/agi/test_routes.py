"""The three routes against the real core (both databases), through the real server."""
from __future__ import annotations

import pytest

from agi.routes import (
    HANGUP_CAUSES, VAR_ENDPOINT, VAR_HANGUPCAUSE, VAR_MAX_MS, VAR_REASON, VAR_SESSION, VAR_STATUS, Decision, talk_ms_of,
)
from billing_core.domain.errors import DenyReason
from billing_core.domain.rating import Rate
from tests.factories import seed

from .conftest import PBX, running
from .fakes import env_block, load, play

TRACE = load("agi_dial_u_answered_and_hangup_handler_settle")
AUTH, ANSWERED, SETTLE = (env_block(TRACE, c) for c in ("agi1", "agi2", "agi3"))


def env(block, **changes) -> list[str]:
    """A recorded block with some agi_* values replaced (agi_arg_1=…, agi_channel=…)."""
    out = []
    for line in block:
        key = line.split(":", 1)[0]
        out.append(f"{key}: {changes.pop(key)}\n" if key in changes else line)
    assert not changes, changes
    return out


async def authorize(srv, direction="outbound", number="15145550100", channel="PJSIP/alice-00000004", uniqueid="1.1"):
    return await play(srv.host, srv.port, env(AUTH, agi_arg_1=direction, agi_arg_2=number, agi_channel=channel,
                                              agi_uniqueid=uniqueid))


async def settle(srv, session, secs, ms):
    return await play(srv.host, srv.port, env(SETTLE, agi_arg_1=session, agi_arg_2=secs, agi_arg_3=ms))


def test_every_deny_reason_has_a_cause():
    assert set(HANGUP_CAUSES) == set(DenyReason)
    assert {HANGUP_CAUSES[r] for r in (DenyReason.INSUFFICIENT_FUNDS, DenyReason.DEPLETED, DenyReason.SUSPENDED)} == {21}
    assert {HANGUP_CAUSES[r] for r in (DenyReason.UNKNOWN_ENDPOINT, DenyReason.UNKNOWN_DID, DenyReason.NO_RATE,
                                       DenyReason.INVALID_NUMBER)} == {1}
    assert HANGUP_CAUSES[DenyReason.TOO_MANY_CALLS] == 17 and HANGUP_CAUSES[DenyReason.BILLING_UNAVAILABLE] == 34
    assert Decision.deny("no_rate").variables()[-1] == (VAR_STATUS, "DENY")


def test_talk_ms_of():
    assert talk_ms_of("2", "2006") == 2006
    assert talk_ms_of("5", "") == 5000
    assert talk_ms_of("", "") == 0
    assert talk_ms_of("x", "-1") is None


async def test_outbound_allow_holds_the_whole_grant(core):
    await seed(core, balance="10.00")
    async with running(core) as srv:
        played = await authorize(srv)
    s = await core.find_session(PBX, "1.1")
    assert played.variables == {VAR_MAX_MS: str(s.granted_seconds * 1000), VAR_SESSION: s.session_id, VAR_STATUS: "ALLOW"}
    assert s.hold_mode == "full" and s.account_ref == "acme"
    assert (await core.account("acme")).held == s.hold > 0


@pytest.mark.parametrize("kind, reason, cause", [
    ("unknown_endpoint", "unknown_endpoint", "1"),
    ("no_endpoint_in_channel", "unknown_endpoint", "1"),
    ("invalid_number", "invalid_number", "1"),
    ("empty_number", "invalid_number", "1"),
    ("unknown_did", "unknown_did", "1"),
    ("suspended", "suspended", "21"),
    ("depleted", "depleted", "21"),
    ("too_many_calls", "too_many_calls", "17"),
])
async def test_denies(core, kind, reason, cause):
    await seed(core, balance="0" if kind == "depleted" else "10.00", max_calls=1)
    if kind == "suspended":
        await core.admin.set_account_status("acme", "suspended")
    args = {
        "unknown_endpoint": dict(channel="PJSIP/mallory-00000001"),
        "no_endpoint_in_channel": dict(channel="Local/100@from-internal-00000001;2"),
        "invalid_number": dict(number="abc"),
        "empty_number": dict(number=""),
        "unknown_did": dict(direction="inbound", number="15145559999"),
    }.get(kind, {})
    async with running(core) as srv:
        if kind == "too_many_calls":
            assert (await authorize(srv, uniqueid="1.0")).variables[VAR_STATUS] == "ALLOW"
        played = await authorize(srv, **args)
    assert played.variables[VAR_STATUS] == "DENY"
    assert played.variables[VAR_REASON] == reason and played.variables[VAR_HANGUPCAUSE] == cause
    assert played.variables[VAR_MAX_MS] == "0"


async def test_inbound_did_allow_names_the_endpoint_to_ring(core):
    await seed(core, balance="10.00", did="15145551000")
    async with running(core) as srv:
        played = await authorize(srv, direction="inbound", number="15145551000", channel="PJSIP/trunk-00000009")
    assert played.variables[VAR_STATUS] == "ALLOW" and played.variables[VAR_ENDPOINT] == "alice"
    assert [c.split(" ")[2] for c in played.commands] == [VAR_MAX_MS, VAR_SESSION, VAR_ENDPOINT, VAR_STATUS]


async def test_emergency_allowed_without_charge(core):
    await seed(core, balance="0")
    async with running(core) as srv:
        played = await authorize(srv, number="911")
        assert played.variables[VAR_STATUS] == "ALLOW"
        sid = played.variables[VAR_SESSION]
        await play(srv.host, srv.port, env(ANSWERED, agi_arg_1=sid))
        await settle(srv, sid, "60", "60000")
    s = await core.get_session(sid)
    assert s.emergency and s.state == "settled" and s.cost == 0
    assert (await core.account("acme")).balance == 0


async def test_settle_back_dates_a_lost_answer(core):
    """The `answered` session never reached us (server restarting): ANSWEREDTIME_MS still bills."""
    await seed(core, balance="10.00")
    async with running(core) as srv:
        sid = (await authorize(srv)).variables[VAR_SESSION]
        core.clock.advance(70)  # it rang and talked
        await settle(srv, sid, "61", "61200")
    s = await core.get_session(sid)
    assert s.state == "settled" and s.talk_ms == 61200 and s.cost > 0
    assert s.answered_at == core.clock.now_ms() - 61200


async def test_settle_unanswered_call_releases_everything(core):
    await seed(core, balance="10.00")
    async with running(core) as srv:
        sid = (await authorize(srv)).variables[VAR_SESSION]
        await settle(srv, sid, "", "")
    s = await core.get_session(sid)
    assert s.state == "settled" and s.cost == 0
    a = await core.account("acme")
    assert a.held == 0 and a.balance == 10_000_000 and a.live_calls == 0


async def test_settle_edge_cases_change_nothing(core, caplog):
    await seed(core, balance="10.00")
    async with running(core) as srv:
        sid = (await authorize(srv)).variables[VAR_SESSION]
        before = await core.account("acme")
        for args in (("", "2", "2006"), ("nope", "2", "2006"), (sid, "two", "2006ms")):
            played = await settle(srv, *args)
            assert played.closed_by_server and played.received == b""
        played = await play(srv.host, srv.port, env(ANSWERED, agi_arg_1="nope"))
        assert played.closed_by_server
    assert await core.account("acme") == before
    assert (await core.get_session(sid)).state == "authorized"
    assert "are not whole numbers: not settled" in caplog.text
    assert "unknown session" in caplog.text


async def test_keepalive_reports_agi_calls_until_their_latest_possible_end(core, clock):
    """The sidecar settles sessions unseen for 120 s; an AGI call is reported alive until
    (answer or authorize + ring window) + granted + margin, then left to the sidecar."""
    from agi.keepalive import KeepaliveSettings, keepalive_pass, latest_end_ms

    await seed(core, balance="30.00", deck=[Rate("1", 1_800_000, 0, 60, 6, "NANP at 1.80/min")])
    await seed(core, account="beta", endpoint="bob", did=None, balance="30.00")  # a full hold takes all of acme's
    ks = KeepaliveSettings(interval=30, answer_window=300, margin=60)
    async with running(core) as srv:
        answered_sid = (await authorize(srv, uniqueid="1.1")).variables[VAR_SESSION]
        ringing_sid = (await authorize(srv, uniqueid="1.2", channel="PJSIP/bob-00000002")).variables[VAR_SESSION]
        await play(srv.host, srv.port, env(ANSWERED, agi_arg_1=answered_sid))
    await seed(core, account="gamma", endpoint="carol", did=None, balance="30.00")
    other = await core.authorize_call(direction="outbound", number="15145550100", endpoint="carol", pbx_id="other",
                                      channel_id="x", full_hold=True)
    assert other.allowed  # another pbx's live call: not ours to report
    a = await core.get_session(answered_sid)
    r = await core.get_session(ringing_sid)
    assert a.answered_at is not None and r.answered_at is None and 600 < a.granted_seconds < 1200
    clock.advance(600)
    assert await keepalive_pass(core, PBX, ks) == 2
    assert (await core.get_session(answered_sid)).last_seen_at == clock.now_ms()
    clock.set(latest_end_ms(a, ks) + 1)
    assert await keepalive_pass(core, PBX, ks) == 1  # the unanswered one may still ring + talk
    clock.set(latest_end_ms(r, ks) + 1)
    assert await keepalive_pass(core, PBX, ks) == 0
    assert latest_end_ms(r, ks) == r.created_at + (300 + r.granted_seconds + 60) * 1000


async def test_an_absurd_settle_is_cut_to_what_could_have_happened(core):
    """Issue 15: `settle,<session>,,1000000000000000` one ms after authorize charged 208 million
    and broke `verify`. The core bounds it: 1 ms of talk at most, nothing charged."""
    from prometheus_client import REGISTRY

    def clamped() -> float:
        return REGISTRY.get_sample_value("callgate_settle_clamped_total", {"path": "agi", "bound": "elapsed"}) or 0.0

    await seed(core, balance="10.00")
    before = clamped()
    async with running(core) as srv:
        sid = (await authorize(srv)).variables[VAR_SESSION]
        core.clock.advance(ms=1)
        await settle(srv, sid, "", "1000000000000000")
    s = await core.get_session(sid)
    assert s.state == "settled" and s.talk_ms == 1 and s.cost == 0 and s.billing_basis == "clamped"
    assert s.answered_at == s.created_at  # the back-dated answer starts at the authorize at the earliest
    a = await core.account("acme")
    assert a.balance == 10_000_000 and a.held == 0 and a.live_calls == 0
    assert clamped() == before + 1
    assert await core.admin.verify() == []
