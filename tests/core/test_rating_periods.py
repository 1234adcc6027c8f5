"""Rating v2, first slice (issue 19): rates by weekday and time of day, priced per increment.

The convention is pinned in billing_core.domain.rating: each billed increment is priced at the rate
of the period in effect (local wall time in the plan's zone) at the instant it starts; the connect
fee and the increments come from the row in effect when the call starts; the sum is rounded up
once, exactly like today's cost(). Checked here against an independent per-increment reference,
around the America/Toronto DST changes of 2026 (2026-03-08 and 2026-11-01).
"""
from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings, strategies as st

from billing_core.domain.errors import InvalidInput
from billing_core.domain.money import div_ceil, parse_amount
from billing_core.domain.ratedeck import DeckError, check_prefix_periods, parse_deck, parse_deck_rows, parse_period_cells
from billing_core.domain.rating import (
    ALWAYS, DEFAULT_TIMEZONE, Period, Rate, RateSchedule, Segment, billed_seconds, cost, load_zone,
    max_talk_seconds, period_cost, period_max_talk_seconds,
)
from tests.core.test_rating import rates as today_rates

TORONTO = ZoneInfo("America/Toronto")
CAP = 4 * 3600
MON_FRI = frozenset(range(5))
SAT_SUN = frozenset({5, 6})
EVERY_DAY = frozenset(range(7))


def micro(text: str) -> int:
    return parse_amount(text, decimals=6)


def at(*args) -> int:
    """Epoch ms of a local wall time in Toronto (the first one, in a repeated hour)."""
    return int(datetime(*args, tzinfo=TORONTO).timestamp()) * 1000


def peak_offpeak(peak="0.02", offpeak="0.01", i=60, n=60, fee="0") -> RateSchedule:
    p = Rate("1", micro(peak), micro(fee), i, n)
    o = Rate("1", micro(offpeak), micro(fee), i, n)
    return RateSchedule([(Period(MON_FRI, 8 * 60, 18 * 60), p), (Period(MON_FRI, 0, 8 * 60), o),
                         (Period(MON_FRI, 18 * 60, 1440), o), (Period(SAT_SUN), o)])


# --- the pinned example ------------------------------------------------------------------------


def test_pinned_example_costs_peak_then_offpeak():
    start = at(2026, 3, 3, 17, 59, 30)  # a Tuesday
    priced = period_cost(120, peak_offpeak(), start)
    assert priced.cost == micro("0.03")
    assert priced.billed_seconds == 120
    assert priced.segments == (Segment(start, micro("0.02"), 60, micro("0.02")),
                               Segment(start + 60_000, micro("0.01"), 60, micro("0.01")))


def test_pinned_example_max_talk():
    start = at(2026, 3, 3, 17, 59, 30)
    deck = peak_offpeak()
    assert period_max_talk_seconds(micro("0.025"), deck, start, cap=CAP) == 60
    assert period_max_talk_seconds(micro("0.03"), deck, start, cap=CAP) == 120
    assert period_max_talk_seconds(micro("0.0299"), deck, start, cap=CAP) == 60
    assert period_max_talk_seconds(micro("0.019999"), deck, start, cap=CAP) == 0


def test_the_connect_fee_and_increments_come_from_the_row_in_effect_at_the_start():
    peak = Rate("1", micro("0.02"), micro("0.05"), 30, 6)
    off = Rate("1", micro("0.01"), 0, 60, 60)
    deck = RateSchedule([(Period(EVERY_DAY, 0, 18 * 60), peak), (Period(EVERY_DAY, 18 * 60, 1440), off)])
    start = at(2026, 3, 3, 17, 59, 18)
    # 30 s initial at peak + the fee 0.05; then 6 s increments: those starting at 17:59:48 and
    # 17:59:54 are peak, the one starting at 18:00:00 is off-peak.
    priced = period_cost(48, deck, start)
    assert priced.billed_seconds == 48
    assert [(s.rate_per_min, s.seconds) for s in priced.segments] == [(micro("0.02"), 42), (micro("0.01"), 6)]
    assert priced.cost == micro("0.05") + div_ceil(micro("0.02") * 42 + micro("0.01") * 6, 60) == micro("0.065")
    assert [s.cost for s in priced.segments] == [micro("0.064"), micro("0.001")]
    assert period_cost(48, deck, at(2026, 3, 3, 18, 0, 0)).cost == micro("0.01")  # 60 s minimum, no fee


