"""The call decision as pure steps: a generator that *asks* for data and *requests* writes.

Why a generator: the decision must be written once, yet run by two drivers — SQLAlchemy on a sync
connection (SQLite's writer thread, and PostgreSQL via run_sync) and a raw-asyncpg driver for the
PostgreSQL hot path (SQLAlchemy's per-statement overhead halves PostgreSQL throughput; see
docs/BENCHMARKS.md). The generator yields effect records; the driver performs each inside one
transaction and sends the result back. No I/O here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator, Mapping

from . import destination_rules as dest
from . import fraud_limits
from .errors import DenyReason
from .lifecycle import DEPLETED, PRE_SUSPENDED, SUSPENDED
from .numbers import normalise
from .rating import (
    Rate, RateSchedule, RateTable, cost, max_talk_seconds, period_cost, period_max_talk_seconds,
    round_up_to_increment, schedule_text,
)
from .records import Authorization


# ------------------------------------------------------------------------------------ effects
@dataclass(frozen=True, slots=True)
class SessionByChannel:
    """→ the session row of (pbx, channel) or None."""

    pbx_id: str
    channel_id: str


@dataclass(frozen=True, slots=True)
class AccountRef:
    """→ the ref of account ``account_id``."""

    account_id: int


@dataclass(frozen=True, slots=True)
class AccountByEndpoint:
    """→ the account row (with package and plan columns) of a SIP endpoint, locked if asked."""

    endpoint: str
    lock: bool


@dataclass(frozen=True, slots=True)
class AccountByRef:
    """→ the account row (same columns as :class:`AccountByEndpoint`) of an account ref, unlocked:
    what a dry run (``quote``) decides for, since an operator names the account, not an endpoint."""

    ref: str


@dataclass(frozen=True, slots=True)
class AccountByDid:
    """→ the locked account row of an assigned DID (plus ``did_endpoint``), or None."""

    e164: str


@dataclass(frozen=True, slots=True)
class FirstEndpoint:
    """→ the account's first endpoint name (the one that rings for a DID without one)."""

    account_id: int


@dataclass(frozen=True, slots=True)
class RatesOf:
    """→ the :class:`RateTable` of the plan's deck version in effect at ``at`` (epoch ms), or None
    when no version is in effect yet (drivers cache them: billing_core.domain.decks.DeckCache).
    ``version`` is the plan's generation (``plans.version``): when it moves, the versions are read again."""

    plan_id: int
    version: int
    at: int


@dataclass(frozen=True, slots=True)
class TakeCall:
    """Write: held += hold, live_calls += 1 on the account."""

    account_id: int
    hold: int
    now: int


@dataclass(frozen=True, slots=True)
class CountAttempt:
    """Write: the account's call-attempt counter (``--max-attempts-per-minute``); → nothing."""

    account_id: int
    minute: int
    count: int
    prev: int


@dataclass(frozen=True, slots=True)
class CountAnomaly:
    """Write: the account's anomaly-window counters (domain.fraud_limits.anomaly); → nothing."""

    account_id: int
    counters: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class SuspendForFraud:
    """Write: suspend the account as fraud_suspected, audit it, queue the emails, cut its live
    calls (billing_core.store.fraud.suspension_writes); → nothing."""

    account: Mapping[str, Any]
    detail: str
    now: int


@dataclass(frozen=True, slots=True)
class InsertSession:
    """Write: a new call session row; → nothing. ``values`` are the column values."""

    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RecordRefusal:
    """Write: the refused call's decision record (issue 20: the console lists refusals with their
    reason); → nothing. The last write of a refusal, in its transaction; a second one for the same
    (pbx, channel) — a replayed StasisStart / AGI retry — writes nothing. ``values`` are the columns
    of ``call_refusals`` (store.statements.REFUSAL_COLUMNS)."""

    values: Mapping[str, Any]


