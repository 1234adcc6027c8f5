"""The read model: query functions the client area, the operator console and the CLI share.

The web reads through these (and the core's API), never the store's tables (import-linter:
callgate.web may not import billing_core.store). Each function is a plain sync function on a
SQLAlchemy ``Connection`` that the core's store runs (``await core.store.run(fn, ...)``). The
customer-facing ones are always scoped by the signed-in account's id: the web never looks anything
up by an id the browser sent without also matching the account.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection

from .store.tables import accounts, call_sessions, dids


@dataclass(frozen=True, slots=True)
class CallRow:
    """One call as the customer sees it."""

    started_at: int
    """Epoch ms the call was authorized."""
    direction: str
    number: str
    """E.164 (or as dialled when it never normalised)."""
    state: str
    """authorized | answered | settled."""
    talk_ms: int | None
    """Settled talk time; None while the call is live."""
    cost: int | None
    """Final cost in micro-units; None while live."""


@dataclass(frozen=True, slots=True)
class DidRow:
    """A number the account holds."""

    number: str
    endpoint: str | None
    """The SIP endpoint it rings (None: the account's first endpoint)."""
    assigned_at: int | None


@dataclass(frozen=True, slots=True)
class AccountLifecycle:
    """The lifecycle columns the DIDs page needs (not part of ``AccountView``)."""

    status: str
    depleted_at: int | None
    presuspended_at: int | None


def recent_calls(conn: Connection, account_id: int, limit: int = 50) -> list[CallRow]:
    q = (
        select(call_sessions.c.created_at, call_sessions.c.direction, call_sessions.c.number,
               call_sessions.c.number_e164, call_sessions.c.state, call_sessions.c.talk_ms, call_sessions.c.cost)
        .where(call_sessions.c.account_id == account_id)
        .order_by(call_sessions.c.created_at.desc(), call_sessions.c.id.desc())
        .limit(limit)
    )
    return [
        CallRow(r.created_at, r.direction, r.number_e164 or r.number, r.state,
                r.talk_ms if r.state == "settled" else None, r.cost if r.state == "settled" else None)
        for r in conn.execute(q)
    ]


def held_dids(conn: Connection, account_id: int) -> list[DidRow]:
    q = select(dids.c.number, dids.c.endpoint, dids.c.assigned_at).where(dids.c.account_id == account_id)
    return [DidRow(r.number, r.endpoint, r.assigned_at) for r in conn.execute(q.order_by(dids.c.number))]


def account_lifecycle(conn: Connection, account_id: int) -> AccountLifecycle:
    r = conn.execute(
        select(accounts.c.status, accounts.c.depleted_at, accounts.c.presuspended_at).where(accounts.c.id == account_id)
    ).one()
    return AccountLifecycle(r.status, r.depleted_at, r.presuspended_at)
