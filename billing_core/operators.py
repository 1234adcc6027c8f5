"""Operators of the console (staff, not customers) and the audit log of what they do.

``callgate operator ...`` (callgate/commands/operator.py) and the /admin console both go through
these functions; every change writes its audit record (who, when, what, before and after) in the
same transaction as the change. Passwords arrive hashed and TOTP secrets generated: hashing (Argon2id)
and the TOTP library belong to the callers above the core.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from .domain.errors import InvalidInput, NotFound
from .domain.identifiers import check_email
from .domain.signin_email import canonical_email
from .store.tables_operators import audit_log, operator_sessions, operators

ADMIN = "admin"
SUPPORT = "support"
ROLES = (ADMIN, SUPPORT)
CLI_ACTOR = "cli"


@dataclass(frozen=True)
class Actor:
    """Who does something: an operator (id and email) or the command line (id None)."""

    name: str
    operator_id: int | None = None


def _json(value: dict | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def audit_tx(conn: Connection, actor: Actor, action: str, target_kind: str, target: str, *,
             before: dict | None = None, after: dict | None = None, reason: str = "", now: int) -> None:
    """Append one audit record inside the caller's transaction (so it commits or rolls back with
    the change it describes)."""
    conn.execute(insert(audit_log).values(
        at=now, actor=actor.name[:320], operator_id=actor.operator_id, action=action, target_kind=target_kind,
        target=target[:320], before=_json(before), after=_json(after), reason=(reason or "")[:300]))


def _operator_row(conn: Connection, email: str):
    row = conn.execute(select(operators).where(operators.c.email == canonical_email(email))).mappings().first()
    if row is None:
        raise NotFound(f"EMAIL: unknown operator {email!r}")
    return row


def _public(row) -> dict[str, Any]:
    return {"email": row["email"], "role": row["role"], "password_set": row["password_hash"] is not None,
            "totp": row["totp_secret"] is not None, "disabled": row["disabled_at"] is not None,
            "created_at": row["created_at"], "disabled_at": row["disabled_at"]}


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"--role: must be one of {', '.join(ROLES)} (got {role!r})")
    return role


async def add_operator(core, email: str, role: str, *, actor: Actor) -> dict:
    check_email(email, "EMAIL")
    check_role(role)
    email = canonical_email(email)
    now = core.clock.now_ms()

    def tx(conn: Connection) -> dict:
        if conn.execute(select(operators.c.id).where(operators.c.email == email)).first() is not None:
            raise InvalidInput(f"EMAIL: operator {email!r} already exists")
        conn.execute(insert(operators).values(email=email, role=role, created_at=now, updated_at=now))
        row = _operator_row(conn, email)
        audit_tx(conn, actor, "operator.add", "operator", email, after={"role": role}, now=now)
        return _public(row)

    return await core.store.run(tx)


async def list_operators(core) -> list[dict]:
    def tx(conn: Connection) -> list[dict]:
        return [_public(r) for r in conn.execute(select(operators).order_by(operators.c.email)).mappings()]

    return await core.store.run(tx)


async def disable_operator(core, email: str, *, actor: Actor) -> dict:
    """Disable an operator: signed out everywhere, sign-in refused from now on. Disabling a disabled
    operator changes nothing (and writes no audit record)."""
    now = core.clock.now_ms()

    def tx(conn: Connection) -> dict:
        row = _operator_row(conn, email)
        if row["disabled_at"] is None:
            conn.execute(update(operators).where(operators.c.id == row["id"]).values(disabled_at=now, updated_at=now))
            conn.execute(delete(operator_sessions).where(operator_sessions.c.operator_id == row["id"]))
            audit_tx(conn, actor, "operator.disable", "operator", row["email"], before={"disabled": False},
                     after={"disabled": True}, now=now)
        return _public(_operator_row(conn, email))

    return await core.store.run(tx)


async def set_operator_password(core, email: str, hashed: str, *, actor: Actor) -> dict:
    """Store a new (already hashed) password; signs the operator out everywhere."""
    now = core.clock.now_ms()

    def tx(conn: Connection) -> dict:
        row = _operator_row(conn, email)
        conn.execute(update(operators).where(operators.c.id == row["id"]).values(password_hash=hashed, updated_at=now))
        conn.execute(delete(operator_sessions).where(operator_sessions.c.operator_id == row["id"]))
        # the hash itself never goes into the log
        audit_tx(conn, actor, "operator.password", "operator", row["email"],
                 before={"password_set": row["password_hash"] is not None}, after={"password_set": True}, now=now)
        return _public(_operator_row(conn, email))

    return await core.store.run(tx)


async def set_operator_totp(core, email: str, secret: str, *, actor: Actor) -> dict:
    """Require a TOTP code with ``secret`` at sign-in (replacing any earlier secret: re-enrolment);
    signs the operator out everywhere, so every session from now on passed the second factor."""
    if not (16 <= len(secret) <= 64 and secret.isalnum()):
        raise InvalidInput("TOTP secret: must be 16 to 64 base32 characters")
    now = core.clock.now_ms()

    def tx(conn: Connection) -> dict:
        row = _operator_row(conn, email)
        conn.execute(update(operators).where(operators.c.id == row["id"]).values(
            totp_secret=secret, totp_last_step=None, updated_at=now))
        conn.execute(delete(operator_sessions).where(operator_sessions.c.operator_id == row["id"]))
        audit_tx(conn, actor, "operator.totp_enable", "operator", row["email"],
                 before={"totp": row["totp_secret"] is not None}, after={"totp": True}, now=now)
        return _public(_operator_row(conn, email))

    return await core.store.run(tx)


# ------------------------------------------------------------------------------ the audit log
@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: int
    actor: str
    action: str
    target_kind: str
    target: str
    before: str | None
    after: str | None
    reason: str


def audit_page_tx(conn: Connection, *, before_id: int | None = None, limit: int = 50,
                  target_kind: str | None = None, target: str | None = None) -> list[AuditRecord]:
    """The newest records first, ``limit`` of them, older than ``before_id`` (keyset paging: as fast
    on page 1000 as on page 1)."""
    q = select(audit_log)
    if before_id is not None:
        q = q.where(audit_log.c.id < before_id)
    if target_kind is not None:
        q = q.where(audit_log.c.target_kind == target_kind)
    if target is not None:
        q = q.where(audit_log.c.target == target)
    rows = conn.execute(q.order_by(audit_log.c.id.desc()).limit(limit)).mappings()
    return [AuditRecord(r["id"], r["at"], r["actor"], r["action"], r["target_kind"], r["target"], r["before"],
                        r["after"], r["reason"]) for r in rows]


def audit_count_tx(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
