"""The read model: query functions the client area, the operator console and the CLI share.

The web reads through these (and the core's API), never the store's tables (import-linter:
callgate.web may not import billing_core.store). Each function is a plain sync function on a
SQLAlchemy ``Connection`` that the core's store runs (``await core.store.run(fn, ...)``). The
customer-facing ones are always scoped by the signed-in account's id: the web never looks anything
up by an id the browser sent without also matching the account.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from sqlalchemy import String, cast, func, literal, null, or_, select, tuple_
from sqlalchemy.engine import Connection

from .domain.days import DAY_MS, MINUTE_MS, utc_day
from .domain.errors import DenyReason, InvalidInput, NotFound
from .domain.package_rules import package_rules_out
from .store.tables import (
    accounts, call_day_totals, call_refusals, call_sessions, dids, endpoints, ledger, outbox, packages, plans,
)
from .store.tables_invoices import invoices
from .store.tables_operators import account_notes


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
    rerated_cost: int | None = None
    """What the call costs after ``callgate rerate`` (None: never re-rated); ``cost`` stays what it
    was first charged, and the page shows both."""


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
    return customer_calls_page(conn, account_id, limit=limit)[0]


def customer_calls_page(conn: Connection, account_id: int, *, before: str | None = None, limit: int = 50
                        ) -> tuple[list[CallRow], str | None]:
    """One account's calls, newest first, ``limit`` of them older than the cursor ``before``
    (a cursor of another list or account just finds nothing older of this one); returns the rows
    and the next page's cursor (None: the last page)."""
    q = (
        select(call_sessions.c.id, call_sessions.c.created_at, call_sessions.c.direction, call_sessions.c.number,
               call_sessions.c.number_e164, call_sessions.c.state, call_sessions.c.talk_ms, call_sessions.c.cost,
               call_sessions.c.rerated_cost)
        .where(call_sessions.c.account_id == account_id)
    )
    cur = parse_call_cursor(before)
    if cur is not None:
        at, sid = cur
        q = q.where(_before(at, sid))
    rows = conn.execute(q.order_by(call_sessions.c.created_at.desc(), call_sessions.c.id.desc()).limit(limit + 1)).all()
    return _keyset_page(
        rows, limit,
        lambda r: CallRow(r.created_at, r.direction, r.number_e164 or r.number, r.state,
                          r.talk_ms if r.state == "settled" else None, r.cost if r.state == "settled" else None,
                          r.rerated_cost if r.state == "settled" else None),
        lambda r: _cursor(r._mapping))


def held_dids(conn: Connection, account_id: int) -> list[DidRow]:
    q = select(dids.c.number, dids.c.endpoint, dids.c.assigned_at).where(dids.c.account_id == account_id)
    return [DidRow(r.number, r.endpoint, r.assigned_at) for r in conn.execute(q.order_by(dids.c.number))]


def account_lifecycle(conn: Connection, account_id: int) -> AccountLifecycle:
    r = conn.execute(
        select(accounts.c.status, accounts.c.depleted_at, accounts.c.presuspended_at).where(accounts.c.id == account_id)
    ).one()
    return AccountLifecycle(r.status, r.depleted_at, r.presuspended_at)


# ===================================================================== the operator console
# Lists are paged by keyset (``after``/``before`` a cursor from the last row shown), never by
# OFFSET: page 500 of a million calls costs what page 1 does. A page fetches one row more than it
# shows to know whether there is a next page, so no COUNT(*) over a big table is ever needed.
PAGE_MAX = 500


def _page_size(limit: int) -> int:
    return max(1, min(int(limit), PAGE_MAX))


def _keyset_page(rows: Sequence, limit: int, row_out: Callable[[Any], Any], cursor_of: Callable[[Any], Any]
                 ) -> tuple[list, Any]:
    """One page of a keyset query that read ``limit + 1`` rows: the first ``limit`` as ``row_out``
    makes them, and the cursor (``cursor_of`` the page's last row) when the extra row says there
    is more — no COUNT(*), no OFFSET."""
    out = [row_out(r) for r in rows[:limit]]
    return out, (cursor_of(rows[limit - 1]) if len(rows) > limit else None)


