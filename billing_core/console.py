"""What an operator does from the console: credit or debit, suspend or reactivate, change an
account's package, add a note, retry a failed alert email, end a live call, edit a package, assign
or release a DID, record a refund. Each is one transaction with its audit record (who, when, what,
before and after), so the change and its record commit together or not at all.
"""
from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from . import admin as admin_ops
from . import invoices
from .domain import lifecycle
from .domain.errors import InvalidInput, NotFound
from .domain.identifiers import check_endpoint, check_text
from .domain.money import CUSTOMER_DECIMALS, INTEGER_MAX, RATE_DECIMALS, check_storage_range, format_amount, parse_amount
from .domain.money_rules import ended_grant_seconds
from .domain.records import ENDED_HOLD
from .domain.records import LedgerEntry
from .operators import Actor, audit_tx
from .sidecar.outbox import AlertRow, retry_tx
from .store.statements import Q_ACCOUNT_BY_ID_LOCK
from .store.tables import accounts, call_sessions, packages
from .store.tables_operators import account_notes, audit_log

NOTE_MAX = 2000
KEY_PREFIX = "console:"


def _balance(conn: Connection, ref: str) -> int:
    value = conn.execute(select(accounts.c.balance).where(accounts.c.ref == ref)).scalar()
    if value is None:
        raise NotFound(f"unknown account {ref!r}")
    return value


