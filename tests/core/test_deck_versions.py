"""Rating v2 wired in (issue 19): rate periods stored per row in the plan's zone, deck versions with
an effective time (and corrections), and the gate, quote, settle and chunk debits pricing each
increment at the period in effect when it starts, by the version in effect when the call started.
On both databases (and so both authorize drivers)."""
from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from billing_core.domain import money_rules
from billing_core.domain.decks import BEGINNING_OF_TIME, DeckVersion, days_mask, table_from_rows
from billing_core.domain.errors import DenyReason, InvalidInput
from billing_core.domain.money import parse_amount
from billing_core.domain.ratedeck import parse_deck_rows
from billing_core.domain.rating import Rate, RateSchedule, period_cost, period_max_talk_seconds, schedule_text
from billing_core.store import migrate
from tests.core.test_rating_periods import CAP, SECONDS, decks, start_instants
from tests.factories import seed

TORONTO = ZoneInfo("America/Toronto")
HEADER = "prefix,description,rate_per_min,connect_fee,initial_increment,increment,days,start,end\n"
# The pinned example: peak 0.02/min 08:00-18:00 mon-fri, off-peak 0.01/min, 60/60, no fee.
PINNED = HEADER + (
    "1,peak,0.02,0,60,60,mon-fri,08:00,18:00\n"
    "1,night,0.01,0,60,60,mon-fri,00:00,08:00\n"
    "1,evening,0.01,0,60,60,mon-fri,18:00,24:00\n"
    "1,weekend,0.01,0,60,60,sat-sun,,\n"
    "44,UK,0.05,0,60,60,,,\n"
)


def micro(text: str) -> int:
    return parse_amount(text, decimals=6)


def local(*args) -> int:
    return int(datetime(*args, tzinfo=TORONTO).timestamp()) * 1000


def rows(text: str):
    return parse_deck_rows(text.splitlines(keepends=True))


TUESDAY_1759_30 = local(2026, 11, 17, 17, 59, 30)  # a Tuesday, after the fall DST change


async def test_pinned_example_through_quote_authorize_and_settle(core, clock):
    clock.set(TUESDAY_1759_30)
    await core.admin.import_plan("std", rows(PINNED))
    await seed(core, plan="std", balance="0.02", did=None)
    await core.credit("acme", micro("0.005"), "to 0.025", kind="credit", idempotency_key="t0")
    q = await core.admin.quote("acme", "15145550100", 120)
    assert q["cost"] == "0.03" and q["deck_version"] == 1
    assert [(s["rate_per_min"], s["seconds"], s["cost"]) for s in q["segments"]] == [("0.02", 60, "0.02"),
                                                                                      ("0.01", 60, "0.01")]
    assert q["segments"][1]["start"] == "2026-11-17T23:00:30+00:00"  # 18:00:30 local
    assert q["max_talk_seconds"] == 60  # 0.025 available
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", full_hold=True)
    assert a.allowed and a.granted_seconds == 60
    await core.credit("acme", micro("0.005"), "to 0.03", kind="credit", idempotency_key="t1")
    assert (await core.admin.quote("acme", "15145550100"))["max_talk_seconds"] == 0  # 0.01 free: not a peak minute
    assert (await core.admin.quote("acme", "15145550100", at=TUESDAY_1759_30 + 60_000))["max_talk_seconds"] == 60
    await core.answer(a.session_id, TUESDAY_1759_30)
    clock.set(TUESDAY_1759_30 + 60_000)
    s = await core.settle(a.session_id, 60_000)
    assert s.cost == micro("0.02")
    b = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", full_hold=True)
    assert b.allowed and b.granted_seconds == 60  # 0.01 left, off-peak now: one more minute
    assert (await core.admin.verify()) == []


async def test_max_talk_across_the_boundary_is_exact(core, clock):
    clock.set(TUESDAY_1759_30)
    await core.admin.import_plan("std", rows(PINNED))
    await seed(core, plan="std", balance="0.03", did=None)  # 0.03 covers 120 s from 17:59:30
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", full_hold=True)
    assert a.granted_seconds == 120
    await core.answer(a.session_id, TUESDAY_1759_30)
    clock.set(TUESDAY_1759_30 + 120_000)
    s = await core.settle(a.session_id, 120_000)
    assert s.cost == micro("0.03") and s.overrun == 0
    session = (await core.admin.calls())[0]
    assert session["deck_version"] == 1 and session["plan_id"] is not None and session["rate_periods"]
    assert (await core.admin.verify()) == []


