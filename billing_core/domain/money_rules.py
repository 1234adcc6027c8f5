"""The money arithmetic of live calls and balance changes, on plain row mappings (pure).

Both the per-call path (``BillingCore``) and the sidecar's batched pass apply exactly these
functions, so the two can never disagree about a chunk, a hold or an alert.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from . import fraud_limits, lifecycle
from .records import ENDED_HOLD
from .money import check_storage_range, format_customer
from .rating import (
    Rate, RateSchedule, billable_seconds, cost, max_talk_seconds, period_cost, period_max_talk_seconds,
    round_up_to_increment, schedule_text, session_schedule,
)

PAYMENT_KINDS = ("payment",)

#: How a settled call's talk was known (``call_sessions.billing_basis``; docs/OPERATIONS.md):
#: ``measured`` — the switch or the gate measured it; ``clamped`` — the reported talk was more than
#: could have happened (see :func:`talk_bound`) and was cut to the bound; ``bounded_at_restart`` —
#: the call ended while no gate ran and was billed up to the restart (capped at its grant);
#: ``bounded_stale`` — its gate stopped reporting and the sidecar billed it up to the sweep
#: (capped at its grant). The two ``bounded_*`` may bill more than was talked: refundable.
#: ``asterisk_hangup`` — the call ended while no gate ran and was billed up to the end Asterisk's
#: hangup handler recorded (asterisk-conf [callgate-ended]): its real end, to Asterisk's clock.
BILLING_BASES = ("measured", "clamped", "bounded_at_restart", "bounded_stale", "asterisk_hangup")


@dataclass(frozen=True, slots=True)
class QueuedAlert:
    """An email owed by a balance change (the outbox key makes it once-only)."""

    kind: str
    dedupe_key: str
    context: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """What one balance change writes."""

    ledger_row: dict[str, Any]
    """The ledger entry's column values."""
    account: dict[str, Any]
    """The account mapping after the change (balance, held and lifecycle columns updated)."""
    alerts: tuple[QueuedAlert, ...]
    suspend: str | None = None
    """Issue 18: the anomaly that makes this change suspend the account (fraud_suspected), or None;
    the caller runs the suspension's writes (billing_core.store.fraud)."""


def balance_change(acct: Mapping[str, Any], delta: int, *, kind: str, reason: str, key: str,
                   session_id: str | None, now: int, held_delta: int = 0,
                   below_limit_allowed: bool = False) -> BalanceChange:
    """Ledger entry + new balance + lifecycle transition + alerts for ``delta`` on ``acct``.
    ``below_limit_allowed`` is recorded on the entry: the operator explicitly let it take the
    balance below the credit limit (``callgate verify`` accepts what such entries took)."""
    check_storage_range(delta, field="amount")
    new_balance = check_storage_range(acct["balance"] + delta, field="resulting balance")
    check_storage_range(acct["held"] + held_delta, field="resulting held amount")
    state = lifecycle.LifecycleState(
        balance=new_balance, status=acct["status"], low_balance_threshold=acct["low_balance"],
        low_balance_armed=bool(acct["low_balance_armed"]), low_balance_crossings=acct["low_balance_crossings"],
        depletions=acct["depletions"], depleted_at=acct["depleted_at"], presuspended_at=acct["presuspended_at"],
        status_changed_at=acct["status_changed_at"],
    )
    tr = lifecycle.after_balance_change(state, now_ms=now)
    s = tr.state
    row = dict(account_id=acct["id"], kind=kind, amount=delta, balance_after=new_balance, reason=reason[:300],
               session_id=session_id, idempotency_key=key, created_at=now,
               below_limit_allowed=bool(below_limit_allowed))
    updated = dict(acct)
    suspend = None
    if kind in fraud_limits.CALL_CHARGE_KINDS:  # call spending: the spend caps' counters move with it
        updated.update(fraud_limits.spend_after(acct, -delta, now))
        if -delta > 0 and fraud_limits.effective(acct, "anomaly_spend_per_hour") is not None:
            found = fraud_limits.anomaly(acct, now, spend=-delta)
            updated.update(found.counters)
            suspend = found.trigger
    status, changed_at = s.status, s.status_changed_at
    if acct.get("suspended_reason") == fraud_limits.FRAUD_SUSPECTED and acct["status"] == lifecycle.SUSPENDED:
        status, changed_at = acct["status"], acct["status_changed_at"]  # only `account reactivate` lifts it
    if suspend is not None:
        status, changed_at = lifecycle.SUSPENDED, now
    updated.update(balance=new_balance, held=acct["held"] + held_delta, status=status,
                   status_changed_at=changed_at, depleted_at=s.depleted_at, presuspended_at=s.presuspended_at,
                   low_balance_armed=s.low_balance_armed, low_balance_crossings=s.low_balance_crossings,
                   depletions=s.depletions)
    facts = {"account_ref": acct["ref"], "account_name": acct["name"], "currency": acct["currency"],
             "balance": format_customer(new_balance), "threshold": format_customer(acct["low_balance"])}
    alerts = [QueuedAlert(a.kind, f"{acct['ref']}:{a.kind}:{a.crossing}", facts) for a in tr.alerts]
    if kind in PAYMENT_KINDS and delta > 0:
        alerts.append(QueuedAlert(lifecycle.TOPUP_RECEIPT, f"{acct['ref']}:{lifecycle.TOPUP_RECEIPT}:{key}",
                                  {**facts, "amount": format_customer(delta), "reference": key, "reason": reason}))
    return BalanceChange(row, updated, tuple(alerts), suspend)


