"""Deposit invoices: what a customer asked to top up, and what PayPal said happened to it.

States::

    outstanding ──capture COMPLETED──► paid ──refund / reversal──► refunded (fully or partly)
        │  ▲                                                        (refund again until all is back)
        │  └──capture DENIED/DECLINED── pending ◄──capture PENDING (eCheque clearing)
        │                                  └──capture COMPLETED──► paid
        └──cancel (with a reason)──► cancelled

Money moves only through the core's ledger, *in the same transaction* as the invoice change
(:meth:`BillingCore.credit_tx`): the payment is a ``payment`` credit keyed by the PayPal capture id,
each refund or reversal a debit keyed by its own PayPal id — so a webhook and the customer's return
redirect racing on one capture credit once, and a replayed refund debits once.

Like :mod:`billing_core.api`, every operation is a synchronous function on a SQLAlchemy
``Connection`` run by ``core.store.run`` in one transaction; the ``async`` functions below are the
interface adapters call. PayPal JSON never reaches this module: ``callgate.paypal`` translates it
into :class:`CaptureFacts` / :class:`RefundFacts`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from .domain.errors import InvalidInput, NotFound
from .domain.identifiers import check_text
from .domain.money import INTEGER_MAX, MICRO, AmountError, format_amount, parse_amount
from .domain.records import LedgerEntry
from .store.tables import accounts, ledger
from .store.tables_invoices import invoice_events, invoices, paypal_webhooks

log = logging.getLogger("callgate.invoices")

MIN_AMOUNT = 25 * MICRO
"""Smallest deposit (the provider's rule: 25.00 in the account's currency)."""
MAX_AMOUNT = 1000 * MICRO
"""Largest deposit (1000.00)."""

OUTSTANDING = "outstanding"
PENDING = "pending"
PAID = "paid"
CANCELLED = "cancelled"
REFUNDED = "refunded"
STATUSES = (OUTSTANDING, PENDING, PAID, CANCELLED, REFUNDED)

# PayPal capture statuses (Orders v2) this module understands.
CAPTURE_COMPLETED = "COMPLETED"
CAPTURE_PENDING = "PENDING"
CAPTURE_FAILED = ("DECLINED", "DENIED", "FAILED")


# ------------------------------------------------------------------------------------ records
@dataclass(frozen=True, slots=True)
class Invoice:
    """A deposit invoice. Amounts are micro-units, times epoch ms."""

    id: int
    account_ref: str
    amount: int
    currency: str
    status: str
    """outstanding | pending | paid | cancelled | refunded."""
    refunded: int
    """Refunded + reversed so far (``refunded == amount``: fully refunded)."""
    paypal_order_id: str | None
    """The latest PayPal order made for it."""
    capture_id: str | None
    """The capture that paid it (or is clearing, while pending): the payment's ledger key."""
    capture_status: str | None
    cancel_reason: str | None
    created_at: int
    updated_at: int
    paid_at: int | None
    cancelled_at: int | None

    @property
    def payable(self) -> bool:
        """The customer may (still) pay it: it is outstanding."""
        return self.status == OUTSTANDING

    @property
    def refundable(self) -> int:
        """What can still be refunded (0 unless paid/refunded)."""
        return self.amount - self.refunded if self.status in (PAID, REFUNDED) else 0


@dataclass(frozen=True, slots=True)
class InvoiceEvent:
    """One line of an invoice's history."""

    id: int
    invoice_id: int
    kind: str
    """created | order | pending | paid | denied | refund | reversal | cancelled |
    checkout_cancelled | mismatch | anomaly."""
    amount: int | None
    paypal_id: str | None
    source: str
    """cli | web | return | webhook."""
    detail: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Change:
    """The result of an operation that may or may not change an invoice (errors as values)."""

    invoice: Invoice | None
    """The invoice after the operation (None when no invoice matched)."""
    outcome: str
    """paid | pending | denied | refunded | reversed | cancelled | order | mismatch | refused |
    unknown_invoice | ignored."""
    changed: bool
    """False: *this* call changed neither the invoice nor the balance (a duplicate, a refusal;
    a refusal is still written to the history)."""
    message: str
    """One line for people (CLI, page, log)."""
    ledger_entry: LedgerEntry | None = None
    """The ledger entry this call made (payment, refund, reversal)."""


