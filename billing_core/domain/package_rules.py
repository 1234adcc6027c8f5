"""The package rules of issue 18 (toll fraud) as operators see them: their names (the ``package
add/set`` flags with underscores), which an account may override, and how they are shown
(``package show --json``, ``account show --json``, the console). One place, read by the CLI's
operations (billing_core.admin) and the read model alike."""
from __future__ import annotations

from typing import Any

from . import destination_rules as dest
from . import fraud_limits
from . import lifecycle
from .money import format_amount


#: The package rules of issue 18 (the ``package add/set`` flags, underscores for dashes).
PACKAGE_RULES = ("allow_regions", "block_types", "deny_prefixes", "allow_prefixes", "max_rate_per_min",
                 "max_call_minutes", "max_attempts_per_minute", "daily_cap", "monthly_cap", "timezone",
                 "anomaly_spend_per_hour", "anomaly_blocked_attempts", "anomaly_window_minutes")
#: What ``account set REF …`` may override (NULL on the account = the package's value).
ACCOUNT_OVERRIDES = ("allow_regions", "block_types", "max_rate_per_min", "max_call_minutes", "max_attempts_per_minute",
                     "daily_cap", "monthly_cap", "anomaly_spend_per_hour", "anomaly_blocked_attempts")
#: The rules that are amounts (shown and parsed as decimal strings).
AMOUNT_RULES = ("max_rate_per_min", "daily_cap", "monthly_cap", "anomaly_spend_per_hour")


def _rule_out(name: str, value: Any) -> Any:
    if name in AMOUNT_RULES:
        return None if value is None else format_amount(value)
    return value


def package_rules_out(row) -> dict[str, Any]:
    """A package row's rules as ``package show --json`` gives them: the flags' names with
    underscores and the flags' forms (``"CA,US"``, ``"*"``, ``"881,882"``, amounts as decimal
    strings, null = not set)."""
    return {name: _rule_out(name, row[name]) for name in PACKAGE_RULES}


def account_rules_out(row, now: int) -> dict[str, Any]:
    """An account_query() row's fraud-protection view (``account show``): ``limits`` (the rules in
    force: the account's override, else the package's), ``overrides`` (null = the package's),
    and the account's own ``allow_destinations``/``deny_destinations``."""
    overrides = {name: _rule_out(name, row["acct_" + name]) for name in ACCOUNT_OVERRIDES}
    effective = {name: _rule_out(name, row[name] if row["acct_" + name] is None else row["acct_" + name])
                 for name in ACCOUNT_OVERRIDES}
    effective.update(deny_prefixes=row["deny_prefixes"], allow_prefixes=row["allow_prefixes"], timezone=row["timezone"],
                     anomaly_window_minutes=row["anomaly_window_minutes"])
    effective = {k: effective[k] for k in PACKAGE_RULES}
    today, month = fraud_limits.spent(row, now)
    left = fraud_limits.cap_remaining(row, now)
    spend = {"today": format_amount(today), "this_month": format_amount(month),
             "remaining_cap": None if left is None else format_amount(max(left, 0))}
    suspension = {"suspended": row["status"] == lifecycle.SUSPENDED, "reason": row["suspended_reason"],
                  "since": row["status_changed_at"] if row["status"] == lifecycle.SUSPENDED else None,
                  "suspensions": row["suspensions"]}
    return {"limits": effective, "overrides": overrides, "spend": spend, "suspension": suspension,
            "allow_destinations": list(dest.split(row["allow_destinations"])),
            "deny_destinations": list(dest.split(row["deny_destinations"]))}