class RefusalNotRecorded(Exception):
    """A driver could not write a :class:`RecordRefusal` (its transaction is rolled back, the
    decision's other writes with it). The core decides again without the record: a refusal stands
    whether or not it is recorded, and its reason must not become billing_unavailable."""


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    direction: str
    number: str
    endpoint: str | None
    caller_id: str | None
    pbx_id: str
    channel_id: str | None
    full_hold: bool
    emergency: bool
    now: int
    session_id: str
    """The id to use if a session is created (drivers generate it)."""
    account_ref: str | None = None
    """Decide for this account itself instead of the endpoint's (a dry run: ``quote``)."""
    dry_run: bool = False
    """The same reads and the same answer, but no lock, no session, no hold (``quote``): so what an
    operator is told can never disagree with what the gate decides."""
    record_refusal: bool = True
    """Write a refusal's :class:`RecordRefusal` (False only when deciding again after
    :class:`RefusalNotRecorded`). Dry runs never record."""


@dataclass(frozen=True, slots=True)
class Limits:
    home_region: str
    max_call_seconds: int
    chunk_seconds: int
    inbound_initial_increment: int
    inbound_increment: int


def status_refusal(acct: Mapping[str, Any]) -> DenyReason | None:
    """Suspended, depleted (or pre-suspended) and zero/negative balances place and receive no calls."""
    if acct["status"] == SUSPENDED:
        return DenyReason.SUSPENDED
    if acct["status"] in (DEPLETED, PRE_SUSPENDED) or acct["balance"] <= 0:
        return DenyReason.DEPLETED
    return None


def chunk_target(rate: Rate, chunk_seconds: int) -> int:
    """Talk bought by one hold chunk: at least the first increment, on the increment grid."""
    return round_up_to_increment(max(chunk_seconds, 1), rate)


def _session_values(req: AuthorizeRequest, *, account_id, number_e164, endpoint, rate: Rate, granted, hold, full_hold,
                    emergency, chunk_seconds, priced: "Priced | None" = None) -> dict[str, Any]:
    return dict(
        id=req.session_id, pbx_id=req.pbx_id, channel_id=req.channel_id, account_id=account_id, direction=req.direction,
        number=req.number, number_e164=number_e164, caller_id=req.caller_id, endpoint=endpoint,
        prefix=rate.prefix or None, rate_per_min=rate.rate_per_min, connect_fee=rate.connect_fee,
        initial_increment=rate.initial_increment, increment=rate.increment, chunk_seconds=chunk_seconds,
        state="authorized", hold_mode="full" if full_hold else "chunked", emergency=emergency, granted_seconds=granted,
        hold=hold, charged=0, chunks_debited=0, created_at=req.now, last_seen_at=req.now, stale=False,
        answered_at=None, cutoff_at=None, settled_at=None, talk_ms=None, cost=None, overrun=None, settle_note=None,
        billing_basis=None,
        plan_id=priced.plan_id if priced else None, deck_version=priced.deck_version if priced else None,
        rate_periods=schedule_text(priced.schedule) if priced and priced.schedule is not None else None,
        rerated_cost=None, rerated_version=None, rerated_at=None,
    )


# ------------------------------------------------------------------- pricing (issue 19: periods)
@dataclass(frozen=True, slots=True)
class Priced:
    """How an outbound call is priced: its deck version, its prefix's rows over the week (None for
    inbound calls: one rate) and the row in effect at its start (connect fee, increments)."""

    rate: Rate
    schedule: RateSchedule | None = None
    plan_id: int | None = None
    deck_version: int | None = None


def outbound_price(table: RateTable | None, digits: str, plan_id: int, start_ms: int) -> Priced | None:
    """The price of a call to ``digits`` starting at ``start_ms`` under a deck version (None: no rate)."""
    if table is None:
        return None
    schedule = table.schedule(digits)
    if schedule is None:
        return None
    return Priced(schedule.rate_at(start_ms), schedule, plan_id, table.version)


def priced_max_talk(available: int, priced: Priced, start_ms: int, *, cap: int) -> int:
    """The longest affordable talk of a call starting at ``start_ms`` (rating.period_max_talk_seconds)."""
    if priced.schedule is None or priced.schedule.one_price:
        return max_talk_seconds(available, priced.rate, cap=cap)
    return period_max_talk_seconds(available, priced.schedule, start_ms, cap=cap)


def priced_cost(seconds: int, priced: Priced, start_ms: int) -> int:
    """What ``seconds`` of talk from ``start_ms`` cost (rating.period_cost)."""
    if priced.schedule is None or priced.schedule.one_price:
        return cost(seconds, priced.rate)
    return period_cost(seconds, priced.schedule, start_ms).cost


