"""The core's prebuilt statements and row mappers: one source for the columns every driver reads.

Why here, in the store: the SQLAlchemy driver (billing_core.api), the SQLite fast path
(sqlite_fast: registered below) and the raw-asyncpg driver (pg_fast: compiled from these same
objects) all run them, and the store must never import the core above it. The mappers turn rows
into the domain's frozen records (billing_core.domain.records).
"""
from __future__ import annotations

from sqlalchemy import BigInteger, bindparam, case, null, select, update
from sqlalchemy.dialects import postgresql

from ..domain.fraud_limits import ANOMALY_COLUMNS, SPEND_COLUMNS
from ..domain.rating import billable_seconds
from ..domain.records import AccountView, CallSession, LedgerEntry, Settlement
from .sqlite_fast import register_fast
from .tables import accounts, call_day_totals, call_refusals, call_sessions, deck_versions, dids, endpoints, ledger, packages, plans, rates

# Hot-path statements are built once: SQLAlchemy memoizes the cache key of a statement object, so
# reusing it skips the per-call construction and cache-key walk (measured: ~3x faster authorize).
DESTINATION_COLUMNS = (
    packages.c.allow_regions, packages.c.block_types, packages.c.deny_prefixes, packages.c.allow_prefixes,
    packages.c.max_rate_per_min, accounts.c.allow_regions.label("acct_allow_regions"),
    accounts.c.block_types.label("acct_block_types"), accounts.c.max_rate_per_min.label("acct_max_rate_per_min"),
    accounts.c.allow_destinations, accounts.c.deny_destinations,
    # call limits (domain.fraud_limits): the package's as <name>, the account's as acct_<name>
    packages.c.max_call_minutes, accounts.c.max_call_minutes.label("acct_max_call_minutes"),
    packages.c.max_attempts_per_minute, accounts.c.max_attempts_per_minute.label("acct_max_attempts_per_minute"),
    accounts.c.attempts_minute, accounts.c.attempts_count, accounts.c.attempts_prev,
    packages.c.daily_cap, accounts.c.daily_cap.label("acct_daily_cap"), packages.c.monthly_cap,
    accounts.c.monthly_cap.label("acct_monthly_cap"), packages.c.timezone, *(accounts.c[c] for c in SPEND_COLUMNS),
    packages.c.anomaly_spend_per_hour, accounts.c.anomaly_spend_per_hour.label("acct_anomaly_spend_per_hour"),
    packages.c.anomaly_blocked_attempts, accounts.c.anomaly_blocked_attempts.label("acct_anomaly_blocked_attempts"),
    packages.c.anomaly_window_minutes, *(accounts.c[c] for c in ANOMALY_COLUMNS), accounts.c.suspended_reason,
    accounts.c.suspensions,
)
ACCOUNT_COLUMNS = (
    accounts.c.id, accounts.c.ref, accounts.c.name, accounts.c.email, accounts.c.currency, accounts.c.balance,
    accounts.c.credit_limit, accounts.c.held, accounts.c.live_calls, accounts.c.status, accounts.c.status_changed_at,
    accounts.c.depleted_at, accounts.c.presuspended_at, accounts.c.low_balance_armed, accounts.c.low_balance_crossings,
    accounts.c.depletions, accounts.c.created_at, accounts.c.updated_at, packages.c.low_balance, packages.c.max_calls,
    packages.c.inbound_rate, packages.c.plan_id, plans.c.version.label("plan_version"),
    # toll-fraud destination rules (issue 18), read in the same round trip as the account: the
    # package's, and the account's overrides as acct_* (domain.destination_rules.rules_of)
    *DESTINATION_COLUMNS,
)