@dataclass(frozen=True, slots=True)
class CaptureFacts:
    """What PayPal says about one capture (from the capture response or a webhook)."""

    capture_id: str
    status: str
    """COMPLETED | PENDING | DECLINED | DENIED | FAILED …"""
    amount: int | None
    """Micro-units; None when PayPal's value was not a plain decimal with ≤ 2 places."""
    currency: str
    invoice_id: int | None = None
    """From the capture's ``custom_id``."""
    order_id: str | None = None
    amount_text: str = ""
    """PayPal's value as sent (for messages)."""


@dataclass(frozen=True, slots=True)
class RefundFacts:
    """A refund, or a reversal (chargeback), of a capture."""

    paypal_id: str
    """The refund's / reversal's own id: the debit's ledger key."""
    capture_id: str
    kind: str
    """refund | reversal."""
    amount: int | None
    currency: str
    status: str = "COMPLETED"
    amount_text: str = ""


# --------------------------------------------------------------------------------- validation
def limits_text(currency: str = "CAD") -> str:
    """The rule as customers read it: ``between 25.00 and 1000.00 CAD``."""
    return f"between {format_amount(MIN_AMOUNT)} and {format_amount(MAX_AMOUNT)} {currency}"


def parse_deposit_amount(value: str | int, *, currency: str = "CAD", field: str = "amount") -> int:
    """A deposit amount as micro-units, or :class:`InvalidInput` stating the limits.

    Text goes through the strict money parser (no ``1e3``, ``NaN``, ``abc``, no third decimal);
    an int is taken as micro-units and must be whole cents."""
    rule = f"a deposit must be {limits_text(currency)}, with at most 2 decimals"
    if isinstance(value, bool):
        raise InvalidInput(f"{field}: {rule} (got {value!r})")
    if isinstance(value, int):
        micro = value
        if micro % (MICRO // 100):
            raise InvalidInput(f"{field}: {rule} (got {format_amount(micro)})")
    else:
        try:
            micro = parse_amount(value, field=field, decimals=2)
        except AmountError as exc:
            raise InvalidInput(f"{field}: {rule}; {exc.why} (got {value!r})") from None
    if not MIN_AMOUNT <= micro <= MAX_AMOUNT:
        shown = value if isinstance(value, str) else format_amount(micro)
        raise InvalidInput(f"{field}: {rule} (got {shown!r})")
    return micro


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status: must be one of {', '.join(STATUSES)} (got {status!r})")


# ------------------------------------------------------------------------------ async interface
async def create_invoice(core, ref: str, amount: str | int, *, source: str = "cli") -> Invoice:
    """A new outstanding deposit invoice for account ``ref``; bad amounts write nothing."""
    micro = parse_deposit_amount(amount, currency=core.settings.currency)
    return await core.store.run(_create_tx, ref, micro, source, core.clock.now_ms())


async def get_invoice(core, invoice_id: int, *, account_ref: str | None = None) -> Invoice:
    """The invoice, or :class:`NotFound` (also when it belongs to another account than
    ``account_ref``: a customer never learns that someone else's invoice exists)."""
    inv_id = _invoice_id(invoice_id)
    inv = await core.store.run(lambda conn: _get(conn, inv_id))
    if inv is None or (account_ref is not None and inv.account_ref != account_ref):
        raise NotFound(f"unknown invoice {invoice_id}")
    return inv


async def list_invoices(core, ref: str | None = None, *, status: str | None = None, limit: int | None = None) -> list[Invoice]:
    """Newest first; ``ref`` must exist when given."""
    _check_status(status)
    return await core.store.run(_list_tx, ref, status, limit)


async def invoice_events_of(core, invoice_id: int) -> list[InvoiceEvent]:
    """An invoice's history, oldest first."""
    inv_id = _invoice_id(invoice_id)

    def tx(conn):
        rows = conn.execute(
            select(invoice_events).where(invoice_events.c.invoice_id == inv_id).order_by(invoice_events.c.id)
        ).mappings()
        return [InvoiceEvent(**dict(r)) for r in rows]

    return await core.store.run(tx)


async def cancel_invoice(core, invoice_id: int, reason: str, *, source: str = "cli") -> Change:
    """Cancel an outstanding invoice. A cancelled, pending, paid or refunded one is left as it is
    and the result says so (``changed=False``)."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("reason: cancelling an invoice needs a reason")
    reason = check_text(reason, "--reason", max_length=300)
    return await core.store.run(_cancel_tx, _invoice_id(invoice_id), reason, source, core.clock.now_ms())


async def record_order(core, invoice_id: int, order_id: str, *, source: str = "web") -> Change:
    """Remember the PayPal order made for an outstanding invoice (refused otherwise)."""
    return await core.store.run(_record_order_tx, _invoice_id(invoice_id), order_id, source, core.clock.now_ms())


async def note(core, invoice_id: int, kind: str, detail: str, *, source: str, paypal_id: str | None = None) -> None:
    """Add a line to an invoice's history (e.g. the customer cancelled at PayPal)."""
    inv_id = _invoice_id(invoice_id)
    now = core.clock.now_ms()

    def tx(conn):
        if _get(conn, inv_id) is None:
            raise NotFound(f"unknown invoice {invoice_id}")
        _event(conn, inv_id, kind, source, detail, now, paypal_id=paypal_id)

    await core.store.run(tx)


async def apply_capture(core, facts: CaptureFacts, *, source: str) -> Change:
    """Apply what PayPal says about a capture: pay (credit once), mark pending, or put back to
    outstanding. A capture whose amount or currency differs from the invoice credits nothing."""
    return await _run_once(core, apply_capture_tx, core, facts, source)


async def apply_refund(core, facts: RefundFacts, *, source: str) -> Change:
    """Debit a refund or reversal of the capture that paid an invoice, once per PayPal id."""
    return await _run_once(core, apply_refund_tx, core, facts, source)


async def _run_once(core, fn, *args):
    try:
        return await core.store.run(fn, *args, core.clock.now_ms())
    except IntegrityError:
        # Two processes applied the same capture at the same moment on PostgreSQL: the loser's
        # transaction rolled back whole; run again and it sees the winner's work (a duplicate).
        return await core.store.run(fn, *args, core.clock.now_ms())


# --------------------------------------------------------------------------- transaction bodies
def _invoice_id(value: Any) -> int:
    if isinstance(value, float):
        raise InvalidInput(f"invoice: not an invoice number (got {value!r})")
    try:
        inv_id = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"invoice: not an invoice number (got {value!r})") from None
    # ids are INTEGER columns (32-bit on PostgreSQL): a larger number names no invoice, and must
    # not reach the driver (OverflowError / DataError)
    if (isinstance(value, bool) or not 0 < inv_id <= INTEGER_MAX
            or (isinstance(value, str) and not (value.strip().isascii() and value.strip().isdigit()))):
        raise InvalidInput(f"invoice: not an invoice number (got {value!r})")
    return inv_id