def test_the_sum_is_rounded_up_once_not_per_segment():
    # 7 and 11 micro-units a minute, 1 s increments: every increment costs a fraction of a micro-unit.
    deck = RateSchedule([(Period(EVERY_DAY, 0, 12 * 60), Rate("1", 7, 0, 1, 1)),
                         (Period(EVERY_DAY, 12 * 60, 1440), Rate("1", 11, 0, 1, 1))])
    priced = period_cost(60, deck, at(2026, 3, 3, 11, 59, 30))
    assert priced.cost == div_ceil(7 * 30 + 11 * 30, 60) == 9  # not ceil(210/60) + ceil(330/60) = 10
    assert [(s.seconds, s.cost) for s in priced.segments] == [(30, 4), (30, 5)]
    assert period_max_talk_seconds(9, deck, at(2026, 3, 3, 11, 59, 30), cap=CAP) == 60 + (60 * 9 - 540) // 11


def test_nothing_talked_costs_nothing_and_has_no_segments():
    priced = period_cost(0, peak_offpeak(fee="0.05"), at(2026, 3, 3, 12, 0, 0))
    assert priced.cost == 0 and priced.billed_seconds == 0 and priced.segments == ()


def test_segments_of_a_long_call_add_up_and_start_where_their_first_increment_starts():
    deck = peak_offpeak(peak="0.013", offpeak="0.007", i=30, n=7)
    start = at(2026, 3, 6, 17, 0, 1)  # Friday: peak, off-peak from 18:00, then the weekend
    priced = period_cost(3 * 86400 - 11, deck, start)
    assert [s.rate_per_min for s in priced.segments] == [micro("0.013"), micro("0.007"), micro("0.013")]
    assert sum(s.seconds for s in priced.segments) == priced.billed_seconds
    assert sum(s.cost for s in priced.segments) == priced.cost
    # The first off-peak increment is the first one starting at or after Friday 18:00:00.
    off = priced.segments[1]
    assert at(2026, 3, 6, 18, 0, 0) <= off.start_ms < at(2026, 3, 6, 18, 0, 7)
    assert (off.start_ms - start) % 7000 == 30_000 % 7000
    assert priced.segments[2].start_ms >= at(2026, 3, 9, 8, 0, 0)  # Monday 08:00 peak again


# --- DST in America/Toronto: periods follow the local wall clock ----------------------------------


def night_day(night="0.01", day="0.02", cut=3 * 60, i=60, n=60) -> RateSchedule:
    return RateSchedule([(Period(EVERY_DAY, 0, cut), Rate("1", micro(night), 0, i, n)),
                         (Period(EVERY_DAY, cut, 1440), Rate("1", micro(day), 0, i, n))])


def test_spring_forward_skips_the_missing_hour():
    # 2026-03-08 02:00 EST becomes 03:00 EDT: an increment starting 60 s after 01:59:00 starts at
    # 03:00 local, already in the day period.
    start = at(2026, 3, 8, 1, 59, 0)
    priced = period_cost(120, night_day(), start)
    assert [(s.start_ms - start, s.rate_per_min) for s in priced.segments] == [(0, micro("0.01")),
                                                                                (60_000, micro("0.02"))]
    assert priced.cost == micro("0.03")
    assert period_max_talk_seconds(micro("0.029"), night_day(), start, cap=CAP) == 60


def test_fall_back_repeats_the_hour():
    # 2026-11-01 02:00 EDT becomes 01:00 EST: the night period (until 02:00 local) lasts two hours
    # of real time from 01:00 EDT.
    deck = night_day(cut=2 * 60)
    start = at(2026, 11, 1, 1, 0, 0)  # 01:00 EDT
    priced = period_cost(2 * 3600 + 60, deck, start)
    assert [(s.rate_per_min, s.seconds) for s in priced.segments] == [(micro("0.01"), 7200), (micro("0.02"), 60)]
    assert priced.segments[1].start_ms == start + 7_200_000
    assert period_max_talk_seconds(micro("1.20"), deck, start, cap=CAP) == 7200
    assert period_max_talk_seconds(micro("1.22"), deck, start, cap=CAP) == 7260


# --- one always-period is exactly today's convention ----------------------------------------------

rates = today_rates  # the same random rates today's convention is property-tested with
YEAR_2026 = at(2026, 1, 1, 0, 0, 0)
instants = st.integers(min_value=YEAR_2026, max_value=YEAR_2026 + 365 * 86_400_000)


