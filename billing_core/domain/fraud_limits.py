"""Toll-fraud call limits (issue 18) on plain account rows (pure): the per-call duration cap (and,
as they come, the attempt rate, the spend caps and the anomaly thresholds).

Every limit is a package column with an optional account override: the account row carries the
package's value as ``<name>`` and the account's as ``acct_<name>`` (store/statements.py,
``FRAUD_COLUMNS``); NULL on both means "no limit".
"""
from __future__ import annotations

from typing import Any, Mapping


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