@dataclass(frozen=True, slots=True)
class AccountListRow:
    ref: str
    name: str
    email: str
    package: str
    status: str
    currency: str
    balance: int
    held: int


def search_accounts(conn: Connection, query: str = "", *, after: str | None = None, limit: int = 50
                    ) -> tuple[list[AccountListRow], str | None]:
    """Accounts whose ref, name or email contains ``query`` (any case), or that own an endpoint
    containing it, or hold a DID containing its digits; by ref, ``limit`` after ref ``after``.
    Returns the rows and the cursor of the next page (None: last page)."""
    limit = _page_size(limit)
    q = (select(accounts.c.ref, accounts.c.name, accounts.c.email, packages.c.name.label("package"),
                accounts.c.status, accounts.c.currency, accounts.c.balance, accounts.c.held)
         .select_from(accounts.join(packages, packages.c.id == accounts.c.package_id)))
    query = (query or "").strip()[:200]
    if query:
        matches = [accounts.c.ref.icontains(query, autoescape=True), accounts.c.name.icontains(query, autoescape=True),
                   accounts.c.email.icontains(query, autoescape=True),
                   accounts.c.id.in_(select(endpoints.c.account_id)
                                     .where(endpoints.c.name.icontains(query, autoescape=True)))]
        digits = re.sub(r"\D", "", query)
        if len(digits) >= 3:
            matches.append(accounts.c.id.in_(select(dids.c.account_id).where(dids.c.number.contains(digits))))
        q = q.where(or_(*matches))
    if after:
        q = q.where(accounts.c.ref > after)
    rows = conn.execute(q.order_by(accounts.c.ref).limit(limit + 1)).all()
    return _keyset_page(rows, limit,
                        lambda r: AccountListRow(r.ref, r.name, r.email, r.package, r.status, r.currency, r.balance,
                                                 r.held),
                        lambda r: r.ref)


@dataclass(frozen=True, slots=True)
class NoteRow:
    id: int
    created_at: int
    author: str
    body: str


@dataclass(frozen=True, slots=True)
class AccountFacts:
    """What the console's account page shows beside the core's AccountView."""

    id: int
    ref: str
    status_changed_at: int | None
    depleted_at: int | None
    presuspended_at: int | None
    max_calls: int
    endpoints: list[str] = field(default_factory=list)
    dids: list[DidRow] = field(default_factory=list)
    notes: list[NoteRow] = field(default_factory=list)


def account_facts(conn: Connection, ref: str) -> AccountFacts:
    row = conn.execute(
        select(accounts.c.id, accounts.c.ref, accounts.c.status_changed_at, accounts.c.depleted_at,
               accounts.c.presuspended_at, packages.c.max_calls)
        .select_from(accounts.join(packages, packages.c.id == accounts.c.package_id)).where(accounts.c.ref == ref)
    ).first()
    if row is None:
        raise NotFound(f"unknown account {ref!r}")
    eps = [n for (n,) in conn.execute(select(endpoints.c.name).where(endpoints.c.account_id == row.id)
                                      .order_by(endpoints.c.name))]
    notes = [NoteRow(n.id, n.created_at, n.author, n.body) for n in conn.execute(
        select(account_notes).where(account_notes.c.account_id == row.id).order_by(account_notes.c.id.desc()))]
    return AccountFacts(row.id, row.ref, row.status_changed_at, row.depleted_at, row.presuspended_at, row.max_calls,
                        eps, held_dids(conn, row.id), notes)


@dataclass(frozen=True, slots=True)
class LedgerRow:
    id: int
    created_at: int
    kind: str
    amount: int
    balance_after: int
    reason: str
    idempotency_key: str