async def credit_account(core, actor: Actor, ref: str, amount: int, reason: str, form_key: str) -> LedgerEntry:
    """Credit (``amount`` > 0) or debit (< 0) account ``ref`` with ``reason``. ``form_key`` is the
    idempotency key the form carried: a form submitted twice (double click, reload, retry after a
    timeout) finds its entry and changes nothing, and writes no second audit record. A debit is
    never taken below the credit limit from the console (the CLI's --allow-below-limit is the
    deliberate way)."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
        raise InvalidInput("amount: must be a non-zero amount")
    check_storage_range(amount, field="amount")
    reason = check_text(reason, "reason", max_length=300)  # required: kept on the entry and in the audit log
    if not (8 <= len(form_key) <= 64 and form_key.replace("-", "").replace("_", "").isalnum() and form_key.isascii()):
        raise InvalidInput("key: the form has no valid idempotency key; reload the page")
    key = KEY_PREFIX + form_key
    kind = "credit" if amount > 0 else "debit"

    def tx(conn: Connection, now: int) -> LedgerEntry:
        before = _balance(conn, ref)
        entry = core.credit_tx(conn, ref, amount, reason, kind, key, now)
        if not entry.replayed:
            audit_tx(conn, actor, f"account.{kind}", "account", ref, before={"balance": format_amount(before)},
                     after={"balance": format_amount(entry.balance_after), "amount": format_amount(amount),
                            "entry": entry.entry_id}, reason=reason, now=now)
        return entry

    try:
        return await core.store.run(tx, core.clock.now_ms())
    except IntegrityError:
        # Both submissions raced past the key lookup: the loser finds the winner's entry.
        return await core.store.run(tx, core.clock.now_ms())


async def set_account_status(core, actor: Actor, ref: str, action: str, reason: str = "") -> str:
    """``suspend`` (calls refused) or ``reactivate`` (active again; depleted when its money is
    gone, so the gate keeps refusing with the right cause). Returns the new status; no change,
    no audit record."""
    if action not in ("suspend", "reactivate"):
        raise InvalidInput("status: must be suspend or reactivate")
    reason = check_text(reason or "", "reason", max_length=300, allow_empty=True)

    def tx(conn: Connection, now: int) -> str:
        row = conn.execute(select(accounts.c.id, accounts.c.status, accounts.c.balance, accounts.c.credit_limit)
                           .where(accounts.c.ref == ref)).first()
        if row is None:
            raise NotFound(f"unknown account {ref!r}")
        if action == "suspend":
            new = lifecycle.SUSPENDED
        elif row.status != lifecycle.SUSPENDED:
            return row.status  # only a suspended account is reactivated
        else:
            new = lifecycle.ACTIVE if row.balance + row.credit_limit > 0 else lifecycle.DEPLETED
        if new == row.status:
            return new
        conn.execute(update(accounts).where(accounts.c.id == row.id).values(status=new, status_changed_at=now,
                                                                             updated_at=now))
        audit_tx(conn, actor, f"account.{action}", "account", ref, before={"status": row.status},
                 after={"status": new}, reason=reason, now=now)
        return new

    return await core.store.run(tx, core.clock.now_ms())


async def add_note(core, actor: Actor, ref: str, body: str) -> int:
    """A note on the account (support and admin); returns its id."""
    body = _check_note(body)

    def tx(conn: Connection, now: int) -> int:
        aid = conn.execute(select(accounts.c.id).where(accounts.c.ref == ref)).scalar()
        if aid is None:
            raise NotFound(f"unknown account {ref!r}")
        note_id = conn.execute(insert(account_notes).values(
            account_id=aid, operator_id=actor.operator_id, author=actor.name, body=body, created_at=now)
        ).inserted_primary_key[0]
        audit_tx(conn, actor, "account.note", "account", ref, after={"note": note_id, "body": body[:200]}, now=now)
        return note_id

    return await core.store.run(tx, core.clock.now_ms())


def _check_note(body: object) -> str:
    """Free text over several lines: each line as check_text wants it (no control characters)."""
    if not isinstance(body, str):
        raise InvalidInput("note: must be text")
    lines = [check_text(line, "note", allow_empty=True) for line in body.replace("\r\n", "\n").split("\n")]
    text = "\n".join(lines).strip()
    if not text:
        raise InvalidInput("note: must not be empty")
    if len(text) > NOTE_MAX:
        raise InvalidInput(f"note: longer than {NOTE_MAX} characters")
    return text


async def retry_alert(core, actor: Actor, alert_id: int) -> AlertRow:
    """Re-queue a failed alert email (as `callgate alerts retry`), audited in the same transaction."""

    def tx(conn: Connection, now: int) -> AlertRow:
        row = retry_tx(conn, alert_id, now)
        audit_tx(conn, actor, "alert.retry", "alert", str(alert_id), before={"status": "failed"},
                 after={"status": row.status, "kind": row.kind, "to": row.to_addr}, now=now)
        return row

    return await core.store.run(tx, core.clock.now_ms())


# ------------------------------------------------------------------------------ live calls
def why_not_endable(row) -> str | None:
    """Why the console cannot end this live call (None: it can). ``row``: a session's columns
    (state, hold_mode, emergency). Only a call the ARI gate bridges itself is timed by the gate
    from the stored cut-off (chunked hold); a full-hold call's limit is the dialplan's Dial L()
    (FastAGI, or ARI continue mode once the dialplan took over), which nothing can move."""
    if row["emergency"]:
        return "an emergency call: never cut"
    if row["hold_mode"] == ENDED_HOLD:
        return "already ended from the console: the gate is cutting it"
    if row["hold_mode"] != "chunked":
        return ("its time limit is in the dialplan (FastAGI, or ARI continue mode after the dialplan took over): "
                "end it on the switch")
    if row["state"] != "answered":
        return "not answered yet (ringing): it can be ended once answered"
    return None


async def end_call(core, actor: Actor, session_id: str, reason: str = "") -> dict:
    """End a live ARI call now: its cut-off moves to now and its grant to the talk so far (final:
    never extended again; ``hold_mode`` becomes ``ended``), audited in the same transaction. The
    gate reads cut-offs once a second and cuts the call at once, skipping the warning tone; the
    call is settled at the talk up to the cut-off. Refused (InvalidInput, nothing written) for a
    call the gate does not time (see :func:`why_not_endable`). Ending it twice changes nothing."""
    reason = check_text(reason or "", "reason", max_length=300, allow_empty=True)

    def tx(conn: Connection, now: int) -> dict:
        row = conn.execute(select(call_sessions).where(call_sessions.c.id == session_id)).mappings().first()
        if row is None:
            raise NotFound(f"unknown call {session_id!r}")
        if row["account_id"] is not None:
            # the account lock orders this with an extension or a settle running now (they take it
            # first and re-read the session under it)
            conn.execute(Q_ACCOUNT_BY_ID_LOCK, {"aid": row["account_id"]}).first()
            row = conn.execute(select(call_sessions).where(call_sessions.c.id == session_id)).mappings().first()
        if row["state"] not in ("authorized", "answered"):
            raise InvalidInput("call: it has ended already")
        if row["hold_mode"] == ENDED_HOLD:  # ended already (a double click): nothing changes
            return {"session": session_id, "cutoff_at": row["cutoff_at"], "replayed": True}
        why = why_not_endable(row)
        if why is not None:
            raise InvalidInput(f"call: cannot be ended from the console: {why}")
        granted = ended_grant_seconds(row["granted_seconds"], row["answered_at"], now)
        cutoff = min(now, row["cutoff_at"]) if row["cutoff_at"] is not None else now
        conn.execute(update(call_sessions).where(call_sessions.c.id == session_id).values(
            cutoff_at=cutoff, granted_seconds=granted, hold_mode=ENDED_HOLD))
        target = row["number_e164"] or row["number"]
        audit_tx(conn, actor, "call.end", "call", session_id,
                 before={"cutoff_at": row["cutoff_at"], "granted_seconds": row["granted_seconds"]},
                 after={"cutoff_at": cutoff, "granted_seconds": granted, "number": target}, reason=reason, now=now)
        return {"session": session_id, "cutoff_at": cutoff, "replayed": False}

    return await core.store.run(tx, core.clock.now_ms())


# ------------------------------------------------------------------------------- packages
#: What the console's package form may change: ``package set``'s settings (flag names with
#: underscores), each given as the flag's text.
PACKAGE_SETTINGS = ("plan", "low_balance", "max_calls", "inbound_rate", *admin_ops.PACKAGE_RULES)


def _whole_number(text: str, field: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 10) or not 1 <= int(text) <= INTEGER_MAX:
        raise InvalidInput(f"{field}: must be a whole number from 1 to {INTEGER_MAX} (got {text!r})")
    return int(text)


async def set_package(core, actor: Actor, name: str, changes: dict[str, str], reason: str = "") -> dict:
    """``package set NAME`` from the console: ``changes`` maps the settings the operator changed
    (:data:`PACKAGE_SETTINGS`) to their new text, as the flags take it; the same checks refuse
    bad input (InvalidInput naming the flag) before anything is written. Returns the package as
    ``package show --json`` gives it; audited with the changed settings before and after (no
    change, no record)."""
    unknown = sorted(set(changes) - set(PACKAGE_SETTINGS))
    if unknown:
        raise InvalidInput(f"{admin_ops.setting_flag(unknown[0])}: unknown package setting")
    reason = check_text(reason or "", "reason", max_length=300, allow_empty=True)
    text = {k: v for k, v in changes.items() if v is not None}
    amount = {"low_balance": CUSTOMER_DECIMALS, "inbound_rate": RATE_DECIMALS}
    values = admin_ops.check_package_settings(
        **{k: parse_amount(text[k], field=admin_ops.setting_flag(k), decimals=d, allow_negative=False)
           for k, d in amount.items() if k in text},
        max_calls=_whole_number(text["max_calls"], "--max-calls") if "max_calls" in text else None,
        **{k: admin_ops.rule_from_text(k, v) for k, v in text.items() if k in admin_ops.PACKAGE_RULES})
    plan = text.get("plan")

    def tx(conn: Connection, now: int) -> dict:
        before = core.admin.package_out_tx(conn, name)
        after = core.admin.set_package_tx(conn, name, plan, values, now)
        changed = sorted(k for k in after if after[k] != before[k])
        if changed:
            audit_tx(conn, actor, "package.set", "package", name, before={k: before[k] for k in changed},
                     after={k: after[k] for k in changed}, reason=reason, now=now)
        return after

    return await core.store.run(tx, core.clock.now_ms())


async def change_package(core, actor: Actor, ref: str, package: str, reason: str = "") -> str:
    """Move account ``ref`` to ``package`` (its plan, limits and rules from the next call on);
    returns the package's name. No change, no audit record."""
    reason = check_text(reason or "", "reason", max_length=300, allow_empty=True)

    def tx(conn: Connection, now: int) -> str:
        row = conn.execute(select(accounts.c.id, packages.c.name)
                           .select_from(accounts.join(packages, packages.c.id == accounts.c.package_id))
                           .where(accounts.c.ref == ref)).first()
        if row is None:
            raise NotFound(f"unknown account {ref!r}")
        new_id = conn.execute(select(packages.c.id).where(packages.c.name == package)).scalar()
        if new_id is None:
            raise InvalidInput(f"package: unknown package {package!r}")
        if row.name == package:
            return package
        conn.execute(update(accounts).where(accounts.c.id == row.id).values(package_id=new_id, updated_at=now))
        audit_tx(conn, actor, "account.package", "account", ref, before={"package": row.name},
                 after={"package": package}, reason=reason, now=now)
        return package

    return await core.store.run(tx, core.clock.now_ms())


