"""Account lifecycle rules (pure): what a balance change does to the status and which alerts it owes.

The store applies :func:`after_balance_change` in the same transaction as every balance update, so
the status and the alert can never disagree with the ledger.

Choices (the issues are silent on these):
* When one change both crosses the low-balance threshold and depletes the account, only the
  "depleted" email is sent (the low-balance alert is disarmed without an email): two emails about
  the same debit is noise, and "depleted" says more.
* A payment that lifts the balance above 0 re-activates ``depleted``, ``pre_suspended`` **and**
  ``suspended`` accounts — paying restores service. Released DIDs are not given back (they may
  already belong to somebody else).
* Re-arming the low-balance alert needs the balance strictly above the threshold.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

ACTIVE = "active"
DEPLETED = "depleted"
PRE_SUSPENDED = "pre_suspended"
SUSPENDED = "suspended"
STATUSES = (ACTIVE, DEPLETED, PRE_SUSPENDED, SUSPENDED)

LOW_BALANCE = "low_balance"
BALANCE_DEPLETED = "depleted"
PRE_SUSPENSION = "pre_suspension"
DIDS_RELEASED = "dids_released"
TOPUP_RECEIPT = "topup_receipt"

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class LifecycleState:
    """The lifecycle columns of one account."""

    balance: int
    status: str
    low_balance_threshold: int
    low_balance_armed: bool
    low_balance_crossings: int
    depletions: int
    depleted_at: int | None
    presuspended_at: int | None
    status_changed_at: int | None


@dataclass(frozen=True, slots=True)
class Alert:
    """An email the change owes. ``crossing`` makes its outbox key unique per occurrence."""

    kind: str
    crossing: int


@dataclass(frozen=True, slots=True)
class Transition:
    state: LifecycleState
    alerts: tuple[Alert, ...]


def after_balance_change(state: LifecycleState, *, now_ms: int) -> Transition:
    """The state and alerts after ``state.balance`` took its new value."""
    s = state
    alerts: list[Alert] = []
    depleting = s.balance <= 0 and s.status == ACTIVE

    if s.balance < s.low_balance_threshold and s.low_balance_armed:
        s = replace(s, low_balance_armed=False, low_balance_crossings=s.low_balance_crossings + 1)
        if not depleting:
            alerts.append(Alert(LOW_BALANCE, s.low_balance_crossings))
    elif s.balance > s.low_balance_threshold and not s.low_balance_armed:
        s = replace(s, low_balance_armed=True)

    if depleting:
        s = replace(s, status=DEPLETED, depleted_at=now_ms, depletions=s.depletions + 1, status_changed_at=now_ms)
        alerts.append(Alert(BALANCE_DEPLETED, s.depletions))
    elif s.balance > 0 and s.status in (DEPLETED, PRE_SUSPENDED, SUSPENDED):
        s = replace(s, status=ACTIVE, depleted_at=None, presuspended_at=None, status_changed_at=now_ms)
    return Transition(s, tuple(alerts))


def presuspension_due(state: LifecycleState, *, now_ms: int, days: float) -> bool:
    """Still depleted ``days`` after depletion → pre-suspension notice."""
    return state.status == DEPLETED and state.depleted_at is not None and now_ms - state.depleted_at >= days * DAY_MS


def release_due(state: LifecycleState, *, now_ms: int, days: float) -> bool:
    """``days`` after the pre-suspension notice → DIDs back to the pool, suspended."""
    return (
        state.status == PRE_SUSPENDED
        and state.presuspended_at is not None
        and now_ms - state.presuspended_at >= days * DAY_MS
    )


def release_date_ms(presuspended_at: int, days: float) -> int:
    """When the DIDs of a pre-suspended account go back to the pool."""
    return presuspended_at + int(days * DAY_MS)