def _blocked_attempt(acct: Mapping[str, Any], now: int, tried) -> Generator[Any, Any, None]:
    """The writes of an attempt refused as destination_blocked: the attempt counter (when under
    its limit) and the anomaly check's count of blocked attempts, which may suspend the account."""
    if tried is not None and tried.allowed:
        yield CountAttempt(acct["id"], tried.minute, tried.count, tried.prev)
    if fraud_limits.effective(acct, "anomaly_blocked_attempts") is not None:
        found = fraud_limits.anomaly(acct, now, blocked=1)
        yield CountAnomaly(acct["id"], found.counters)
        if found.trigger is not None:
            yield SuspendForFraud(acct, found.trigger, now)


def _account_of(req: AuthorizeRequest, *, lock: bool) -> AccountByRef | AccountByEndpoint:
    """The read that finds the calling account: the named account (a dry run) or the endpoint's."""
    if req.account_ref is not None:
        return AccountByRef(req.account_ref)
    return AccountByEndpoint(req.endpoint or "", lock)


def authorize_steps(req: AuthorizeRequest, lim: Limits) -> Generator[Any, Any, Authorization]:
    """The decision. Drive it with ``send``; its return value is the :class:`Authorization`."""
    direction, number = req.direction, req.number
    acct: Mapping[str, Any] | None = None  # the account the decision is about, once found

    def deny(reason: DenyReason, **kw: Any) -> Generator[Any, Any, Authorization]:
        refusal = Authorization(False, reason, None, direction, number, **kw)
        if req.record_refusal and not req.dry_run:
            yield RecordRefusal(dict(
                at=req.now, pbx_id=req.pbx_id, channel_id=req.channel_id,
                account_id=acct["id"] if acct is not None else None, direction=direction, number=number,
                number_e164=refusal.number_e164, reason=reason.value, rule=refusal.rule, endpoint=req.endpoint))
        return refusal

    if req.channel_id is not None:
        existing = yield SessionByChannel(req.pbx_id, req.channel_id)
        if existing is not None:  # a replayed StasisStart / AGI retry: same decision, no new hold
            ref = (yield AccountRef(existing["account_id"])) if existing["account_id"] is not None else None
            return Authorization(
                True, None, existing["id"], existing["direction"], existing["number"], account_ref=ref,
                number_e164=existing["number_e164"], prefix=existing["prefix"], rate_per_min=existing["rate_per_min"],
                granted_seconds=existing["granted_seconds"], max_talk_seconds=existing["granted_seconds"],
                ring_endpoint=existing["endpoint"] if existing["direction"] == "inbound" else None,
                emergency=bool(existing["emergency"]),
            )

    if req.emergency:  # never gated, never charged: a zero-cost record, any account or none
        acct = (yield _account_of(req, lock=False)) if req.endpoint or req.account_ref else None
        if not req.dry_run:
            yield InsertSession(_session_values(
                req, account_id=acct["id"] if acct else None, number_e164=None, endpoint=req.endpoint,
                rate=Rate("", 0, 0, 1, 1), granted=lim.max_call_seconds, hold=0, full_hold=True, emergency=True,
                chunk_seconds=lim.chunk_seconds,
            ))
        return Authorization(True, None, None if req.dry_run else req.session_id, direction, number,
                             account_ref=acct["ref"] if acct else None, granted_seconds=lim.max_call_seconds,
                             max_talk_seconds=lim.max_call_seconds, emergency=True)

    if direction == "outbound":
        acct = yield _account_of(req, lock=not req.dry_run)
        if acct is None:
            return (yield from deny(DenyReason.UNKNOWN_ENDPOINT))
        refused = status_refusal(acct)
        parsed = normalise(number, lim.home_region)
        # toll-fraud destination rules (issue 18): prefix, region, number type before the rate —
        # and before the account's state: a blocked destination is refused as such whatever the
        # state (a fraud pattern stays visible, and counts, after its suspension)
        rules = dest.rules_of(acct) if parsed is not None else None
        blocked, action = dest.check_destination(rules, parsed.e164) if parsed is not None else (None, None)
        tried = fraud_limits.attempt(acct, req.now) if refused is None else None
        if blocked is not None:
            if not req.dry_run:
                yield from _blocked_attempt(acct, req.now, tried)
            return (yield from deny(DenyReason.DESTINATION_BLOCKED, account_ref=acct["ref"], number_e164=parsed.e164, rule=blocked))
        if refused is not None:  # the account's state says more to the caller than the number
            return (yield from deny(refused, account_ref=acct["ref"]))
        # toll-fraud attempt rate (issue 18): counted before the other checks, so attempts refused
        # for their destination or money count too; the locked account row makes it exact
        if tried is not None:
            if not tried.allowed:
                return (yield from deny(DenyReason.RATE_LIMITED, account_ref=acct["ref"]))
            if not req.dry_run:
                yield CountAttempt(acct["id"], tried.minute, tried.count, tried.prev)
        if parsed is None:
            return (yield from deny(DenyReason.INVALID_NUMBER, account_ref=acct["ref"]))
        table: RateTable | None = yield RatesOf(acct["plan_id"], acct["plan_version"], req.now)
        priced = outbound_price(table, parsed.digits, acct["plan_id"], req.now)
        if priced is None:
            return (yield from deny(DenyReason.NO_RATE, account_ref=acct["ref"], number_e164=parsed.e164))
        rate = priced.rate
        blocked = dest.check_rate(rules, action, rate.rate_per_min)  # ...and the high-cost guard after it
        if blocked is not None:
            return (yield from deny(DenyReason.DESTINATION_BLOCKED, account_ref=acct["ref"], number_e164=parsed.e164,
                                    prefix=rate.prefix or None, rate_per_min=rate.rate_per_min, rule=blocked))
        ring_endpoint = None
    else:
        parsed = normalise(number, lim.home_region)
        if parsed is None:
            return (yield from deny(DenyReason.UNKNOWN_DID))
        acct = yield AccountByDid(parsed.e164)
        if acct is None:
            return (yield from deny(DenyReason.UNKNOWN_DID, number_e164=parsed.e164))
        rate = Rate("", acct["inbound_rate"], 0, lim.inbound_initial_increment, lim.inbound_increment, "inbound")
        priced = Priced(rate)
        ring_endpoint = acct["did_endpoint"] or (yield FirstEndpoint(acct["id"]))

    info = dict(account_ref=acct["ref"], number_e164=parsed.e164, prefix=rate.prefix or None, rate_per_min=rate.rate_per_min)
    refused = status_refusal(acct)
    if refused is not None:
        return (yield from deny(refused, **info))
    if acct["live_calls"] >= acct["max_calls"]:
        return (yield from deny(DenyReason.TOO_MANY_CALLS, **info))
    available = acct["balance"] + acct["credit_limit"] - acct["held"]
    # spend caps (issue 18): a second balance under the holds; the grant is what both pay for
    cap_left = fraud_limits.cap_remaining(acct, req.now)
    capped = cap_left is not None and cap_left < available
    if capped:
        available = cap_left
    # The talk is priced as if it started now: an answer later may fall in another period (the
    # settle charges what the talk cost, as for any overrun; chunked calls re-price each extension).
    max_talk = priced_max_talk(available, priced, req.now,
                               cap=fraud_limits.call_cap_seconds(acct, lim.max_call_seconds))
    if max_talk <= 0:
        return (yield from deny(DenyReason.SPEND_LIMIT if capped else DenyReason.INSUFFICIENT_FUNDS, **info))
    if req.full_hold or rate.rate_per_min == 0:
        granted = max_talk
    else:
        granted = min(max_talk, chunk_target(rate, lim.chunk_seconds))
    if req.dry_run:
        return Authorization(True, None, None, direction, number, granted_seconds=granted, max_talk_seconds=max_talk,
                             ring_endpoint=ring_endpoint, **info)
    hold = priced_cost(granted, priced, req.now)
    yield TakeCall(acct["id"], hold, req.now)
    yield InsertSession(_session_values(
        req, account_id=acct["id"], number_e164=parsed.e164,
        endpoint=req.endpoint if direction == "outbound" else ring_endpoint, rate=rate, granted=granted, hold=hold,
        full_hold=req.full_hold, emergency=False, chunk_seconds=lim.chunk_seconds, priced=priced,
    ))
    return Authorization(True, None, req.session_id, direction, number, granted_seconds=granted, max_talk_seconds=max_talk,
                         ring_endpoint=ring_endpoint, **info)
