"""The one schema (SQLAlchemy Core) shared by SQLite and PostgreSQL.

Conventions: money columns are BigInteger micro-units (``*_micro`` would be noise: every amount is
micro-units), times are BigInteger epoch milliseconds (``*_at``), so comparisons and arithmetic are
identical on both databases and no timezone conversion ever happens in SQL.

Feature areas add their tables in their own modules against the same ``metadata``
(``tables_outbox`` … ); :mod:`billing_core.store.schema` imports them all.
"""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

plans = Table(
    "plans",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    # Bumped on every import so every process's in-memory rate table reloads.
    Column("version", BigInteger, nullable=False, default=1),
    Column("rate_count", Integer, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Deck versions (issue 19): every import stores a new, immutable version of the plan's deck that
# takes effect at ``effective_at``; a call is priced by the version in effect when it started (the
# one with the latest effective_at <= its start; of two at the same instant, the higher version,
# which is how a correction replaces a version). Immutable, so processes cache them for ever.
deck_versions = Table(
    "deck_versions",
    metadata,
    Column("plan_id", Integer, ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("effective_at", BigInteger, nullable=False),
    # The IANA zone of this version's periods (local days and times).
    Column("timezone", String(64), nullable=False),
    Column("correction", Boolean, nullable=False, default=False),
    Column("rate_count", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

rates = Table(
    "rates",
    metadata,
    Column("plan_id", Integer, ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("prefix", String(16), primary_key=True),
    # The period of the row (billing_core.domain.rating.Period): weekdays as a bit mask (Monday =
    # bit 0; 127 every day) and [start_min, end_min) minutes of the local day. Always = 127, 0, 1440.
    Column("days", Integer, primary_key=True, autoincrement=False),
    Column("start_min", Integer, primary_key=True, autoincrement=False),
    Column("end_min", Integer, nullable=False),
    Column("description", String(200), nullable=False, default=""),
    Column("rate_per_min", BigInteger, nullable=False),
    Column("connect_fee", BigInteger, nullable=False),
    Column("initial_increment", Integer, nullable=False),
    Column("increment", Integer, nullable=False),
)

packages = Table(
    "packages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("plan_id", Integer, ForeignKey("plans.id"), nullable=False),
    Column("low_balance", BigInteger, nullable=False),
    Column("max_calls", Integer, nullable=False),
    Column("inbound_rate", BigInteger, nullable=False, default=0),
    # Toll-fraud destination rules (issue 18; billing_core.domain.destination_rules). Lists are
    # comma-separated canonical text (the hot path reads them with the account, one round trip):
    # ISO regions or "*", phonenumbers type names, E.164 digit prefixes. The server defaults are
    # what packages that existed before migration 0009 got (no change in behaviour); a new package
    # gets the defaults from Admin.add_package.
    Column("allow_regions", String(400), nullable=False, server_default="*"),
    Column("block_types", String(200), nullable=False, server_default=""),
    Column("deny_prefixes", Text, nullable=False, server_default=""),
    Column("allow_prefixes", Text, nullable=False, server_default=""),
    # High-cost guard: a rate above this (micro-units per minute) is refused; NULL = no guard.
    Column("max_rate_per_min", BigInteger, nullable=True),
    # Call limits (issue 18; billing_core.domain.fraud_limits); NULL = no limit.
    Column("max_call_minutes", Integer, nullable=True),
    Column("max_attempts_per_minute", Integer, nullable=True),
    # Spend caps (micro-units; NULL = none): days and months in the package's IANA time zone.
    Column("daily_cap", BigInteger, nullable=True),
    Column("monthly_cap", BigInteger, nullable=True),
    Column("timezone", String(64), nullable=False, server_default="America/Toronto"),
    # Anomaly suspension (domain.fraud_limits.anomaly); NULL = no such check.
    Column("anomaly_spend_per_hour", BigInteger, nullable=True),
    Column("anomaly_blocked_attempts", Integer, nullable=True),
    Column("anomaly_window_minutes", Integer, nullable=False, server_default="60"),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ref", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("package_id", Integer, ForeignKey("packages.id"), nullable=False),
    Column("currency", String(3), nullable=False, default="CAD"),
    Column("balance", BigInteger, nullable=False, default=0),
    Column("credit_limit", BigInteger, nullable=False, default=0),
    # Sum of the open holds of this account's live sessions (kept in the same transaction as
    # every hold change; `callgate verify` re-adds them).
    Column("held", BigInteger, nullable=False, default=0),
    Column("live_calls", Integer, nullable=False, default=0),
    Column("status", String(20), nullable=False, default="active"),
    Column("status_changed_at", BigInteger, nullable=True),
    # Lifecycle bookkeeping (see billing_core.domain.lifecycle).
    Column("depleted_at", BigInteger, nullable=True),
    Column("presuspended_at", BigInteger, nullable=True),
    Column("low_balance_armed", Boolean, nullable=False, default=True),
    # Counts depletions / low-balance crossings: part of the outbox dedupe key of each alert.
    Column("low_balance_crossings", Integer, nullable=False, default=0),
    Column("depletions", Integer, nullable=False, default=0),
    Column("password_hash", String(255), nullable=True),
    # The email in its canonical sign-in form (billing_core.domain.signin_email), set with the
    # password: sign-in compares it exactly, and the unique index makes one email name one account.
    Column("signin_email", String(320), nullable=True),
    # Overrides of the package's destination rules (issue 18); NULL = the package's.
    Column("allow_regions", String(400), nullable=True),
    Column("block_types", String(200), nullable=True),
    Column("max_rate_per_min", BigInteger, nullable=True),
    Column("max_call_minutes", Integer, nullable=True),
    Column("max_attempts_per_minute", Integer, nullable=True),
    # The outbound call-attempt counter of --max-attempts-per-minute (a sliding window over two
    # epoch minutes: domain.fraud_limits.attempt), on the account row every authorize already
    # locks, so gates sharing PostgreSQL share the budget. Written only when a limit is set.
    Column("attempts_minute", BigInteger, nullable=False, server_default="0"),
    Column("attempts_count", Integer, nullable=False, server_default="0"),
    Column("attempts_prev", Integer, nullable=False, server_default="0"),
    Column("daily_cap", BigInteger, nullable=True),
    Column("monthly_cap", BigInteger, nullable=True),
    # What calls were charged in the current day / month (keys YYYYMMDD / YYYYMM in the package's
    # time zone), kept in the same UPDATE as every balance change (money_rules.balance_change):
    # the spend caps' "charged in the period" without summing the ledger (`verify` re-sums it).
    Column("spend_day_key", Integer, nullable=False, server_default="0"),
    Column("spend_day", BigInteger, nullable=False, server_default="0"),
    Column("spend_month_key", Integer, nullable=False, server_default="0"),
    Column("spend_month", BigInteger, nullable=False, server_default="0"),
    Column("anomaly_spend_per_hour", BigInteger, nullable=True),
    Column("anomaly_blocked_attempts", Integer, nullable=True),
    # the anomaly window's counters (current and previous window), like the attempt counter's
    Column("anomaly_window", BigInteger, nullable=False, server_default="0"),
    Column("anomaly_spend", BigInteger, nullable=False, server_default="0"),
    Column("anomaly_spend_prev", BigInteger, nullable=False, server_default="0"),
    Column("anomaly_blocked", Integer, nullable=False, server_default="0"),
    Column("anomaly_blocked_prev", Integer, nullable=False, server_default="0"),
    # why a suspended account is suspended (fraud_suspected: only `account reactivate` lifts it),
    # and how many anomaly suspensions it had (the once-per-suspension key of their emails)
    Column("suspended_reason", String(40), nullable=True),
    Column("suspensions", Integer, nullable=False, server_default="0"),
    # The account's own destination prefixes (`account allow-destination/deny-destination`),
    # comma-separated E.164 digit prefixes; an allowed one is also the high-cost guard's opt-in.
    Column("allow_destinations", Text, nullable=False, server_default=""),
    Column("deny_destinations", Text, nullable=False, server_default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_accounts_signin_email", "signin_email", unique=True),
)

endpoints = Table(
    "endpoints",
    metadata,
    Column("name", String(80), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("created_at", BigInteger, nullable=False),
)

dids = Table(
    "dids",
    metadata,
    Column("number", String(20), primary_key=True),  # E.164 with +
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=True, index=True),
    Column("endpoint", String(80), nullable=True),
    Column("assigned_at", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

did_assignments = Table(
    "did_assignments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", String(20), nullable=False, index=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("endpoint", String(80), nullable=True),
    Column("assigned_at", BigInteger, nullable=False),
    Column("released_at", BigInteger, nullable=True),
    Column("release_reason", String(200), nullable=True),
)

call_sessions = Table(
    "call_sessions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("pbx_id", String(80), nullable=False),
    Column("channel_id", String(120), nullable=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=True, index=True),
    Column("direction", String(10), nullable=False),
    Column("number", String(40), nullable=False),
    Column("number_e164", String(20), nullable=True),
    Column("caller_id", String(80), nullable=True),
    Column("endpoint", String(80), nullable=True),
    # The rate is copied at authorize time so a deck import mid-call changes nothing for the call.
    Column("prefix", String(16), nullable=True),
    Column("rate_per_min", BigInteger, nullable=False, default=0),
    Column("connect_fee", BigInteger, nullable=False, default=0),
    Column("initial_increment", Integer, nullable=False, default=1),
    Column("increment", Integer, nullable=False, default=1),
    # The deck that priced the call (issue 19): plan and deck version in effect at authorize. When
    # the prefix's rate changes by weekday or time of day, ``rate_periods`` is the prefix's periods
    # copied too (billing_core.domain.rating.schedule_text), so settle, chunk debits and hold
    # extensions price each increment without reading the deck; NULL = one price all week.
    Column("plan_id", Integer, nullable=True),
    Column("deck_version", Integer, nullable=True),
    Column("rate_periods", Text, nullable=True),
    # Re-rating (``callgate rerate``): ``cost`` stays what the call was first charged; the latest
    # re-rated cost, the deck version it was re-rated by and when (NULL: never re-rated).
    Column("rerated_cost", BigInteger, nullable=True),
    Column("rerated_version", Integer, nullable=True),
    Column("rerated_at", BigInteger, nullable=True),
    # Talk seconds per chunk debit, fixed per session so every process numbers chunks alike.
    Column("chunk_seconds", Integer, nullable=False, default=60),
    Column("state", String(12), nullable=False),  # authorized | answered | settled
    Column("hold_mode", String(8), nullable=False),  # chunked | full
    Column("emergency", Boolean, nullable=False, default=False),
    Column("granted_seconds", Integer, nullable=False, default=0),
    Column("hold", BigInteger, nullable=False, default=0),
    Column("charged", BigInteger, nullable=False, default=0),
    Column("chunks_debited", Integer, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
    Column("answered_at", BigInteger, nullable=True),
    Column("cutoff_at", BigInteger, nullable=True),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("settled_at", BigInteger, nullable=True),
    Column("talk_ms", BigInteger, nullable=True),
    Column("cost", BigInteger, nullable=True),
    Column("overrun", BigInteger, nullable=True),
    Column("stale", Boolean, nullable=False, default=False),
    Column("settle_note", String(200), nullable=True),
    # How the settled talk was known (billing_core.domain.money_rules.BILLING_BASES): measured by
    # the switch/gate, clamped to what could have happened, or bounded because nobody saw the end.
    Column("billing_basis", String(24), nullable=True),
    UniqueConstraint("pbx_id", "channel_id", name="uq_call_sessions_pbx_channel"),
    # (state, pbx_id): the live sessions of one PBX are read without touching its settled history
    # (a state-only index let SQLite pick the (pbx_id, channel_id) key and scan every session the
    # PBX ever had); queries on state alone use its first column.
    Index("ix_call_sessions_state_pbx", "state", "pbx_id"),
    # rerate --plan NAME --since TIME: the plan's calls by start
    Index("ix_call_sessions_plan_created", "plan_id", "created_at"),
    # The console's call list and CSV export: newest first, paged by (created_at, id) (migration 0011).
    Index("ix_call_sessions_created", "created_at", "id"),
)

ledger = Table(
    "ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False, index=True),
    # credit | debit | payment | refund | reversal | call | chunk | rerate
    Column("kind", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),  # signed: + credits the account
    Column("balance_after", BigInteger, nullable=False),
    Column("reason", String(300), nullable=False, default=""),
    Column("session_id", String(40), nullable=True, index=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    # The operator explicitly allowed this entry to take the balance below the credit limit
    # (`callgate credit --allow-below-limit`); `callgate verify` accepts what such entries took.
    Column("below_limit_allowed", Boolean, nullable=False, default=False, server_default=false()),
)

# Every anomaly suspension and every reactivation (issue 18): the audit trail `callgate fraud events` lists.
fraud_events = Table(
    "fraud_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("kind", String(20), nullable=False),  # suspended | reactivated
    Column("reason", String(40), nullable=False),
    Column("detail", String(300), nullable=False),
    Column("actor", String(80), nullable=False),  # callgate | operator
    Column("created_at", BigInteger, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=True, index=True),
    # low_balance | depleted | pre_suspension | dids_released | topup_receipt | ...
    Column("kind", String(40), nullable=False),
    # (account, kind, crossing): a crash can neither lose nor duplicate an alert.
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Column("to_addr", String(320), nullable=False),
    Column("context", Text, nullable=False),  # JSON: the facts the templates render
    Column("status", String(10), nullable=False, default="queued"),  # queued | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("sent_at", BigInteger, nullable=True),
    Index("ix_outbox_status_next", "status", "next_attempt_at"),
)

# A refused call decision (issue 20): the call log of the calls that never got a session, so an
# operator can see why a customer's call was refused. Written by the core in the refusal's own
# transaction (billing_core.domain.authorize.RecordRefusal); dry runs and emergency calls never
# write one, nor do refusals an adapter makes without reaching the core (billing unreachable).
# (pbx_id, channel_id) is unique: a replayed StasisStart / AGI retry is refused again but recorded
# once (the insert does nothing on conflict). Pruned after CALLGATE_SIDECAR_REFUSAL_RETENTION_DAYS.
call_refusals = Table(
    "call_refusals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False, index=True),
    Column("pbx_id", String(80), nullable=False),
    Column("channel_id", String(120), nullable=True),
    # None: no account was found (unknown endpoint or DID)
    Column("account_id", Integer, nullable=True),
    Column("direction", String(10), nullable=False),
    Column("number", String(40), nullable=False),
    Column("number_e164", String(20), nullable=True),
    Column("reason", String(32), nullable=False),  # billing_core.domain.errors.DenyReason
    Column("rule", String(16), nullable=True),  # a destination_blocked's rule
    Column("endpoint", String(80), nullable=True),
    UniqueConstraint("pbx_id", "channel_id", name="uq_call_refusals_pbx_channel"),
    Index("ix_call_refusals_account_at", "account_id", "at"),
)

# Minutes and revenue of settled calls per account and UTC day of the call's start (issue 20): the
# console's dashboard reads 30 days of these instead of summing a million sessions (0.65 s on SQLite,
# 1.5 s on PostgreSQL). Kept by settle with one upsert in the settle transaction, exactly equal to
# the sessions' sums (`callgate verify` checks it). Per account, not per day: settle already holds
# the account's row lock, so the upsert adds no lock of its own — a per-day row would be one row
# every settle on every PBX waits for, and a bucketed one could deadlock settle_many's sweeps.
# account_id 0 gathers the calls of no account (emergency calls). ``revenue`` is the sessions'
# ``cost`` (what the call was charged at settle; a rerate leaves it, as the dashboard always read it).
call_day_totals = Table(
    "call_day_totals",
    metadata,
    Column("day_ms", BigInteger, primary_key=True, autoincrement=False),
    Column("account_id", Integer, primary_key=True, autoincrement=False),
    Column("calls", Integer, nullable=False),
    Column("talk_ms", BigInteger, nullable=False),
    Column("revenue", BigInteger, nullable=False),
    # SQLite: the rows stored in key order, so 30 days of them are one sequential read
    sqlite_with_rowid=False,
)