def _select():
    return select(invoices, accounts.c.ref.label("account_ref")).select_from(
        invoices.join(accounts, accounts.c.id == invoices.c.account_id)
    )


def _from_row(r) -> Invoice:
    return Invoice(
        id=r["id"], account_ref=r["account_ref"], amount=r["amount"], currency=r["currency"], status=r["status"],
        refunded=r["refunded"], paypal_order_id=r["paypal_order_id"], capture_id=r["capture_id"],
        capture_status=r["capture_status"], cancel_reason=r["cancel_reason"], created_at=r["created_at"],
        updated_at=r["updated_at"], paid_at=r["paid_at"], cancelled_at=r["cancelled_at"],
    )


def _get(conn, invoice_id: int, *, lock: bool = False) -> Invoice | None:
    q = _select().where(invoices.c.id == invoice_id)
    if lock:  # invoice row first, then (inside credit_tx) the account: always in that order
        q = q.with_for_update(of=invoices)
    row = conn.execute(q).mappings().first()
    return None if row is None else _from_row(row)


def _find_locked(conn, *, invoice_id: int | None = None, capture_id: str | None = None,
                 order_id: str | None = None) -> Invoice | None:
    for col, value in ((invoices.c.id, invoice_id), (invoices.c.capture_id, capture_id),
                       (invoices.c.paypal_order_id, order_id)):
        if value is None:
            continue
        row = conn.execute(_select().where(col == value).with_for_update(of=invoices)).mappings().first()
        if row is not None:
            return _from_row(row)
    return None


