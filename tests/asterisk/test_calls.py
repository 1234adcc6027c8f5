"""Real calls through a real Asterisk 22 running asterisk-conf/ unchanged (only its mode lines
switched), in ARI bridge mode, ARI continue mode and FastAGI.

Phones and the carrier are SIPp; callgate runs as `callgate gate` / `callgate agi` processes and is
seeded and checked with its CLI. Money is cents: the suite's plan costs 0.01 per second of talk
(inbound 0.005), so a balance of 0.05 buys 5 s. Timing windows are >= 1.5 s wide; nothing retries.
"""
from __future__ import annotations

import asyncio
import time
from decimal import ROUND_CEILING, Decimal

import pytest

from tests.asterisk.conftest import INBOUND_RATE, RATE_PER_MIN, WARNING_SECONDS
from tests.asterisk.harness import SippCall

TALK_2S = "uac_talk_2s.xml"
WAIT_BYE = "uac_wait_bye.xml"
ALL_MODES = ("bridge", "continue", "agi")


def modes(*names: str):
    return pytest.mark.parametrize("mode", names, indirect=True)


def expected_cost(talk_ms: int, rate_per_min: str) -> Decimal:
    """The plan's price of a talk time, computed here from the billing convention
    (billable seconds = talk rounded to the nearest second, exactly .5 down; 1 s increments;
    cost rounded up to the micro-unit)."""
    whole, rem = divmod(talk_ms, 1000)
    seconds = whole + (1 if rem > 500 else 0)
    return (Decimal(rate_per_min) * seconds / 60).quantize(Decimal("0.000001"), rounding=ROUND_CEILING)


async def place(pbx, workdir, caller: str, number: str, scenario: str = TALK_2S, *, port: int | None = None,
                tag: str = "") -> SippCall:
    return await SippCall(workdir, pbx, caller=caller, number=number, scenario=scenario, port=port,
                          tag=tag).start()


async def settled_calls(cli, ref: str, count: int = 1, timeout: float = 20.0) -> list[dict]:
    """The account's call sessions once ``count`` of them exist and all are settled."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await cli.ajson("calls", "--account", ref)
        if len(rows) >= count and all(r["state"] == "settled" for r in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"calls of {ref} not settled within {timeout} s: {rows}")
        await asyncio.sleep(0.3)


async def money(cli, ref: str) -> tuple[Decimal, Decimal]:
    b = await cli.ajson("balance", ref)
    return Decimal(b["balance"]), Decimal(b["held"])


async def verify(cli) -> None:
    report = await cli.ajson("verify")
    assert report == {"ok": True, "violations": []}, report


def beeps_to(pbx, since: int, phone: str) -> list[float]:
    """When Asterisk started playing the warning tone to this phone's channel (its verbose log)."""
    return [t for t, line in pbx.log_lines(since) if f"PJSIP/{phone}-" in line and "Playing 'beep" in line]


# ------------------------------------------------------------------------------------ scenarios
@modes(*ALL_MODES)
async def test_funded_call_is_billed_exactly_by_the_plan(mode, pbx, workdir, cli, trunk, new_account, fresh_number):
    acct = await new_account("0.50")
    number = fresh_number()
    out = await (await place(pbx, workdir, acct.phone, number)).finished(40)

    assert out.final == 200 and not out.far_end_hung_up, out
    assert len(trunk.invites(number)) == 1
    [row] = await settled_calls(cli, acct.ref)
    assert row["direction"] == "outbound" and row["number_e164"] == f"+{number}"
    # Asterisk's talk time is what the phone lived through (the phone talks 2 s)
    assert abs(row["talk_ms"] / 1000 - out.talk_seconds) < 1.0, (row["talk_ms"], out.talk_seconds)
    cost = expected_cost(row["talk_ms"], RATE_PER_MIN)
    assert cost >= Decimal("0.01") and Decimal(row["cost"]) == cost
    assert await money(cli, acct.ref) == (Decimal("0.50") - cost, 0)


