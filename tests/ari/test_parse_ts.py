"""ARI event timestamps → epoch ms: datetime.fromisoformat (3.11 reads Asterisk's ``+0000``), exact to the ms."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ari_app.calls import parse_ts

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("value, ms", [
    ("2026-11-28T10:00:00.123+0000", 1795860000123),          # Asterisk's shape
    ("2026-11-27T18:06:20.047-0500", 1795820780047),
    ("2026-11-27T18:06:20.047+0530", 1795782980047),
    ("2026-11-27T18:06:20Z", 1795802780000),
    ("2026-11-27T18:06:20.047+00:00", 1795802780047),
    ("2026-11-27T18:06:20.047123+0000", 1795802780047),        # microseconds: the ms they fall in
    ("2026-11-27 18:06:20.047+0000", 1795802780047),
    ("garbage", None), ("", None), (None, None), (5, None), ("2026-13-27T18:06:20.047+0000", None),
])
def test_parse_ts(value, ms):
    assert parse_ts(value) == ms


@given(st.integers(min_value=0, max_value=4_102_444_800_000), st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_every_millisecond_round_trips_exactly(ms, offset_minutes):
    """No float rounding: an Asterisk timestamp of any ms, in any zone, parses to that very ms."""
    tz = timezone(timedelta(minutes=offset_minutes))
    local = (EPOCH + timedelta(milliseconds=ms)).astimezone(tz)
    sign = "+" if offset_minutes >= 0 else "-"
    hh, mm = divmod(abs(offset_minutes), 60)
    value = local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}{sign}{hh:02d}{mm:02d}"
    assert parse_ts(value) == ms