def find_by_capture_tx(conn, capture_id: str) -> Invoice | None:
    """The invoice paid by ``capture_id``, its row locked (as :func:`apply_refund_tx` locks it)."""
    return _find_locked(conn, capture_id=capture_id)


def _event(conn, invoice_id, kind, source, detail, now, *, amount=None, paypal_id=None) -> None:
    conn.execute(insert(invoice_events).values(
        invoice_id=invoice_id, kind=kind, amount=amount, paypal_id=paypal_id, source=source[:10],
        detail=detail[:300], created_at=now,
    ))


def _set(conn, invoice_id, now, **values) -> None:
    conn.execute(update(invoices).where(invoices.c.id == invoice_id).values(updated_at=now, **values))


def _create_tx(conn, ref, micro, source, now) -> Invoice:
    acct = conn.execute(select(accounts.c.id, accounts.c.currency).where(accounts.c.ref == ref)).first()
    if acct is None:
        raise NotFound(f"unknown account {ref!r}")
    inv_id = conn.execute(insert(invoices).values(
        account_id=acct.id, amount=micro, currency=acct.currency, status=OUTSTANDING, refunded=0,
        created_at=now, updated_at=now,
    )).inserted_primary_key[0]
    _event(conn, inv_id, "created", source, f"deposit of {format_amount(micro)} {acct.currency}", now, amount=micro)
    return _get(conn, inv_id)


def _list_tx(conn, ref, status, limit) -> list[Invoice]:
    q = _select()
    if ref is not None:
        if conn.execute(select(accounts.c.id).where(accounts.c.ref == ref)).first() is None:
            raise NotFound(f"unknown account {ref!r}")
        q = q.where(accounts.c.ref == ref)
    if status is not None:
        q = q.where(invoices.c.status == status)
    q = q.order_by(invoices.c.id.desc())
    if limit:
        q = q.limit(limit)
    return [_from_row(r) for r in conn.execute(q).mappings()]


def page_tx(conn, *, ref: str | None = None, status: str | None = None, before: int | None = None,
            limit: int = 50) -> tuple[list[Invoice], int | None]:
    """Invoices newest first (of account ``ref`` / in ``status`` when given), ``limit`` of them
    with ids below ``before`` (keyset paging: any page costs what the first does); returns them
    and the next page's cursor (None: the last page). An unknown ``ref`` finds nothing."""
    _check_status(status)
    q = _select()
    if ref:
        q = q.where(accounts.c.ref == ref)
    if status is not None:
        q = q.where(invoices.c.status == status)
    if before is not None:
        q = q.where(invoices.c.id < before)
    limit = max(1, min(int(limit), 500))
    rows = [_from_row(r) for r in conn.execute(q.order_by(invoices.c.id.desc()).limit(limit + 1)).mappings()]
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