# ------------------------------------------------------------------------------------ DIDs
async def assign_did(core, actor: Actor, number: str, ref: str, endpoint: str | None = None) -> dict:
    """``did assign`` from the console (to account ``ref``, ringing ``endpoint`` or the account's
    first), audited with the DID's holder before and after."""
    e164 = core.admin.did_e164(number)
    if endpoint is not None:
        check_endpoint(endpoint, "endpoint")

    def tx(conn: Connection, now: int) -> dict:
        before = admin_ops.did_tx(conn, e164)
        after = admin_ops.assign_did_tx(conn, e164, ref, endpoint, now)
        if (before["account"], before["endpoint"]) != (after["account"], after["endpoint"]):
            audit_tx(conn, actor, "did.assign", "did", e164, before={k: before[k] for k in ("account", "endpoint")},
                     after={k: after[k] for k in ("account", "endpoint")}, now=now)
        return after

    return await core.store.run(tx, core.clock.now_ms())


async def release_did(core, actor: Actor, number: str, reason: str) -> dict:
    """``did release`` from the console: back to the pool, with a reason (kept in the DID's
    history and the audit log)."""
    e164 = core.admin.did_e164(number)
    reason = check_text(reason, "reason", max_length=200)  # required

    def tx(conn: Connection, now: int) -> dict:
        before = admin_ops.did_tx(conn, e164)
        out = admin_ops.release_assigned_did_tx(conn, e164, reason, now)
        audit_tx(conn, actor, "did.release", "did", e164, before={k: before[k] for k in ("account", "endpoint")},
                 after={"account": None, "endpoint": None}, reason=reason, now=now)
        return out

    return await core.store.run(tx, core.clock.now_ms())