#: Milliseconds the switch's answer time may be ahead of the core's clock and still count: the
#: answer time comes from Asterisk (ARI event timestamps), a settle's "now" from the core's clock,
#: and two NTP-synchronised hosts differ by far less than this.
ANSWER_CLOCK_ALLOWANCE_MS = 2_000


@dataclass(frozen=True, slots=True)
class TalkBound:
    talk_ms: int
    """The most talk the session can have had by now."""
    bound: str
    """What set it: ``elapsed`` (time since authorize/answer) or ``grant`` (a full hold's grant)."""


#: Hold modes whose grant is the most the call can talk.
FINAL_GRANT_MODES = ("full", ENDED_HOLD)

#: Bases whose talk was never measured but billed up to a moment the core chose (a restart, a
#: stale sweep): never more than the grant the call was paying for.
BOUNDED_BASES = ("bounded_at_restart", "bounded_stale")


def talk_bound(row: Mapping[str, Any], now: int, basis: str = "measured") -> TalkBound:
    """The most talk a session can be settled at, whatever an adapter reports: the time since it
    was authorized — since it was answered, when the answer is known — and, for a full-hold
    session (Dial ``L()``: the switch itself cuts it at the grant) or a talk that was only bounded
    (``BOUNDED_BASES``), its grant. The same bound for every settle path (ARI bridge, continue
    mode, FastAGI, restarts, stale sweeps). Within it, talk beyond a chunked call's grant is
    charged (:func:`settlement_cost`'s overrun, up to :func:`settle_charge_limit`)."""
    start = row["created_at"]
    if row["answered_at"] is not None:
        start = max(start, row["answered_at"] - ANSWER_CLOCK_ALLOWANCE_MS)
    bound = TalkBound(max(0, now - start), "elapsed")
    if (row["hold_mode"] in FINAL_GRANT_MODES or basis in BOUNDED_BASES) and row["granted_seconds"] * 1000 < bound.talk_ms:
        bound = TalkBound(row["granted_seconds"] * 1000, "grant")
    return bound


def answer_may_be_unknown(row: Mapping[str, Any], basis: str) -> bool:
    """A session still "authorized" at its settle normally was never answered, and talks nothing.
    Not so for a full-hold session whose end no gate saw (``bounded_at_restart``): asterisk-conf's
    continue route reports the answer only with the end (its settle handler), so it may have
    talked up to its grant; the restart bills it to the bound from the authorize (talk_bound), and
    says so on the call."""
    return basis == "bounded_at_restart" and row["hold_mode"] == "full" and not row["emergency"]


