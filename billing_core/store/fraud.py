"""The writes of an anomaly suspension (issue 18), as prebuilt statements both authorize drivers
and the money paths run: the account suspended (fraud_suspected), the audit record, one email to
the customer and one to the operator (once per suspension: the outbox key names the suspension's
number), and the account's live calls cut — answered ones now (the ARI gate follows its calls'
cut-offs every second), authorized ones at their answer (granted 0 s). Continue-mode and FastAGI
calls are also bounded by Dial's L() limit they were given.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import bindparam, insert, literal, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from ..domain.fraud_limits import ANOMALY_COLUMNS, FRAUD_SUSPECTED
from ..domain.money import format_customer
from .tables import accounts, call_sessions, fraud_events, outbox

U_ACCOUNT_ANOMALY = (
    update(accounts).where(accounts.c.id == bindparam("aid"))
    .values(**{c: bindparam("a_" + c) for c in ANOMALY_COLUMNS})
)
U_ACCOUNT_SUSPEND = (
    update(accounts).where(accounts.c.id == bindparam("aid"))
    .values(status="suspended", status_changed_at=bindparam("now"), suspended_reason=FRAUD_SUSPECTED,
            suspensions=accounts.c.suspensions + 1, updated_at=bindparam("now"))
)
I_FRAUD_EVENT = insert(fraud_events).values(
    account_id=bindparam("aid"), kind=bindparam("kind"), reason=bindparam("reason"), detail=bindparam("detail"),
    actor=bindparam("actor"), created_at=bindparam("now"))
U_CUT_ANSWERED = (
    update(call_sessions)
    .where(call_sessions.c.account_id == bindparam("aid"), call_sessions.c.state == "answered",
           call_sessions.c.emergency.is_(False), call_sessions.c.cutoff_at > bindparam("now"))
    .values(cutoff_at=bindparam("now"))
)
U_CUT_AUTHORIZED = (
    update(call_sessions)
    .where(call_sessions.c.account_id == bindparam("aid"), call_sessions.c.state == "authorized",
           call_sessions.c.emergency.is_(False))
    .values(granted_seconds=literal(0))
)
_OUTBOX_VALUES = dict(account_id=bindparam("aid"), kind=bindparam("kind"), dedupe_key=bindparam("key"),
                      to_addr=bindparam("to"), context=bindparam("context"), status="queued", attempts=0,
                      next_attempt_at=bindparam("now"), created_at=bindparam("now"))
I_OUTBOX_ONCE = {
    "postgresql": pg_dialect.insert(outbox).values(**_OUTBOX_VALUES).on_conflict_do_nothing(index_elements=["dedupe_key"]),
    "sqlite": sqlite_dialect.insert(outbox).values(**_OUTBOX_VALUES).on_conflict_do_nothing(index_elements=["dedupe_key"]),
}


def suspension_writes(dialect: str, acct: Any, detail: str, now: int, operator_email: str | None,
                      facts: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    """(statement, parameters) of one anomaly suspension of ``acct`` (an account row with ``id``,
    ``ref``, ``email``, ``suspensions``), in order."""
    aid, number = acct["id"], (acct["suspensions"] or 0) + 1
    context = json.dumps({**facts, "detail": detail}, sort_keys=True)
    out: list[tuple[Any, dict[str, Any]]] = [
        (U_ACCOUNT_SUSPEND, {"aid": aid, "now": now}),
        (I_FRAUD_EVENT, {"aid": aid, "kind": "suspended", "reason": FRAUD_SUSPECTED, "detail": detail[:300],
                         "actor": "callgate", "now": now}),
        (U_CUT_ANSWERED, {"aid": aid, "now": now}),
        (U_CUT_AUTHORIZED, {"aid": aid}),
        (I_OUTBOX_ONCE[dialect], {"aid": aid, "kind": FRAUD_SUSPECTED, "key": f"{acct['ref']}:{FRAUD_SUSPECTED}:{number}",
                                  "to": acct["email"], "context": context, "now": now}),
    ]
    if operator_email:
        out.append((I_OUTBOX_ONCE[dialect], {"aid": aid, "kind": FRAUD_SUSPECTED + "_operator",
                                             "key": f"{acct['ref']}:{FRAUD_SUSPECTED}_operator:{number}",
                                             "to": operator_email, "context": context, "now": now}))
    return out


def alert_facts(acct: Any) -> dict[str, Any]:
    """The facts every alert email may mention (billing_core/mail/templates/README.txt)."""
    return {"account_ref": acct["ref"], "account_name": acct["name"], "currency": acct["currency"],
            "balance": format_customer(acct["balance"]), "threshold": format_customer(acct["low_balance"])}


def anomaly_params(aid: int, counters: dict[str, int]) -> dict[str, Any]:
    return {"aid": aid, **{"a_" + k: v for k, v in counters.items()}}