def ledger_page(conn: Connection, account_id: int, *, before: int | None = None, limit: int = 25
                ) -> tuple[list[LedgerRow], int | None]:
    """The account's ledger, newest first, ``limit`` entries older than entry id ``before``."""
    limit = _page_size(limit)
    q = select(ledger).where(ledger.c.account_id == account_id)
    if before is not None:
        q = q.where(ledger.c.id < before)
    rows = conn.execute(q.order_by(ledger.c.id.desc()).limit(limit + 1)).mappings().all()
    return _keyset_page(rows, limit,
                        lambda r: LedgerRow(r["id"], r["created_at"], r["kind"], r["amount"], r["balance_after"],
                                            r["reason"], r["idempotency_key"]),
                        lambda r: r["id"])


# ------------------------------------------------------------------------------------ packages
@dataclass(frozen=True, slots=True)
class PackageRow:
    name: str
    plan: str
    max_calls: int
    low_balance: int
    inbound_rate: int
    rules: dict[str, Any]
    """The toll-fraud rules as ``package show --json`` gives them."""
    accounts: int
    """Accounts on the package."""


def packages_page(conn: Connection, *, after: str | None = None, limit: int = 50
                  ) -> tuple[list[PackageRow], str | None]:
    """Packages by name, ``limit`` after name ``after``, each with its number of accounts."""
    limit = _page_size(limit)
    members = (select(accounts.c.package_id, func.count().label("n")).group_by(accounts.c.package_id)
               .subquery())
    q = (select(packages, plans.c.name.label("plan_name"), func.coalesce(members.c.n, 0).label("members"))
         .select_from(packages.join(plans, plans.c.id == packages.c.plan_id)
                      .outerjoin(members, members.c.package_id == packages.c.id)))
    if after:
        q = q.where(packages.c.name > after)
    rows = conn.execute(q.order_by(packages.c.name).limit(limit + 1)).mappings().all()
    return _keyset_page(rows, limit,
                        lambda r: PackageRow(r["name"], r["plan_name"], r["max_calls"], r["low_balance"],
                                             r["inbound_rate"], package_rules_out(r), int(r["members"])),
                        lambda r: r["name"])


def package_names(conn: Connection) -> list[str]:
    """Every package's name (the account page's change-package choice)."""
    return [n for (n,) in conn.execute(select(packages.c.name).order_by(packages.c.name))]


# ---------------------------------------------------------------------------------------- DIDs
DID_STATES = ("free", "assigned")


@dataclass(frozen=True, slots=True)
class PoolDidRow:
    number: str
    account: str | None
    """The holder's ref (None: free)."""
    endpoint: str | None
    assigned_at: int | None


def dids_page(conn: Connection, *, state: str | None = None, search: str = "", after: str | None = None,
              limit: int = 50) -> tuple[list[PoolDidRow], str | None]:
    """The DID pool by number: ``free`` or ``assigned`` only when ``state`` says, numbers
    containing the digits of ``search``; ``limit`` after number ``after``."""
    if state is not None and state not in DID_STATES:
        raise InvalidInput(f"state: must be one of {', '.join(DID_STATES)}")
    limit = _page_size(limit)
    q = (select(dids.c.number, dids.c.endpoint, dids.c.assigned_at, accounts.c.ref)
         .select_from(dids.outerjoin(accounts, accounts.c.id == dids.c.account_id)))
    if state == "free":
        q = q.where(dids.c.account_id.is_(None))
    elif state == "assigned":
        q = q.where(dids.c.account_id.is_not(None))
    digits = re.sub(r"\D", "", search or "")[:20]
    if digits:
        q = q.where(dids.c.number.contains(digits))
    if after:
        q = q.where(dids.c.number > after)
    rows = conn.execute(q.order_by(dids.c.number).limit(limit + 1)).all()
    return _keyset_page(rows, limit, lambda r: PoolDidRow(r.number, r.ref, r.endpoint, r.assigned_at),
                        lambda r: r.number)


# --------------------------------------------------------------------------------------- calls
OUTCOMES = ("answered", "unanswered", "cut_off", "live", "refused")
DIRECTIONS = ("outbound", "inbound")
REASONS = tuple(r.value for r in DenyReason)