@settings(max_examples=200, deadline=None)
@given(rate=rates, seconds=st.integers(min_value=0, max_value=100_000), start=instants,
       available=st.integers(min_value=-1_000_000, max_value=200_000_000),
       cap=st.integers(min_value=0, max_value=100_000))
def test_one_always_period_is_todays_cost_and_max_talk(rate, seconds, start, available, cap):
    deck = RateSchedule([(ALWAYS, rate)])
    priced = period_cost(seconds, deck, start)
    assert priced.cost == cost(seconds, rate)
    assert priced.billed_seconds == billed_seconds(seconds, rate.initial_increment, rate.increment)
    assert period_max_talk_seconds(available, deck, start, cap=cap) == max_talk_seconds(available, rate, cap=cap)


@settings(max_examples=100, deadline=None)
@given(rate=rates, seconds=st.integers(min_value=0, max_value=100_000), start=instants,
       available=st.integers(min_value=-1_000_000, max_value=200_000_000),
       cap=st.integers(min_value=0, max_value=100_000), cut=st.integers(min_value=1, max_value=1439))
def test_periods_at_one_price_are_todays_convention_too(rate, seconds, start, available, cap, cut):
    # Same row split into two periods a day (so the walk crosses boundaries): same price.
    deck = RateSchedule([(Period(EVERY_DAY, 0, cut), rate), (Period(EVERY_DAY, cut, 1440), rate)])
    assert period_cost(seconds, deck, start).cost == cost(seconds, rate)
    assert period_max_talk_seconds(available, deck, start, cap=cap) == max_talk_seconds(available, rate, cap=cap)


# --- random decks against a per-increment reference -----------------------------------------------


@st.composite
def decks(draw):
    """A random week: the days split into groups, each group's day cut into windows, each window
    a random row. Cut points favour the small hours (DST) and whole hours."""
    order = draw(st.permutations(range(7)))
    n_groups = draw(st.integers(min_value=1, max_value=3))
    bounds = sorted(draw(st.sets(st.integers(min_value=1, max_value=6), min_size=n_groups - 1,
                                 max_size=n_groups - 1)))
    groups = [frozenset(order[a:b]) for a, b in zip([0, *bounds], [*bounds, 7])]
    minute = st.one_of(st.integers(min_value=1, max_value=1439), st.integers(min_value=1, max_value=240),
                       st.sampled_from([60, 120, 150, 180, 480, 1080]))
    rows = []
    for group in groups:
        cuts = sorted(draw(st.sets(minute, max_size=8)))
        for s, e in zip([0, *cuts], [*cuts, 1440]):
            rows.append((Period(group, s, e), draw(rates)))
    return rows