def bounded_talk_ms(answered_at: int | None, granted_seconds: int, now: int) -> int:
    """The talk of a call whose end nobody saw (``BOUNDED_BASES``): from the answer to ``now``,
    never more than its grant; nothing if it was never answered."""
    if answered_at is None:
        return 0
    return max(0, min(granted_seconds * 1000, now - answered_at))


def ended_grant_seconds(granted_seconds: int, answered_at: int, now: int) -> int:
    """The grant of a call an operator ends now (billing_core.console.end_call): the talk so far in
    whole seconds, rounded up — the settle's billable seconds (rating.billable_seconds: 500 ms rounds
    down) never exceed it, so ending a call can never turn its talk into an overrun — and never more
    than the call had."""
    talked_ms = max(0, now - answered_at)
    return min(granted_seconds, -(-talked_ms // 1000))


@dataclass(frozen=True, slots=True)
class SettlementCost:
    billable_seconds: int
    total: int
    """What the whole call costs (before the credit-limit bound)."""
    overrun: int
    """The part of ``total`` beyond what the grant paid for (charged too; reported)."""


def settlement_cost(row: Mapping[str, Any], talk_ms: int) -> SettlementCost:
    """What a settled call costs: its billable talk at the session's rate; emergency calls nothing."""
    billable = billable_seconds(talk_ms)
    if row["emergency"]:
        return SettlementCost(billable, 0, 0)
    total = session_cost(row, billable)
    return SettlementCost(billable, total, max(0, total - session_cost(row, row["granted_seconds"])))


def settle_charge_limit(acct: Mapping[str, Any], row: Mapping[str, Any], now: int | None = None) -> int:
    """The most a settle may still charge: the call's own hold plus the money nobody holds, so
    the balance never goes below the credit limit and other live calls keep what they hold —
    and, with spend caps (given ``now``), the call's hold plus what the caps still allow, so the
    period's charges never exceed a cap either."""
    limit = max(0, acct["balance"] + acct["credit_limit"] - acct["held"] + row["hold"])
    left = fraud_limits.cap_remaining(acct, now) if now is not None else None
    return limit if left is None else max(0, min(limit, left + row["hold"]))


def cap_bound(acct: Mapping[str, Any], row: Mapping[str, Any], now: int) -> bool:
    """Whether the spend caps (not the money) are what :func:`settle_charge_limit` stops at."""
    left = fraud_limits.cap_remaining(acct, now)
    return left is not None and left < acct["balance"] + acct["credit_limit"] - acct["held"]


def session_rate(row: Mapping[str, Any]) -> Rate:
    """The rate copied into a call session at authorize time."""
    return Rate(row["prefix"] or "", row["rate_per_min"], row["connect_fee"], row["initial_increment"], row["increment"])


def talk_start(row: Mapping[str, Any]) -> int:
    """The instant a session's talk starts, for its periods: the answer, else (not answered yet:
    sizing its first hold, or a restart bound) its authorize."""
    return row["answered_at"] if row["answered_at"] is not None else row["created_at"]


def session_cost(row: Mapping[str, Any], seconds: int) -> int:
    """What ``seconds`` billable seconds of this session cost: its copied rate, each increment at
    the period in effect when it starts when its prefix's rate changes by period (rating.period_cost
    on the periods copied at authorize: ``rate_periods``)."""
    text = row.get("rate_periods")
    if not text:
        return cost(seconds, session_rate(row))
    return period_cost(seconds, session_schedule(text, session_rate(row)), talk_start(row)).cost


def session_max_talk(row: Mapping[str, Any], available: int, *, cap: int) -> int:
    """The longest talk of this session within ``available`` (rating.period_max_talk_seconds)."""
    text = row.get("rate_periods")
    if not text:
        return max_talk_seconds(available, session_rate(row), cap=cap)
    return period_max_talk_seconds(available, session_schedule(text, session_rate(row)), talk_start(row), cap=cap)


def rerated_cost(row: Mapping[str, Any], schedule: RateSchedule) -> int:
    """What a settled call costs under another deck version's rows for its prefix (``rerate``): by
    the same convention as at settle — the row in effect when the call started (its authorize)
    gives the connect fee and increments, each increment is priced at the period in effect when it
    starts, from the answer — on the talk it was settled with."""
    start_row = schedule.rate_at(row["created_at"])
    seconds = billable_seconds(row["talk_ms"] or 0)
    if schedule.one_price:
        return cost(seconds, start_row)
    return period_cost(seconds, session_schedule(schedule_text(schedule), start_row), talk_start(row)).cost


def chunk_step(chunk_seconds: int, granted_seconds: int, rate: Rate) -> int:
    """Talk added by one hold extension: a chunk on the increment grid (the first covers the
    initial increment)."""
    step = max(chunk_seconds, 1)
    if granted_seconds < rate.initial_increment:
        return round_up_to_increment(step, rate)
    return -(-step // rate.increment) * rate.increment


def chunks_due(row: Mapping[str, Any], now: int) -> int:
    """How many chunks of an answered session's granted talk have fully elapsed by ``now``: the
    one chunk-due rule (the per-call debit, the core's and the sidecar's debit passes)."""
    chunk = max(row["chunk_seconds"], 1)
    elapsed = max(now - row["answered_at"], 0) // 1000
    return min(elapsed, row["granted_seconds"]) // chunk


def due_chunks(row: Mapping[str, Any], now: int) -> list[tuple[int, int]]:
    """(chunk number, amount) of every fully elapsed, granted, not yet debited chunk."""
    chunk = max(row["chunk_seconds"], 1)
    return [(k, session_cost(row, k * chunk) - session_cost(row, (k - 1) * chunk))
            for k in range(row["chunks_debited"] + 1, chunks_due(row, now) + 1)]


def needs_extension(row: Mapping[str, Any], now: int, lookahead: int) -> bool:
    """A chunked, answered call with less than a chunk + ``lookahead`` seconds of granted talk left."""
    if row["hold_mode"] != "chunked" or row["answered_at"] is None:
        return False
    remaining_ms = row["answered_at"] + row["granted_seconds"] * 1000 - now
    return remaining_ms < (max(row["chunk_seconds"], 1) + lookahead) * 1000


def debit_work_due(row: Mapping[str, Any], now: int, lookahead: int) -> bool:
    """Whether a debit pass has work on this answered session: a chunk to debit or a hold to extend."""
    return chunks_due(row, now) > row["chunks_debited"] or needs_extension(row, now, lookahead)


@dataclass(frozen=True, slots=True)
class Extension:
    granted_seconds: int
    hold: int
    cutoff_at: int | None


def extension(acct: Mapping[str, Any], row: Mapping[str, Any], *, charged: int, hold: int, cap: int,
              now: int | None = None) -> Extension | None:
    """Hold the next chunk, or what is left (a partial grant moves the cut-off earlier; money
    taken away by a manual debit can shrink the grant). None when nothing changes. Given
    ``now``, the spend caps' remainder bounds it as the money does."""
    if acct.get("suspended_reason") == fraud_limits.FRAUD_SUSPECTED:
        return None  # a call of an account suspended for fraud is cut, never extended (issue 18)
    rate = session_rate(row)
    granted = row["granted_seconds"]
    target = granted + chunk_step(row["chunk_seconds"], granted, rate)
    available = acct["balance"] + acct["credit_limit"] - acct["held"]
    left = fraud_limits.cap_remaining(acct, now) if now is not None else None
    if left is not None:
        available = min(available, left)
    # What this call may spend in total: what it already took + its own hold + what is free.
    budget = charged + hold + available
    new_granted = min(target, session_max_talk(row, budget, cap=cap))
    if new_granted == granted:
        return None
    cutoff = None if row["answered_at"] is None else row["answered_at"] + new_granted * 1000
    return Extension(new_granted, max(session_cost(row, new_granted) - charged, 0), cutoff)
