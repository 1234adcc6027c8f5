"""The time rules of the account lifecycle: pre-suspension, then DID release and suspension.

Balance-driven changes (depleted, re-activation, low-balance crossings) happen in the core inside
every balance change. What only the passing of time can trigger lives here:

* ``depleted`` for CALLGATE_PRESUSPEND_DAYS → ``pre_suspended`` + one notice naming each DID and
  the date it returns to the pool;
* ``pre_suspended`` for CALLGATE_DID_RELEASE_DAYS → every DID back to the pool (assignment history
  kept, routing removed), ``suspended`` + one email.

Each step is one transaction per account: lock the account row, re-check the rule on what is
locked (a top-up may have landed since the candidates were read — then the account is ``active``
and nothing happens), change the status, release the DIDs and queue the email with the unique key
(account, kind, depletion number). A crash, a replayed pass or a second sidecar can therefore
neither skip nor repeat a step or its email.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import and_, or_, select, update

from billing_core.admin import release_did_tx
from billing_core.api import BillingCore
from billing_core.domain import lifecycle
from billing_core.domain.money import format_customer
from billing_core.store.tables import accounts, dids, packages

log = logging.getLogger("callgate.lifecycle")

DAY_MS = lifecycle.DAY_MS


@dataclass(frozen=True)
class LifecycleReport:
    """What one lifecycle pass changed."""

    presuspended: int = 0
    suspended: int = 0


def candidates_tx(conn, now: int, presuspend_days: float, release_days: float) -> list[int]:
    """Accounts a time rule may apply to (re-checked under lock by the step itself)."""
    q = select(accounts.c.id).where(or_(
        and_(accounts.c.status == lifecycle.DEPLETED, accounts.c.depleted_at <= now - int(presuspend_days * DAY_MS)),
        and_(accounts.c.status == lifecycle.PRE_SUSPENDED,
             accounts.c.presuspended_at <= now - int(release_days * DAY_MS)),
    )).order_by(accounts.c.id)
    return list(conn.execute(q).scalars())


def presuspend_tx(conn, account_id: int, now: int, presuspend_days: float, release_days: float) -> bool:
    """``depleted`` long enough → ``pre_suspended`` and the notice. False when the rule no longer holds."""
    acct = _lock(conn, account_id)
    if acct is None or not lifecycle.presuspension_due(_state(acct), now_ms=now, days=presuspend_days):
        return False
    conn.execute(update(accounts).where(accounts.c.id == account_id).values(
        status=lifecycle.PRE_SUSPENDED, presuspended_at=now, status_changed_at=now, updated_at=now))
    release_at = lifecycle.release_date_ms(now, release_days)
    facts = {**_facts(acct), "dids": _dids_of(conn, account_id), "release_date": _date(release_at),
             "release_at": release_at}
    BillingCore.enqueue_alert(conn, account_id=account_id, to_addr=acct["email"], kind=lifecycle.PRE_SUSPENSION,
                              dedupe_key=f"{acct['ref']}:{lifecycle.PRE_SUSPENSION}:{acct['depletions']}",
                              context=facts, now=now)
    return True


def release_tx(conn, account_id: int, now: int, release_days: float) -> bool:
    """``pre_suspended`` long enough → DIDs back to the pool, ``suspended``, one email."""
    acct = _lock(conn, account_id)
    if acct is None or not lifecycle.release_due(_state(acct), now_ms=now, days=release_days):
        return False
    numbers = _dids_of(conn, account_id)
    reason = f"account {acct['ref']} suspended: no funds since {_date(acct['depleted_at'])}"
    for number in numbers:
        release_did_tx(conn, number, reason, now)
    conn.execute(update(accounts).where(accounts.c.id == account_id).values(
        status=lifecycle.SUSPENDED, status_changed_at=now, updated_at=now))
    facts = {**_facts(acct), "dids": numbers, "released_date": _date(now)}
    BillingCore.enqueue_alert(conn, account_id=account_id, to_addr=acct["email"], kind=lifecycle.DIDS_RELEASED,
                              dedupe_key=f"{acct['ref']}:{lifecycle.DIDS_RELEASED}:{acct['depletions']}",
                              context=facts, now=now)
    return True


async def lifecycle_pass(store, now: int, *, presuspend_days: float, release_days: float) -> LifecycleReport:
    """Apply every due time rule; each account step is its own transaction."""
    presuspended = suspended = 0
    for account_id in await store.run(candidates_tx, now, presuspend_days, release_days):
        if await store.run(presuspend_tx, account_id, now, presuspend_days, release_days):
            presuspended += 1
            log.info("account id %s: pre-suspended", account_id)
        # Same pass: with a release period of 0 days the release follows at once.
        if await store.run(release_tx, account_id, now, release_days):
            suspended += 1
            log.info("account id %s: DIDs released, suspended", account_id)
    return LifecycleReport(presuspended, suspended)


# ----------------------------------------------------------------------------------- helpers
_ACCOUNT_LOCK = (
    select(accounts, packages.c.low_balance)
    .select_from(accounts.join(packages, packages.c.id == accounts.c.package_id))
)


def _lock(conn, account_id: int):
    return conn.execute(_ACCOUNT_LOCK.where(accounts.c.id == account_id).with_for_update(of=accounts)).mappings().first()


def _state(acct) -> lifecycle.LifecycleState:
    return lifecycle.LifecycleState(
        balance=acct["balance"], status=acct["status"], low_balance_threshold=acct["low_balance"],
        low_balance_armed=bool(acct["low_balance_armed"]), low_balance_crossings=acct["low_balance_crossings"],
        depletions=acct["depletions"], depleted_at=acct["depleted_at"], presuspended_at=acct["presuspended_at"],
        status_changed_at=acct["status_changed_at"],
    )


def _facts(acct) -> dict:
    """The same facts the core writes for its alerts, plus when the account ran dry."""
    return {
        "account_ref": acct["ref"], "account_name": acct["name"], "currency": acct["currency"],
        "balance": format_customer(acct["balance"]), "threshold": format_customer(acct["low_balance"]),
        "depleted_date": _date(acct["depleted_at"]) if acct["depleted_at"] is not None else "",
    }


def _dids_of(conn, account_id: int) -> list[str]:
    return list(conn.execute(select(dids.c.number).where(dids.c.account_id == account_id).order_by(dids.c.number)).scalars())


def _date(ms: int) -> str:
    """A customer-facing date (UTC)."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


__all__ = ["LifecycleReport", "lifecycle_pass", "presuspend_tx", "release_tx", "candidates_tx"]