def reference_row(rows, zone, at_ms):
    local = datetime.fromtimestamp(at_ms // 1000, zone)
    minute = local.hour * 60 + local.minute
    found = [r for p, r in rows if local.weekday() in p.days and p.start <= minute < p.end]
    assert len(found) == 1
    return found[0]


def reference_cost(seconds, rows, zone, start_ms):
    """Each increment priced on its own at the local time it starts; the sum rounded up once."""
    first = reference_row(rows, zone, start_ms)
    billed = billed_seconds(seconds, first.initial_increment, first.increment)
    if billed == 0:
        return 0
    total, offset, length = 0, 0, first.initial_increment
    while offset < billed:
        total += reference_row(rows, zone, start_ms + offset * 1000).rate_per_min * length
        offset += length
        length = first.increment
    return first.connect_fee + div_ceil(total, 60)


DST_DAYS = [at(2026, 3, 8, 0, 0, 0), at(2026, 11, 1, 0, 0, 0)]
start_instants = st.one_of(
    # Around the changes (02:00 local): from the evening before to the morning after.
    st.builds(lambda day, ms: day + ms, st.sampled_from(DST_DAYS),
              st.integers(min_value=-3 * 3_600_000, max_value=5 * 3_600_000)),
    instants,
)
SECONDS = st.integers(min_value=0, max_value=3 * 3600)


@settings(max_examples=200, deadline=None)
@given(rows=decks(), start=start_instants, seconds=SECONDS)
def test_cost_matches_the_per_increment_reference(rows, start, seconds):
    deck = RateSchedule(rows)
    priced = period_cost(seconds, deck, start)
    assert priced.cost == reference_cost(seconds, rows, TORONTO, start)
    assert sum(s.cost for s in priced.segments) == priced.cost
    assert sum(s.seconds for s in priced.segments) == priced.billed_seconds
    assert all(a.rate_per_min != b.rate_per_min for a, b in zip(priced.segments, priced.segments[1:]))


@settings(max_examples=200, deadline=None)
@given(rows=decks(), start=start_instants, cap=st.integers(min_value=0, max_value=CAP),
       available=st.one_of(st.integers(min_value=-1_000, max_value=2_000_000),
                           st.integers(min_value=0, max_value=400_000_000)))
def test_max_talk_is_exact_across_periods(rows, start, cap, available):
    deck = RateSchedule(rows)
    m = period_max_talk_seconds(available, deck, start, cap=cap)
    assert 0 <= m <= cap
    if available <= 0:
        assert m == 0
        return
    assert period_cost(m, deck, start).cost <= available
    if m < cap:  # never one increment short: one more second already costs too much
        assert period_cost(m + 1, deck, start).cost > available


@settings(max_examples=100, deadline=None)
@given(rows=decks(), start=start_instants, seconds=SECONDS)
def test_max_talk_of_a_calls_own_cost_covers_the_call(rows, start, seconds):
    deck = RateSchedule(rows)
    price = period_cost(seconds, deck, start).cost
    assume(price > 0)
    assert period_max_talk_seconds(price, deck, start, cap=CAP) >= min(seconds, CAP)


@settings(max_examples=50, deadline=None)
@given(rows=decks(), start=start_instants)
def test_the_rate_in_effect_is_the_reference_row(rows, start):
    assert RateSchedule(rows).rate_at(start) == reference_row(rows, TORONTO, start)


def test_max_talk_walks_boundaries_not_seconds():
    # A week of 1-second increments over hourly alternating rates: a per-second loop would take
    # seconds per call; walking the ~170 boundaries takes well under a millisecond.
    rows = [(Period(EVERY_DAY, h * 60, h * 60 + 60), Rate("1", 1000 + (h % 2), 0, 1, 1)) for h in range(24)]
    deck = RateSchedule(rows)
    start = at(2026, 3, 6, 12, 0, 0)
    t0 = time.perf_counter()
    for k in range(100):
        assert period_max_talk_seconds(10**12, deck, start + k * 1000, cap=7 * 86400) == 7 * 86400
    assert time.perf_counter() - t0 < 2.0


# --- zones ------------------------------------------------------------------------------------------


def test_zone_default_and_unknown():
    assert DEFAULT_TIMEZONE == "America/Toronto"
    assert RateSchedule([(ALWAYS, Rate("1", 1))]).zone == TORONTO
    assert load_zone("Europe/Paris") == ZoneInfo("Europe/Paris")
    for bad in ("Mars/Olympus", "", "America", "../etc/passwd", "/usr/share/zoneinfo/UTC", "America/Toronto\x00"):
        with pytest.raises(InvalidInput, match="timezone"):
            load_zone(bad)


def test_a_schedule_in_another_zone_uses_its_wall_clock():
    paris = RateSchedule([(Period(EVERY_DAY, 0, 8 * 60), Rate("1", 1)), (Period(EVERY_DAY, 8 * 60, 1440), Rate("1", 2))],
                         zone="Europe/Paris")
    utc_0730 = int(datetime(2026, 7, 1, 5, 30, tzinfo=ZoneInfo("UTC")).timestamp()) * 1000  # 07:30 CEST
    assert paris.rate_at(utc_0730).rate_per_min == 1
    assert paris.rate_at(utc_0730 + 30 * 60_000).rate_per_min == 2


def test_a_schedule_refuses_gaps_and_overlaps():
    with pytest.raises(ValueError, match="no rate"):
        RateSchedule([(Period(MON_FRI), Rate("1", 1))])
    with pytest.raises(ValueError, match="overlap"):
        RateSchedule([(ALWAYS, Rate("1", 1)), (Period(SAT_SUN), Rate("1", 2))])


# --- deck CSV: the optional days, start, end columns ----------------------------------------------

HEADER = "prefix,description,rate_per_min,connect_fee,initial_increment,increment"


def deck_lines(*rows, header=HEADER + ",days,start,end"):
    return [header + "\n", *(r + "\n" for r in rows)]


def test_old_decks_parse_unchanged():
    lines = deck_lines("1,US,0.0125,0,60,6", "1514,Montreal,0.01,0.015,30,6", header=HEADER)
    rows = parse_deck_rows(lines)
    assert [r.rate for r in rows] == parse_deck(lines)
    assert [r.period for r in rows] == [ALWAYS, ALWAYS]
    assert [r.line for r in rows] == [2, 3]


def test_a_deck_with_periods_parses_into_rows():
    rows = parse_deck_rows(deck_lines(
        "1,US peak,0.02,0,60,60,mon-fri,08:00,18:00",
        "1,US night,0.01,0,60,60,mon-fri,00:00,08:00",
        "1514,Montreal,0.01,0,60,60,,,",
        "1,US evening,0.01,0,60,60,\"mon,tue,wed,thu,fri\",18:00,24:00",
        "1,US weekend,0.01,0,60,60,sat-sun,,",
    ))
    assert [(r.line, r.rate.prefix, r.period) for r in rows] == [
        (2, "1", Period(MON_FRI, 480, 1080)), (3, "1", Period(MON_FRI, 0, 480)), (4, "1514", ALWAYS),
        (5, "1", Period(MON_FRI, 1080, 1440)), (6, "1", Period(SAT_SUN)),
    ]
    deck = RateSchedule([(r.period, r.rate) for r in rows if r.rate.prefix == "1"])
    assert period_cost(120, deck, at(2026, 3, 3, 17, 59, 30)).cost == micro("0.03")


def test_blank_period_columns_are_always_and_duplicates_of_old_decks_keep_their_message():
    with pytest.raises(DeckError, match=r"line 3, column prefix: duplicate prefix 1 \(first on line 2\)"):
        parse_deck_rows(deck_lines("1,a,0.01,0,60,6", "1,b,0.01,0,60,6", header=HEADER))
    with pytest.raises(DeckError) as e:
        parse_deck_rows(deck_lines("1,a,0.01,0,60,6,,,", "1,b,0.01,0,60,6,,,"))
    assert (e.value.line, e.value.column) == (3, "days") and "overlaps line 2" in str(e.value)


@pytest.mark.parametrize("days,start,end,column,why", [
    ("mon-xyz", "", "", "days", "xyz"),
    ("funday", "", "", "days", "funday"),
    ("fri-mon", "", "", "days", "fri-mon"),
    ("mon,,tue", "", "", "days", "empty"),
    ("mon-fri,wed", "", "", "days", "wed"),
    ("", "25:00", "26:00", "start", "25:00"),
    ("", "24:00", "24:00", "start", "24:00"),
    ("", "08:60", "09:00", "start", "08:60"),
    ("", "8h", "09:00", "start", "8h"),
    ("", "08:00:00", "09:00", "start", "08:00:00"),
    ("", "08:00", "24:01", "end", "24:01"),
    ("", "18:00", "08:00", "end", "later than"),
    ("", "08:00", "08:00", "end", "later than"),
    ("", "08:00", "", "end", "blank"),
    ("", "", "18:00", "start", "blank"),
    ("", "\u0661\u0662:00", "13:00", "start", "HH:MM"),
])
def test_bad_days_and_times_name_the_line_and_column(days, start, end, column, why):
    with pytest.raises(DeckError) as e:
        parse_deck_rows(deck_lines("44,UK,0.01,0,60,6,,,", f"1,US,0.01,0,60,6,\"{days}\",{start},{end}"))
    assert (e.value.line, e.value.column) == (3, column)
    assert why in str(e.value)


def test_the_cells_parse_case_and_space_insensitively():
    assert parse_period_cells(7, " Mon - Fri ", " 8:00", "18:00 ") == Period(MON_FRI, 480, 1080)
    assert parse_period_cells(7, "SUN", "", "") == Period(frozenset({6}))
    assert parse_period_cells(7, "mon,wed,fri", "00:00", "24:00") == Period(frozenset({0, 2, 4}))
    assert parse_period_cells(7, "", "", "") == ALWAYS


@pytest.mark.parametrize("rows,line,column,why", [
    # a gap inside a day: named at the row that ends where the gap starts
    ([(2, Period(EVERY_DAY, 0, 480)), (3, Period(EVERY_DAY, 540, 1440))], 2, "end", "Mon 08:00-09:00"),
    # a gap at the start of a day: named at the row that starts where the gap ends
    ([(2, Period(EVERY_DAY, 60, 1440))], 2, "start", "Mon 00:00-01:00"),
    # a day no row covers: named at the prefix's last row
    ([(2, Period(MON_FRI)), (5, Period(frozenset({5})))], 5, "days", "Sun"),
    # overlaps: named at the later line, by the column that runs into the other row
    ([(2, Period(EVERY_DAY, 0, 600)), (3, Period(EVERY_DAY, 540, 1440))], 3, "start", "overlaps line 2"),
    ([(2, Period(EVERY_DAY, 540, 1440)), (3, Period(EVERY_DAY, 0, 600))], 3, "end", "overlaps line 2"),
    ([(2, Period(MON_FRI)), (3, Period(frozenset({4, 5, 6})))], 3, "days", "overlaps line 2 on Fri"),
    ([(9, ALWAYS), (4, Period(SAT_SUN, 0, 600)), (6, Period(SAT_SUN, 600, 1440))], 9, "days", "overlaps line 4"),
])
def test_a_prefix_must_cover_the_week_exactly_once(rows, line, column, why):
    with pytest.raises(DeckError) as e:
        check_prefix_periods("1514", rows)
    assert (e.value.line, e.value.column) == (line, column)
    assert why in str(e.value) and "1514" in str(e.value)


def test_whole_week_tables_pass():
    check_prefix_periods("1", [(2, ALWAYS)])
    check_prefix_periods("1", [(2, Period(MON_FRI, 480, 1080)), (3, Period(MON_FRI, 0, 480)),
                               (4, Period(MON_FRI, 1080, 1440)), (5, Period(SAT_SUN))])


def test_a_deck_with_a_gap_is_refused_at_the_line_and_column_and_nothing_is_returned():
    with pytest.raises(DeckError) as e:
        parse_deck_rows(deck_lines("1,US peak,0.02,0,60,60,mon-fri,08:00,18:00",
                                   "1,US night,0.01,0,60,60,mon-fri,00:00,08:00",
                                   "1,US evening,0.01,0,60,60,mon-fri,18:00,23:00",
                                   "1,US weekend,0.01,0,60,60,sat-sun,,"))
    assert (e.value.line, e.value.column) == (4, "end")
    assert "Mon 23:00-24:00" in str(e.value)


def test_each_period_column_is_optional_on_its_own():
    rows = parse_deck_rows(deck_lines("1,weekdays,0.02,0,60,6,mon-fri", "1,weekend,0.01,0,60,6,sat-sun",
                                      header=HEADER + ",days"))
    assert [r.period for r in rows] == [Period(MON_FRI), Period(SAT_SUN)]
    with pytest.raises(DeckError) as e:
        parse_deck_rows(deck_lines("1,a,0.02,0,60,6,08:00", header=HEADER + ",start"))
    assert (e.value.line, e.value.column) == (2, "end")


def test_parse_deck_refuses_period_cells_it_cannot_price(tmp_path):
    """parse_deck (one row a prefix) refuses a filled days/start/end cell with its line and column
    (it would otherwise read as "always" without a word); blank period columns parse. plan import
    reads periods (parse_deck_rows): a deck whose periods leave a gap is refused naming the line
    and column, nothing written (tests/core/test_deck_versions.py has the rest)."""
    header = "prefix,description,rate_per_min,connect_fee,initial_increment,increment,days,start,end\n"
    with pytest.raises(DeckError) as err:
        parse_deck((header + "1,NANP,0.02,0,60,60,,,\n1,NANP,0.01,0,60,60,sat,,\n").splitlines(keepends=True))
    assert (err.value.line, err.value.column) == (3, "days")
    assert len(parse_deck((header + "1,NANP,0.02,0,60,60,,,\n").splitlines(keepends=True))) == 1
    from click.testing import CliRunner

    from callgate.cli import main
    deck = tmp_path / "deck.csv"
    deck.write_text(header + "1,NANP,0.02,0,60,60,mon-fri,08:00,18:00\n")
    db = f"sqlite:///{tmp_path / 'cg.db'}"
    runner = CliRunner()
    assert runner.invoke(main, ["--db", db, "db", "upgrade"]).exit_code == 0
    result = runner.invoke(main, ["--db", db, "plan", "import", "std", str(deck)])
    assert result.exit_code != 0 and "line 2, column start" in result.output and "no rate on Mon 00:00-08:00" in result.output
    assert runner.invoke(main, ["--db", db, "plan", "show", "std"]).exit_code != 0  # nothing written
