"""Toll-fraud call limits (issue 18) on plain account rows (pure): the per-call duration cap (and,
as they come, the attempt rate, the spend caps and the anomaly thresholds).

Every limit is a package column with an optional account override: the account row carries the
package's value as ``<name>`` and the account's as ``acct_<name>`` (store/statements.py,
``FRAUD_COLUMNS``); NULL on both means "no limit".
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from .rating import DEFAULT_TIMEZONE, load_zone

MINUTE_MS = 60_000


def effective(acct: Mapping[str, Any], name: str) -> Any:
    """The account's override of package limit ``name``, else the package's (None = no limit)."""
    value = acct.get("acct_" + name)
    return acct.get(name) if value is None else value


def call_cap_seconds(acct: Mapping[str, Any] | None, global_cap: int) -> int:
    """The longest talk one call of this account may be granted: the global cap
    (``max_call_seconds``), shortened by the package's or account's ``max_call_minutes``. Every
    grant goes through it — the authorize (bridge timer, continue-mode and FastAGI
    ``CALLGATE_MAX_MS``) and every hold extension (core and sidecar) — so no mode can exceed it."""
    minutes = effective(acct, "max_call_minutes") if acct is not None else None
    if minutes is None:
        return global_cap
    return min(global_cap, int(minutes) * 60)


@dataclass(frozen=True, slots=True)
class Attempt:
    allowed: bool
    minute: int
    """The epoch minute the counter is now in."""
    count: int
    """Attempts counted in ``minute`` (this one included when allowed)."""
    prev: int
    """Attempts counted in the minute before."""


def attempt(acct: Mapping[str, Any], now: int) -> Attempt | None:
    """Count an outbound call attempt against ``--max-attempts-per-minute`` (None: no limit set).

    A sliding window over two fixed minutes (the usual rate-limiter estimate): the attempts of the
    current minute plus the previous minute's weighted by how much of it still lies within the
    last 60 s. A fixed window would let 2·N attempts through around a minute boundary; this keeps
    any 60 s to about N without storing every attempt. A refused (rate-limited) attempt is not
    counted, so an account that slows down gets through again within the minute."""
    limit = effective(acct, "max_attempts_per_minute")
    if limit is None:
        return None
    minute = now // MINUTE_MS
    stored = acct["attempts_minute"]
    if minute == stored:
        count, prev = acct["attempts_count"], acct["attempts_prev"]
    elif minute == stored + 1:
        count, prev = 0, acct["attempts_count"]
    elif minute > stored:
        count, prev = 0, 0
    else:  # the clock went back (another gate's clock is a little behind): keep the newer window
        minute, count, prev = stored, acct["attempts_count"], acct["attempts_prev"]
    remaining_of_prev = min(MINUTE_MS - (now - minute * MINUTE_MS), MINUTE_MS)
    # prev·(share of the previous minute still in the window) + count < limit, in integers
    if prev * max(remaining_of_prev, 0) + count * MINUTE_MS >= int(limit) * MINUTE_MS:
        return Attempt(False, minute, count, prev)
    return Attempt(True, minute, count + 1, prev)


# ------------------------------------------------------------------------------ spend caps
#: Ledger kinds that are call spending (what the daily and monthly caps count): the settle of a
#: call (negative when chunks took more than the call cost) and its chunk debits. Operator debits,
#: payments and refunds are not spending.
CALL_CHARGE_KINDS = ("call", "chunk")
SPEND_COLUMNS = ("spend_day_key", "spend_day", "spend_month_key", "spend_month")


@lru_cache(maxsize=256)
def zone(name: str | None) -> ZoneInfo:
    return load_zone(name or DEFAULT_TIMEZONE)


def period_keys(now: int, tz: str | None) -> tuple[int, int]:
    """(day key YYYYMMDD, month key YYYYMM) of epoch-ms ``now`` in the package's time zone."""
    t = datetime.fromtimestamp(now / 1000, zone(tz))
    return t.year * 10_000 + t.month * 100 + t.day, t.year * 100 + t.month


def period_start_ms(key: int, tz: str | None) -> int:
    """The first instant of a day (YYYYMMDD) or month (YYYYMM) key in the zone, epoch ms."""
    if key >= 1_000_000:
        y, m, d = key // 10_000, key // 100 % 100, key % 100
    else:
        y, m, d = key // 100, key % 100, 1
    return int(datetime(y, m, d, tzinfo=zone(tz)).timestamp() * 1000)


def spent(acct: Mapping[str, Any], now: int) -> tuple[int, int]:
    """What the account's calls were charged today and this month (package time zone)."""
    day, month = period_keys(now, acct.get("timezone"))
    return (acct["spend_day"] if acct["spend_day_key"] == day else 0,
            acct["spend_month"] if acct["spend_month_key"] == month else 0)


