"""The billing convention, pinned by the issue's examples and by properties."""
from hypothesis import given, settings, strategies as st

from billing_core.domain.money import parse_amount
from billing_core.domain.rating import Rate, RateTable, billable_seconds, billed_seconds, cost, max_talk_seconds

CAP = 4 * 3600


def r(rate, fee="0", i=60, n=6):
    return Rate("1", parse_amount(rate, decimals=6), parse_amount(fee, decimals=6), i, n)


def test_billable_rounds_to_nearest_second_500ms_down():
    assert billable_seconds(0) == 0
    assert billable_seconds(499) == 0
    assert billable_seconds(500) == 0
    assert billable_seconds(501) == 1
    assert billable_seconds(1500) == 1
    assert billable_seconds(1501) == 2
    assert billable_seconds(-5) == 0


def test_increments():
    assert billed_seconds(0, 60, 6) == 0
    assert billed_seconds(1, 60, 6) == 60
    assert billed_seconds(60, 60, 6) == 60
    assert billed_seconds(61, 60, 6) == 66
    assert billed_seconds(125, 60, 6) == 126


def test_issue_examples_rate_0_0125_60_6():
    rate = r("0.0125")
    assert cost(1, rate) == parse_amount("0.0125", decimals=6)
    assert cost(61, rate) == parse_amount("0.01375", decimals=6)
    assert cost(125, rate) == parse_amount("0.02625", decimals=6)
    assert max_talk_seconds(parse_amount("1.00"), rate, cap=CAP) == 4800


def test_issue_examples_with_connect_fee_30_6():
    rate = r("0.045", "0.015", 30, 6)
    assert cost(31, rate) == parse_amount("0.042", decimals=6)
    assert max_talk_seconds(parse_amount("1.00"), rate, cap=CAP) == 1308


def test_unanswered_costs_nothing_even_with_a_connect_fee():
    assert cost(0, r("0.045", "0.015", 30, 6)) == 0


def test_cost_rounds_up_to_the_micro_unit():
    rate = Rate("1", 1, 0, 1, 1)  # 0.000001 per minute
    assert cost(1, rate) == 1


def test_free_rate_is_capped():
    assert max_talk_seconds(1, r("0", "0", 1, 1), cap=CAP) == CAP
    assert max_talk_seconds(0, r("0", "0", 1, 1), cap=CAP) == 0


rates = st.builds(
    Rate,
    prefix=st.just("1"),
    rate_per_min=st.integers(min_value=0, max_value=5_000_000),
    connect_fee=st.integers(min_value=0, max_value=500_000),
    initial_increment=st.integers(min_value=1, max_value=120),
    increment=st.integers(min_value=1, max_value=60),
)


@settings(max_examples=600, deadline=None)
@given(available=st.integers(min_value=-1_000_000, max_value=200_000_000), rate=rates,
       cap=st.integers(min_value=1, max_value=100_000))
def test_max_talk_is_the_largest_affordable_whole_second(available, rate, cap):
    t = max_talk_seconds(available, rate, cap=cap)
    assert 0 <= t <= cap
    if available <= 0:  # no money, no call — even at a free rate
        assert t == 0
        return
    assert cost(t, rate) <= available
    if t < cap:
        assert cost(t + 1, rate) > available


@settings(max_examples=300, deadline=None)
@given(rate=rates, a=st.integers(min_value=0, max_value=20_000), b=st.integers(min_value=0, max_value=20_000))
def test_cost_is_monotonic(rate, a, b):
    lo, hi = sorted((a, b))
    assert cost(lo, rate) <= cost(hi, rate)


def test_longest_prefix_wins():
    table = RateTable({"1": Rate("1", 1), "1514": Rate("1514", 2), "15145": Rate("15145", 3)})
    assert table.lookup("15145550100").prefix == "15145"
    assert table.lookup("15140000000").prefix == "1514"
    assert table.lookup("12125550100").prefix == "1"
    assert table.lookup("4420") is None
