"""`callgate sidecar [--once]`, `callgate alerts [--json]`, `callgate alerts retry ID`."""
from __future__ import annotations

import asyncio
import signal
from datetime import datetime, timezone

import click

from billing_core.mail.render import TemplateProblem
from billing_core.mail.smtp import SmtpSender
from billing_core.sidecar import Sidecar
from billing_core.sidecar.outbox import STATUSES, list_alerts, retry_alert

from callgate import config as cfgmod
from callgate.heap import freeze_startup_heap

from .common import INTEGER_MAX, CliError, WholeNumber, command_config, emit_json, json_option, open_core, run_async


def _sidecar_parts(ctx: click.Context):
    """Settings, sender and renderer from the configuration; a bad value is one clear error line."""
    cfg = command_config(ctx)
    try:
        return cfgmod.sidecar_settings(cfg), SmtpSender(cfgmod.smtp_settings(cfg)), cfgmod.mail_renderer(cfg)
    except TemplateProblem as exc:  # the templates directory is missing
        raise CliError(str(exc)) from None


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def register(main: click.Group) -> None:
    @main.command("sidecar")
    @click.option("--once", is_flag=True, help="Run one full pass (debits, stale sessions, lifecycle, mail) and exit.")
    @json_option
    @click.pass_context
    @run_async
    async def sidecar_cmd(ctx: click.Context, once: bool, as_json: bool) -> None:
        """The periodic worker: chunk debits, stale sessions, account lifecycle, alert emails.

        Every CALLGATE_DEBIT_INTERVAL seconds (default 10). Several sidecars on one database are safe.
        """
        settings, sender, renderer = _sidecar_parts(ctx)
        cfgmod.warn_if_secrets_exposed(command_config(ctx).file)
        async with open_core(ctx) as core:
            sidecar = Sidecar(core, settings, core.clock, sender=sender, renderer=renderer)
            if once:
                report = await sidecar.run_once()
                if as_json:
                    emit_json(report)
                else:
                    click.echo(
                        f"stale: {report.stale.settled} settled, {report.stale.closed} closed; "
                        f"debits: {report.debits.processed} sessions; "
                        f"lifecycle: {report.lifecycle.presuspended} pre-suspended, {report.lifecycle.suspended} suspended; "
                        f"mail: {report.mail.sent} sent, {report.mail.retrying} retrying, {report.mail.failed} failed; "
                        + (f"refusals: {report.refusals_pruned} past retention deleted; " if report.refusals_pruned else "")
                        + f"{report.seconds:.3f}s"
                    )
                for err in report.errors:
                    click.echo(f"error: {err}", err=True)
                if report.errors:
                    raise SystemExit(1)
                return
            freeze_startup_heap()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, sidecar.stop)
                except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
                    pass
            click.echo(f"sidecar running every {settings.debit_interval:g}s (stale after {settings.stale_seconds:g}s)",
                       err=True)
            await sidecar.run_forever()

    @main.group("alerts", invoke_without_command=True)
    @click.option("--status", type=click.Choice(STATUSES), default=None, help="Only alerts in this state.")
    @click.option("--limit", type=click.IntRange(1, 100_000), default=200, show_default=True)
    @json_option
    @click.pass_context
    def alerts(ctx: click.Context, status: str | None, limit: int, as_json: bool) -> None:
        """List the alert outbox (newest first): queued / sent / failed, attempts and last error."""
        if ctx.invoked_subcommand is not None:
            return
        _list(ctx, status, limit, as_json)

    @alerts.command("retry")
    @click.argument("alert_id", metavar="ID", type=WholeNumber(min=1, max=INTEGER_MAX))
    @json_option
    @click.pass_context
    @run_async
    async def alerts_retry(ctx: click.Context, alert_id: int, as_json: bool) -> None:
        """Re-queue a failed alert (attempts start again; the next sidecar pass sends it)."""
        async with open_core(ctx) as core:
            row = await retry_alert(core.store, alert_id, core.clock.now_ms())
        if as_json:
            emit_json(row)
        else:
            click.echo(f"alert {row.id} ({row.kind} to {row.to_addr}) queued again")


@run_async
async def _list(ctx: click.Context, status: str | None, limit: int, as_json: bool) -> None:
    async with open_core(ctx) as core:
        rows = await list_alerts(core.store, status=status, limit=limit)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no alerts")
        return
    click.echo(f"{'ID':>6}  {'STATUS':<7} {'KIND':<15} {'ACCOUNT':<12} {'TO':<28} {'TRIES':>5}  {'CREATED (UTC)':<19}  "
               f"{'SENT / NEXT TRY':<19}  LAST ERROR")
    for r in rows:
        when = _when(r.sent_at) if r.status == "sent" else (_when(r.next_attempt_at) if r.status == "queued" else "-")
        click.echo(f"{r.id:>6}  {r.status:<7} {r.kind:<15} {(r.account_ref or '-'):<12} {r.to_addr:<28} "
                   f"{r.attempts:>5}  {_when(r.created_at):<19}  {when:<19}  {r.last_error or ''}")