def _cancel_tx(conn, invoice_id, reason, source, now) -> Change:
    inv = _get(conn, invoice_id, lock=True)
    if inv is None:
        raise NotFound(f"unknown invoice {invoice_id}")
    if inv.status != OUTSTANDING:
        why = {
            CANCELLED: f"invoice {inv.id} is already cancelled",
            PENDING: f"invoice {inv.id} has a payment clearing (eCheque) and cannot be cancelled now",
            PAID: f"invoice {inv.id} is paid and cannot be cancelled (refund it instead)",
            REFUNDED: f"invoice {inv.id} was paid and refunded and cannot be cancelled",
        }.get(inv.status, f"invoice {inv.id} is {inv.status}")
        return Change(inv, "refused", False, f"{why}; nothing changed")
    _set(conn, invoice_id, now, status=CANCELLED, cancel_reason=reason, cancelled_at=now)
    _event(conn, invoice_id, "cancelled", source, reason, now)
    return Change(_get(conn, invoice_id), "cancelled", True, f"invoice {inv.id} cancelled: {reason}")


def _record_order_tx(conn, invoice_id, order_id, source, now) -> Change:
    inv = _get(conn, invoice_id, lock=True)
    if inv is None:
        raise NotFound(f"unknown invoice {invoice_id}")
    if inv.status != OUTSTANDING:
        return Change(inv, "refused", False, f"invoice {inv.id} is {inv.status}; it cannot be paid now")
    _set(conn, invoice_id, now, paypal_order_id=order_id)
    _event(conn, invoice_id, "order", source, "PayPal order created", now, paypal_id=order_id)
    return Change(_get(conn, invoice_id), "order", True, f"PayPal order {order_id} for invoice {inv.id}")


def _money(micro: int | None, text: str, currency: str) -> str:
    return f"{format_amount(micro) if micro is not None else repr(text)} {currency}"


