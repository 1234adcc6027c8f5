"""PayPal JSON ⇄ the project's records. Only translation: money is parsed with the strict
``parse_amount`` (a value that is not a plain decimal with ≤ 2 places becomes ``None`` and the
invoice logic refuses it), never computed here."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from billing_core.domain.ids import plain_id
from billing_core.domain.money import AmountError, format_amount, parse_amount
from billing_core.invoices import CaptureFacts, RefundFacts


@dataclass(frozen=True)
class Capture:
    """One capture of an order (Orders v2 ``purchase_units[].payments.captures[]``)."""

    id: str
    status: str
    """COMPLETED | PENDING | DECLINED | REFUNDED | PARTIALLY_REFUNDED | FAILED …"""
    value: str
    """The amount as PayPal wrote it, e.g. ``"25.00"``."""
    currency: str
    custom_id: str | None = None
    order_id: str | None = None
    status_reason: str | None = None
    """``status_details.reason`` (``ECHECK`` for an eCheque clearing)."""

    def facts(self) -> CaptureFacts:
        return CaptureFacts(capture_id=self.id, status=self.status, amount=money_or_none(self.value),
                            currency=self.currency, invoice_id=invoice_id_or_none(self.custom_id),
                            order_id=self.order_id, amount_text=self.value)


@dataclass(frozen=True)
class Order:
    """A PayPal order as far as checkout cares."""

    id: str
    status: str
    """CREATED | APPROVED | COMPLETED | VOIDED | PAYER_ACTION_REQUIRED."""
    approval_url: str | None
    custom_id: str | None
    value: str | None
    currency: str | None
    captures: tuple[Capture, ...] = ()
    raw: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Refund:
    id: str
    status: str
    value: str
    currency: str
    capture_id: str | None

    def facts(self, kind: str = "refund") -> RefundFacts:
        return RefundFacts(paypal_id=self.id, capture_id=self.capture_id or "", kind=kind,
                           amount=money_or_none(self.value), currency=self.currency, status=self.status,
                           amount_text=self.value)


def money_text(micro: int) -> str:
    """Micro-units as PayPal's ``value`` (two decimals: deposit amounts are whole cents)."""
    return format_amount(micro, min_decimals=2)


def money_or_none(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_amount(value, decimals=2, allow_negative=False)
    except AmountError:
        return None


def invoice_id_or_none(custom_id: Any) -> int | None:
    return plain_id(custom_id)


def _amount(obj: dict) -> tuple[str, str]:
    amount = obj.get("amount") or {}
    return str(amount.get("value", "")), str(amount.get("currency_code", ""))


def capture_from_json(obj: dict, *, order_id: str | None = None) -> Capture:
    value, currency = _amount(obj)
    related = ((obj.get("supplementary_data") or {}).get("related_ids") or {})
    return Capture(
        id=str(obj.get("id", "")), status=str(obj.get("status", "")), value=value, currency=currency,
        custom_id=obj.get("custom_id"), order_id=order_id or related.get("order_id"),
        status_reason=(obj.get("status_details") or {}).get("reason"),
    )


def _link(obj: dict, rel: str) -> str | None:
    for link in obj.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == rel:
            return link.get("href")
    return None


def order_from_json(obj: dict) -> Order:
    units = obj.get("purchase_units") or [{}]
    unit = units[0] if isinstance(units[0], dict) else {}
    value, currency = _amount(unit) if unit.get("amount") else (None, None)
    captures: list[Capture] = []
    for c in ((unit.get("payments") or {}).get("captures") or []):
        cap = capture_from_json(c, order_id=obj.get("id"))
        if cap.custom_id is None and unit.get("custom_id"):
            cap = Capture(cap.id, cap.status, cap.value, cap.currency, unit.get("custom_id"), cap.order_id, cap.status_reason)
        captures.append(cap)
    return Order(
        id=str(obj.get("id", "")), status=str(obj.get("status", "")),
        approval_url=_link(obj, "approve") or _link(obj, "payer-action"), custom_id=unit.get("custom_id"),
        value=value, currency=currency, captures=tuple(captures), raw=obj,
    )


def capture_id_from_links(obj: dict) -> str | None:
    """A refund's capture: its ``up`` link ends in ``/v2/payments/captures/<id>``."""
    up = _link(obj, "up")
    if up and "/captures/" in up:
        return up.rstrip("/").rsplit("/captures/", 1)[1].split("/")[0] or None
    return None


def refund_from_json(obj: dict) -> Refund:
    value, currency = _amount(obj)
    return Refund(id=str(obj.get("id", "")), status=str(obj.get("status", "")), value=value, currency=currency,
                  capture_id=capture_id_from_links(obj))
