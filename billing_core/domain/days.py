"""UTC days of epoch-ms times: the console's per-day figures and the settle's day totals
(store.tables.call_day_totals) count a call on the UTC day it started, in one way."""
from __future__ import annotations

DAY_MS = 86_400_000
MINUTE_MS = 60_000


def utc_day(at_ms: int) -> int:
    """UTC midnight (epoch ms) of the day ``at_ms`` falls in."""
    return at_ms - at_ms % DAY_MS
