"""Operator console tables: operators, their sessions, the audit log (append-only) and account notes.

Operators are staff, not customers: their own table, their own sessions (an operator's cookie can
never be taken for a customer's, nor the other way round). The audit log records every operator
action (who, when, what, before and after); it is append-only, enforced by the database itself
(triggers refusing UPDATE and DELETE, created with the table here and in migration 0011), so even a
bug in the application cannot rewrite history.
"""
from __future__ import annotations

from sqlalchemy import DDL, BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text, event

from .tables import metadata

operators = Table(
    "operators",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # canonical form (billing_core.domain.signin_email): the sign-in name, compared exactly
    Column("email", String(320), nullable=False, unique=True),
    # admin (may change things) | support (sees everything, may only add notes)
    Column("role", String(16), nullable=False),
    # Argon2id; None until `callgate operator password` sets one (nobody signs in without one)
    Column("password_hash", String(255), nullable=True),
    # base32 TOTP secret (None: no second factor); `callgate operator totp enable` sets it
    Column("totp_secret", String(64), nullable=True),
    # the last TOTP time step accepted: a code is good once (no replay within its 30 s window)
    Column("totp_last_step", BigInteger, nullable=True),
    Column("disabled_at", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

operator_sessions = Table(
    "operator_sessions",
    metadata,
    # hex SHA-256 of the cookie's random token (the token itself is never stored)
    Column("token_hash", String(64), primary_key=True),
    Column("operator_id", Integer, ForeignKey("operators.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("ip", String(64), nullable=False, default=""),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False, index=True),
    # who: the operator's email, or "cli" (+ the OS user) for the command line
    Column("actor", String(320), nullable=False),
    Column("operator_id", Integer, ForeignKey("operators.id"), nullable=True),
    # what: operator.add, operator.disable, account.credit, account.note, ...
    Column("action", String(40), nullable=False),
    # on what: ("account", "alice"), ("operator", "ops@example.com"), ...
    Column("target_kind", String(24), nullable=False),
    Column("target", String(320), nullable=False),
    # JSON objects (None: nothing before / nothing after)
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Column("reason", String(300), nullable=False, default=""),
    Index("ix_audit_log_target", "target_kind", "target", "id"),
)

account_notes = Table(
    "account_notes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("operator_id", Integer, ForeignKey("operators.id"), nullable=True),
    Column("author", String(320), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# The audit log refuses UPDATE and DELETE, on both databases (the same statements as migration 0011).
SQLITE_APPEND_ONLY = [
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
]
POSTGRES_APPEND_ONLY = [
    "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
]
for _sql in SQLITE_APPEND_ONLY:
    event.listen(audit_log, "after_create", DDL(_sql).execute_if(dialect="sqlite"))
for _sql in POSTGRES_APPEND_ONLY:
    event.listen(audit_log, "after_create", DDL(_sql).execute_if(dialect="postgresql"))