@modes(*ALL_MODES)
async def test_call_is_cut_at_the_money_after_the_warning(mode, pbx, workdir, cli, trunk, new_account,
                                                          fresh_number):
    acct = await new_account("0.05")  # 5 s of talk
    since = pbx.log_size()
    out = await (await place(pbx, workdir, acct.phone, fresh_number(), WAIT_BYE)).finished(40)

    assert out.final == 200 and out.far_end_hung_up, out
    assert 3.5 <= out.talk_seconds <= 7.0, out.talk_seconds
    beeps = beeps_to(pbx, since, acct.phone)
    assert beeps, f"no warning tone played to {acct.phone}"
    assert out.answered_at - 0.5 <= beeps[0] <= out.ended_at - 0.2, (beeps, out)
    if mode == "bridge":  # the gate plays it WARNING_SECONDS before its cut-off
        assert out.ended_at - beeps[0] >= WARNING_SECONDS - 1.0, (beeps, out)
    [row] = await settled_calls(cli, acct.ref)
    cost = Decimal(row["cost"])
    assert cost == expected_cost(row["talk_ms"], RATE_PER_MIN)
    assert Decimal("0.03") <= cost <= Decimal("0.05")
    balance, held = await money(cli, acct.ref)
    assert balance == Decimal("0.05") - cost and balance >= 0 and held == 0


@modes(*ALL_MODES)
async def test_refusals_have_their_sip_codes_and_never_reach_the_far_end(mode, pbx, workdir, cli, trunk, phones,
                                                                         new_account, fresh_number):
    broke = await new_account("0")
    funded = await new_account("0.50")
    broke_did = await new_account("0", did=True)
    guarded = await new_account("0.50")  # issue 18: a destination this account may not call
    depleted_number, no_rate_number, blocked_number = fresh_number(), "011442071234567", "19005550199"
    await cli.arun("account", "deny-destination", guarded.ref, "1900")
    unknown_did = "15145559999"
    calls = {
        "depleted outbound": (await place(pbx, workdir, broke.phone, depleted_number), 403),
        "unknown number": (await place(pbx, workdir, funded.phone, no_rate_number), 404),
        "blocked destination": (await place(pbx, workdir, guarded.phone, blocked_number), 403),
        "depleted inbound DID": (await place(pbx, workdir, "15145557777", broke_did.did,
                                             port=pbx.trunk_in_ports[0], tag="carrier"), 403),
        "unknown DID": (await place(pbx, workdir, "15145557777", unknown_did, port=pbx.trunk_in_ports[1],
                                    tag="carrier"), 404),
    }
    outcomes = {what: await c.finished(40) for what, (c, _) in calls.items()}

    assert {what: o.final for what, o in outcomes.items()} == {what: code for what, (_, code) in calls.items()}
    assert not any(o.answered_at for o in outcomes.values())
    # the announcement is early media: 183 Session Progress before the final response, never an answer
    assert all(183 in o.provisional for o in outcomes.values()), outcomes
    assert trunk.invites(depleted_number) == [] and trunk.invites(no_rate_number) == []
    assert trunk.invites(blocked_number) == []
    assert phones.invites(broke_did.phone) == []
    for acct in (broke, funded, broke_did, guarded):
        rows = await cli.ajson("calls", "--account", acct.ref)
        assert all(r["state"] == "settled" and Decimal(r["cost"] or 0) == 0 for r in rows), rows
        assert (await money(cli, acct.ref))[1] == 0


@modes(*ALL_MODES)
async def test_emergency_call_is_free_from_a_depleted_account(mode, pbx, workdir, cli, trunk, new_account):
    broke = await new_account("0")
    before = len(trunk.invites("911"))
    out = await (await place(pbx, workdir, broke.phone, "911")).finished(40)

    assert out.final == 200, out
    assert len(trunk.invites("911")) == before + 1
    assert await cli.ajson("calls", "--account", broke.ref) == []
    assert await money(cli, broke.ref) == (0, 0)


@modes(*ALL_MODES)
async def test_inbound_did_call_rings_its_owner(mode, pbx, workdir, cli, phones, new_account):
    owner = await new_account("0.50", did=True)
    out = await (await place(pbx, workdir, "15145557777", owner.did, port=pbx.trunk_in_ports[0],
                             tag="carrier")).finished(40)

    assert out.final == 200 and not out.far_end_hung_up, out
    assert len(phones.invites(owner.phone)) == 1
    [row] = await settled_calls(cli, owner.ref)
    assert row["direction"] == "inbound"
    assert abs(row["talk_ms"] / 1000 - out.talk_seconds) < 1.0, (row["talk_ms"], out.talk_seconds)
    cost = expected_cost(row["talk_ms"], INBOUND_RATE)
    assert cost > 0 and Decimal(row["cost"]) == cost
    assert await money(cli, owner.ref) == (Decimal("0.50") - cost, 0)


@modes(*ALL_MODES)
async def test_callgate_down_refuses_the_call(mode, request, pbx, workdir, cli, trunk, new_account, fresh_number):
    service = request.getfixturevalue("agi" if mode == "agi" else "gate")
    acct = await new_account("0.50")
    number = fresh_number()
    await asyncio.to_thread(service.stop)
    try:
        out = await (await place(pbx, workdir, acct.phone, number)).finished(40)
    finally:
        await asyncio.to_thread(service.start)

    assert out.final == 503 and out.answered_at is None, out
    assert trunk.invites(number) == []
    assert await cli.ajson("calls", "--account", acct.ref) == []
    assert await money(cli, acct.ref) == (Decimal("0.50"), 0)


