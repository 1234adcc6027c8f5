"""Issue 20: refused calls as records (call_refusals) and the dashboard's account-day totals
(call_day_totals), on both databases: a refusal recorded once per channel, never for a dry run, a
grant or an emergency call; an unwritable record leaves the refusal as it was; the totals equal the
settled calls' sums after settles, stale sweeps and rerates, and `verify` checks them."""
from __future__ import annotations

from sqlalchemy import func, select, text, update

from billing_core import read_model
from billing_core.domain.days import DAY_MS
from billing_core.domain.errors import DenyReason
from billing_core.domain.money import parse_amount
from billing_core.domain.rating import Rate
from billing_core.store.tables import accounts, call_day_totals, call_refusals, call_sessions
from tests.factories import seed

OUT = dict(direction="outbound", endpoint="alice")


async def refusals(core) -> list[dict]:
    return await core.store.run(lambda conn: [dict(r) for r in conn.execute(
        select(call_refusals).order_by(call_refusals.c.id)).mappings()])


async def test_a_refusal_is_recorded_once_per_channel(core, clock):
    await seed(core, balance="0")
    first = await core.authorize_call(number="15145550100", pbx_id="pbx1", channel_id="ch-1", **OUT)
    again = await core.authorize_call(number="15145550100", pbx_id="pbx1", channel_id="ch-1", **OUT)  # a replay
    assert first.reason == again.reason == DenyReason.DEPLETED
    rows = await refusals(core)
    assert len(rows) == 1
    r = rows[0]
    assert (r["pbx_id"], r["channel_id"], r["direction"], r["number"], r["reason"], r["endpoint"], r["at"]) == (
        "pbx1", "ch-1", "outbound", "15145550100", "depleted", "alice", clock.now_ms())
    acct_id = await core.store.run(lambda conn: conn.execute(select(accounts.c.id)).scalar())
    assert r["account_id"] == acct_id
    # another channel, another PBX with the same channel id, and calls without a channel: each recorded
    await core.authorize_call(number="15145550100", pbx_id="pbx1", channel_id="ch-2", **OUT)
    await core.authorize_call(number="15145550100", pbx_id="pbx2", channel_id="ch-1", **OUT)
    await core.authorize_call(number="15145550100", **OUT)
    await core.authorize_call(number="15145550100", **OUT)
    assert len(await refusals(core)) == 5


async def test_refusals_carry_the_number_rule_and_no_account_when_none_was_found(core):
    await seed(core, balance="10.00", allow_regions="CA", block_types="")
    blocked = await core.authorize_call(number="011442079460000", channel_id="c1", **OUT)
    unknown = await core.authorize_call(direction="outbound", number="15145550100", endpoint="mallory", channel_id="c2")
    did = await core.authorize_call(direction="inbound", number="15145559999", did="15145559999", channel_id="c3")
    assert (blocked.reason, unknown.reason, did.reason) == (DenyReason.DESTINATION_BLOCKED, DenyReason.UNKNOWN_ENDPOINT,
                                                            DenyReason.UNKNOWN_DID)
    rows = {r["channel_id"]: r for r in await refusals(core)}
    assert (rows["c1"]["reason"], rows["c1"]["rule"], rows["c1"]["number_e164"]) == (
        "destination_blocked", "region", "+442079460000")
    assert rows["c2"]["account_id"] is None and rows["c2"]["endpoint"] == "mallory"
    assert rows["c3"]["account_id"] is None and rows["c3"]["number_e164"] == "+15145559999"


async def test_grants_dry_runs_and_emergency_calls_record_nothing(core):
    await seed(core, balance="10.00")
    granted = await core.authorize_call(number="15145550100", channel_id="c1", **OUT)
    assert granted.allowed
    quote = await core.admin.quote("acme", "01186138001380000")  # a dry run that refuses (no rate)
    assert quote["allowed"] is False
    await core.credit("acme", -parse_amount("10.00"), "empty it", kind="debit",
                      allow_below_limit=True)
    emergency = await core.authorize_call(number="911", channel_id="c2", **OUT)  # depleted, but 911
    assert emergency.allowed
    assert await refusals(core) == []


async def test_an_unwritable_record_leaves_the_refusal_as_it_was(core, clock):
    """The record's table gone (a failing insert): the call is refused for its own reason, not as
    billing_unavailable, and the decision's other writes (the attempt counter) are kept."""
    await seed(core, balance="10.00", allow_regions="CA", block_types="")
    await core.admin.set_account_rules("acme", max_attempts_per_minute=5)
    await core.store.run(lambda conn: conn.execute(text("DROP TABLE call_refusals")))
    blocked = await core.authorize_call(number="011442079460000", channel_id="c1", **OUT)
    assert blocked.reason == DenyReason.DESTINATION_BLOCKED and blocked.rule == "region"
    invalid = await core.authorize_call(number="not-a-number", channel_id="c2", **OUT)
    assert invalid.reason == DenyReason.INVALID_NUMBER
    attempts = await core.store.run(lambda conn: conn.execute(select(accounts.c.attempts_count)).scalar())
    assert attempts == 2  # both attempts counted although neither refusal could be recorded
    granted = await core.authorize_call(number="15145550100", channel_id="c3", **OUT)
    assert granted.allowed  # a grant never touches the refusals