# --------------------------------------------------------------------------------- refunds
async def record_refund(core, actor: Actor, facts: invoices.RefundFacts, reason: str = "") -> invoices.Change:
    """Record a refund the console asked PayPal for: the debit (keyed by PayPal's refund id, at
    most what is left of the invoice: :func:`billing_core.invoices.apply_refund_tx`) and its audit
    record in one transaction. The form's key is PayPal's request id, so a double-submitted form
    gets PayPal's first refund back and this finds its debit: nothing more is debited or audited.
    A refund PayPal's webhook applied first is audited here, once."""
    reason = check_text(reason or "", "reason", max_length=300, allow_empty=True)

    def tx(conn: Connection, now: int) -> invoices.Change:
        inv = invoices.find_by_capture_tx(conn, facts.capture_id)
        change = invoices.apply_refund_tx(conn, core, facts, "console", now)
        after = change.invoice
        if after is None or change.outcome != "refunded" or _refund_audited(conn, after.id, facts.paypal_id):
            return change
        audit_tx(conn, actor, "invoice.refund", "invoice", str(after.id),
                 before={"status": inv.status, "refunded": format_amount(inv.refunded)} if change.changed else None,
                 after={"status": after.status, "refunded": format_amount(after.refunded),
                        "amount": format_amount(facts.amount), "account": after.account_ref,
                        "refund": facts.paypal_id,
                        "entry": change.ledger_entry.entry_id if change.ledger_entry else None},
                 reason=reason, now=now)
        return change

    return await core.store.run(tx, core.clock.now_ms())


def _refund_audited(conn: Connection, invoice_id: int, refund_id: str) -> bool:
    return conn.execute(select(audit_log.c.id).where(
        audit_log.c.action == "invoice.refund", audit_log.c.target == str(invoice_id),
        audit_log.c.after.contains(f'"refund":"{refund_id}"', autoescape=True)).limit(1)).first() is not None