Q_ACCOUNT_BY_ENDPOINT = (
    select(*ACCOUNT_COLUMNS)
    .select_from(endpoints.join(accounts, accounts.c.id == endpoints.c.account_id)
                 .join(packages, packages.c.id == accounts.c.package_id)
                 .join(plans, plans.c.id == packages.c.plan_id))
    .where(endpoints.c.name == bindparam("endpoint"))
)
Q_ACCOUNT_BY_ENDPOINT_LOCK = Q_ACCOUNT_BY_ENDPOINT.with_for_update(of=accounts)
Q_ACCOUNT_BY_DID_LOCK = (
    select(*ACCOUNT_COLUMNS, dids.c.endpoint.label("did_endpoint"))
    .select_from(dids.join(accounts, accounts.c.id == dids.c.account_id)
                 .join(packages, packages.c.id == accounts.c.package_id)
                 .join(plans, plans.c.id == packages.c.plan_id))
    .where(dids.c.number == bindparam("number"))
    .with_for_update(of=accounts)
)
Q_SESSION_BY_CHANNEL = select(call_sessions).where(
    call_sessions.c.pbx_id == bindparam("pbx_id"), call_sessions.c.channel_id == bindparam("channel_id")
)
Q_SESSION = select(call_sessions).where(call_sessions.c.id == bindparam("sid"))
U_ACCOUNT_TAKE_CALL = (
    update(accounts)
    .where(accounts.c.id == bindparam("aid"))
    .values(held=accounts.c.held + bindparam("hold"), live_calls=accounts.c.live_calls + 1, updated_at=bindparam("now"))
)
U_ACCOUNT_ATTEMPTS = (  # --max-attempts-per-minute's counter (domain.fraud_limits.attempt)
    update(accounts).where(accounts.c.id == bindparam("aid"))
    .values(attempts_minute=bindparam("minute"), attempts_count=bindparam("count"), attempts_prev=bindparam("prev"))
)
# TakeCall and CountAttempt as one UPDATE (the PostgreSQL fast path sends them with the session
# insert: two data-modifying CTEs may not update the same row in one statement)
U_ACCOUNT_TAKE_CALL_COUNTED = U_ACCOUNT_TAKE_CALL.values(
    attempts_minute=bindparam("minute"), attempts_count=bindparam("count"), attempts_prev=bindparam("prev"))
I_SESSION = call_sessions.insert()
I_LEDGER = ledger.insert()
Q_LEDGER_BY_KEY = select(ledger).where(ledger.c.idempotency_key == bindparam("key"))
# The answer, on both databases and both drivers, in one statement: an "authorized" session becomes
# "answered" at the switch's time `at`; its cut-off is that time plus the granted seconds (none for
# emergency calls), computed from the row being updated; last_seen_at (the core's clock, as
# heartbeats are) never moves back. RETURNING gives the session view (Q_SESSION_VIEW's columns);
# no row back means the session was not "authorized" (SQLite ≥ 3.35 and PostgreSQL both have it).
_AT = bindparam("at", type_=BigInteger)
_NOW = bindparam("now", type_=BigInteger)
# a call cannot be answered before it was authorized: a back-dated answer (FastAGI's settle
# records a lost answer at now − ANSWEREDTIME_MS) starts at the authorize at the earliest
_ANSWERED_AT = case((_AT < call_sessions.c.created_at, call_sessions.c.created_at), else_=_AT)
U_SESSION_ANSWER = (
    update(call_sessions).where(call_sessions.c.id == bindparam("sid"), call_sessions.c.state == "authorized")
    .values(state="answered", answered_at=_ANSWERED_AT,
            cutoff_at=case((call_sessions.c.emergency, null()),
                           else_=_ANSWERED_AT + call_sessions.c.granted_seconds * 1000),
            # greatest() is PostgreSQL's, max(a, b) SQLite's: the CASE is both
            last_seen_at=case((call_sessions.c.last_seen_at > _NOW, call_sessions.c.last_seen_at), else_=_NOW))
    .returning(*call_sessions.c, select(accounts.c.ref).where(accounts.c.id == call_sessions.c.account_id)
               .scalar_subquery().label("account_ref"))
)
U_SESSION_GRANT = (
    update(call_sessions).where(call_sessions.c.id == bindparam("sid"))
    .values(granted_seconds=bindparam("granted"), hold=bindparam("hold"), cutoff_at=bindparam("cutoff"))
)
U_SESSION_DEBITED = (
    update(call_sessions).where(call_sessions.c.id == bindparam("sid"))
    .values(charged=bindparam("charged"), hold=bindparam("hold"), chunks_debited=bindparam("chunks"))
)
U_SESSION_SETTLED = (
    update(call_sessions).where(call_sessions.c.id == bindparam("sid"))
    .values(state="settled", settled_at=bindparam("now"), talk_ms=bindparam("talk"), cost=bindparam("cost"),
            overrun=bindparam("overrun"), hold=0, stale=bindparam("stale"), settle_note=bindparam("note"),
            billing_basis=bindparam("basis"))
)
U_ACCOUNT_HELD = (
    update(accounts).where(accounts.c.id == bindparam("aid"))
    .values(held=accounts.c.held + bindparam("delta"), updated_at=bindparam("now"))
)
U_ACCOUNT_END_CALL = (  # a call ends without a charge: its hold released, its live-call slot freed
    update(accounts).where(accounts.c.id == bindparam("aid"))
    .values(held=accounts.c.held + bindparam("delta"), live_calls=accounts.c.live_calls - 1, updated_at=bindparam("now"))
)
U_ACCOUNT_BALANCE = (
    update(accounts).where(accounts.c.id == bindparam("aid"))
    .values(balance=accounts.c.balance + bindparam("delta"), held=accounts.c.held + bindparam("held_delta"),
            live_calls=accounts.c.live_calls + bindparam("calls_delta"),
            status=bindparam("status"), status_changed_at=bindparam("status_changed_at"),
            depleted_at=bindparam("depleted_at"), presuspended_at=bindparam("presuspended_at"),
            low_balance_armed=bindparam("armed"), low_balance_crossings=bindparam("crossings"),
            depletions=bindparam("depletions"), updated_at=bindparam("now"),
            # the spend caps' counters (domain.fraud_limits.spend_after), with the balance
            spend_day_key=bindparam("sdk"), spend_day=bindparam("sd"), spend_month_key=bindparam("smk"),
            spend_month=bindparam("sm"),
            # the anomaly window's spend (domain.fraud_limits.anomaly), with the balance
            anomaly_window=bindparam("aw"), anomaly_spend=bindparam("asp"), anomaly_spend_prev=bindparam("aspp"),
            anomaly_blocked=bindparam("ab"), anomaly_blocked_prev=bindparam("abp"))
)