@modes(*ALL_MODES)
async def test_callgate_killed_mid_call_and_restarted(mode, request, pbx, workdir, cli, trunk, new_account,
                                                      fresh_number):
    service = request.getfixturevalue("agi" if mode == "agi" else "gate")
    # 12 s of talk: the restart (a Python start-up, 2-6 s on a busy 2-core machine) ends well
    # before the limit, so the restarted gate cuts the call / the hangup handler reaches the server
    acct = await new_account("0.12")
    call = await place(pbx, workdir, acct.phone, fresh_number(), WAIT_BYE)
    assert (await call.answered(15)).final == 200
    await asyncio.sleep(1.0)
    await asyncio.to_thread(service.kill9)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(service.start)
    out = await call.finished(40)

    # the call still ends at the money: the restarted gate re-adopts it (bridge), Dial's L() cuts it
    # (continue, FastAGI)
    assert out.far_end_hung_up and 12 - 1.5 <= out.talk_seconds <= 12 + 2.0, out
    [row] = await settled_calls(cli, acct.ref, timeout=30)
    cost = Decimal(row["cost"])
    assert cost <= Decimal("0.12")
    if mode == "agi":  # the hangup handler's settle reached the restarted server: exact
        assert cost == expected_cost(row["talk_ms"], RATE_PER_MIN)
    else:  # the restarted gate took the call back in its own mode
        adopted = f'"call re-adopted after restart" session={row["id"]} channel={row["channel_id"]} mode={mode}'
        assert adopted in service.proc.log.read_text(), adopted
    balance, held = await money(cli, acct.ref)
    assert balance == Decimal("0.12") - cost and balance >= 0 and held == 0
    await verify(cli)


@modes(*ALL_MODES)
async def test_asterisk_restarted_mid_call(mode, pbx, workdir, cli, trunk, gate_service, new_account, fresh_number):
    acct = await new_account("0.50")
    call = await place(pbx, workdir, acct.phone, fresh_number(), WAIT_BYE)
    answered = await call.answered(15)
    assert answered.final == 200
    await asyncio.sleep(1.5)
    connections = gate_service.connections()
    restarted_at = time.time()
    await asyncio.to_thread(pbx.restart_now)
    out = await call.finished(40)

    assert out.far_end_hung_up and out.ended_at <= restarted_at + 3.0, out
    deadline = time.monotonic() + 30
    while gate_service.connections() == connections:  # the gate reconnects by itself
        assert time.monotonic() < deadline, "the gate did not reconnect to the restarted Asterisk"
        await asyncio.sleep(0.1)
    [row] = await settled_calls(cli, acct.ref, timeout=40)  # the gate reconnected and settled it
    cost = Decimal(row["cost"])
    talked = out.ended_at - out.answered_at
    assert cost <= Decimal(RATE_PER_MIN) * Decimal(int(talked) + 3) / 60, (cost, talked)
    balance, held = await money(cli, acct.ref)
    assert balance == Decimal("0.50") - cost and held == 0
    await verify(cli)


@modes(*ALL_MODES)
async def test_two_concurrent_calls_never_overspend(mode, pbx, workdir, cli, trunk, new_account, fresh_number):
    acct = await new_account("0.06")  # 6 s of talk for both calls together
    first = await place(pbx, workdir, acct.phone, fresh_number(), WAIT_BYE, tag="a")
    second = await place(pbx, workdir, acct.phone, fresh_number(), WAIT_BYE, tag="b")
    outs = await asyncio.gather(first.finished(40), second.finished(40))

    answered = [o for o in outs if o.final == 200]
    assert answered, outs
    assert all(o.final in (200, 403) for o in outs), outs
    assert all(o.far_end_hung_up and o.talk_seconds <= 6 + 2.0 for o in answered), outs
    # a refused call leaves no session; every answered one is settled
    rows = await settled_calls(cli, acct.ref, count=len(answered))
    assert len(rows) == len(answered), rows
    total = sum(Decimal(r["cost"]) for r in rows)
    assert total <= Decimal("0.06"), rows
    balance, held = await money(cli, acct.ref)
    assert balance == Decimal("0.06") - total and balance >= 0 and held == 0


async def test_ledger_verifies_after_every_scenario(pbx, cli):
    await verify(cli)