def apply_capture_tx(conn, core, facts: CaptureFacts, source: str, now: int) -> Change:
    """:func:`apply_capture` inside the caller's transaction (the webhook handler records the
    transmission in the same one)."""
    inv = _find_locked(conn, invoice_id=facts.invoice_id, capture_id=facts.capture_id, order_id=facts.order_id)
    if inv is None:
        log.warning("capture %s for unknown invoice %s (order %s): ignored", facts.capture_id, facts.invoice_id,
                    facts.order_id)
        return Change(None, "unknown_invoice", False, f"no invoice for capture {facts.capture_id}")
    status = (facts.status or "").upper()
    same_capture = inv.capture_id == facts.capture_id

    def refuse(kind: str, outcome: str, detail: str) -> Change:
        log.error("invoice %s: %s", inv.id, detail)
        _event(conn, inv.id, kind, source, detail, now, amount=facts.amount, paypal_id=facts.capture_id)
        return Change(_get(conn, inv.id), outcome, False, detail)

    if status not in (CAPTURE_COMPLETED, CAPTURE_PENDING) + CAPTURE_FAILED:
        return Change(inv, "ignored", False, f"capture {facts.capture_id} status {facts.status!r} changes nothing")

    if status in CAPTURE_FAILED:
        if inv.status == PENDING and same_capture:
            # The declined capture id stays on record so a late PENDING for it is known stale.
            _set(conn, inv.id, now, status=OUTSTANDING, capture_status=status, paypal_order_id=None)
            _event(conn, inv.id, "denied", source, f"payment {status.lower()}: invoice is outstanding again", now,
                   amount=facts.amount, paypal_id=facts.capture_id)
            return Change(_get(conn, inv.id), "denied", True,
                          f"payment for invoice {inv.id} was {status.lower()}; the invoice is outstanding again")
        if inv.status == OUTSTANDING:
            if same_capture and inv.capture_status in CAPTURE_FAILED:
                return Change(inv, "denied", False, f"payment for invoice {inv.id} was {status.lower()}")
            _set(conn, inv.id, now, capture_id=facts.capture_id, capture_status=status)
            _event(conn, inv.id, "denied", source, f"payment {status.lower()}", now, amount=facts.amount,
                   paypal_id=facts.capture_id)
            return Change(_get(conn, inv.id), "denied", True, f"payment for invoice {inv.id} was {status.lower()}")
        return refuse("anomaly", "refused",
                      f"capture {facts.capture_id} {status} but invoice {inv.id} is {inv.status}: nothing changed")

    # COMPLETED or PENDING: the invoice must be payable by this capture, for exactly its amount.
    if status == CAPTURE_PENDING and same_capture and inv.capture_status in CAPTURE_FAILED:
        return Change(inv, "ignored", False, f"capture {facts.capture_id} was already {inv.capture_status.lower()}; "
                      "a late PENDING changes nothing")
    if inv.status in (PAID, REFUNDED):
        if same_capture:
            return Change(inv, inv.status, False, f"invoice {inv.id} is already paid by capture {facts.capture_id}")
        return refuse("anomaly", "refused", f"capture {facts.capture_id} ({_money(facts.amount, facts.amount_text, facts.currency)}) "
                      f"for invoice {inv.id} already paid by {inv.capture_id}: not credited, refund it at PayPal")
    if inv.status == CANCELLED:
        return refuse("anomaly", "refused", f"capture {facts.capture_id} ({_money(facts.amount, facts.amount_text, facts.currency)}) "
                      f"for cancelled invoice {inv.id}: not credited, refund it at PayPal")
    if inv.status == PENDING and not same_capture:
        return refuse("anomaly", "refused", f"capture {facts.capture_id} for invoice {inv.id} while capture "
                      f"{inv.capture_id} is clearing: not credited")
    if facts.amount != inv.amount or facts.currency != inv.currency:
        detail = (f"capture {facts.capture_id} is {_money(facts.amount, facts.amount_text, facts.currency)} but invoice "
                  f"{inv.id} is {format_amount(inv.amount)} {inv.currency}: not credited")
        return refuse("mismatch", "mismatch", detail)

    if status == CAPTURE_PENDING:
        if inv.status == PENDING:
            return Change(inv, PENDING, False, f"payment for invoice {inv.id} is still clearing")
        _set(conn, inv.id, now, status=PENDING, capture_id=facts.capture_id, capture_status=status,
             paypal_order_id=facts.order_id or inv.paypal_order_id)
        _event(conn, inv.id, "pending", source, "payment clearing (eCheque): nothing credited yet", now,
               amount=facts.amount, paypal_id=facts.capture_id)
        return Change(_get(conn, inv.id), PENDING, True,
                      f"payment for invoice {inv.id} is clearing; the balance rises when it completes")

    entry = core.credit_tx(conn, inv.account_ref, inv.amount, f"PayPal payment, invoice {inv.id}", "payment",
                           facts.capture_id, now)
    _set(conn, inv.id, now, status=PAID, capture_id=facts.capture_id, capture_status=status, paid_at=now,
         paypal_order_id=facts.order_id or inv.paypal_order_id)
    _event(conn, inv.id, "paid", source, f"paid {format_amount(inv.amount)} {inv.currency}", now,
           amount=inv.amount, paypal_id=facts.capture_id)
    return Change(_get(conn, inv.id), PAID, True, f"invoice {inv.id} paid: {format_amount(inv.amount)} {inv.currency} "
                  "credited", ledger_entry=entry)


