"""What an operator does from the console: credit or debit, suspend or reactivate, add a note,
retry a failed alert email, end a live call. Each is one transaction with its audit record (who, when, what, before and after), so
the change and its record commit together or not at all.
"""
from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from .domain import lifecycle
from .domain.errors import InvalidInput, NotFound
from .domain.identifiers import check_text
from .domain.money import check_storage_range, format_amount
from .domain.money_rules import ended_grant_seconds
from .domain.records import ENDED_HOLD
from .domain.records import LedgerEntry
from .operators import Actor, audit_tx
from .sidecar.outbox import AlertRow, retry_tx
from .store.statements import Q_ACCOUNT_BY_ID_LOCK
from .store.tables import accounts, call_sessions
from .store.tables_operators import account_notes

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
