import pytest
from decimal import Decimal

from billing_core.domain.money import AmountError, format_amount, format_customer, from_decimal, parse_amount


@pytest.mark.parametrize("text,micro", [("12.5", 12_500_000), ("12.50", 12_500_000), ("-1.00", -1_000_000),
                                        ("0", 0), ("+3", 3_000_000), (" 7.01 ", 7_010_000)])
def test_parse_accepts_plain_decimals(text, micro):
    assert parse_amount(text) == micro


@pytest.mark.parametrize("text", ["abc", "NaN", "nan", "1e3", "Infinity", "-inf", "", "  ", "1,000.00", "1.2.3", "12.", ".5", "0x10", "١٢"])
def test_parse_rejects_junk_naming_the_field(text):
    with pytest.raises(AmountError) as err:
        parse_amount(text, field="--low-balance")
    assert "--low-balance" in str(err.value)


def test_customer_amounts_allow_two_decimals_rates_six():
    with pytest.raises(AmountError, match="more than 2 decimal"):
        parse_amount("1.001", field="AMOUNT")
    assert parse_amount("0.0125", decimals=6) == 12_500
    with pytest.raises(AmountError, match="more than 6 decimal"):
        parse_amount("0.0000001", decimals=6)


def test_negative_can_be_refused():
    with pytest.raises(AmountError, match="negative"):
        parse_amount("-1", allow_negative=False)


@pytest.mark.parametrize("micro,text", [(4_000_000, "4.00"), (13_750, "0.01375"), (-1_500_000, "-1.50"), (0, "0.00"),
                                        (1, "0.000001"), (10_000, "0.01"), (12_345_678_900, "12345.6789")])
def test_format_shows_two_decimals_and_more_only_when_non_zero(micro, text):
    assert format_amount(micro) == text


def test_format_customer_is_two_decimals_rounded_down():
    assert format_customer(4_000_000) == "4.00"
    assert format_customer(4_994_999) == "4.99"
    assert format_customer(4_997_500) == "4.99"  # never "5.00" in a "below 5.00" email
    assert format_customer(-5_000) == "-0.01"


def test_from_decimal_is_exact():
    assert from_decimal(Decimal("0.0125")) == 12_500
    with pytest.raises(AmountError):
        from_decimal(Decimal("NaN"))
