"""The checkout flow the client area drives: create an order, capture on return, note a cancel.

The web pages only translate: they call these functions and show ``message``. The capture on
return and the webhook go through the same invoice operation, keyed by the capture id, so whichever
arrives second changes nothing.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from billing_core import invoices
from billing_core.domain.money import format_amount
from billing_core.invoices import Change, Invoice, RefundFacts

from .client import PayPalClient, PayPalError
from .models import Order

log = logging.getLogger("callgate.paypal.checkout")


class CheckoutError(Exception):
    """Checkout cannot go on; ``str(exc)`` is a sentence for the customer."""


@dataclass(frozen=True)
class CheckoutResult:
    """What the return (or cancel) page shows."""

    invoice: Invoice
    outcome: str
    """paid | pending | denied | cancelled | not_approved | mismatch | refused | unconfirmed."""
    message: str
    """For the customer."""
    changed: bool = False
    """This call changed the invoice (False on a reload of the return page, after the webhook…)."""


async def start_checkout(core, paypal: PayPalClient, invoice_id: int, return_url: str, cancel_url: str, *,
                         account_ref: str | None = None) -> str:
    """Create a PayPal order for an outstanding invoice; returns the URL to send the customer to.

    ``account_ref``: the signed-in customer (the invoice must be theirs, else NotFound)."""
    inv = await invoices.get_invoice(core, invoice_id, account_ref=account_ref)
    if not inv.payable:
        raise CheckoutError(_not_payable(inv))
    try:
        order = await paypal.create_order(invoice_id=inv.id, amount=inv.amount, currency=inv.currency,
                                          return_url=return_url, cancel_url=cancel_url,
                                          description=f"Account {inv.account_ref}: deposit, invoice {inv.id}")
    except PayPalError as exc:
        log.error("invoice %s: PayPal order not created: %s", inv.id, exc)
        raise CheckoutError("PayPal is not available right now; nothing was charged. Please try again later.") from None
    recorded = await invoices.record_order(core, inv.id, order.id, source="web")
    if not recorded.changed:
        raise CheckoutError(_not_payable(recorded.invoice))
    return order.approval_url


async def complete_return(core, paypal: PayPalClient, invoice_id: int, order_id: str, *,
                          account_ref: str | None = None) -> CheckoutResult:
    """The customer came back from PayPal having approved ``order_id``: capture it and apply the
    capture (credit once). Safe to call again (a reload): the result is the invoice's state."""
    inv = await invoices.get_invoice(core, invoice_id, account_ref=account_ref)
    if inv.status in (invoices.PAID, invoices.REFUNDED) and order_id == inv.paypal_order_id:
        return CheckoutResult(inv, "paid", "Thank you: your payment was received and your balance credited.")
    if inv.status == invoices.PENDING and order_id == inv.paypal_order_id:
        return CheckoutResult(inv, "pending", _PENDING_TEXT)
    if not inv.payable:
        return CheckoutResult(inv, "refused", _not_payable(inv))
    try:
        order = await paypal.get_order(order_id)
    except PayPalError as exc:
        if exc.status in (400, 404):  # not an order PayPal knows (a tampered or stale link)
            return CheckoutResult(inv, "refused", "This payment does not belong to this invoice; nothing was charged.")
        return await _unconfirmed(inv, exc)
    if order.custom_id != str(inv.id):
        log.error("invoice %s: return with order %s which belongs to %r", inv.id, order_id, order.custom_id)
        return CheckoutResult(inv, "refused", "This payment does not belong to this invoice; nothing was charged.")
    if order.status == "CREATED":
        return CheckoutResult(inv, "not_approved", "The payment was not approved at PayPal; nothing was charged.")
    if order.status != "COMPLETED":
        try:
            order = await paypal.capture_order(order.id, request_id=f"capture-{order.id}")
        except PayPalError as exc:
            if exc.issue == "ORDER_ALREADY_CAPTURED":
                try:
                    order = await paypal.get_order(order_id)
                except PayPalError as again:
                    return await _unconfirmed(inv, again)
            elif exc.issue in ("INSTRUMENT_DECLINED", "PAYER_ACTION_REQUIRED", "TRANSACTION_REFUSED"):
                return CheckoutResult(inv, "denied", "PayPal declined this payment; nothing was charged. "
                                      "You can pay the invoice again with another method.")
            elif exc.issue == "ORDER_NOT_APPROVED":
                return CheckoutResult(inv, "not_approved", "The payment was not approved at PayPal; nothing was charged.")
            else:
                return await _unconfirmed(inv, exc)
    return await _apply(core, inv, order)