@dataclass(frozen=True)
class CallFilter:
    """The console's call filters (every one optional). Without an outcome (or ``any``) the list is
    the call log: the calls that got a session. ``refused`` lists the refused decisions instead
    (store.tables.call_refusals: a refusal opens no session), optionally of one ``reason``."""

    account: str | None = None
    since_ms: int | None = None
    """Authorized at or after (epoch ms)."""
    until_ms: int | None = None
    """Authorized before (epoch ms)."""
    direction: str | None = None
    prefix: str | None = None
    """Digits the E.164 destination starts with (without +)."""
    outcome: str | None = None
    """answered (talked), unanswered (settled without talk), cut_off (ended at its cut-off: the
    money ran out), live (not settled yet), refused (refused decisions; ``any`` is no outcome)."""
    reason: str | None = None
    """A refusal's reason (DenyReason value); only with outcome refused."""

    @property
    def refused(self) -> bool:
        return self.outcome == "refused"

    def checked(self) -> "CallFilter":
        if self.outcome == "any":
            return replace(self, outcome=None).checked()
        if self.reason is not None and not self.refused:
            raise InvalidInput("reason: only with outcome refused")
        if self.reason is not None and self.reason not in REASONS:
            raise InvalidInput(f"reason: must be one of {', '.join(REASONS)}")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise InvalidInput(f"direction: must be one of {', '.join(DIRECTIONS)}")
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise InvalidInput(f"outcome: must be one of {', '.join(OUTCOMES)}")
        if self.prefix is not None and not (self.prefix.isascii() and self.prefix.isdigit() and len(self.prefix) <= 15):
            raise InvalidInput("prefix: digits only, at most 15")
        return self


def _filtered(cols, table, at, f: CallFilter):
    """``cols`` of ``table`` (calls or refusals, started ``at``) with the owner's ref, and the
    filters both lists share."""
    q = select(*cols, accounts.c.ref.label("account_ref")).select_from(
        table.outerjoin(accounts, accounts.c.id == table.c.account_id))
    if f.account:
        q = q.where(accounts.c.ref == f.account)
    if f.since_ms is not None:
        q = q.where(at >= f.since_ms)
    if f.until_ms is not None:
        q = q.where(at < f.until_ms)
    if f.direction:
        q = q.where(table.c.direction == f.direction)
    if f.prefix:
        q = q.where(table.c.number_e164.startswith("+" + f.prefix, autoescape=True))
    return q


def _call_query(f: CallFilter, columns: list[str] | None = None):
    cols = [call_sessions] if columns is None else [call_sessions.c[c] for c in columns if c != "account_ref"]
    q = _filtered(cols, call_sessions, call_sessions.c.created_at, f)
    # settled_at, not state: with state == 'settled' (nearly every row) SQLite picked the state index
    # and sorted the whole table (0.64 s on a million calls) instead of walking (created_at, id)
    settled = call_sessions.c.settled_at.is_not(None)
    if f.outcome == "answered":
        q = q.where(settled, call_sessions.c.talk_ms > 0)
    elif f.outcome == "unanswered":
        q = q.where(settled, or_(call_sessions.c.talk_ms.is_(None), call_sessions.c.talk_ms == 0))
    elif f.outcome == "cut_off":
        q = q.where(settled, call_sessions.c.cutoff_at.is_not(None), call_sessions.c.settled_at >= call_sessions.c.cutoff_at)
    elif f.outcome == "live":
        q = q.where(call_sessions.c.state.in_(("authorized", "answered")))
    return q


# A refusal as a row of the call list: the session columns it has, the rest NULL, its state
# "refused", and its reason and rule (the CSV's last columns; empty for calls with a session).
REFUSED_STATE = "refused"
# (its id as text, like a session's: the refusal's number)
_REFUSAL_AS_CALL = {**{c.name: c for c in call_refusals.columns if c.name != "at"}, "created_at": call_refusals.c.at,
                    "state": literal(REFUSED_STATE), "id": cast(call_refusals.c.id, String)}
