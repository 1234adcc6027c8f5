"""Deposit invoice commands: ``invoice create | list | show | cancel``."""
from __future__ import annotations

import dataclasses
import datetime as dt

import click

from billing_core import invoices as inv_ops
from billing_core.domain.identifiers import check_text
from billing_core.domain.money import format_amount, parse_amount
from callgate import config as cfgmod

from .common import CliError, WholeNumber, command_config, emit_json, json_option, open_core, run_async


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _invoice_json(inv: inv_ops.Invoice, events: list | None = None) -> dict:
    out = dataclasses.asdict(inv)
    out["amount"] = format_amount(inv.amount)
    out["refunded"] = format_amount(inv.refunded)
    if events is not None:
        out["events"] = [{**dataclasses.asdict(e), "amount": None if e.amount is None else format_amount(e.amount)}
                         for e in events]
    return out


def _line(inv: inv_ops.Invoice) -> str:
    extra = ""
    if inv.status == inv_ops.REFUNDED:
        extra = f"  (refunded {format_amount(inv.refunded)})"
    elif inv.status == inv_ops.CANCELLED:
        extra = f"  ({inv.cancel_reason})"
    return (f"{inv.id:>6}  {_when(inv.created_at)}  {inv.account_ref:<16} {format_amount(inv.amount):>10} "
            f"{inv.currency}  {inv.status:<11}{extra}")


def register(main: click.Group) -> None:
    @main.group()
    def invoice() -> None:
        """Deposit invoices (top-ups paid through PayPal)."""

    # ignore_unknown_options: a negative AMOUNT (``-25``) reaches the amount check, which names the limits.
    @invoice.command("create", context_settings={"ignore_unknown_options": True})
    @click.argument("ref")
    @click.argument("amount")
    @json_option
    @click.pass_context
    @run_async
    async def invoice_create(ctx, ref, amount, as_json):
        """Create an outstanding deposit invoice of AMOUNT (25.00–1000.00, at most 2 decimals) for REF."""
        currency = "CAD"
        inv_ops.parse_deposit_amount(amount, currency=currency)  # refuse before touching the database
        async with open_core(ctx) as core:
            inv = await inv_ops.create_invoice(core, ref, amount, source="cli")
        if as_json:
            emit_json(_invoice_json(inv))
        else:
            click.echo(f"invoice {inv.id}: {format_amount(inv.amount)} {inv.currency} for {inv.account_ref}, outstanding")

    @invoice.command("list")
    @click.argument("ref", required=False)
    @click.option("--status", type=click.Choice(inv_ops.STATUSES), default=None, help="Only invoices in this state.")
    @click.option("--limit", type=WholeNumber(min=1), default=None, help="At most N invoices (newest first).")
    @json_option
    @click.pass_context
    @run_async
    async def invoice_list(ctx, ref, status, limit, as_json):
        """Deposit invoices, newest first (of account REF when given)."""
        async with open_core(ctx) as core:
            rows = await inv_ops.list_invoices(core, ref, status=status, limit=limit)
        if as_json:
            emit_json([_invoice_json(i) for i in rows])
            return
        if not rows:
            click.echo("no invoices")
        for inv in rows:
            click.echo(_line(inv))

    @invoice.command("show")
    @click.argument("invoice_id")
    @json_option
    @click.pass_context
    @run_async
    async def invoice_show(ctx, invoice_id, as_json):
        """One invoice and its history."""
        async with open_core(ctx) as core:
            inv = await inv_ops.get_invoice(core, invoice_id)
            events = await inv_ops.invoice_events_of(core, inv.id)
        if as_json:
            emit_json(_invoice_json(inv, events))
            return
        click.echo(_line(inv))
        if inv.paypal_order_id or inv.capture_id:
            click.echo(f"        PayPal order {inv.paypal_order_id or '-'}, capture {inv.capture_id or '-'} "
                       f"({inv.capture_status or '-'})")
        for e in events:
            amount = "" if e.amount is None else f" {format_amount(e.amount)}"
            click.echo(f"        {_when(e.created_at)}  {e.kind:<18} {e.source:<7}{amount}  {e.detail}"
                       f"{f'  [{e.paypal_id}]' if e.paypal_id else ''}")

    @invoice.command("cancel")
    @click.argument("invoice_id")
    @click.option("--reason", required=True, help="Why (kept with the invoice).")
    @json_option
    @click.pass_context
    @run_async
    async def invoice_cancel(ctx, invoice_id, reason, as_json):
        """Cancel an outstanding invoice. A paid or already cancelled one is left alone (exit 1)."""
        if not reason.strip():
            raise CliError("--reason: cancelling an invoice needs a reason")
        async with open_core(ctx) as core:
            change = await inv_ops.cancel_invoice(core, invoice_id, reason, source="cli")
        if not change.changed:
            raise CliError(change.message)
        if as_json:
            emit_json(_invoice_json(change.invoice))
        else:
            click.echo(change.message)

    @invoice.command("refund")
    @click.argument("invoice_id")
    @click.argument("amount", required=False)
    @click.option("--note", default=None, help="Note to the payer (shown by PayPal).")
    @json_option
    @click.pass_context
    @run_async
    async def invoice_refund(ctx, invoice_id, amount, note, as_json):
        """Refund a paid invoice through PayPal: all that is left, or AMOUNT. The balance is debited
        by the refund (keyed by PayPal's refund id: its webhook changes nothing more)."""
        from callgate.paypal.checkout import CheckoutError, refund_invoice
        from callgate.paypal.client import PayPalClient

        micro = None if amount is None else parse_amount(amount, field="amount", decimals=2, allow_negative=False)
        if note is not None:
            note = check_text(note, "--note", max_length=255)  # PayPal's note_to_payer limit
        config = cfgmod.paypal_config(command_config(ctx))
        if config.problems():
            raise CliError("PayPal is not configured: " + "; ".join(config.problems()))
        async with open_core(ctx) as core:
            async with PayPalClient(config) as paypal:
                try:
                    change = await refund_invoice(core, paypal, invoice_id, micro, note=note)
                except CheckoutError as exc:
                    raise CliError(str(exc)) from None
        if not change.changed:
            raise CliError(change.message)
        if as_json:
            emit_json(_invoice_json(change.invoice))
        else:
            click.echo(change.message)