def account_balance_params(a, *, delta: int, now: int, held_delta: int = 0, calls_delta: int = 0) -> dict:
    """U_ACCOUNT_BALANCE's parameters: the balance moves by ``delta`` (``held``, ``live_calls`` by
    theirs), everything else is written as the account mapping ``a`` holds it after the change
    (money_rules.balance_change: lifecycle, spend caps' counters, anomaly window). The one builder,
    so a new column of that statement cannot be forgotten by one of its callers (settle and credit,
    the sidecar's batched debits, re-rating)."""
    return dict(
        aid=a["id"], delta=delta, held_delta=held_delta, calls_delta=calls_delta, status=a["status"],
        status_changed_at=a["status_changed_at"], depleted_at=a["depleted_at"], presuspended_at=a["presuspended_at"],
        armed=bool(a["low_balance_armed"]), crossings=a["low_balance_crossings"], depletions=a["depletions"], now=now,
        sdk=a["spend_day_key"], sd=a["spend_day"], smk=a["spend_month_key"], sm=a["spend_month"],
        aw=a["anomaly_window"], asp=a["anomaly_spend"], aspp=a["anomaly_spend_prev"], ab=a["anomaly_blocked"],
        abp=a["anomaly_blocked_prev"],
    )


# Deck versions (issue 19): read when a plan's generation moves / a version is first used; both
# drivers (billing_core.api and store.pg_fast) run these through a DeckCache.
Q_DECK_VERSIONS = select(deck_versions).where(deck_versions.c.plan_id == bindparam("plan_id"))
Q_DECK_RATES = select(rates.c.prefix, rates.c.description, rates.c.rate_per_min, rates.c.connect_fee,
                      rates.c.initial_increment, rates.c.increment, rates.c.days, rates.c.start_min,
                      rates.c.end_min).where(rates.c.plan_id == bindparam("plan_id"),
                                              rates.c.version == bindparam("version"))


def account_query():
    """An account with its package's and plan's columns (``package_name``, ``max_calls``, ``plan_version``…)."""
    return select(*ACCOUNT_COLUMNS, packages.c.name.label("package_name")).select_from(
        accounts.join(packages, packages.c.id == accounts.c.package_id).join(plans, plans.c.id == packages.c.plan_id)
    )


def session_select():
    """A call session with its account's ref (``account_ref``): the session view's columns."""
    return select(call_sessions, accounts.c.ref.label("account_ref")).select_from(
        call_sessions.outerjoin(accounts, accounts.c.id == call_sessions.c.account_id)
    )


Q_ACCOUNT_BY_ID_LOCK = account_query().where(accounts.c.id == bindparam("aid")).with_for_update(of=accounts)
Q_ACCOUNT_BY_REF = account_query().where(accounts.c.ref == bindparam("ref"))
Q_ACCOUNT_BY_REF_LOCK = Q_ACCOUNT_BY_REF.with_for_update(of=accounts)
Q_SESSION_VIEW = session_select().where(call_sessions.c.id == bindparam("sid"))
# served by ix_call_sessions_state_pbx (state, pbx_id): only the live rows are read, however many
# settled sessions the PBX has
Q_ANSWERED_CUTOFFS = select(call_sessions.c.id, call_sessions.c.cutoff_at, call_sessions.c.hold_mode,
                             call_sessions.c.emergency).where(call_sessions.c.state == "answered",
                                                              call_sessions.c.pbx_id == bindparam("pbx_id"))
Q_ACCOUNT_BY_SESSION_LOCK = account_query().where(
    accounts.c.id == select(call_sessions.c.account_id).where(call_sessions.c.id == bindparam("sid")).scalar_subquery()
).with_for_update(of=accounts)