def apply_refund_tx(conn, core, facts: RefundFacts, source: str, now: int) -> Change:
    """:func:`apply_refund` inside the caller's transaction."""
    if facts.kind not in ("refund", "reversal"):
        raise InvalidInput(f"kind: must be refund or reversal (got {facts.kind!r})")
    inv = _find_locked(conn, capture_id=facts.capture_id)
    done = "refunded" if facts.kind == "refund" else "reversed"
    if inv is None:
        log.warning("%s %s of unknown capture %s: ignored", facts.kind, facts.paypal_id, facts.capture_id)
        return Change(None, "unknown_invoice", False, f"no invoice paid by capture {facts.capture_id}")
    if (facts.status or "").upper() not in ("COMPLETED", "PENDING"):
        return Change(inv, "ignored", False, f"{facts.kind} {facts.paypal_id} status {facts.status!r} changes nothing")
    previous = conn.execute(select(ledger.c.id).where(ledger.c.idempotency_key == facts.paypal_id)).first()
    if previous is not None:
        return Change(inv, done, False, f"{facts.kind} {facts.paypal_id} was already applied")

    def refuse(detail: str) -> Change:
        log.error("invoice %s: %s", inv.id, detail)
        _event(conn, inv.id, "anomaly", source, detail, now, amount=facts.amount, paypal_id=facts.paypal_id)
        return Change(_get(conn, inv.id), "refused", False, detail)

    shown = _money(facts.amount, facts.amount_text, facts.currency)
    if inv.status not in (PAID, REFUNDED):
        return refuse(f"{facts.kind} {facts.paypal_id} ({shown}) but invoice {inv.id} is {inv.status}: not debited")
    if facts.amount is None or facts.amount <= 0 or facts.currency != inv.currency:
        return refuse(f"{facts.kind} {facts.paypal_id} is {shown}, invoice {inv.id} is in {inv.currency}: not debited")
    if facts.amount > inv.amount - inv.refunded:
        return refuse(f"{facts.kind} {facts.paypal_id} ({shown}) exceeds what is left of invoice {inv.id} "
                      f"({format_amount(inv.amount - inv.refunded)}): not debited")
    # PayPal has already taken the money back: the ledger records it even when the customer spent
    # it meanwhile (below the credit limit, marked so that `callgate verify` accepts it)
    entry = core.credit_tx(conn, inv.account_ref, -facts.amount, f"PayPal {facts.kind}, invoice {inv.id}", facts.kind,
                           facts.paypal_id, now, allow_below_limit=True)
    _set(conn, inv.id, now, status=REFUNDED, refunded=inv.refunded + facts.amount)
    _event(conn, inv.id, facts.kind, source, f"{done} {shown}", now, amount=facts.amount, paypal_id=facts.paypal_id)
    after = _get(conn, inv.id)
    how = "fully" if after.refunded == after.amount else "partly"
    return Change(after, done, True, f"invoice {inv.id} {how} {done}: {shown} debited", ledger_entry=entry)


# ------------------------------------------------------------------------------ webhook records
def seen_transmission_tx(conn, transmission_id: str) -> bool:
    """A PayPal webhook transmission with this id was already accepted (a replay)."""
    return conn.execute(
        select(paypal_webhooks.c.transmission_id).where(paypal_webhooks.c.transmission_id == transmission_id)
    ).first() is not None


def record_transmission_tx(conn, *, transmission_id: str, event_id: str | None, event_type: str, outcome: str,
                           detail: str, now: int) -> None:
    """Remember an accepted transmission, in the transaction that applies its event."""
    conn.execute(insert(paypal_webhooks).values(
        transmission_id=transmission_id[:100], event_id=(event_id or None) and event_id[:100],
        event_type=event_type[:60], outcome=outcome[:20], detail=detail[:300], received_at=now,
    ))


__all__ = [
    "MIN_AMOUNT", "MAX_AMOUNT", "STATUSES", "OUTSTANDING", "PENDING", "PAID", "CANCELLED", "REFUNDED",
    "Invoice", "InvoiceEvent", "Change", "CaptureFacts", "RefundFacts", "limits_text", "parse_deposit_amount",
    "create_invoice", "get_invoice", "list_invoices", "invoice_events_of", "cancel_invoice", "record_order", "note",
    "apply_capture", "apply_refund", "apply_capture_tx", "apply_refund_tx", "find_by_capture_tx", "page_tx", "seen_transmission_tx",
    "record_transmission_tx",
]