async def _apply(core, inv: Invoice, order: Order) -> CheckoutResult:
    if not order.captures:
        return CheckoutResult(inv, "unconfirmed", _UNCONFIRMED_TEXT)
    capture = order.captures[0]
    facts = capture.facts()
    if facts.invoice_id is None:
        facts = dataclasses.replace(facts, invoice_id=inv.id)
    change = await invoices.apply_capture(core, facts, source="return")
    return _result(change, inv)


def _result(change: Change, before: Invoice) -> CheckoutResult:
    inv = change.invoice or before
    if inv.status in (invoices.PAID, invoices.REFUNDED) and change.outcome in ("paid", "refunded", "reversed"):
        return CheckoutResult(inv, "paid", "Thank you: your payment was received and your balance credited.",
                              change.changed)
    if change.outcome == invoices.PENDING:
        return CheckoutResult(inv, "pending", _PENDING_TEXT, change.changed)
    if change.outcome == "denied":
        return CheckoutResult(inv, "denied", "PayPal declined this payment; the invoice is still outstanding.",
                              change.changed)
    if change.outcome == "mismatch":
        return CheckoutResult(inv, "mismatch", "The amount PayPal reported does not match the invoice; nothing was "
                              "credited. Support has been told and will sort it out.", False)
    return CheckoutResult(inv, "refused", change.message, False)


async def _unconfirmed(inv: Invoice, exc: PayPalError) -> CheckoutResult:
    log.error("invoice %s: capture not confirmed: %s", inv.id, exc)
    return CheckoutResult(inv, "unconfirmed", _UNCONFIRMED_TEXT)


async def cancel_return(core, invoice_id: int, order_id: str | None = None, *,
                        account_ref: str | None = None) -> CheckoutResult:
    """The customer cancelled at PayPal: the invoice stays outstanding, to pay later."""
    inv = await invoices.get_invoice(core, invoice_id, account_ref=account_ref)
    if inv.payable:
        await invoices.note(core, inv.id, "checkout_cancelled", "customer cancelled at PayPal", source="web",
                            paypal_id=order_id if order_id and len(order_id) <= 64 else None)
        return CheckoutResult(inv, "cancelled", "Payment cancelled; nothing was charged. The invoice is still "
                              "outstanding: pay it any time with \u201cPay now\u201d.")
    return CheckoutResult(inv, inv.status, _not_payable(inv))


async def refund_invoice(core, paypal: PayPalClient, invoice_id: int, amount: int | None = None, *,
                         note: str | None = None) -> Change:
    """Operator refund through PayPal (all that is left, or ``amount`` micro-units); the debit is
    keyed by the refund id, so PayPal's REFUNDED webhook for it changes nothing more."""
    facts = await request_refund(core, paypal, invoice_id, amount, note=note)
    return await invoices.apply_refund(core, facts, source="web")


async def request_refund(core, paypal: PayPalClient, invoice_id: int, amount: int | None = None, *,
                         note: str | None = None, request_id: str | None = None) -> RefundFacts:
    """Ask PayPal to refund a paid invoice (all that is left, or ``amount`` micro-units) and say
    what it did; the caller records it (:func:`billing_core.invoices.apply_refund`, or the
    console's audited :func:`billing_core.console.record_refund`). PayPal answers a repeated
    ``request_id`` with its first refund, so a retried request refunds once."""
    inv = await invoices.get_invoice(core, invoice_id)
    if inv.refundable <= 0 or inv.capture_id is None:
        raise CheckoutError(f"invoice {inv.id} is {inv.status}: nothing to refund")
    if amount is not None and not 0 < amount <= inv.refundable:
        raise CheckoutError(f"amount: must be more than 0 and at most {format_amount(inv.refundable)} {inv.currency}")
    try:
        refund = await paypal.refund_capture(inv.capture_id, amount=amount if amount is not None else inv.refundable,
                                             currency=inv.currency, note=note, request_id=request_id)
    except PayPalError as exc:
        raise CheckoutError(f"PayPal refused the refund: {exc}") from None
    return refund.facts("refund")


def _not_payable(inv: Invoice) -> str:
    return {
        invoices.PAID: f"Invoice {inv.id} is already paid.",
        invoices.REFUNDED: f"Invoice {inv.id} was paid and refunded.",
        invoices.CANCELLED: f"Invoice {inv.id} was cancelled and cannot be paid.",
        invoices.PENDING: f"A payment for invoice {inv.id} is clearing; your balance rises when it completes.",
    }.get(inv.status, f"Invoice {inv.id} cannot be paid now.")


_PENDING_TEXT = ("Your eCheque payment is clearing at PayPal; your balance rises as soon as it completes "
                 "(usually a few business days).")
_UNCONFIRMED_TEXT = ("We could not confirm the payment with PayPal yet. If it went through, your balance "
                     "rises as soon as PayPal confirms it; you will not be charged twice.")
