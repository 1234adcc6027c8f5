import pytest

from billing_core.domain.numbers import is_emergency, normalise


@pytest.mark.parametrize("raw", ["15145550100", "5145550100", "+15145550100", "1-514-555-0100", "(514) 555-0100"])
def test_nanp_forms(raw):
    assert normalise(raw).e164 == "+15145550100"


def test_international_via_011():
    assert normalise("011441234567890").e164 == "+441234567890"
    assert normalise("+441234567890").e164 == "+441234567890"


@pytest.mark.parametrize("raw", ["", "abc", "12", "++1514", "*98", "1514555010012345678901", None, "5145550100#"])
def test_unparseable_is_none_not_an_exception(raw):
    assert normalise(raw) is None


def test_home_region_is_configurable():
    assert normalise("02079460000", "GB").e164 == "+442079460000"


def test_emergency_numbers():
    assert is_emergency("911")
    assert is_emergency("933")
    assert not is_emergency("9110")
    assert not is_emergency("15145550100")
    assert is_emergency("112", frozenset({"112"}))