REFUSAL_FIELDS = ("reason", "rule")


def _refusal_column(name: str):
    col = _REFUSAL_AS_CALL.get(name)
    return (null() if col is None else col).label(name)


def _refusal_query(f: CallFilter, columns: list[str] | None = None):
    names = ([c.name for c in call_sessions.columns] + list(REFUSAL_FIELDS)) if columns is None else columns
    q = _filtered([_refusal_column(c) for c in names if c != "account_ref"], call_refusals, call_refusals.c.at, f)
    if f.reason:
        q = q.where(call_refusals.c.reason == f.reason)
    return q


def _list_query(f: CallFilter, columns: list[str] | None, before: str | None):
    """The filtered list (calls, or refusals for outcome refused), newest first, older than the cursor."""
    if f.refused:
        q, at, key = _refusal_query(f, columns), call_refusals.c.at, call_refusals.c.id
    else:
        if columns is not None:  # the refusal columns are NULL for calls with a session
            extra = [c for c in columns if c in REFUSAL_FIELDS]
            columns = [c for c in columns if c not in REFUSAL_FIELDS]
        q, at, key = _call_query(f, columns), call_sessions.c.created_at, call_sessions.c.id
        if columns is not None:
            q = q.add_columns(*(null().label(c) for c in extra))
    cur = parse_call_cursor(before)
    if cur is not None:
        cur_at, cur_id = cur
        if f.refused:
            if not cur_id.isdigit():
                raise InvalidInput("before: not a page of this list")
            cur_id = int(cur_id)
        # older than the cursor as one row-value comparison: both databases then seek the
        # (created_at, id) index instead of rescanning from the newest call for every page
        q = q.where(tuple_(at, key) < tuple_(cur_at, cur_id))
    return q.order_by(at.desc(), key.desc())


def _before(at: int, sid: str):
    """Older than the cursor (see _list_query)."""
    return tuple_(call_sessions.c.created_at, call_sessions.c.id) < tuple_(at, sid)


def _cursor(row: dict[str, Any]) -> str:
    return f"{row['created_at']}:{row['id']}"


def parse_call_cursor(cursor: str | None) -> tuple[int, str] | None:
    if not cursor:
        return None
    at, _, sid = cursor.partition(":")
    if not (at.isascii() and at.isdigit() and sid and len(sid) <= 40 and len(at) <= 19):
        raise InvalidInput("before: not a page of this list")
    return int(at), sid


def calls_page(conn: Connection, f: CallFilter, *, before: str | None = None, limit: int = 50,
               columns: list[str] | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Calls newest first (``calls --json``'s fields: every column and ``account_ref``, or only
    ``columns``), ``limit`` of them older than the cursor ``before``; returns the rows and the next
    page's cursor. Outcome refused: the refused decisions, as rows of the same columns (state
    ``refused``, with ``reason`` and ``rule``)."""
    limit = _page_size(limit) if limit <= PAGE_MAX else int(limit)
    if columns is not None:
        columns = list(dict.fromkeys([*columns, "created_at", "id"]))  # the cursor's
    rows = conn.execute(_list_query(f.checked(), columns, before).limit(limit + 1)).mappings().all()
    return _keyset_page(rows, limit, dict, _cursor)


# ----------------------------------------------------------------------------------- dashboard
LIVE_STATES = ("authorized", "answered")
DECISION_MINUTES = 60


@dataclass(frozen=True, slots=True)
class DayFigures:
    day_ms: int
    """UTC midnight of the day (epoch ms)."""
    talk_ms: int
    revenue: int
    """Settled calls' cost (micro-units)."""


@dataclass(frozen=True, slots=True)
class MinuteDecisions:
    minute_ms: int
    """Start of the minute (epoch ms)."""
    granted: int
    """Calls authorized (a session opened: emergency calls included)."""
    refused: int
    """Refused decisions recorded by the core (call_refusals)."""