async def test_chunk_debits_price_each_chunk_at_its_period(core, clock):
    """Chunked hold (60 s chunks): the chunk that starts at 18:00:30 is debited at the off-peak rate."""
    clock.set(TUESDAY_1759_30)
    await core.admin.import_plan("std", rows(PINNED))
    await seed(core, plan="std", balance="1.00", did=None)
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice")
    assert a.granted_seconds == 60
    await core.answer(a.session_id, TUESDAY_1759_30)
    clock.set(TUESDAY_1759_30 + 50_000)
    await core.debit_elapsed(a.session_id)  # extends the hold to 120 s: 0.02 + 0.01
    clock.set(TUESDAY_1759_30 + 121_000)
    live = await core.debit_elapsed(a.session_id)
    assert live.charged == micro("0.03")
    s = await core.settle(a.session_id, 121_000)
    assert s.cost == micro("0.04") and s.final_charge == micro("0.01")  # a third minute, from 18:01:30: off-peak
    assert (await core.admin.verify()) == []


async def test_a_scheduled_version_prices_calls_that_start_after_it(core, clock):
    await core.admin.import_plan("std", [Rate("1", micro("0.01"), 0, 60, 60, "v1")])
    await seed(core, plan="std", balance="10.00", did=None)
    later = clock.now_ms() + 3_600_000
    result = await core.admin.import_plan("std", [Rate("1", micro("0.05"), 0, 60, 60, "v2")], effective_at=later)
    assert result["version"] == 2 and result["timezone"] == "America/Toronto"
    before = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", channel_id="c1")
    assert before.rate_per_min == micro("0.01")
    clock.set(later)
    after = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", channel_id="c2")
    assert after.rate_per_min == micro("0.05")
    versions = await core.admin.plan_versions("std")
    assert [(v["version"], v["in_effect"]) for v in versions["versions"]] == [(1, False), (2, True)]
    assert versions["versions"][0]["effective_at"] is None  # the first deck: from the beginning
    assert (await core.admin.show_plan("std", at=later - 1))["version"] == 1
    assert (await core.admin.show_plan("std"))["rates"][0]["description"] == "v2"
    by_channel = {c["channel_id"]: c["deck_version"] for c in await core.admin.calls()}
    assert by_channel == {"c1": 1, "c2": 2}
    assert (await core.admin.quote("acme", "15145550100", at=later - 1))["deck_version"] == 1


async def test_bad_effective_times_and_zones_write_nothing(core, clock):
    await core.admin.import_plan("std", [Rate("1", micro("0.01"), 0, 60, 60)])
    deck = [Rate("1", micro("0.02"), 0, 60, 60)]
    with pytest.raises(InvalidInput, match="--effective: .* is in the past.*--correction"):
        await core.admin.import_plan("std", deck, effective_at=clock.now_ms() - 1)
    with pytest.raises(InvalidInput, match="--correction: needs --effective"):
        await core.admin.import_plan("std", deck, correction=True)
    with pytest.raises(InvalidInput, match="--timezone: no such time zone"):
        await core.admin.import_plan("std", deck, timezone="Mars/Olympus")
    with pytest.raises(InvalidInput, match="line 2, column start"):
        await core.admin.import_plan("std", [r for r in rows(PINNED) if r.line != 3])
    assert [v["version"] for v in (await core.admin.plan_versions("std"))["versions"]] == [1]