# ON CONFLICT is dialect syntax in SQLAlchemy, but SQLite (3.24+) and PostgreSQL spell it alike, and
# SQLite's compiler renders PostgreSQL's construct the same: one statement for both databases and
# every driver (tests/core/test_sqlalchemy_internals.py compiles each registered one on each dialect).
#
# A refused call (issue 20): a replayed StasisStart / AGI retry of the same (pbx, channel) is refused
# again but recorded once — the insert does nothing on the unique key's conflict.
REFUSAL_COLUMNS = tuple(c.name for c in call_refusals.columns if c.name != "id")
I_REFUSAL = (postgresql.insert(call_refusals).inline().values({c: bindparam(c) for c in REFUSAL_COLUMNS})
             .on_conflict_do_nothing())
# settle's one added statement: the call's account-day totals (tables.call_day_totals); every value a
# parameter (``calls`` always 1), as the fast path binds inserts from parameters only
_add_day = postgresql.insert(call_day_totals).values(
    day_ms=bindparam("day"), account_id=bindparam("aid"), calls=bindparam("calls"), talk_ms=bindparam("talk"),
    revenue=bindparam("cost"))
U_DAY_TOTALS = _add_day.on_conflict_do_update(index_elements=["day_ms", "account_id"], set_=dict(
    calls=call_day_totals.c.calls + _add_day.excluded.calls,
    talk_ms=call_day_totals.c.talk_ms + _add_day.excluded.talk_ms,
    revenue=call_day_totals.c.revenue + _add_day.excluded.revenue))

# SQLite's writer runs these on the raw sqlite3 cursor (store/sqlite_fast.py; measured 2.7x less CPU
# for authorize + answer + settle)
register_fast(Q_ACCOUNT_BY_ENDPOINT, Q_ACCOUNT_BY_ENDPOINT_LOCK, Q_ACCOUNT_BY_DID_LOCK, Q_SESSION_BY_CHANNEL,
              Q_SESSION, U_ACCOUNT_TAKE_CALL, U_ACCOUNT_ATTEMPTS, I_SESSION, I_LEDGER, Q_LEDGER_BY_KEY, U_SESSION_ANSWER,
              U_SESSION_GRANT, U_SESSION_DEBITED, U_SESSION_SETTLED, U_ACCOUNT_HELD, U_ACCOUNT_END_CALL,
              Q_ACCOUNT_BY_SESSION_LOCK,
              U_ACCOUNT_BALANCE, Q_ACCOUNT_BY_ID_LOCK, Q_ACCOUNT_BY_REF_LOCK, Q_SESSION_VIEW,
              Q_ANSWERED_CUTOFFS, I_REFUSAL, U_DAY_TOTALS)


# ------------------------------------------------------------------------------- row mappers
def account_view(row) -> AccountView:
    return AccountView(
        ref=row["ref"], name=row["name"], email=row["email"], package=row["package_name"], currency=row["currency"],
        balance=row["balance"], credit_limit=row["credit_limit"], held=row["held"],
        available=row["balance"] + row["credit_limit"] - row["held"], status=row["status"], live_calls=row["live_calls"],
        low_balance_threshold=row["low_balance"], created_at=row["created_at"], updated_at=row["updated_at"],
        status_changed_at=row["status_changed_at"],
    )


def session_from_row(r) -> CallSession:
    return CallSession(
        session_id=r["id"], pbx_id=r["pbx_id"], channel_id=r["channel_id"], account_ref=r["account_ref"],
        direction=r["direction"], number_e164=r["number_e164"], state=r["state"], hold_mode=r["hold_mode"],
        granted_seconds=r["granted_seconds"], hold=r["hold"], charged=r["charged"], chunks_debited=r["chunks_debited"],
        created_at=r["created_at"], answered_at=r["answered_at"], cutoff_at=r["cutoff_at"], settled_at=r["settled_at"],
        talk_ms=r["talk_ms"], cost=r["cost"], emergency=bool(r["emergency"]), stale=bool(r["stale"]),
        last_seen_at=r["last_seen_at"], rate_per_min=r["rate_per_min"], billing_basis=r["billing_basis"],
    )


def settlement_from_row(row, *, replayed: bool) -> Settlement:
    talk = row["talk_ms"] or 0
    total = row["cost"] or 0
    return Settlement(row["id"], talk, billable_seconds(talk), total, row["charged"], total - row["charged"],
                      row["overrun"] or 0, replayed=replayed, billing_basis=row["billing_basis"])


def entry_from_row(row, ref: str, *, replayed: bool = False) -> LedgerEntry:
    return LedgerEntry(
        entry_id=row["id"], account_ref=ref, kind=row["kind"], amount=row["amount"], balance_after=row["balance_after"],
        reason=row["reason"], idempotency_key=row["idempotency_key"], session_id=row["session_id"],
        created_at=row["created_at"], replayed=replayed,
    )
