"""billing_core.domain.ids: only plain ASCII decimal ids that fit a BIGINT."""
from __future__ import annotations

import pytest

from billing_core.domain.ids import plain_id


@pytest.mark.parametrize("text", ["²", "٦", "１", "1²", "0", "00", "-1", "+1", " 1", "1 ", "1\n", "1.0", "1e3",
                                  "9" * 19, "9223372036854775808", "", None, 5, "0x1"])
def test_odd_ids_are_refused(text):
    assert plain_id(text) is None


@pytest.mark.parametrize("text, value", [("1", 1), ("007", 7), ("9" * 18, 999_999_999_999_999_999)])
def test_plain_ids(text, value):
    assert plain_id(text) == value
