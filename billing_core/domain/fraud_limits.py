"""Toll-fraud call limits (issue 18) on plain account rows (pure): the per-call duration cap (and,
as they come, the attempt rate, the spend caps and the anomaly thresholds).

Every limit is a package column with an optional account override: the account row carries the
package's value as ``<name>`` and the account's as ``acct_<name>`` (store/statements.py,
``FRAUD_COLUMNS``); NULL on both means "no limit".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

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