async def test_a_correction_replaces_the_version_in_effect_from_its_time(core, clock):
    await core.admin.import_plan("std", [Rate("1", micro("0.01"), 0, 60, 60, "v1")])
    await seed(core, plan="std", balance="10.00", did=None)
    clock.advance(3600)
    await core.admin.import_plan("std", [Rate("1", micro("0.02"), 0, 60, 60, "v2")])
    since = clock.now_ms() - 1_800_000
    result = await core.admin.import_plan("std", [Rate("1", micro("0.015"), 0, 60, 60, "fix")], effective_at=since,
                                          correction=True, timezone="Europe/London")
    assert result["correction"] and result["timezone"] == "Europe/London"
    assert (await core.admin.show_plan("std"))["version"] == 3  # v2 (imported after since) is superseded
    assert (await core.admin.show_plan("std", at=since - 1))["version"] == 1
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice")
    assert a.rate_per_min == micro("0.015")
    later = clock.now_ms() + 86_400_000
    await core.admin.import_plan("std", [Rate("1", micro("0.03"), 0, 60, 60, "next")], effective_at=later)
    clock.advance(60)
    await core.admin.import_plan("std", [Rate("1", micro("0.016"), 0, 60, 60, "fix2")], effective_at=since,
                                 correction=True)
    versions = (await core.admin.plan_versions("std"))["versions"]
    assert [(v["version"], v["superseded_by"], v["in_effect"]) for v in versions] == [
        (1, None, False), (2, 3, False), (3, 5, False), (4, None, False), (5, None, True)]
    assert (await core.admin.show_plan("std", at=later))["version"] == 4  # the announced deck stays scheduled


async def test_a_plan_whose_first_version_is_scheduled_has_no_rate_before(core, clock):
    await core.admin.import_plan("later", [Rate("1", micro("0.01"), 0, 60, 60)],
                                 effective_at=clock.now_ms() + 60_000)
    await seed(core, plan="later", balance="10.00", did=None)
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice")
    assert not a.allowed and a.reason is DenyReason.NO_RATE
    assert (await core.admin.show_plan("later"))["version"] is None


async def test_an_existing_plan_becomes_version_1_from_the_beginning(db_url):
    """Migration 0010 on a database with a plan and its rates (at 0008)."""
    await migrate.upgrade(db_url, "0008")

    def old_plan(conn):
        conn.exec_driver_sql("INSERT INTO plans (name, version, rate_count, created_at, updated_at) "
                             "VALUES ('old', 7, 2, 1, 1)")
        conn.exec_driver_sql("INSERT INTO rates (plan_id, prefix, description, rate_per_min, connect_fee, "
                             "initial_increment, increment) VALUES (1, '1', 'NANP', 12500, 0, 60, 6), "
                             "(1, '44', 'UK', 45000, 15000, 30, 6)")

    await migrate._run(db_url, old_plan)
    await migrate.upgrade(db_url)

    def read(conn):
        v = conn.exec_driver_sql("SELECT version, effective_at, timezone, rate_count FROM deck_versions").all()
        r = conn.exec_driver_sql("SELECT prefix, version, days, start_min, end_min FROM rates ORDER BY prefix").all()
        return [tuple(x) for x in v], [tuple(x) for x in r]

    versions, rates = await migrate._run(db_url, read)
    assert versions == [(1, BEGINNING_OF_TIME, "America/Toronto", 2)]
    assert rates == [("1", 1, 127, 0, 1440), ("44", 1, 127, 0, 1440)]


def test_cli_import_with_periods_versions_and_quote_at(cg, tmp_path):
    deck = tmp_path / "deck.csv"
    deck.write_text(PINNED)
    cg("db", "upgrade")
    out = json.loads(cg("plan", "import", "std", str(deck), "--timezone", "America/Toronto", "--json").output)
    assert out["version"] == 1 and out["rates"] == 5
    cg("package", "add", "basic", "--plan", "std", "--low-balance", "1", "--max-calls", "2")
    cg("account", "add", "acme", "--name", "Acme", "--email", "a@example.test", "--package", "basic")
    cg("credit", "acme", "1.00", "--reason", "opening")
    q = json.loads(cg("quote", "acme", "15145550100", "--seconds", "120", "--at", "2026-11-17T17:59:30-05:00",
                      "--json").output)
    assert q["cost"] == "0.03" and q["deck_version"] == 1 and len(q["segments"]) == 2
    bad = cg("quote", "acme", "15145550100", "--at", "2026-11-17T17:59:30", ok=False)
    assert bad.exit_code != 0 and "--at: needs a UTC offset" in bad.output
    past = cg("plan", "import", "std", str(deck), "--effective", "2020-01-01T00:00:00Z", ok=False)
    assert past.exit_code != 0 and "--effective" in past.output and "--correction" in past.output
    zone = cg("plan", "import", "std", str(deck), "--timezone", "Nowhere/Else", ok=False)
    assert zone.exit_code != 0 and "--timezone: no such time zone" in zone.output
    cg("plan", "import", "std", str(deck), "--effective", "2099-01-01T00:00:00Z")
    versions = json.loads(cg("plan", "versions", "std", "--json").output)
    assert [(v["version"], v["effective_at"], v["in_effect"]) for v in versions["versions"]] == [
        (1, None, True), (2, "2099-01-01T00:00:00+00:00", False)]
    shown = json.loads(cg("plan", "show", "std", "--at", "2099-01-02T00:00:00Z", "--json").output)
    assert shown["version"] == 2 and shown["rates"][0]["days"] == "mon-fri"
    text = cg("plan", "show", "std").output
    assert "mon-fri 08:00-18:00" in text and "America/Toronto" in text
    assert "version 2" in cg("plan", "versions", "std").output


