"""Frozen records the core hands to adapters. Amounts are micro-units, times epoch milliseconds."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import DenyReason

#: "Clear this override": an account setting given this value takes its package's again.
INHERIT = "package"


#: ``hold_mode`` of a call an operator ended from the console (billing_core.console.end_call): its
#: grant was cut to the talk so far and is final, like a full hold's (never extended; the gate cuts
#: it at once, without the warning tone).
ENDED_HOLD = "ended"


@dataclass(frozen=True, slots=True)
class Authorization:
    """The answer to ``authorize_call``: allowed with a session and a hold, or a deny reason."""

    allowed: bool
    reason: DenyReason | None
    """Why the call is refused (None when allowed)."""
    session_id: str | None
    """The call session holding the money (also set for emergency calls: a zero-cost record)."""
    direction: str
    """``outbound`` or ``inbound``."""
    number: str
    """The number as dialled (outbound) or the DID (inbound)."""
    account_ref: str | None = None
    number_e164: str | None = None
    prefix: str | None = None
    """The rate-deck prefix that matched (outbound)."""
    rate_per_min: int | None = None
    granted_seconds: int = 0
    """Talk seconds the current hold pays for; the cut-off is answer time + this."""
    max_talk_seconds: int = 0
    """What the account's available money would buy in one call at this rate (capped)."""
    ring_endpoint: str | None = None
    """Inbound: the SIP endpoint that rings for the DID."""
    emergency: bool = False
    """Emergency numbers: never gated, never charged, no timer."""
    rule: str | None = None
    """``destination_blocked`` only: the destination rule that refused the number (``region``,
    ``number_type``, ``prefix`` or ``max_rate``; billing_core.domain.destination_rules)."""

    @property
    def granted_ms(self) -> int:
        """Granted talk time in milliseconds (what Dial's ``L()`` takes); 0 when refused."""
        return self.granted_seconds * 1000 if self.allowed else 0


@dataclass(frozen=True, slots=True)
class LiveCutoff:
    """Where an answered call must be cut, as the gate's once-a-second refresh reads it."""

    session_id: str
    cutoff_at: int | None
    """Epoch ms; None for emergency calls (no limit)."""
    hold_mode: str
    """``chunked`` (the gate may extend it as a fallback), ``full``, or ``ended`` (an operator ended
    it from the console: the gate cuts it at ``cutoff_at`` without the warning tone)."""
    emergency: bool


@dataclass(frozen=True, slots=True)
class CallSession:
    """A snapshot of one call session."""

    session_id: str
    pbx_id: str
    channel_id: str | None
    account_ref: str | None
    direction: str
    number_e164: str | None
    state: str
    """``authorized`` (not answered yet), ``answered``, ``settled``."""
    hold_mode: str
    """``chunked`` (extended chunk by chunk) or ``full`` (everything held up front: Dial L())."""
    granted_seconds: int
    hold: int
    """Money reserved and not yet debited, micro-units."""
    charged: int
    """Money already debited by chunk debits (before settlement), micro-units."""
    chunks_debited: int
    created_at: int
    answered_at: int | None
    cutoff_at: int | None
    """Epoch ms at which the call must be cut (answered_at + granted); None before answer or for
    emergency calls."""
    settled_at: int | None
    talk_ms: int | None
    cost: int | None
    """Final cost after settlement."""
    emergency: bool
    stale: bool
    """Settled by the sidecar because its gate stopped reporting."""
    last_seen_at: int
    rate_per_min: int | None = None
    billing_basis: str | None = None
    """How the settled talk was known (money_rules.BILLING_BASES); None while live."""


@dataclass(frozen=True, slots=True)
class Settlement:
    """The result of settling a call (the same value when a settle is replayed)."""

    session_id: str
    talk_ms: int
    billable_seconds: int
    cost: int
    """cost(billable) under the session's rate."""
    charged_by_chunks: int
    """What chunk debits had already taken."""
    final_charge: int
    """cost − charged_by_chunks (negative = money given back)."""
    overrun: int
    """How much the cost exceeded the money held + already charged (0 normally)."""
    replayed: bool = False
    billing_basis: str | None = None
    """How the talk was known (money_rules.BILLING_BASES)."""
    clamped: tuple[str, ...] = ()
    """The bounds this settle was cut to (``elapsed``, ``grant``, ``credit_limit``); empty normally."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    entry_id: int
    account_ref: str
    kind: str
    amount: int
    balance_after: int
    reason: str
    idempotency_key: str
    session_id: str | None
    created_at: int
    replayed: bool = False
    """True when the idempotency key already existed: nothing changed, this is the original."""


@dataclass(frozen=True, slots=True)
class AccountView:
    ref: str
    name: str
    email: str
    package: str
    currency: str
    balance: int
    credit_limit: int
    held: int
    available: int
    status: str
    live_calls: int
    low_balance_threshold: int
    created_at: int
    updated_at: int
    status_changed_at: int | None = None
