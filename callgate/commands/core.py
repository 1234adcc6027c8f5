"""Core operator commands: db, plan, package, account, endpoint, did, credit, balance, ledger,
calls, quote, verify."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
import io
import os

import click
from sqlalchemy.exc import SQLAlchemyError

from billing_core.admin import rule_from_text
from billing_core.domain.errors import BelowCreditLimit
from billing_core.domain.money import CUSTOMER_DECIMALS, RATE_DECIMALS, format_amount, parse_amount
from billing_core.domain.ratedeck import DeckError, parse_deck_rows
from billing_core.store import migrate
from billing_core.store.engine import StorageError

from .common import (
    INTEGER_MAX, CliError, Instant, WholeNumber, database_error_text, emit_json, isatty, json_option, jsonable,
    open_core, run_async,
)


def _amount(text: str, field: str, decimals: int = CUSTOMER_DECIMALS, allow_negative: bool = False) -> int:
    return parse_amount(text, field=field, decimals=decimals, allow_negative=allow_negative)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def register(main: click.Group) -> None:
    # ------------------------------------------------------------------------------------- db
    @main.group()
    def db() -> None:
        """Database schema."""

    @db.command("upgrade")
    @click.pass_context
    @run_async
    async def db_upgrade(ctx: click.Context) -> None:
        """Create or migrate the schema to the latest revision."""
        url = ctx.find_root().obj["db_url"]
        try:
            before, after = await migrate.upgrade(url)
        except (OSError, ConnectionError, SQLAlchemyError, StorageError) as exc:  # e.g. no such database
            raise CliError(f"database unavailable ({url}): {database_error_text(exc)}") from None
        click.echo(f"database at revision {after} (was {before or 'empty'})")

    # ---------------------------------------------------------------------------------- plans
    @main.group()
    def plan() -> None:
        """Rate plans (decks)."""

    @plan.command("import")
    @click.argument("name")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--timezone", "zone", default=None, metavar="ZONE",
                  help="IANA zone of the deck's days and times (default: the plan's, else America/Toronto).")
    @click.option("--effective", type=Instant(), default=None, metavar="TIME",
                  help="When this version takes effect (ISO 8601 with offset; default now).")
    @click.option("--correction", is_flag=True, help="Allow a past --effective TIME: replaces the version in effect "
                                                     "from then on (re-rate past calls with callgate rerate).")
    @json_option
    @click.pass_context
    @run_async
    async def plan_import(ctx, name, file, zone, effective, correction, as_json):
        """Store FILE.csv as a new version of plan NAME, atomically (one bad row: nothing changes).

        Columns: prefix,description,rate_per_min,connect_fee,initial_increment,increment and
        optionally days,start,end (when a row applies, local time in the plan's zone)."""
        try:
            with open(file, newline="", encoding="utf-8-sig") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"{file}: cannot read: {exc}") from None
        # Lines as the csv module splits them (str.splitlines would also break at \x0b, \x1c, \x85,
        # U+2028…, hiding those characters from the deck's control-character check).
        lines = io.StringIO(text, newline="")
        line_count = text.count("\n")
        try:
            if isatty() and line_count > 10_000:
                with click.progressbar(length=line_count, label=f"parsing {file}", file=click.get_text_stream("stderr")) as bar:
                    deck = parse_deck_rows(lines, progress=bar.update)
            else:
                deck = parse_deck_rows(lines)
        except DeckError as exc:
            raise CliError(f"{file}: {exc}") from None
        async with open_core(ctx) as core:
            result = await core.admin.import_plan(name, deck, timezone=zone, effective_at=effective,
                                                  correction=correction)
        if as_json:
            emit_json(result)
        else:
            click.echo(f"plan {result['plan']}: {result['rates']} rates imported (version {result['version']}, "
                       f"{result['timezone']}, effective {result['effective_at']}"
                       f"{', correction' if result['correction'] else ''})")

    @plan.command("show")
    @click.argument("name")
    @click.option("--limit", type=WholeNumber(min=1), default=None, help="Show at most N rates.")
    @click.option("--at", "at", type=Instant(), default=None, metavar="TIME",
                  help="Show the version in effect at TIME (ISO 8601 with offset; default now).")
    @json_option
    @click.pass_context
    @run_async
    async def plan_show(ctx, name, limit, at, as_json):
        """Show plan NAME and its rates (the version in effect now, or at TIME)."""
        async with open_core(ctx) as core:
            result = await core.admin.show_plan(name, limit, at=at)
        if as_json:
            emit_json(result)
            return
        if result["version"] is None:
            click.echo(f"plan {result['plan']}: no version in effect {'at ' + result['at'] if at else 'yet'}")
            return
        click.echo(f"plan {result['plan']} (version {result['version']}, {result['rate_count']} rates, "
                   f"{result['timezone']}, effective {result['effective_at'] or 'from the beginning'})")
        for r in result["rates"]:
            when = f"  {r['days'] or 'every day'} {r['start'] or '00:00'}-{r['end'] or '24:00'}" if r["days"] or r["start"] else ""
            click.echo(f"  {r['prefix']:<16} {r['rate_per_min']:>10}/min  connect {r['connect_fee']:>8}  "
                       f"{r['initial_increment']}/{r['increment']}  {r['description']}{when}")

    @plan.command("versions")
    @click.argument("name")
    @json_option
    @click.pass_context
    @run_async
    async def plan_versions(ctx, name, as_json):
        """List the versions of plan NAME: when each takes effect, which is in effect now."""
        async with open_core(ctx) as core:
            result = await core.admin.plan_versions(name)
        if as_json:
            emit_json(result)
            return
        for v in result["versions"]:
            click.echo(f"  {'*' if v['in_effect'] else ' '} version {v['version']:<4} effective "
                       f"{v['effective_at'] or 'from the beginning':<26} {v['timezone']:<20} {v['rates']} rates"
                       f"{'  correction' if v['correction'] else ''}")

    # ------------------------------------------------------------------------------- packages
    @main.group()
    def package() -> None:
        """Packages: plan, low-balance threshold, concurrent calls, inbound rate."""

    @package.command("add")
    @click.argument("name")
    @click.option("--plan", "plan_name", required=True)
    @click.option("--low-balance", required=True, help="Low-balance alert threshold, e.g. 5.00")
    @click.option("--max-calls", required=True, type=WholeNumber(min=1, max=INTEGER_MAX))
    @click.option("--inbound-rate", default="0", show_default=True, help="Per-minute inbound rate (0 = free)")
    @_package_rule_options
    @json_option
    @click.pass_context
    @run_async
    async def package_add(ctx, name, plan_name, low_balance, max_calls, inbound_rate, as_json, **rule_texts):
        """Create (or update) package NAME.

        A new package allows calls to the home region and US only and blocks PREMIUM_RATE,
        SHARED_COST and UAN numbers unless told otherwise (--allow-regions '*' --block-types '')."""
        low = _amount(low_balance, "--low-balance")
        inbound = _amount(inbound_rate, "--inbound-rate", RATE_DECIMALS)
        rules = _package_rules(rule_texts)
        async with open_core(ctx) as core:
            result = await core.admin.add_package(name, plan=plan_name, low_balance=low, max_calls=max_calls,
                                                  inbound_rate=inbound, **rules)
        emit_json(result) if as_json else click.echo(f"package {name} {'updated' if result['updated'] else 'created'}")

    @package.command("set")
    @click.argument("name")
    @click.option("--plan", "plan_name", default=None)
    @click.option("--low-balance", default=None, help="Low-balance alert threshold, e.g. 5.00")
    @click.option("--max-calls", default=None, type=WholeNumber(min=1, max=INTEGER_MAX))
    @click.option("--inbound-rate", default=None, help="Per-minute inbound rate (0 = free)")
    @_package_rule_options
    @json_option
    @click.pass_context
    @run_async
    async def package_set(ctx, name, plan_name, low_balance, max_calls, inbound_rate, as_json, **rule_texts):
        """Change the given settings of package NAME (the others stay)."""
        low = None if low_balance is None else _amount(low_balance, "--low-balance")
        inbound = None if inbound_rate is None else _amount(inbound_rate, "--inbound-rate", RATE_DECIMALS)
        rules = _package_rules(rule_texts)
        async with open_core(ctx) as core:
            result = await core.admin.set_package(name, plan=plan_name, low_balance=low, max_calls=max_calls,
                                                  inbound_rate=inbound, **rules)
        emit_json(result) if as_json else _echo_package(result)

    @package.command("show")
    @click.argument("name")
    @json_option
    @click.pass_context
    @run_async
    async def package_show(ctx, name, as_json):
        """Show package NAME and its toll-fraud rules."""
        async with open_core(ctx) as core:
            result = await core.admin.show_package(name)
        emit_json(result) if as_json else _echo_package(result)

    # ------------------------------------------------------------------------------- accounts
    @main.group()
    def account() -> None:
        """Customer accounts."""

    @account.command("add")
    @click.argument("ref")
    @click.option("--name", required=True)
    @click.option("--email", required=True)
    @click.option("--package", "package_name", required=True)
    @click.option("--credit-limit", default="0", show_default=True)
    @json_option
    @click.pass_context
    @run_async
    async def account_add(ctx, ref, name, email, package_name, credit_limit, as_json):
        """Create account REF."""
        limit = _amount(credit_limit, "--credit-limit")
        async with open_core(ctx) as core:
            view = await core.admin.add_account(ref, name=name, email=email, package=package_name, credit_limit=limit)
        emit_json(view) if as_json else click.echo(f"account {ref} created")

    @account.command("show")
    @click.argument("ref")
    @json_option
    @click.pass_context
    @run_async
    async def account_show(ctx, ref, as_json):
        """Show account REF (with its toll-fraud limits and destinations)."""
        async with open_core(ctx) as core:
            view = await core.account(ref)
            rules = await core.admin.account_rules(ref)
        if as_json:
            emit_json({**jsonable(view), **rules})
            return
        for key in ("ref", "name", "email", "package", "status", "currency"):
            click.echo(f"{key:>22}: {getattr(view, key)}")
        for key in ("balance", "credit_limit", "held", "available", "low_balance_threshold"):
            click.echo(f"{key:>22}: {format_amount(getattr(view, key))}")
        click.echo(f"{'live_calls':>22}: {view.live_calls}")
        for key, value in rules["limits"].items():
            override = " (account override)" if rules["overrides"].get(key) is not None else ""
            click.echo(f"{key:>22}: {_show(value)}{override}")
        for key, value in rules["spend"].items():
            click.echo(f"{'spend_' + key:>22}: {_show(value)}")
        if rules["suspension"]["suspended"]:
            click.echo(f"{'suspended_reason':>22}: {_show(rules['suspension']['reason'])}")
        click.echo(f"{'allow_destinations':>22}: {','.join(rules['allow_destinations']) or '-'}")
        click.echo(f"{'deny_destinations':>22}: {','.join(rules['deny_destinations']) or '-'}")

    @account.command("set")
    @click.argument("ref")
    @_account_override_options
    @json_option
    @click.pass_context
    @run_async
    async def account_set(ctx, ref, as_json, **texts):
        """Override package limits for account REF (the value `package` clears an override)."""
        overrides = _account_overrides(texts)
        async with open_core(ctx) as core:
            rules = await core.admin.set_account_rules(ref, **overrides)
        emit_json(rules) if as_json else click.echo(f"account {ref} updated")

    def _destination_command(action: str, doc: str):
        @account.command(f"{action}-destination")
        @click.argument("ref")
        @click.argument("prefix")
        @json_option
        @click.pass_context
        @run_async
        async def cmd(ctx, ref, prefix, as_json):
            async with open_core(ctx) as core:
                rules = await core.admin.set_destination(ref, prefix, action)
            if as_json:
                emit_json(rules)
            else:
                click.echo(f"account {ref}: allowed {','.join(rules['allow_destinations']) or '-'}; "
                           f"denied {','.join(rules['deny_destinations']) or '-'}")

        cmd.__doc__ = doc
        cmd.help = doc
        return cmd

    @account.command("reactivate")
    @click.argument("ref")
    @click.option("--reason", required=True, help="Why (kept in the audit record)")
    @json_option
    @click.pass_context
    @run_async
    async def account_reactivate(ctx, ref, reason, as_json):
        """Lift REF's suspension (fraud_suspected included); kept as an audit record."""
        async with open_core(ctx) as core:
            result = await core.admin.reactivate(ref, reason)
        emit_json(result) if as_json else click.echo(f"account {ref} reactivated ({result['status']})")

    @main.group()
    def fraud() -> None:
        """Toll-fraud protection: the audit trail of suspensions."""

    @fraud.command("events")
    @click.option("--account", "ref", default=None)
    @click.option("--limit", type=WholeNumber(min=1), default=100, show_default=True)
    @json_option
    @click.pass_context
    @run_async
    async def fraud_events(ctx, ref, limit, as_json):
        """Suspensions (fraud_suspected) and reactivations, newest first."""
        async with open_core(ctx) as core:
            rows = await core.admin.fraud_events(ref, limit)
        if as_json:
            emit_json(rows)
            return
        for r in rows:
            click.echo(f"{_when(r['created_at'])}  {r['account']:<16} {r['kind']:<12} {r['reason']:<16} "
                       f"{r['actor']:<9} {r['detail']}")

    _destination_command("allow", "Let REF call numbers starting with PREFIX (E.164 digits), also above the "
                                  "package's --max-rate-per-min.")
    _destination_command("deny", "Refuse REF's calls to numbers starting with PREFIX (E.164 digits).")
    _destination_command("clear", "Take PREFIX out of REF's allowed and denied destinations.")

    @account.command("list")
    @json_option
    @click.pass_context
    @run_async
    async def account_list(ctx, as_json):
        """List accounts."""
        async with open_core(ctx) as core:
            views = await core.admin.list_accounts()
        if as_json:
            emit_json(views)
            return
        for v in views:
            click.echo(f"{v.ref:<20} {v.status:<14} {format_amount(v.balance):>12} {v.currency}  {v.package:<12} {v.email}")

    # ------------------------------------------------------------------------------ endpoints
    @main.group()
    def endpoint() -> None:
        """SIP endpoints of accounts."""

    @endpoint.command("add")
    @click.argument("ref")
    @click.argument("endpoint_name")
    @json_option
    @click.pass_context
    @run_async
    async def endpoint_add(ctx, ref, endpoint_name, as_json):
        """Map SIP endpoint ENDPOINT_NAME (e.g. alice) to account REF."""
        async with open_core(ctx) as core:
            result = await core.admin.add_endpoint(ref, endpoint_name)
        emit_json(result) if as_json else click.echo(f"endpoint {endpoint_name} → account {ref}")

    # ----------------------------------------------------------------------------------- DIDs
    @main.group()
    def did() -> None:
        """DIDs (inbound numbers) and the pool."""

    @did.command("add")
    @click.argument("number")
    @json_option
    @click.pass_context
    @run_async
    async def did_add(ctx, number, as_json):
        """Add NUMBER to the DID pool."""
        async with open_core(ctx) as core:
            result = await core.admin.add_did(number)
        emit_json(result) if as_json else click.echo(f"DID {result['number']} added to the pool")

    @did.command("assign")
    @click.argument("number")
    @click.argument("ref")
    @click.option("--endpoint", "endpoint_name", default=None, help="Endpoint that rings (default: the account's first)")
    @json_option
    @click.pass_context
    @run_async
    async def did_assign(ctx, number, ref, endpoint_name, as_json):
        """Assign DID NUMBER to account REF."""
        async with open_core(ctx) as core:
            result = await core.admin.assign_did(number, ref, endpoint_name)
        emit_json(result) if as_json else click.echo(f"DID {result['number']} → {ref} (rings {result['endpoint'] or '-'})")

    @did.command("release")
    @click.argument("number")
    @click.option("--reason", default="released by operator", show_default=True)
    @json_option
    @click.pass_context
    @run_async
    async def did_release(ctx, number, reason, as_json):
        """Return DID NUMBER to the pool (its history is kept)."""
        async with open_core(ctx) as core:
            result = await core.admin.release_did(number, reason)
        emit_json(result) if as_json else click.echo(f"DID {result['number']} released to the pool")

    @did.command("list")
    @json_option
    @click.pass_context
    @run_async
    async def did_list(ctx, as_json):
        """List DIDs and who holds them."""
        async with open_core(ctx) as core:
            rows = await core.admin.list_dids()
        if as_json:
            emit_json(rows)
            return
        for r in rows:
            click.echo(f"{r['number']:<16} {r['account'] or '(pool)':<20} {r['endpoint'] or ''}")

    # ---------------------------------------------------------------------------------- money
    # ignore_unknown_options lets a negative AMOUNT (``-2.50``) through as an argument.
    @main.command(context_settings={"ignore_unknown_options": True})
    @click.argument("ref")
    @click.argument("amount")
    @click.option("--reason", required=True, help="Why (shown in the ledger)")
    @click.option("--payment", is_flag=True, help="Record a customer payment (sends a receipt)")
    @click.option("--key", "idempotency_key", default=None, help="Idempotency key (a replay changes nothing)")
    @click.option("--allow-below-limit", is_flag=True,
                  help="Let a debit take the balance below the credit limit (recorded on the ledger entry)")
    @json_option
    @click.pass_context
    @run_async
    async def credit(ctx, ref, amount, reason, payment, idempotency_key, allow_below_limit, as_json):
        """Credit REF by AMOUNT (negative: a manual debit). Both are ledger entries.

        A debit that would take the balance below the credit limit is refused unless
        --allow-below-limit is given; the entry then records the permission and `verify` accepts it."""
        micro = _amount(amount, "AMOUNT", allow_negative=True)
        if micro == 0:
            raise CliError("AMOUNT: must not be zero")
        kind = "payment" if payment else ("credit" if micro > 0 else "debit")
        if payment and micro < 0:
            raise CliError("AMOUNT: a payment must be positive")
        async with open_core(ctx) as core:
            try:
                entry = await core.credit(ref, micro, reason, kind=kind, idempotency_key=idempotency_key,
                                          allow_below_limit=allow_below_limit)
            except BelowCreditLimit as exc:
                raise CliError(f"{exc} (add --allow-below-limit to record it anyway)") from None
        if as_json:
            emit_json(entry)
        else:
            note = " (replayed key: nothing changed)" if entry.replayed else ""
            click.echo(f"{ref}: {entry.kind} {format_amount(entry.amount)}, balance {format_amount(entry.balance_after)}{note}")

    @main.command()
    @click.argument("ref")
    @json_option
    @click.pass_context
    @run_async
    async def balance(ctx, ref, as_json):
        """Balance of REF (and what is held by live calls)."""
        async with open_core(ctx) as core:
            v = await core.account(ref)
        if as_json:
            emit_json({"account": v.ref, "currency": v.currency, "balance": v.balance, "held": v.held,
                       "credit_limit": v.credit_limit, "available": v.available, "status": v.status})
        else:
            click.echo(f"{v.ref}: {format_amount(v.balance)} {v.currency} (held {format_amount(v.held)}, "
                       f"available {format_amount(v.available)}, {v.status})")

    @main.command("ledger")
    @click.argument("ref")
    @click.option("--limit", type=WholeNumber(min=1), default=100, show_default=True)
    @json_option
    @click.pass_context
    @run_async
    async def ledger_cmd(ctx, ref, limit, as_json):
        """Ledger entries of REF, newest first."""
        async with open_core(ctx) as core:
            rows = await core.admin.ledger(ref, limit)
        if as_json:
            emit_json(rows)
            return
        for r in rows:
            click.echo(f"{_when(r['created_at'])}  {r['kind']:<9} {format_amount(r['amount']):>12} → "
                       f"{format_amount(r['balance_after']):>12}  {r['reason']}  [{r['idempotency_key']}]")

    @main.command()
    @click.option("--active", is_flag=True, help="Only live calls")
    @click.option("--refused", is_flag=True, help="The refused decisions instead (state refused, with reason and rule)")
    @click.option("--reason", default=None, help="With --refused: only this deny reason (e.g. depleted)")
    @click.option("--account", "ref", default=None)
    @click.option("--limit", type=WholeNumber(min=1), default=100, show_default=True)
    @json_option
    @click.pass_context
    @run_async
    async def calls(ctx, active, refused, reason, ref, limit, as_json):
        """Recent call sessions (--refused: recent refused calls)."""
        if reason is not None and not refused:
            raise CliError("--reason: only with --refused")
        if active and refused:
            raise CliError("--active and --refused: a refused call is never live")
        async with open_core(ctx) as core:
            if refused:
                rows = await core.admin.refusals(ref=ref, reason=reason, limit=limit)
            else:
                rows = await core.admin.calls(active=active, ref=ref, limit=limit)
        if as_json:
            emit_json(rows)
            return
        if refused:
            for r in rows:
                rule = f" ({r['rule']})" if r["rule"] else ""
                click.echo(f"{_when(r['created_at'])}  {r['account_ref'] or '-':<12} {r['direction']:<8} "
                           f"{r['number_e164'] or r['number']:<16} refused: {r['reason']}{rule}")
            return
        for r in rows:
            talk = "-" if r["talk_ms"] is None else f"{r['talk_ms'] / 1000:.1f}s"
            amount = "-" if r["cost"] is None else format_amount(r["cost"])
            # a talk time that was not measured (clamped, or billed up to a restart) is flagged:
            # the operator may owe a refund (docs/OPERATIONS.md)
            basis = "" if r.get("billing_basis") in (None, "measured") else f"  [{r['billing_basis']}]"
            if r.get("rerated_cost") is not None and r["rerated_cost"] != r["cost"]:
                amount += f" → {format_amount(r['rerated_cost'])} (re-rated, v{r['rerated_version']})"
            click.echo(f"{_when(r['created_at'])}  {r['id'][:12]}  {r['account_ref'] or '-':<12} {r['direction']:<8} "
                       f"{r['number_e164'] or r['number']:<16} {r['state']:<10} talk {talk:>8}  cost {amount}{basis}")

    @main.command()
    @click.option("--plan", "plan_name", required=True, help="The plan whose calls to re-rate.")
    @click.option("--since", type=Instant(), required=True, metavar="TIME",
                  help="Calls that started at or after TIME (ISO 8601 with offset).")
    @click.option("--until", type=Instant(), default=None, metavar="TIME", help="… and before TIME (default: no end).")
    @click.option("--dry-run", is_flag=True, help="Print the per-account totals; write nothing.")
    @json_option
    @click.pass_context
    @run_async
    async def rerate(ctx, plan_name, since, until, dry_run, as_json):
        """Price the settled calls of a plan again by the deck version now in effect for their start
        (after plan import --correction); one ledger entry (kind rerate) per changed call."""
        async with open_core(ctx) as core:
            result = await core.admin.rerate(plan_name, since=since, until=until, dry_run=dry_run)
        if as_json:
            emit_json(result)
            return
        verb = "would change" if dry_run else "changed"
        click.echo(f"plan {result['plan']}: {result['calls_examined']} calls examined, {result['calls_changed']} "
                   f"{verb}, {result['calls_unchanged']} unchanged, {result['calls_without_rate']} without a rate "
                   f"now (kept); total {result['amount']} (+ credited to accounts){' — dry run: nothing written' if dry_run else ''}")
        for a in result["accounts"]:
            unpaid = f", unpaid {a['unpaid']} (credit limit)" if Decimal(a["unpaid"]) else ""
            click.echo(f"  {a['account']:<16} {a['calls']:>6} calls  {a['amount']:>12}{unpaid}")

    @main.command()
    @click.argument("ref")
    @click.argument("number")
    @click.option("--seconds", type=WholeNumber(), default=None, help="Also price a call of N seconds")
    @click.option("--at", "at", type=Instant(), default=None, metavar="TIME",
                  help="Price a call starting at TIME (ISO 8601 with offset; default now).")
    @json_option
    @click.pass_context
    @run_async
    async def quote(ctx, ref, number, seconds, at, as_json):
        """What a call from REF to NUMBER would be allowed and cost, without charging."""
        async with open_core(ctx) as core:
            q = await core.admin.quote(ref, number, seconds, at=at)
        if as_json:
            emit_json(q)
            return
        verdict = "allowed" if q["allowed"] else f"refused ({q['reason']})"
        click.echo(f"{ref} → {q['number_e164'] or number}: {verdict}; prefix {q['prefix']} rate {q['rate_per_min']}/min; "
                   f"max talk {q['max_talk_seconds']} s")
        if seconds is not None and "cost" in q:
            click.echo(f"{seconds} s → billed {q['billed_seconds']} s, cost {q['cost']}")

    @main.command()
    @json_option
    @click.pass_context
    @run_async
    async def verify(ctx, as_json):
        """Check the money invariants over the whole database (exit 1 on any violation)."""
        async with open_core(ctx) as core:
            problems = await core.admin.verify()
        if as_json:
            emit_json({"ok": not problems, "violations": problems})
        else:
            for p in problems:
                click.echo(p, err=True)
            if not problems:
                click.echo("ok: balances equal their ledgers, holds match live calls, no account below its credit limit")
        if problems:
            raise SystemExit(1)