def spend_after(acct: Mapping[str, Any], charge: int, now: int) -> dict[str, int]:
    """The spend counters after charging ``charge`` (negative: given back) at ``now``: a counter
    of an earlier period starts again from 0. Kept in the same UPDATE as the balance."""
    day, month = period_keys(now, acct.get("timezone"))
    d, m = spent(acct, now)
    return {"spend_day_key": day, "spend_day": d + charge, "spend_month_key": month, "spend_month": m + charge}


def cap_remaining(acct: Mapping[str, Any], now: int) -> int | None:
    """What the daily and monthly caps still let the account's calls take: cap − charged in the
    period − live holds (the smaller of the two); None when neither cap is set. The caps are a
    second balance under the holds ledger: a grant must be paid for by both this and the money,
    so concurrent calls (whose holds are all in ``held``) can never take more than the cap."""
    daily, monthly = effective(acct, "daily_cap"), effective(acct, "monthly_cap")
    if daily is None and monthly is None:
        return None
    d, m = spent(acct, now)
    left = [cap - used - acct["held"] for cap, used in ((daily, d), (monthly, m)) if cap is not None]
    return min(left)


# ------------------------------------------------------------------------------ anomalies
#: The suspension reason (``accounts.suspended_reason``) of an anomaly; only
#: ``account reactivate`` lifts it (a payment does not).
FRAUD_SUSPECTED = "fraud_suspected"
DEFAULT_ANOMALY_WINDOW_MINUTES = 60
#: A new package suspends an account after more than this many refused attempts to blocked
#: destinations in the anomaly window (packages from before migration 0009: no such check).
DEFAULT_ANOMALY_BLOCKED_ATTEMPTS = 10
ANOMALY_COLUMNS = ("anomaly_window", "anomaly_spend", "anomaly_spend_prev", "anomaly_blocked", "anomaly_blocked_prev")


@dataclass(frozen=True, slots=True)
class Anomaly:
    counters: dict[str, int]
    """The anomaly columns after this event."""
    trigger: str | None
    """Why the account must be suspended now (None: no anomaly, or already suspended)."""


def anomaly(acct: Mapping[str, Any], now: int, *, spend: int = 0, blocked: int = 0) -> Anomaly:
    """Count call spending and refused attempts to blocked destinations in the sliding anomaly
    window (the package's ``anomaly_window_minutes``, default 60; the current and the previous
    window, the previous weighted as :func:`attempt` does) and say whether they cross the
    package's (or account's) ``anomaly_spend_per_hour`` or ``anomaly_blocked_attempts``."""
    minutes = acct.get("anomaly_window_minutes") or DEFAULT_ANOMALY_WINDOW_MINUTES
    span = int(minutes) * MINUTE_MS
    window = now // span
    stored = acct.get("anomaly_window") or 0
    if window == stored:
        s, sp, b, bp = acct["anomaly_spend"], acct["anomaly_spend_prev"], acct["anomaly_blocked"], acct["anomaly_blocked_prev"]
    elif window == stored + 1:
        s, sp, b, bp = 0, acct["anomaly_spend"], 0, acct["anomaly_blocked"]
    elif window > stored:
        s = sp = b = bp = 0
    else:  # a clock behind another gate's: count in the newer window
        window = stored
        s, sp, b, bp = acct["anomaly_spend"], acct["anomaly_spend_prev"], acct["anomaly_blocked"], acct["anomaly_blocked_prev"]
    s, b = s + spend, b + blocked
    counters = {"anomaly_window": window, "anomaly_spend": s, "anomaly_spend_prev": sp, "anomaly_blocked": b,
                "anomaly_blocked_prev": bp}
    if acct.get("status") == "suspended":
        return Anomaly(counters, None)
    left = min(max(span - (now - window * span), 0), span)
    spend_limit, blocked_limit = effective(acct, "anomaly_spend_per_hour"), effective(acct, "anomaly_blocked_attempts")
    # the spend threshold is per hour: over a window of another length it scales with it
    if spend and spend_limit is not None and (sp * left + s * span) * 60 > int(spend_limit) * int(minutes) * span:
        return Anomaly(counters, f"call spending above {int(spend_limit)} micro-units per hour "
                                 f"(sliding {int(minutes)} min window)")
    if blocked and blocked_limit is not None and bp * left + b * span > int(blocked_limit) * span:
        return Anomaly(counters, f"more than {int(blocked_limit)} refused attempts to blocked destinations in "
                                 f"{int(minutes)} min")
    return Anomaly(counters, None)
