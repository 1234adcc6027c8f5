"""The outbox sender: every queued alert is delivered once the SMTP server accepts it.

An alert row is written by the core (or the lifecycle pass) in the same transaction as the state
change that owes it. Sending follows a *claim → send → record* cycle:

1. **claim** (one transaction): ``attempts + 1`` and ``next_attempt_at = now + lease`` on a row that
   is still queued and due. The condition makes the claim exclusive: a second sidecar (another
   process, another host on the same PostgreSQL) sees the row as not due and skips it.
2. **send** outside any transaction (SMTP can be slow; no lock is held meanwhile).
3. **record** (one transaction, conditional on the claim still being ours): ``sent`` only after the
   server accepted; ``queued`` again with exponential backoff for a connection problem or a 4xx;
   ``failed`` with the server's reason for a 5xx (or after ``max_attempts``).

A crash between 2 and 3 re-sends after the lease — at-least-once is the best SMTP allows; the
Message-ID is the alert's dedupe key so the rare duplicate is recognisable.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import func, select, update

from billing_core.domain.errors import InvalidInput, NotFound
from billing_core.mail.render import RenderedMail, Renderer, TemplateProblem
from billing_core.mail.smtp import SendOutcome
from billing_core.store.tables import accounts, outbox

log = logging.getLogger("callgate.outbox")

STATUSES = ("queued", "sent", "failed")


class MailSender(Protocol):
    """What the outbox needs from a mail transport (billing_core.mail.smtp.SmtpSender)."""

    async def send(self, to_addr: str, mail: RenderedMail, *, message_id_key: str | None = None) -> SendOutcome: ...


@dataclass(frozen=True)
class OutboxSettings:
    """Retry policy of the outbox sender."""

    batch: int = 100
    """Alerts looked at per pass (the rest wait for the next pass)."""
    backoff_base_seconds: float = 30.0
    """First retry delay; doubles per attempt (CALLGATE_MAIL_BACKOFF_SECONDS)."""
    backoff_max_seconds: float = 3600.0
    """Retry delays stop growing here (CALLGATE_MAIL_BACKOFF_MAX_SECONDS)."""
    max_attempts: int = 50
    """After this many retryable failures the alert is marked failed (≈ 2 days at the cap)."""
    lease_seconds: float = 300.0
    """A claimed alert is invisible to other senders this long (longer than any SMTP timeout)."""


@dataclass(frozen=True)
class AlertRow:
    """One outbox row as `callgate alerts` shows it."""

    id: int
    kind: str
    account_ref: str | None
    to_addr: str
    status: str
    """``queued``, ``sent`` or ``failed``."""
    attempts: int
    next_attempt_at: int
    last_error: str | None
    created_at: int
    sent_at: int | None
    dedupe_key: str


@dataclass(frozen=True)
class OutboxReport:
    """What one sending pass did."""

    sent: int = 0
    retrying: int = 0
    """Delivery failed for now; queued again with backoff."""
    failed: int = 0
    """Marked failed (5xx, template problem, or too many attempts)."""
    stopped_early: bool = False
    """The server was unreachable: the remaining due alerts wait for the next pass."""


def backoff_ms(attempts: int, settings: OutboxSettings) -> int:
    """Delay before attempt ``attempts + 1``: base · 2^(attempts − 1), capped."""
    exp = min(max(attempts - 1, 0), 30)
    return int(min(settings.backoff_base_seconds * (2 ** exp), settings.backoff_max_seconds) * 1000)


# ------------------------------------------------------------------------------ transactions
def due_ids_tx(conn, now: int, limit: int) -> list[int]:
    q = (select(outbox.c.id).where(outbox.c.status == "queued", outbox.c.next_attempt_at <= now)
         .order_by(outbox.c.next_attempt_at, outbox.c.id).limit(limit))
    return list(conn.execute(q).scalars())


def claim_tx(conn, alert_id: int, now: int, lease_ms: int):
    """Take one due alert for sending; None when another sender has it (or it is no longer due)."""
    res = conn.execute(
        update(outbox).where(outbox.c.id == alert_id, outbox.c.status == "queued", outbox.c.next_attempt_at <= now)
        .values(attempts=outbox.c.attempts + 1, next_attempt_at=now + lease_ms)
    )
    if res.rowcount != 1:
        return None
    return conn.execute(select(outbox).where(outbox.c.id == alert_id)).mappings().one()


def record_tx(conn, alert_id: int, claimed_attempts: int, values: dict[str, Any]) -> bool:
    """Write the outcome if the claim is still ours (same attempt number, still queued)."""
    res = conn.execute(
        update(outbox).where(outbox.c.id == alert_id, outbox.c.status == "queued", outbox.c.attempts == claimed_attempts)
        .values(**values)
    )
    return res.rowcount == 1


def counts_tx(conn) -> dict[str, int]:
    rows = conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all()
    out = {s: 0 for s in STATUSES}
    out.update({status: n for status, n in rows})
    return out


def list_tx(conn, status: str | None, limit: int, account_id: int | None = None) -> list[AlertRow]:
    """Newest first; only ``status`` / account ``account_id``'s when given (the console's account
    page shows the emails sent to the account)."""
    q = select(outbox, accounts.c.ref.label("account_ref")).select_from(
        outbox.outerjoin(accounts, accounts.c.id == outbox.c.account_id))
    if status is not None:
        q = q.where(outbox.c.status == status)
    if account_id is not None:
        q = q.where(outbox.c.account_id == account_id)
    q = q.order_by(outbox.c.id.desc()).limit(limit)
    return [_alert_row(r) for r in conn.execute(q).mappings()]


def retry_tx(conn, alert_id: int, now: int) -> AlertRow:
    """Re-queue a failed alert for immediate sending (attempts start again from 0)."""
    row = conn.execute(select(outbox.c.status).where(outbox.c.id == alert_id)).first()
    if row is None:
        raise NotFound(f"ID: no alert {alert_id}")
    if row.status != "failed":
        raise InvalidInput(f"ID: alert {alert_id} is {row.status}, only failed alerts can be retried")
    conn.execute(update(outbox).where(outbox.c.id == alert_id, outbox.c.status == "failed")
                 .values(status="queued", attempts=0, next_attempt_at=now))
    return list_one_tx(conn, alert_id)


def list_one_tx(conn, alert_id: int) -> AlertRow:
    q = select(outbox, accounts.c.ref.label("account_ref")).select_from(
        outbox.outerjoin(accounts, accounts.c.id == outbox.c.account_id)).where(outbox.c.id == alert_id)
    row = conn.execute(q).mappings().first()
    if row is None:
        raise NotFound(f"ID: no alert {alert_id}")
    return _alert_row(row)


def _alert_row(r) -> AlertRow:
    return AlertRow(id=r["id"], kind=r["kind"], account_ref=r["account_ref"], to_addr=r["to_addr"], status=r["status"],
                    attempts=r["attempts"], next_attempt_at=r["next_attempt_at"], last_error=r["last_error"],
                    created_at=r["created_at"], sent_at=r["sent_at"], dedupe_key=r["dedupe_key"])


# ----------------------------------------------------------------------------------- sender
class Outbox:
    """Sends due alerts through ``sender``; safe to run in several processes at once."""

    def __init__(self, store, sender: MailSender, renderer: Renderer, clock, settings: OutboxSettings | None = None):
        self.store = store
        self.sender = sender
        self.renderer = renderer
        self.clock = clock
        self.settings = settings or OutboxSettings()

    async def send_due(self) -> OutboxReport:
        s = self.settings
        ids = await self.store.run(due_ids_tx, self.clock.now_ms(), s.batch)
        sent = retrying = failed = 0
        for alert_id in ids:
            row = await self.store.run(claim_tx, alert_id, self.clock.now_ms(), int(s.lease_seconds * 1000))
            if row is None:
                continue  # another sidecar took it
            outcome = await self._deliver(row)
            now = self.clock.now_ms()
            attempts = row["attempts"]
            if outcome.delivered:
                values = dict(status="sent", sent_at=now)
                sent += 1
            elif outcome.status == "retry" and attempts < s.max_attempts:
                values = dict(next_attempt_at=now + backoff_ms(attempts, s), last_error=outcome.reason[:2000])
                retrying += 1
            else:
                reason = outcome.reason if outcome.status == "rejected" else \
                    f"gave up after {attempts} attempts: {outcome.reason}"
                values = dict(status="failed", last_error=reason[:2000])
                failed += 1
            if not await self.store.run(record_tx, alert_id, attempts, values):
                log.warning("alert %s: claim expired before the outcome (%s) was recorded", alert_id, outcome.status)
            if outcome.delivered:
                log.info("alert %s (%s) sent to %s", alert_id, row["kind"], row["to_addr"])
            else:
                log.warning("alert %s (%s) to %s: %s: %s", alert_id, row["kind"], row["to_addr"],
                            "failed" if values.get("status") == "failed" else "will retry", outcome.reason)
            if outcome.unreachable:
                return OutboxReport(sent, retrying, failed, stopped_early=True)
        return OutboxReport(sent, retrying, failed)

    async def _deliver(self, row) -> SendOutcome:
        try:
            facts = json.loads(row["context"])
            if not isinstance(facts, dict):
                raise ValueError("context is not a JSON object")
        except ValueError as exc:
            return SendOutcome("rejected", f"bad alert context: {exc}")
        try:
            mail = self.renderer.render(row["kind"], facts)
        except TemplateProblem as exc:
            return SendOutcome("rejected", f"template: {exc}")
        return await self.sender.send(row["to_addr"], mail, message_id_key=_message_id(row["dedupe_key"]))

    async def counts(self) -> dict[str, int]:
        return await self.store.run(counts_tx)


async def list_alerts(store, *, status: str | None = None, limit: int = 200) -> list[AlertRow]:
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"--status: must be one of {', '.join(STATUSES)} (got {status!r})")
    return await store.run(list_tx, status, limit)


async def retry_alert(store, alert_id: int, now_ms: int) -> AlertRow:
    return await store.run(retry_tx, alert_id, now_ms)


def _message_id(dedupe_key: str) -> str:
    safe = "".join(c if c.isalnum() or c in ".-_" else "." for c in dedupe_key)
    return f"callgate.{safe}"


__all__ = ["Outbox", "OutboxSettings", "OutboxReport", "AlertRow", "MailSender", "backoff_ms", "list_alerts",
           "retry_alert", "STATUSES"]