# ------------------------------------------------------------------------ toll-fraud options
def _package_rule_options(fn):
    """The toll-fraud rule flags of ``package add`` and ``package set`` (issue 18; exact names)."""
    for flag, help_text in reversed((
        ("--allow-regions", "Regions numbers may be in: ISO codes (CA,US) or '*' (new package: home region,US)"),
        ("--block-types", "phonenumbers types refused, e.g. PREMIUM_RATE,SHARED_COST,UAN ('' = none)"),
        ("--deny-prefixes", "E.164 prefixes refused, e.g. 881,882 (longest prefix wins)"),
        ("--allow-prefixes", "E.164 prefixes allowed past the region rule (longest prefix wins)"),
        ("--max-rate-per-min", "High-cost guard: refuse rates above this per minute (account allow-destination opts in)"),
        ("--max-call-minutes", "Longest call, on top of the global max_call_seconds (every mode)"),
        ("--max-attempts-per-minute", "Outbound call attempts an account may make per minute (counted in the database)"),
        ("--daily-cap", "Most an account's calls may be charged per day (package time zone)"),
        ("--monthly-cap", "Most an account's calls may be charged per month (package time zone)"),
        ("--timezone", "IANA time zone of the caps' days and months (new package: America/Toronto)"),
        ("--anomaly-spend-per-hour", "Suspend an account (fraud_suspected) whose calls spend more per hour"),
        ("--anomaly-blocked-attempts", "Suspend after more refused attempts to blocked destinations in the window "
                                       "(new package: 10)"),
        ("--anomaly-window-minutes", "The anomaly checks' sliding window (default 60)"),
    )):
        fn = click.option(flag, default=None, help=help_text)(fn)
    return fn


