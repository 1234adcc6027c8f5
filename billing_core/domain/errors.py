"""Deny reasons: values, not exceptions."""
from __future__ import annotations

from enum import Enum


class DenyReason(str, Enum):
    """Why a call was refused. The string values are part of the public interface (CLI JSON,
    CALLGATE_REASON in the dialplan, logs)."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    DEPLETED = "depleted"
    SUSPENDED = "suspended"
    UNKNOWN_ENDPOINT = "unknown_endpoint"
    UNKNOWN_DID = "unknown_did"
    NO_RATE = "no_rate"
    INVALID_NUMBER = "invalid_number"
    TOO_MANY_CALLS = "too_many_calls"
    BILLING_UNAVAILABLE = "billing_unavailable"
    DESTINATION_BLOCKED = "destination_blocked"
    """A toll-fraud destination rule refused the number (``Authorization.rule`` names which)."""
    RATE_LIMITED = "rate_limited"
    """More outbound call attempts in a minute than the package (or account) allows."""
    SPEND_LIMIT = "spend_limit"
    """The account's daily or monthly spend cap leaves nothing for this call."""

    def __str__(self) -> str:  # so f-strings and logs print the bare value
        return self.value


class NotFound(LookupError):
    """A reference (account, plan, DID, session…) does not exist. The message names it."""


class InvalidInput(ValueError):
    """Input that cannot be accepted; the message names the field or line."""


class BelowCreditLimit(InvalidInput):
    """A manual debit would take a balance below its credit limit and was not explicitly allowed."""
