"""Deposit invoices and PayPal bookkeeping (same ``metadata`` as the core tables).

Money columns are micro-units, times epoch milliseconds, as in :mod:`billing_core.store.tables`.
The ledger stays the only record of balance changes: an invoice row says *why* money came in or
went out, and its PayPal ids are the ledger idempotency keys (capture id for the payment, refund or
reversal id for each debit).
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table

from .tables import metadata

invoices = Table(
    "invoices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    # outstanding | pending (eCheque clearing) | paid | cancelled | refunded (fully or partly)
    Column("status", String(12), nullable=False),
    # Refunds + reversals so far; never more than ``amount``.
    Column("refunded", BigInteger, nullable=False, default=0),
    # The latest PayPal order made for this invoice (a new checkout makes a new order).
    Column("paypal_order_id", String(64), nullable=True, index=True),
    # The capture that paid (or is paying, while pending) this invoice: the payment's ledger key.
    Column("capture_id", String(64), nullable=True, unique=True),
    Column("capture_status", String(20), nullable=True),
    Column("cancel_reason", String(300), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("paid_at", BigInteger, nullable=True),
    Column("cancelled_at", BigInteger, nullable=True),
    Index("ix_invoices_status", "status"),
)

invoice_events = Table(
    "invoice_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("invoice_id", Integer, ForeignKey("invoices.id"), nullable=False, index=True),
    # created | order | paid | pending | denied | refund | reversal | cancelled | checkout_cancelled
    # | mismatch | anomaly
    Column("kind", String(30), nullable=False),
    Column("amount", BigInteger, nullable=True),
    Column("paypal_id", String(64), nullable=True),
    # Where it came from: cli | web | return (the customer's redirect) | webhook
    Column("source", String(10), nullable=False),
    Column("detail", String(300), nullable=False, default=""),
    Column("created_at", BigInteger, nullable=False),
)

paypal_webhooks = Table(
    "paypal_webhooks",
    metadata,
    # One row per accepted (signature-verified, fresh) transmission: a second one is a replay.
    Column("transmission_id", String(100), primary_key=True),
    Column("event_id", String(100), nullable=True),
    Column("event_type", String(60), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("detail", String(300), nullable=False, default=""),
    Column("received_at", BigInteger, nullable=False),
)