@dataclass(frozen=True)
class Dashboard:
    live_calls: int
    started_last_minute: int
    """Calls authorized in the last minute."""
    today_talk_ms: int
    today_revenue: int
    below_threshold: int
    depleted: int
    pre_suspended: int
    suspended: int
    outstanding_invoices: int
    failed_emails: int
    days: list[DayFigures]
    """The last ``days`` UTC days, oldest first, every day present (zeros included)."""
    decisions: list[MinuteDecisions] = field(default_factory=list)
    """Decisions per minute over the last DECISION_MINUTES minutes, oldest first (the current,
    unfinished minute last), every minute present."""
    refusals_today: dict[str, int] = field(default_factory=dict)
    """Refused decisions since UTC midnight by reason, most first."""


def day_figures(conn: Connection, first_day_ms: int, days: int) -> list[DayFigures]:
    """Minutes and revenue of the settled calls per UTC day of their start, from ``first_day_ms``
    (a UTC midnight) for ``days`` days — read from the account-day totals settle keeps
    (store.tables.call_day_totals): at most accounts × days rows instead of every call (the sum over a
    million sessions took 0.65 s on SQLite and 1.5 s on PostgreSQL)."""
    t = call_day_totals
    per_day = {int(r.day_ms): r for r in conn.execute(
        select(t.c.day_ms, func.sum(t.c.talk_ms).label("talk"), func.sum(t.c.revenue).label("revenue"))
        .where(t.c.day_ms >= first_day_ms, t.c.day_ms < first_day_ms + days * DAY_MS).group_by(t.c.day_ms))}
    return [DayFigures(day, int(per_day[day].talk), int(per_day[day].revenue)) if day in per_day
            else DayFigures(day, 0, 0) for day in (first_day_ms + i * DAY_MS for i in range(days))]


def decisions_per_minute(conn: Connection, now_ms: int, minutes: int = DECISION_MINUTES) -> list[MinuteDecisions]:
    """Granted (sessions opened) and refused decisions per minute, the last ``minutes`` minutes
    (index range reads on call_sessions.created_at and call_refusals.at)."""
    first = now_ms - now_ms % MINUTE_MS - (minutes - 1) * MINUTE_MS

    def per_minute(at) -> dict[int, int]:
        minute = (at - first) // MINUTE_MS
        return {int(m): int(n) for m, n in conn.execute(
            select(minute.label("m"), func.count()).where(at >= first).group_by(minute)).all()}

    granted, refused = per_minute(call_sessions.c.created_at), per_minute(call_refusals.c.at)
    return [MinuteDecisions(first + i * MINUTE_MS, granted.get(i, 0), refused.get(i, 0)) for i in range(minutes)]


def refusals_by_reason(conn: Connection, since_ms: int) -> dict[str, int]:
    """Refused decisions since ``since_ms`` by reason, most first."""
    n = func.count().label("n")
    rows = conn.execute(select(call_refusals.c.reason, n).where(call_refusals.c.at >= since_ms)
                        .group_by(call_refusals.c.reason).order_by(n.desc(), call_refusals.c.reason)).all()
    return {reason: int(count) for reason, count in rows}


def dashboard(conn: Connection, now_ms: int, days: int = 30) -> Dashboard:
    today = utc_day(now_ms)

    def scalar(q) -> int:
        return int(conn.execute(q).scalar() or 0)

    live = scalar(select(func.count()).select_from(call_sessions).where(call_sessions.c.state.in_(LIVE_STATES)))
    started = scalar(select(func.count()).select_from(call_sessions)
                     .where(call_sessions.c.created_at >= now_ms - 60_000))
    figures = day_figures(conn, today - (days - 1) * DAY_MS, days)
    statuses = dict(conn.execute(select(accounts.c.status, func.count()).group_by(accounts.c.status)).all())
    below = scalar(select(func.count()).select_from(accounts.join(packages, packages.c.id == accounts.c.package_id))
                   .where(accounts.c.balance < packages.c.low_balance))
    return Dashboard(
        live_calls=live, started_last_minute=started, today_talk_ms=figures[-1].talk_ms,
        today_revenue=figures[-1].revenue, below_threshold=below, depleted=statuses.get("depleted", 0),
        pre_suspended=statuses.get("pre_suspended", 0), suspended=statuses.get("suspended", 0),
        outstanding_invoices=scalar(select(func.count()).select_from(invoices).where(invoices.c.status == "outstanding")),
        failed_emails=scalar(select(func.count()).select_from(outbox).where(outbox.c.status == "failed")),
        days=figures, decisions=decisions_per_minute(conn, now_ms), refusals_today=refusals_by_reason(conn, today))


