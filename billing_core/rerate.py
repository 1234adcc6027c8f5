"""``callgate rerate --plan NAME --since TIME [--until TIME] [--dry-run]`` (issue 19).

Every settled call of the plan that started in [since, until) is priced again by the deck version
now in effect for its start (billing_core.domain.decks: after a ``--correction``, that is the
correction). A call whose price changes gets one ledger entry of kind ``rerate`` — positive (a
refund) or negative (a charge) — keyed ``rerate:<session>:<deck version>``, in the same transaction
as its balance, the lifecycle rules (a refund can re-activate an account, a charge can deplete it
and queue the email) and the session's ``rerated_cost`` / ``rerated_version`` / ``rerated_at``; the
session's ``cost`` stays what it was first charged. A call already priced by the version in effect
is left alone, so a second run changes nothing; the unique key is the backstop against two runs at
once.

Choices where the issue is silent (a mature product's):

* A call is re-rated on the talk it was settled with (its bounded, measured talk): re-rating
  changes the price, never the facts of the call.
* A charge never takes an account below its credit limit (as at settle): what cannot be taken is
  left unpaid and written in the session's note; the call's ``rerated_cost`` is what it really cost
  the customer. Money held by live calls is not taken either.
* A call whose number has no rate in the version now in effect keeps its price and is counted as
  ``no_rate`` (a deck that drops a destination does not make past calls free).
* Calls are read in pages and written in transactions of up to :data:`BATCH` calls, accounts locked
  in id order (as every multi-account transaction of the core), so live calls on the same accounts
  wait at most one batch (tens of milliseconds).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select, update

from .domain import money_rules as rules
from .domain.decks import PlanVersions, version_from_row
from .domain.errors import InvalidInput, NotFound
from .domain.money import check_storage_range, format_amount
from .store import statements as sql
from .store.tables import accounts, call_sessions, deck_versions, plans

BATCH = 2_000
"""Calls a write transaction."""
PAGE = 5_000
"""Calls read a page."""

_COLUMNS = (call_sessions.c.id, call_sessions.c.account_id, call_sessions.c.created_at, call_sessions.c.answered_at,
            call_sessions.c.talk_ms, call_sessions.c.cost, call_sessions.c.rerated_cost, call_sessions.c.deck_version,
            call_sessions.c.rerated_version, call_sessions.c.number_e164, call_sessions.c.number,
            call_sessions.c.settle_note)
_Q_PAGE = (
    select(*_COLUMNS)
    .where(call_sessions.c.plan_id == bindparam("plan_id"), call_sessions.c.state == "settled",
           call_sessions.c.created_at >= bindparam("since"), call_sessions.c.created_at < bindparam("until"),
           call_sessions.c.emergency == False,  # noqa: E712 (SQL, not Python)
           call_sessions.c.account_id.is_not(None),
           # keyset: after the last (created_at, id) of the previous page; "since" is that page's
           # last created_at then, so the (plan_id, created_at) index range starts there (an OR
           # alone made every page scan the window from its beginning)
           (call_sessions.c.created_at > bindparam("after_at")) | (call_sessions.c.id > bindparam("after_id")))
    .order_by(call_sessions.c.created_at, call_sessions.c.id)
    .limit(bindparam("page"))
)
_Q_SESSIONS = select(*_COLUMNS).where(call_sessions.c.id.in_(bindparam("sids", expanding=True)))
_Q_ACCOUNTS_LOCK = (sql.account_query().where(accounts.c.id.in_(bindparam("ids", expanding=True)))
                    .order_by(accounts.c.id).with_for_update(of=accounts))
_U_RERATED = (
    update(call_sessions).where(call_sessions.c.id == bindparam("sid"))
    .values(rerated_cost=bindparam("rerated_cost"), rerated_version=bindparam("rerated_version"),
            rerated_at=bindparam("now"), settle_note=bindparam("note"))
)

_NO_END = 2 ** 62


@dataclass
class AccountTotal:
    calls: int = 0
    amount: int = 0
    """Signed: + is credited to the account (a refund), − charged."""
    unpaid: int = 0


@dataclass
class RerateReport:
    plan: str
    since: int
    until: int | None
    dry_run: bool
    examined: int = 0
    changed: int = 0
    unchanged: int = 0
    no_rate: int = 0
    accounts: dict[str, AccountTotal] = field(default_factory=dict)

    def as_dict(self, format_instant) -> dict[str, Any]:
        return {
            "plan": self.plan, "since": format_instant(self.since), "until": format_instant(self.until),
            "dry_run": self.dry_run, "calls_examined": self.examined, "calls_changed": self.changed,
            "calls_unchanged": self.unchanged, "calls_without_rate": self.no_rate,
            "amount": format_amount(sum(a.amount for a in self.accounts.values())),
            "accounts": [{"account": ref, "calls": t.calls, "amount": format_amount(t.amount),
                          "unpaid": format_amount(t.unpaid)}
                         for ref, t in sorted(self.accounts.items())],
        }


@dataclass(frozen=True, slots=True)
class _Change:
    session_id: str
    account_id: int
    version: int
    new_cost: int


class Rerater:
    def __init__(self, core):
        self.core = core

    async def run(self, plan: str, *, since: int, until: int | None = None, dry_run: bool = False) -> RerateReport:
        check_storage_range(since, field="--since")
        if until is not None:
            check_storage_range(until, field="--until")
            if until <= since:
                raise InvalidInput("--until: must be later than --since")
        report = RerateReport(plan, since, until, dry_run)
        plan_id, generation, versions = await self.core.store.run(self._plan_tx, plan)
        after_at, after_id = since - 1, ""
        refs: dict[int, str] = {}
        while True:
            page, changes, counts, new_refs = await self.core.store.run(
                self._page_tx, plan_id, generation, versions, since, until if until is not None else _NO_END,
                after_at, after_id, dry_run)
            if not page:
                break
            refs.update(new_refs)
            report.examined += len(page)
            report.changed += counts["changed"]
            report.unchanged += counts["unchanged"]
            report.no_rate += counts["no_rate"]
            after_at, after_id = page[-1]["created_at"], page[-1]["id"]
            if dry_run:
                for c, delta in changes:
                    total = report.accounts.setdefault(refs[c.account_id], AccountTotal())
                    total.calls += 1
                    total.amount += delta
                continue
            for i in range(0, len(changes), BATCH):
                # counted after the commit (a retried transaction must not count twice)
                for aid, delta, unpaid in await self.core.store.run(self._write_tx, [c for c, _ in changes[i:i + BATCH]]):
                    total = report.accounts.setdefault(refs[aid], AccountTotal())
                    total.calls += 1
                    total.amount += delta
                    total.unpaid += unpaid
        return report

    def _plan_tx(self, conn, name: str):
        row = conn.execute(select(plans.c.id, plans.c.version).where(plans.c.name == name)).first()
        if row is None:
            raise NotFound(f"--plan: unknown plan {name!r}")
        found = [version_from_row(r) for r in
                 conn.execute(select(deck_versions).where(deck_versions.c.plan_id == row.id)).mappings()]
        return row.id, row.version, PlanVersions(row.version, found)

    def _new_cost(self, conn, plan_id: int, generation: int, versions: PlanVersions, s,
                  schedules: dict[tuple[int, str], Any]) -> tuple[str, int, int]:
        """("same"|"no_rate"|"changed", version, new cost) of one settled session (``schedules``:
        the page's (version, number) → schedule, as a page repeats a few of each)."""
        current = versions.at(s["created_at"])
        priced_by = s["rerated_version"] if s["rerated_version"] is not None else s["deck_version"]
        if current is None or current.version == priced_by:
            return "same", priced_by or 0, 0
        digits = (s["number_e164"] or "").lstrip("+")
        key = (current.version, digits)
        if key not in schedules:
            # (the cache may know a version imported since this run began: it prices by that one
            # and records it, which a later run then finds already done)
            table = self.core.rate_table(conn, plan_id, generation, s["created_at"])
            schedules[key] = (table.version if table is not None else current.version,
                              table.schedule(digits) if table is not None and digits else None)
        version, schedule = schedules[key]
        if version == priced_by:
            return "same", version, 0
        if schedule is None:
            return "no_rate", version, 0
        return "changed", version, rules.rerated_cost(s, schedule)

    def _page_tx(self, conn, plan_id, generation, versions, since, until, after_at, after_id, dry_run):
        """One page of the window: (sessions, changes with their amounts, counts, account refs)."""
        page = conn.execute(_Q_PAGE, {"plan_id": plan_id, "since": max(since, after_at), "until": until, "after_at": after_at,
                                      "after_id": after_id, "page": PAGE}).mappings().all()
        changes: list[tuple[_Change, int]] = []
        counts = {"changed": 0, "unchanged": 0, "no_rate": 0}
        refs: dict[int, str] = {}
        schedules: dict[tuple[int, str], Any] = {}
        for s in page:
            what, version, new_cost = self._new_cost(conn, plan_id, generation, versions, s, schedules)
            if what == "no_rate":
                counts["no_rate"] += 1
                continue
            current_cost = s["rerated_cost"] if s["rerated_cost"] is not None else (s["cost"] or 0)
            if what == "same" or new_cost == current_cost:
                counts["unchanged"] += 1
                if what == "changed" and not dry_run:  # the same price: just record which version priced it
                    changes.append((_Change(s["id"], s["account_id"], version, new_cost), 0))
                continue
            counts["changed"] += 1
            changes.append((_Change(s["id"], s["account_id"], version, new_cost), current_cost - new_cost))
            if s["account_id"] not in refs:
                refs[s["account_id"]] = conn.execute(select(accounts.c.ref).where(accounts.c.id == s["account_id"])).scalar()
        return page, changes, counts, refs

    def _write_tx(self, conn, changes: list[_Change]) -> list[tuple[int, int, int]]:
        """Apply re-rated costs; → (account id, amount credited, unpaid) per call whose balance moved.

        Set-wise (measured: one statement per call made 100,000 calls take minutes on PostgreSQL):
        the batch's accounts locked in one statement in id order, its sessions read in one, then
        every ledger row, account update and session update written as one executemany each. Each
        ledger entry is still computed one by one (money_rules.balance_change: its own balance_after
        and lifecycle step), exactly as if applied alone."""
        now = self.core.clock.now_ms()
        moved: list[tuple[int, int, int]] = []
        ids = sorted({c.account_id for c in changes})
        locked = {a["id"]: dict(a) for a in conn.execute(_Q_ACCOUNTS_LOCK, {"ids": ids}).mappings()}
        sessions = {r["id"]: r for r in conn.execute(_Q_SESSIONS, {"sids": [c.session_id for c in changes]}).mappings()}
        ledger_rows: list[dict[str, Any]] = []
        session_updates: list[dict[str, Any]] = []
        deltas: dict[int, int] = {}
        alerts: list[tuple[dict, Any]] = []
        for c in changes:
            s = sessions[c.session_id]
            priced_by = s["rerated_version"] if s["rerated_version"] is not None else s["deck_version"]
            if priced_by == c.version:
                continue  # another run re-rated it meanwhile
            acct = locked[c.account_id]
            current_cost = s["rerated_cost"] if s["rerated_cost"] is not None else (s["cost"] or 0)
            delta = current_cost - c.new_cost  # + refund, − charge
            new_cost, note, unpaid = c.new_cost, s["settle_note"], 0
            if delta < 0:
                payable = max(0, acct["balance"] + acct["credit_limit"] - acct["held"])
                if -delta > payable:
                    unpaid = -delta - payable
                    note = ((f"{note}; " if note else "") + f"rerate v{c.version}: unpaid {unpaid} micro-units "
                            "(credit limit)")[:200]
                    new_cost -= unpaid
                    delta = -payable
            if delta != 0:
                change = rules.balance_change(
                    acct, delta, kind="rerate",
                    reason=f"rerate call {s['number_e164'] or s['number']} by deck version {c.version}: "
                           f"{format_amount(current_cost)} → {format_amount(new_cost)}",
                    key=f"rerate:{c.session_id}:{c.version}", session_id=c.session_id, now=now)
                ledger_rows.append(change.ledger_row)
                locked[c.account_id] = change.account
                deltas[c.account_id] = deltas.get(c.account_id, 0) + delta
                alerts.extend((change.account, alert) for alert in change.alerts)
            if delta != 0 or unpaid:
                moved.append((c.account_id, delta, unpaid))
            session_updates.append({"sid": c.session_id, "rerated_cost": new_cost, "rerated_version": c.version,
                                    "now": now, "note": note})
        if ledger_rows:
            conn.execute(sql.I_LEDGER, ledger_rows)
        if deltas:
            # kind "rerate" is a correction, not call spending: the spend caps' counters stay as
            # they are (fraud_limits.CALL_CHARGE_KINDS; verify sums only those kinds)
            conn.execute(sql.U_ACCOUNT_BALANCE, [sql.account_balance_params(locked[aid], delta=delta, now=now)
                                                 for aid, delta in deltas.items()])
        for a, alert in alerts:
            self.core.enqueue_alert(conn, account_id=a["id"], to_addr=a["email"], kind=alert.kind,
                                    dedupe_key=alert.dedupe_key, context=alert.context, now=now)
        if session_updates:
            conn.execute(_U_RERATED, session_updates)
        return moved