def _account_override_options(fn):
    for flag, help_text in reversed((
        ("--allow-regions", "Override the package's allowed regions ('package' = the package's)"),
        ("--block-types", "Override the package's blocked number types ('package' = the package's)"),
        ("--max-rate-per-min", "Override the package's high-cost guard ('package' = the package's)"),
        ("--max-call-minutes", "Override the package's longest call ('package' = the package's)"),
        ("--max-attempts-per-minute", "Override the package's attempts per minute ('package' = the package's)"),
        ("--daily-cap", "Override the package's daily spend cap ('package' = the package's)"),
        ("--monthly-cap", "Override the package's monthly spend cap ('package' = the package's)"),
        ("--anomaly-spend-per-hour", "Override the package's anomaly spend ('package' = the package's)"),
        ("--anomaly-blocked-attempts", "Override the package's anomaly attempts ('package' = the package's)"),
    )):
        fn = click.option(flag, default=None, help=help_text)(fn)
    return fn


def _rule_value(name: str, text: str | None, *, inherit: bool = False):
    return rule_from_text(name, text, inherit=inherit)


def _package_rules(texts: dict) -> dict:
    return {k: _rule_value(k, v) for k, v in texts.items() if v is not None}


def _account_overrides(texts: dict) -> dict:
    return {k: _rule_value(k, v, inherit=True) for k, v in texts.items() if v is not None}


def _show(value) -> str:
    return "-" if value is None or value == "" else str(value)


def _echo_package(p: dict) -> None:
    for key, value in p.items():
        click.echo(f"{key:>24}: {_show(value)}")