def settled_day_sums():
    """The account-day totals summed from the settled sessions themselves (the columns of
    store.tables.call_day_totals, in order): what settle keeps, computed the long way."""
    day = call_sessions.c.created_at - call_sessions.c.created_at % DAY_MS
    aid = func.coalesce(call_sessions.c.account_id, 0)
    return (select(day.label("day_ms"), aid.label("account_id"), func.count().label("calls"),
                   func.coalesce(func.sum(call_sessions.c.talk_ms), 0).label("talk_ms"),
                   func.coalesce(func.sum(call_sessions.c.cost), 0).label("revenue"))
            .where(call_sessions.c.state == "settled").group_by(day, aid))


def day_totals_mismatches(conn: Connection) -> list[str]:
    """Where the account-day totals (store.tables.call_day_totals) differ from the settled sessions'
    sums: ``callgate verify``'s check (empty: exactly equal)."""
    direct = {(int(r.day_ms), int(r.account_id)): (int(r.calls), int(r.talk_ms), int(r.revenue))
              for r in conn.execute(settled_day_sums())}
    kept = {(int(r.day_ms), int(r.account_id)): (int(r.calls), int(r.talk_ms), int(r.revenue))
            for r in conn.execute(select(call_day_totals))}
    out = []
    for key in sorted(direct.keys() | kept.keys()):
        if direct.get(key) != kept.get(key):
            out.append(f"call_day_totals day {key[0]} account id {key[1]}: kept (calls, talk_ms, revenue) "
                       f"{kept.get(key, (0, 0, 0))}, the settled calls sum to {direct.get(key, (0, 0, 0))}")
    return out


# ---------------------------------------------------------------------------------- live calls
def live_calls(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    """Calls not settled yet, newest first (the console's live page)."""
    q = (select(call_sessions.c.id, call_sessions.c.direction, call_sessions.c.number, call_sessions.c.number_e164,
                call_sessions.c.state, call_sessions.c.created_at, call_sessions.c.answered_at,
                call_sessions.c.cutoff_at, call_sessions.c.pbx_id, call_sessions.c.channel_id, call_sessions.c.hold,
                call_sessions.c.emergency, call_sessions.c.hold_mode, accounts.c.ref.label("account_ref"))
         .select_from(call_sessions.outerjoin(accounts, accounts.c.id == call_sessions.c.account_id))
         .where(call_sessions.c.state.in_(LIVE_STATES))
         .order_by(call_sessions.c.created_at.desc(), call_sessions.c.id.desc()).limit(_page_size(limit)))
    return [dict(r) for r in conn.execute(q).mappings()]


def calls_export_chunk(conn: Connection, f: CallFilter, columns: list[str], *, before: str | None = None,
                       limit: int = 10_000) -> tuple[list[tuple], str | None]:
    """Like :func:`calls_page` for exports: plain tuples in ``columns`` order (no dict per row:
    a 100,000-row export spends its time writing, not converting)."""
    cols = list(dict.fromkeys([*columns, "created_at", "id"]))
    result = conn.execute(_list_query(f.checked(), cols, before).limit(limit + 1))
    keys = list(result.keys())
    pick = [keys.index(c) for c in columns]
    at_i, id_i = keys.index("created_at"), keys.index("id")
    raw = result.all()
    rows = [tuple(r[i] for i in pick) for r in raw[:limit]]
    nxt = f"{raw[limit - 1][at_i]}:{raw[limit - 1][id_i]}" if len(raw) > limit else None
    return rows, nxt