# --- what a session and the store keep prices exactly as the deck ------------------------------

@settings(max_examples=150, deadline=None)
@given(rows=decks(), start=start_instants, seconds=SECONDS,
       available=st.integers(min_value=0, max_value=50_000_000))
def test_a_sessions_copied_periods_and_the_stored_rows_price_as_the_deck(rows, start, seconds, available):
    """Over random decks and start times around the 2026 DST changes in America/Toronto: the
    periods copied into a session (rate_periods, with its start row's columns) and the deck read
    back from its stored rows (days mask, start_min, end_min) give the same cost and max talk."""
    deck = RateSchedule(rows)
    row = deck.rate_at(start)
    session = dict(prefix=row.prefix, rate_per_min=row.rate_per_min, connect_fee=row.connect_fee,
                   initial_increment=row.initial_increment, increment=row.increment, created_at=start,
                   answered_at=start, rate_periods=schedule_text(deck), talk_ms=seconds * 1000)
    expected = period_cost(seconds, deck, start).cost
    assert money_rules.session_cost(session, seconds) == expected
    assert money_rules.session_max_talk(session, available, cap=CAP) == period_max_talk_seconds(available, deck, start,
                                                                                                cap=CAP)
    stored = [dict(prefix="1", description="", rate_per_min=r.rate_per_min, connect_fee=r.connect_fee,
                   initial_increment=r.initial_increment, increment=r.increment, days=days_mask(p.days),
                   start_min=p.start, end_min=p.end) for p, r in rows]
    again = table_from_rows(DeckVersion(1, BEGINNING_OF_TIME, "America/Toronto"), stored).schedule("15145550100")
    assert period_cost(seconds, again, start).cost == expected
    assert money_rules.rerated_cost(session, again) == expected


def test_the_deck_cache_keeps_the_newest_list_of_versions():
    """Two transactions on either side of an import: the one that saw the older generation uses the
    newer list (versions are only added) instead of reading it again, and never replaces it."""
    from billing_core.domain.decks import LOAD_VERSIONS, DeckCache

    cache = DeckCache()
    v1 = dict(version=1, effective_at=BEGINNING_OF_TIME, timezone="America/Toronto", correction=False, rate_count=1,
              created_at=0)
    v2 = dict(v1, version=2, effective_at=1_000)
    assert cache.need(7, 2, 5_000) == LOAD_VERSIONS
    cache.put_versions(7, 2, [v1, v2])
    cache.put_versions(7, 1, [v1])  # a late reader of the older generation
    assert cache.need(7, 1, 5_000) == 2 and cache.need(7, 2, 5_000) == 2 and cache.need(7, 3, 5_000) == LOAD_VERSIONS
    cache.put_rates(7, 2, [dict(prefix="1", description="", rate_per_min=10, connect_fee=0, initial_increment=60,
                                increment=60, days=127, start_min=0, end_min=1440)])
    assert cache.need(7, 1, 5_000) is None and cache.table_at(7, 1, 5_000).version == 2
    assert cache.need(7, 2, 500) == 1  # before v2 took effect