# ------------------------------------------------------------------------------------ day totals
async def call(core, clock, *, endpoint="alice", talk_s=60, channel=None, settle=True) -> str:
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint=endpoint, channel_id=channel)
    assert a.allowed, a
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(talk_s)
    if settle:
        await core.settle(a.session_id, talk_s * 1000)
    return a.session_id


async def direct_sums(core) -> dict[tuple[int, int], tuple[int, int, int]]:
    def tx(conn):
        day = call_sessions.c.created_at - call_sessions.c.created_at % DAY_MS
        aid = func.coalesce(call_sessions.c.account_id, 0)
        return {(int(d), int(a)): (int(n), int(t), int(c)) for d, a, n, t, c in conn.execute(
            select(day, aid, func.count(), func.sum(call_sessions.c.talk_ms), func.sum(call_sessions.c.cost))
            .where(call_sessions.c.state == "settled").group_by(day, aid))}
    return await core.store.run(tx)


async def kept_totals(core) -> dict[tuple[int, int], tuple[int, int, int]]:
    return await core.store.run(lambda conn: {(r.day_ms, r.account_id): (r.calls, r.talk_ms, r.revenue)
                                              for r in conn.execute(select(call_day_totals))})


async def test_day_totals_equal_the_settled_calls_after_settles_sweeps_and_rerates(core, clock):
    await core.admin.import_plan("std", [Rate("1", parse_amount("0.02", decimals=6), 0, 60, 60, "wrong")])
    await seed(core, plan="std", balance="50.00", did=None)
    await seed(core, plan="std", account="beta", endpoint="bob", balance="50.00", did=None)
    since = clock.now_ms()
    clock.advance(10)
    for talk in (60, 125, 0):
        await call(core, clock, talk_s=talk)
    sid = await call(core, clock, endpoint="bob", talk_s=30)
    await core.settle(sid, 30_000)  # a replayed settle adds nothing
    clock.advance(DAY_MS // 1000 - 500)  # into the next UTC day: calls on either side of midnight
    late = await call(core, clock, endpoint="bob", talk_s=600, settle=False)
    clock.advance(1000)
    await call(core, clock, talk_s=45)
    await core.settle_many([(late, 600_000, "swept")], stale=True)  # settled after midnight, counted on its start's day
    await core.authorize_call(number="911", **OUT)  # an emergency call: account id 0 in no case; its own
    emergency = (await core.live_sessions())[0]
    await core.settle(emergency.session_id, 20_000)
    await core.admin.import_plan("std", [Rate("1", parse_amount("0.015", decimals=6), 0, 60, 60, "right")],
                                 effective_at=since, correction=True)
    done = await core.admin.rerate("std", since=since)
    assert done["calls_changed"] > 0
    direct = await direct_sums(core)
    assert len({day for day, _ in direct}) == 2
    assert await kept_totals(core) == direct
    assert await core.admin.verify() == []


async def test_verify_names_a_day_total_that_drifted(core, clock):
    await seed(core, balance="10.00", did=None)
    await call(core, clock, talk_s=60)
    await core.store.run(lambda conn: conn.execute(update(call_day_totals).values(revenue=call_day_totals.c.revenue + 1)))
    problems = await core.admin.verify()
    assert len(problems) == 1 and problems[0].startswith("call_day_totals day ") and "revenue" in problems[0]


# ------------------------------------------------------------------------------------- dashboard
async def test_the_dashboard_figures_match_direct_sums_and_count_decisions(core, clock):
    await seed(core, balance="20.00", did=None)
    for talk in (60, 90):
        await call(core, clock, talk_s=talk)
    clock.advance(120)
    await core.authorize_call(number="01186138001380000", channel_id="r1", **OUT)  # no rate
    await core.authorize_call(number="01186138001380000", channel_id="r2", **OUT)
    await core.authorize_call(direction="outbound", number="15145550100", endpoint="mallory", channel_id="r3")
    live = await core.authorize_call(number="15145550100", channel_id="g3", **OUT)
    now = clock.now_ms()
    d = await core.store.run(read_model.dashboard, now)
    direct = await direct_sums(core)
    today = now - now % DAY_MS
    assert (d.today_talk_ms, d.today_revenue) == (sum(v[1] for (day, _), v in direct.items() if day == today),
                                                   sum(v[2] for (day, _), v in direct.items() if day == today))
    assert d.today_talk_ms == 150_000 and d.live_calls == 1 and live.allowed
    assert sum(f.talk_ms for f in d.days) == 150_000 and len(d.days) == 30 and d.days[-1].day_ms == today
    assert len(d.decisions) == 60 and d.decisions[-1].minute_ms == now - now % 60_000
    assert sum(m.granted for m in d.decisions) == 3 and sum(m.refused for m in d.decisions) == 3
    assert d.decisions[-1].refused == 3 and d.decisions[-1].granted == 1
    assert d.refusals_today == {"no_rate": 2, "unknown_endpoint": 1}


# ------------------------------------------------------------------------------- the call list
async def test_the_refused_outcome_lists_refusals_by_reason_paged_by_cursor(core, clock):
    await seed(core, balance="10.00", did=None)
    await call(core, clock, talk_s=30)
    for i in range(5):
        clock.advance(1)
        await core.authorize_call(number="01186138001380000", channel_id=f"n{i}", **OUT)
    await core.authorize_call(direction="outbound", number="15145550100", endpoint="mallory", channel_id="m")
    f = read_model.CallFilter(outcome="refused")
    page, nxt = await core.store.run(lambda conn: read_model.calls_page(conn, f, limit=4))
    assert [r["state"] for r in page] == ["refused"] * 4 and nxt is not None
    assert page[0]["reason"] == "unknown_endpoint" and page[0]["account_ref"] is None
    rest, last = await core.store.run(lambda conn: read_model.calls_page(conn, f, before=nxt, limit=4))
    assert len(rest) == 2 and last is None
    assert len({r["id"] for r in page + rest}) == 6
    by_reason, _ = await core.store.run(read_model.calls_page, read_model.CallFilter(outcome="refused", reason="no_rate",
                                                                                       account="acme"))
    assert len(by_reason) == 5 and all(r["number"] == "01186138001380000" for r in by_reason)
    calls, _ = await core.store.run(read_model.calls_page, read_model.CallFilter(outcome="any"))
    assert [r["state"] for r in calls] == ["settled"]  # the call log is still the calls with a session
    rows, _ = await core.store.run(lambda conn: read_model.calls_export_chunk(
        conn, f, ["id", "state", "talk_ms", "reason", "rule"], limit=100))
    assert len(rows) == 6 and {r[1] for r in rows} == {"refused"} and all(r[2] is None for r in rows)
    rows, _ = await core.store.run(lambda conn: read_model.calls_export_chunk(
        conn, read_model.CallFilter(), ["id", "state", "reason"], limit=100))
    assert [r[1:] for r in rows] == [("settled", None)]


async def test_a_reason_needs_the_refused_outcome():
    import pytest

    from billing_core.domain.errors import InvalidInput
    with pytest.raises(InvalidInput, match="reason: only with outcome refused"):
        read_model.CallFilter(reason="depleted").checked()
    with pytest.raises(InvalidInput, match="reason: must be one of"):
        read_model.CallFilter(outcome="refused", reason="bored").checked()


# ---------------------------------------------------------------------------------------- the CLI
def test_calls_refused_lists_refusals_and_keeps_calls_as_it_was(cg, sync_db_url, tmp_path):
    import asyncio
    import json

    from billing_core.api import BillingCore

    deck = tmp_path / "deck.csv"
    deck.write_text("prefix,description,rate_per_min,connect_fee,initial_increment,increment\n1,NANP,0.0125,0,60,6\n")
    cg("db", "upgrade")
    cg("plan", "import", "std", str(deck))
    cg("package", "add", "basic", "--plan", "std", "--low-balance", "5.00", "--max-calls", "2", "--inbound-rate", "0")
    cg("account", "add", "acme", "--name", "Acme Inc", "--email", "billing@acme.test", "--package", "basic")
    cg("endpoint", "add", "acme", "alice")

    async def refuse():
        core = await BillingCore.open(sync_db_url)
        try:
            for channel, number in (("c1", "15145550100"), ("c2", "not-a-number")):
                a = await core.authorize_call(direction="outbound", number=number, endpoint="alice", channel_id=channel)
                assert not a.allowed
        finally:
            await core.close()

    asyncio.run(refuse())
    rows = json.loads(cg("calls", "--refused", "--json").output)
    assert [(r["state"], r["reason"], r["channel_id"], r["account_ref"]) for r in rows] == [
        ("refused", "depleted", "c2", "acme"), ("refused", "depleted", "c1", "acme")]  # depleted before the number
    assert json.loads(cg("calls", "--refused", "--reason", "no_rate", "--json").output) == []
    assert "refused: depleted" in cg("calls", "--refused", "--account", "acme").output
    assert json.loads(cg("calls", "--json").output) == []  # the call log: calls with a session
    bad = cg("calls", "--reason", "depleted", ok=False)
    assert bad.exit_code != 0 and "--reason: only with --refused" in bad.output
    unknown = cg("calls", "--refused", "--reason", "bored", ok=False)
    assert unknown.exit_code != 0 and "reason: must be one of" in unknown.output
