"""Operator operations behind the ``callgate`` CLI: plans, packages, accounts, endpoints, DIDs,
ledger and call listings, quotes, and ``verify``. Each is one transaction; bad input raises
:class:`InvalidInput` / :class:`NotFound` before anything is written."""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone
from typing import Any, Sequence

from sqlalchemy import delete, func, insert, select, update

from .domain import destination_rules as dest
from .domain import fraud_limits
from .domain import lifecycle
from .domain.errors import InvalidInput, NotFound
from .domain.identifiers import check_email, check_endpoint, check_ref, check_text
from .domain.money import CUSTOMER_DECIMALS, INTEGER_MAX, RATE_DECIMALS, check_storage_range, format_amount, parse_amount
from .domain.records import INHERIT
from .domain.numbers import normalise
from .domain.package_rules import ACCOUNT_OVERRIDES, AMOUNT_RULES, PACKAGE_RULES, account_rules_out, package_rules_out
from .domain.decks import BEGINNING_OF_TIME, PlanVersions, days_mask, period_of, superseded, version_from_row
from .domain.ratedeck import DeckError, DeckRow, check_deck_periods
from .domain.rating import (ALWAYS, DAY_NAMES, DEFAULT_TIMEZONE, Rate, billed_seconds, cost, format_minute, load_zone,
                            period_cost)
from .operators import Actor, audit_tx
from .read_model import CallFilter, calls_page, day_totals_mismatches
from .rerate import Rerater
from .store.statements import account_query
from .store.tables import (
    accounts,
    call_sessions,
    deck_versions,
    did_assignments,
    dids,
    endpoints,
    fraud_events,
    ledger,
    packages,
    plans,
    rates,
)

_INSERT_BATCH = 10_000
"""Deck rows a multi-row INSERT (a 300,000-row deck is 30 of them, in one transaction)."""


def format_instant(ms: int | None) -> str | None:
    """Epoch ms → ISO 8601 UTC (``2026-03-08T07:00:00+00:00``); the beginning of time → None."""
    if ms is None or ms <= BEGINNING_OF_TIME:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=dt_timezone.utc).isoformat(
        timespec="milliseconds" if ms % 1000 else "seconds")


def _days_cell(days) -> str:
    """Weekdays → the deck's ``days`` cell (``mon-fri``, ``sat``, ``mon,wed,fri``)."""
    runs: list[list[int]] = []
    for d in sorted(days):
        if runs and runs[-1][-1] == d - 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return ",".join(DAY_NAMES[r[0]] + (f"-{DAY_NAMES[r[-1]]}" if len(r) > 1 else "") for r in runs)


def _check_deck_periods(rows: Sequence[DeckRow]) -> None:
    """A deck handed over in code (not parsed from a file) gets the file's checks: one row a prefix,
    or periods covering the week once (InvalidInput with the row's line, or its position)."""
    try:
        check_deck_periods([r if r.line else DeckRow(i + 1, r.rate, r.period) for i, r in enumerate(rows)])
    except DeckError as exc:
        raise InvalidInput(str(exc)) from None


class Admin:
    def __init__(self, core):
        self.core = core
        self.store = core.store

    def _now(self) -> int:
        return self.core.clock.now_ms()

    # ---------------------------------------------------------------------------------- plans
    async def import_plan(self, name: str, deck: Sequence[Rate | DeckRow], *, timezone: str | None = None,
                          effective_at: int | None = None, correction: bool = False,
                          actor: Actor | None = None, based_on: int | None = None) -> dict[str, Any]:
        """Store ``deck`` as a new version of plan ``name`` (created if new), atomically, effective
        at ``effective_at`` (epoch ms; default now) in ``timezone`` (default: the zone of the plan's
        latest version, America/Toronto for a new plan). A time in the past is refused unless
        ``correction``: a correction replaces the version in effect from that time on (past calls
        are then re-rated by ``callgate rerate``). Versions are kept: past calls keep their price.

        ``actor``: who imports (the console): an audit record ``plan.import`` in the same
        transaction. ``based_on``: the plan's latest version when the deck was previewed (0: no
        plan yet); if another import came in since, InvalidInput and nothing is written (a confirm
        must apply the deck against what the operator saw)."""
        check_ref(name, "NAME", "a plan name is letters, digits and _.@- (max 64)")
        rows = [r if isinstance(r, DeckRow) else DeckRow(0, r, ALWAYS) for r in deck]
        if not rows:
            raise InvalidInput("the deck has no rate rows")
        for row in rows:
            r = row.rate
            check_storage_range(r.rate_per_min, field=f"rate_per_min of prefix {r.prefix}")
            check_storage_range(r.connect_fee, field=f"connect_fee of prefix {r.prefix}")
        _check_deck_periods(rows)
        zone = load_zone(timezone, field="--timezone").key if timezone is not None else None
        now = self._now()
        if correction and effective_at is None:
            raise InvalidInput("--correction: needs --effective TIME (the time the corrected deck applies from)")
        given = effective_at
        if effective_at is not None:
            check_storage_range(effective_at, field="--effective")
            if effective_at < now and not correction:
                raise InvalidInput(f"--effective: {format_instant(effective_at)} is in the past; a deck that applies to "
                                   "calls already made is a correction: add --correction (then re-rate them with "
                                   "callgate rerate)")

        def tx(conn):
            plan = conn.execute(select(plans).where(plans.c.name == name)).mappings().first()
            if plan is None:
                plan_id = conn.execute(
                    insert(plans).values(name=name, version=1, rate_count=0, created_at=now, updated_at=now)
                ).inserted_primary_key[0]
                generation, latest = 1, None
            else:
                plan_id, generation = plan["id"], plan["version"] + 1
                latest = conn.execute(select(deck_versions).where(deck_versions.c.plan_id == plan_id)
                                      .order_by(deck_versions.c.version.desc()).limit(1)).mappings().first()
            version = 1 if latest is None else latest["version"] + 1
            if based_on is not None and version - 1 != based_on:
                raise InvalidInput(f"plan {name}: version {version - 1} was imported since this deck was previewed "
                                   f"(against version {based_on}); upload it again to see its changes")
            # Without --effective: now; a plan's first deck from the beginning of time (it had no
            # other: no call was priced by anything else, and a call dated a moment before the
            # import, by a switch's or a test's clock, must not find the plan empty).
            effective = given if given is not None else (now if latest is not None else BEGINNING_OF_TIME)
            tz = zone or (latest["timezone"] if latest is not None else DEFAULT_TIMEZONE)
            conn.execute(insert(deck_versions).values(
                plan_id=plan_id, version=version, effective_at=effective, timezone=tz, correction=correction,
                rate_count=len(rows), created_at=now))
            for i in range(0, len(rows), _INSERT_BATCH):
                conn.execute(insert(rates), [
                    dict(plan_id=plan_id, version=version, prefix=r.rate.prefix, days=days_mask(r.period.days),
                         start_min=r.period.start, end_min=r.period.end, description=r.rate.description,
                         rate_per_min=r.rate.rate_per_min, connect_fee=r.rate.connect_fee,
                         initial_increment=r.rate.initial_increment, increment=r.rate.increment)
                    for r in rows[i:i + _INSERT_BATCH]
                ])
            conn.execute(update(plans).where(plans.c.id == plan_id)
                         .values(version=generation, rate_count=len(rows), updated_at=now))
            result = {"plan": name, "rates": len(rows), "version": version, "timezone": tz,
                      "effective_at": format_instant(effective), "correction": correction}
            if actor is not None:
                audit_tx(conn, actor, "plan.import", "plan", name, before={"version": version - 1 or None},
                         after=result, now=now)
            return result

        return await self.store.run(tx)

    async def plan_versions(self, name: str) -> dict[str, Any]:
        """Every version of plan ``name``, oldest first, and which is in effect now."""
        now = self._now()

        def tx(conn):
            plan = self._plan_row(conn, name)
            found = [version_from_row(r) for r in conn.execute(
                select(deck_versions).where(deck_versions.c.plan_id == plan["id"]).order_by(deck_versions.c.version))
                .mappings()]
            current = PlanVersions(0, found).at(now)
            gone = superseded(found)
            return {"plan": name, "in_effect": current.version if current else None, "versions": [
                {"version": v.version, "effective_at": format_instant(v.effective_at), "timezone": v.timezone,
                 "correction": v.correction, "rates": v.rate_count, "imported_at": format_instant(v.created_at),
                 "in_effect": current is not None and v.version == current.version,
                 "superseded_by": gone.get(v.version)}
                for v in found]}

        return await self.store.run(tx)

    async def show_plan(self, name: str, limit: int | None = None, *, at: int | None = None) -> dict[str, Any]:
        """Plan ``name`` as it prices calls starting at ``at`` (default now): the version in effect
        then, its zone and its rows (with their periods)."""
        when = self._now() if at is None else at

        def tx(conn):
            row = self._plan_row(conn, name)
            found = [version_from_row(r) for r in conn.execute(
                select(deck_versions).where(deck_versions.c.plan_id == row["id"])).mappings()]
            current = PlanVersions(0, found).at(when)
            out: dict[str, Any] = {"plan": name, "version": current.version if current else None,
                                   "timezone": current.timezone if current else None,
                                   "effective_at": format_instant(current.effective_at) if current else None,
                                   "rate_count": current.rate_count if current else 0, "rates": []}
            if at is not None:  # (not "now": the same plan shows the same text twice)
                out["at"] = format_instant(at)
            if current is None:
                return out
            q = (select(rates).where(rates.c.plan_id == row["id"], rates.c.version == current.version)
                 .order_by(rates.c.prefix, rates.c.days, rates.c.start_min))
            if limit:
                q = q.limit(limit)
            for r in conn.execute(q):
                period = period_of(r.days, r.start_min, r.end_min)
                out["rates"].append(
                    {"prefix": r.prefix, "description": r.description, "rate_per_min": format_amount(r.rate_per_min),
                     "connect_fee": format_amount(r.connect_fee), "initial_increment": r.initial_increment,
                     "increment": r.increment,
                     "days": None if period == ALWAYS else _days_cell(period.days),
                     "start": None if period == ALWAYS else format_minute(period.start),
                     "end": None if period == ALWAYS else format_minute(period.end)})
            return out

        return await self.store.run(tx)

    @staticmethod
    def _plan_row(conn, name: str):
        row = conn.execute(select(plans).where(plans.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"unknown plan {name!r}")
        return row

    # ------------------------------------------------------------------------------- packages
    async def add_package(self, name: str, *, plan: str, low_balance: int, max_calls: int, inbound_rate: int,
                          **rules: Any) -> dict:
        """Create (or update) package ``name``. ``rules`` are the toll-fraud rules
        (:data:`PACKAGE_RULES`, the ``package add/set`` flags with underscores: texts as the flags
        take them, amounts in micro-units); a new package gets :func:`package_rule_defaults` for
        those not given, an updated one keeps its own."""
        check_ref(name, "NAME", "a package name is letters, digits and _.@- (max 64)")
        if low_balance < 0:
            raise InvalidInput("--low-balance: must not be negative")
        if not isinstance(max_calls, int) or not 1 <= max_calls <= INTEGER_MAX:
            raise InvalidInput(f"--max-calls: must be a whole number from 1 to {INTEGER_MAX} (got {max_calls!r})")
        check_storage_range(low_balance, field="--low-balance")
        check_storage_range(inbound_rate, field="--inbound-rate")
        if inbound_rate < 0:
            raise InvalidInput("--inbound-rate: must not be negative")
        checked = check_package_rules(rules)
        now = self._now()

        def tx(conn):
            plan_id = conn.execute(select(plans.c.id).where(plans.c.name == plan)).scalar()
            if plan_id is None:
                raise NotFound(f"--plan: unknown plan {plan!r}")
            existing = conn.execute(select(packages.c.id).where(packages.c.name == name)).scalar()
            values = dict(plan_id=plan_id, low_balance=low_balance, max_calls=max_calls, inbound_rate=inbound_rate,
                          updated_at=now, **checked)
            if existing is None:
                defaults = package_rule_defaults(self.core.settings.home_region)
                # a rule equal to its column's default is left to the database (the same value),
                # so creating a package that sets no rule writes only the columns it always did
                new = {k: v for k, v in {**defaults, **values}.items()
                       if k not in _COLUMN_DEFAULTS or v != _COLUMN_DEFAULTS[k]}
                conn.execute(insert(packages).values(name=name, created_at=now, **new))
            else:
                conn.execute(update(packages).where(packages.c.id == existing).values(**values))
            return {"package": name, "plan": plan, "low_balance": format_amount(low_balance), "max_calls": max_calls,
                    "inbound_rate": format_amount(inbound_rate), "updated": existing is not None,
                    **self._package_rules_out(conn, name)}

        return await self.store.run(tx)

    async def set_package(self, name: str, *, plan: str | None = None, low_balance: int | None = None,
                          max_calls: int | None = None, inbound_rate: int | None = None, **rules: Any) -> dict:
        """Change only the given settings of an existing package (``package set``)."""
        values = check_package_settings(low_balance=low_balance, max_calls=max_calls, inbound_rate=inbound_rate,
                                        **rules)
        return await self.store.run(self.set_package_tx, name, plan, values, self._now())

    def set_package_tx(self, conn, name: str, plan: str | None, values: dict[str, Any], now: int) -> dict:
        """:meth:`set_package` inside the caller's transaction; ``values`` from
        :func:`check_package_settings`. Returns the package as ``package show`` gives it."""
        pkg = conn.execute(select(packages.c.id).where(packages.c.name == name)).scalar()
        if pkg is None:
            raise NotFound(f"NAME: unknown package {name!r}")
        values = dict(values)
        if plan is not None:
            plan_id = conn.execute(select(plans.c.id).where(plans.c.name == plan)).scalar()
            if plan_id is None:
                raise NotFound(f"--plan: unknown plan {plan!r}")
            values["plan_id"] = plan_id
        if values:
            conn.execute(update(packages).where(packages.c.id == pkg).values(updated_at=now, **values))
        return self.package_out_tx(conn, name)

    async def show_package(self, name: str) -> dict:
        return await self.store.run(self.package_out_tx, name)

    @staticmethod
    def package_out_tx(conn, name: str) -> dict:
        """Package ``name`` as ``package show --json`` gives it."""
        row = conn.execute(select(packages, plans.c.name.label("plan_name"))
                           .select_from(packages.join(plans, plans.c.id == packages.c.plan_id))
                           .where(packages.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"NAME: unknown package {name!r}")
        return {"package": name, "plan": row["plan_name"], "low_balance": format_amount(row["low_balance"]),
                "max_calls": row["max_calls"], "inbound_rate": format_amount(row["inbound_rate"]),
                **package_rules_out(row)}

    def _package_rules_out(self, conn, name: str) -> dict:
        row = conn.execute(select(packages).where(packages.c.name == name)).mappings().one()
        return package_rules_out(row)

    # ------------------------------------------------------------------------------- accounts
    async def add_account(self, ref: str, *, name: str, email: str, package: str, credit_limit: int = 0) -> dict:
        check_ref(ref)
        name = check_text(name, "--name", max_length=200)
        check_email(email)
        if credit_limit < 0:
            raise InvalidInput("--credit-limit: must not be negative")
        check_storage_range(credit_limit, field="--credit-limit")
        now = self._now()

        def tx(conn):
            pkg = conn.execute(select(packages.c.id).where(packages.c.name == package)).scalar()
            if pkg is None:
                raise NotFound(f"--package: unknown package {package!r}")
            if conn.execute(select(accounts.c.id).where(accounts.c.ref == ref)).scalar() is not None:
                raise InvalidInput(f"REF: account {ref!r} already exists")
            conn.execute(
                insert(accounts).values(
                    ref=ref, name=name, email=email, package_id=pkg, currency=self.core.settings.currency,
                    balance=0, credit_limit=credit_limit, held=0, live_calls=0, status=lifecycle.ACTIVE,
                    low_balance_armed=True, low_balance_crossings=0, depletions=0, created_at=now, updated_at=now,
                )
            )
            return self.core.account_tx(conn, ref)

        return await self.store.run(tx)

    async def list_accounts(self):
        def tx(conn):
            refs = [r for (r,) in conn.execute(select(accounts.c.ref).order_by(accounts.c.ref))]
            return [self.core.account_tx(conn, r) for r in refs]

        return await self.store.run(tx)

    async def set_account_status(self, ref: str, status: str) -> None:
        if status not in lifecycle.STATUSES:
            raise InvalidInput(f"status: must be one of {', '.join(lifecycle.STATUSES)}")

        def tx(conn):
            # any status set by an operator ends a fraud_suspected suspension's reason (issue 18)
            n = conn.execute(update(accounts).where(accounts.c.ref == ref).values(
                status=status, status_changed_at=self._now(),
                **({} if status == lifecycle.SUSPENDED else {"suspended_reason": None}))).rowcount
            if not n:
                raise NotFound(f"unknown account {ref!r}")

        await self.store.run(tx)

    async def set_account_rules(self, ref: str, **overrides: Any) -> dict:
        """``account set REF …``: override the package's rules for this account. A value of None is
        "not given"; :data:`INHERIT` clears the override (the package's value applies again)."""
        values = check_account_overrides(overrides)
        now = self._now()

        def tx(conn):
            n = conn.execute(update(accounts).where(accounts.c.ref == ref).values(updated_at=now, **values)).rowcount \
                if values else conn.execute(select(func.count()).select_from(accounts).where(accounts.c.ref == ref)).scalar()
            if not n:
                raise NotFound(f"REF: unknown account {ref!r}")
            return self.account_rules_tx(conn, ref)

        return await self.store.run(tx)

    async def set_destination(self, ref: str, prefix: str, action: str) -> dict:
        """``account allow-destination/deny-destination/clear-destination REF PREFIX``: the account's
        own destination prefixes (a prefix is in one list at most; ``clear`` takes it out of both)."""
        if action not in ("allow", "deny", "clear"):
            raise InvalidInput(f"action: must be allow, deny or clear (got {action!r})")
        p = dest.check_prefix(prefix)
        now = self._now()

        def tx(conn):
            row = conn.execute(select(accounts.c.id, accounts.c.allow_destinations, accounts.c.deny_destinations)
                               .where(accounts.c.ref == ref)).mappings().first()
            if row is None:
                raise NotFound(f"REF: unknown account {ref!r}")
            allow = [x for x in dest.split(row["allow_destinations"]) if x != p]
            deny = [x for x in dest.split(row["deny_destinations"]) if x != p]
            if action == "allow":
                allow.append(p)
            elif action == "deny":
                deny.append(p)
            conn.execute(update(accounts).where(accounts.c.id == row["id"]).values(
                allow_destinations=",".join(sorted(allow)), deny_destinations=",".join(sorted(deny)), updated_at=now))
            return self.account_rules_tx(conn, ref)

        return await self.store.run(tx)

    async def reactivate(self, ref: str, reason: str) -> dict:
        """``account reactivate REF --reason TEXT``: lift a suspension (fraud_suspected or an
        operator's), keep an audit record. The account becomes active, or depleted when it has no
        money; the anomaly counters start again."""
        reason = check_text(reason, "--reason", max_length=300)
        now = self._now()

        def tx(conn):
            row = conn.execute(select(accounts.c.id, accounts.c.status, accounts.c.balance, accounts.c.suspended_reason)
                               .where(accounts.c.ref == ref).with_for_update()).mappings().first()
            if row is None:
                raise NotFound(f"REF: unknown account {ref!r}")
            if row["status"] != lifecycle.SUSPENDED:
                raise InvalidInput(f"REF: account {ref!r} is not suspended (it is {row['status']})")
            status = lifecycle.ACTIVE if row["balance"] > 0 else lifecycle.DEPLETED
            conn.execute(update(accounts).where(accounts.c.id == row["id"]).values(
                status=status, status_changed_at=now, suspended_reason=None, updated_at=now,
                depleted_at=None if status == lifecycle.ACTIVE else now,
                **{c: 0 for c in fraud_limits.ANOMALY_COLUMNS}))
            conn.execute(insert(fraud_events).values(account_id=row["id"], kind="reactivated",
                                                     reason=row["suspended_reason"] or "suspended", detail=reason,
                                                     actor="operator", created_at=now))
            return {"account": ref, "status": status, "was": row["suspended_reason"] or "suspended", "reason": reason}

        return await self.store.run(tx)

    async def fraud_events(self, ref: str | None = None, limit: int = 100) -> list[dict]:
        """The audit trail of suspensions and reactivations, newest first."""
        def tx(conn):
            q = select(fraud_events, accounts.c.ref.label("account")).select_from(
                fraud_events.join(accounts, accounts.c.id == fraud_events.c.account_id))
            if ref is not None:
                if conn.execute(select(accounts.c.id).where(accounts.c.ref == ref)).scalar() is None:
                    raise NotFound(f"--account: unknown account {ref!r}")
                q = q.where(accounts.c.ref == ref)
            q = q.order_by(fraud_events.c.id.desc()).limit(limit)
            return [{"id": r["id"], "account": r["account"], "kind": r["kind"], "reason": r["reason"],
                     "detail": r["detail"], "actor": r["actor"], "created_at": r["created_at"]}
                    for r in conn.execute(q).mappings()]

        return await self.store.run(tx)

    async def account_rules(self, ref: str) -> dict:
        return await self.store.run(self.account_rules_tx, ref)

    def account_rules_tx(self, conn, ref: str) -> dict:
        """An account's fraud-protection settings as ``account show`` prints them: its overrides
        (None = the package's), its destinations, and the effective rules."""
        row = conn.execute(account_query().where(accounts.c.ref == ref)).mappings().first()
        if row is None:
            raise NotFound(f"REF: unknown account {ref!r}")
        return account_rules_out(row, self._now())

    # ------------------------------------------------------------------------------ endpoints
    async def add_endpoint(self, ref: str, endpoint: str) -> dict:
        check_endpoint(endpoint)
        now = self._now()

        def tx(conn):
            acct = conn.execute(select(accounts.c.id).where(accounts.c.ref == ref)).scalar()
            if acct is None:
                raise NotFound(f"unknown account {ref!r}")
            owner = conn.execute(select(endpoints.c.account_id).where(endpoints.c.name == endpoint)).scalar()
            if owner is not None:
                raise InvalidInput(f"ENDPOINT: {endpoint!r} already belongs to an account")
            conn.execute(insert(endpoints).values(name=endpoint, account_id=acct, created_at=now))
            return {"account": ref, "endpoint": endpoint}

        return await self.store.run(tx)

    # ----------------------------------------------------------------------------------- DIDs
    def did_e164(self, number: str) -> str:
        """A DID as typed (national or E.164) → its E.164 form, or InvalidInput naming NUMBER."""
        parsed = normalise(number, self.core.settings.home_region)
        if parsed is None:
            raise InvalidInput(f"NUMBER: not a phone number (got {number!r})")
        return parsed.e164

    async def add_did(self, number: str) -> dict:
        e164 = self.did_e164(number)
        now = self._now()

        def tx(conn):
            if conn.execute(select(dids.c.number).where(dids.c.number == e164)).scalar() is not None:
                raise InvalidInput(f"NUMBER: DID {e164} is already in the pool")
            conn.execute(insert(dids).values(number=e164, created_at=now))
            return {"number": e164, "account": None}

        return await self.store.run(tx)

    async def assign_did(self, number: str, ref: str, endpoint: str | None = None) -> dict:
        e164 = self.did_e164(number)
        if endpoint is not None:
            check_endpoint(endpoint, "--endpoint")
        return await self.store.run(assign_did_tx, e164, ref, endpoint, self._now())

    async def release_did(self, number: str, reason: str = "released by operator") -> dict:
        e164 = self.did_e164(number)
        reason = check_text(reason, "--reason", max_length=200)
        return await self.store.run(release_assigned_did_tx, e164, reason, self._now())

    async def list_dids(self) -> list[dict]:
        def tx(conn):
            q = select(dids, accounts.c.ref).select_from(dids.outerjoin(accounts, accounts.c.id == dids.c.account_id)).order_by(dids.c.number)
            return [{"number": r.number, "account": r.ref, "endpoint": r.endpoint, "assigned_at": r.assigned_at}
                    for r in conn.execute(q)]

        return await self.store.run(tx)

    async def did_history(self, number: str) -> list[dict]:
        e164 = self.did_e164(number)

        def tx(conn):
            q = select(did_assignments, accounts.c.ref).select_from(
                did_assignments.join(accounts, accounts.c.id == did_assignments.c.account_id)
            ).where(did_assignments.c.number == e164).order_by(did_assignments.c.id)
            return [{"number": r.number, "account": r.ref, "endpoint": r.endpoint, "assigned_at": r.assigned_at,
                     "released_at": r.released_at, "release_reason": r.release_reason} for r in conn.execute(q)]

        return await self.store.run(tx)

    # ------------------------------------------------------------------------ ledger and calls
    async def ledger(self, ref: str, limit: int = 100) -> list[dict]:
        def tx(conn):
            acct = conn.execute(select(accounts.c.id).where(accounts.c.ref == ref)).scalar()
            if acct is None:
                raise NotFound(f"unknown account {ref!r}")
            q = select(ledger).where(ledger.c.account_id == acct).order_by(ledger.c.id.desc()).limit(limit)
            return [dict(r) for r in conn.execute(q).mappings()]

        return await self.store.run(tx)

    async def calls(self, *, active: bool = False, ref: str | None = None, limit: int = 100) -> list[dict]:
        def tx(conn):
            q = select(call_sessions, accounts.c.ref.label("account_ref")).select_from(
                call_sessions.outerjoin(accounts, accounts.c.id == call_sessions.c.account_id)
            )
            if active:
                q = q.where(call_sessions.c.state.in_(("authorized", "answered")))
            if ref is not None:
                acct = conn.execute(select(accounts.c.id).where(accounts.c.ref == ref)).scalar()
                if acct is None:
                    raise NotFound(f"unknown account {ref!r}")
                q = q.where(call_sessions.c.account_id == acct)
            q = q.order_by(call_sessions.c.created_at.desc()).limit(limit)
            return [dict(r) for r in conn.execute(q).mappings()]

        return await self.store.run(tx)

    async def refusals(self, *, ref: str | None = None, reason: str | None = None, limit: int = 100) -> list[dict]:
        """The newest refused decisions as rows of the call list (read_model.calls_page, outcome
        refused): what `calls --refused --json` prints."""
        def tx(conn):
            if ref is not None and conn.execute(select(accounts.c.id).where(accounts.c.ref == ref)).scalar() is None:
                raise NotFound(f"unknown account {ref!r}")
            f = CallFilter(account=ref, outcome="refused", reason=reason)
            return calls_page(conn, f, limit=limit)[0]

        return await self.store.run(tx)

    # --------------------------------------------------------------------------------- rerate
    async def rerate(self, plan: str, *, since: int, until: int | None = None, dry_run: bool = False) -> dict:
        """Re-rate the settled calls of ``plan`` started in [since, until) (billing_core.rerate)."""
        report = await Rerater(self.core).run(plan, since=since, until=until, dry_run=dry_run)
        return report.as_dict(format_instant)

    # ---------------------------------------------------------------------------------- quote
    async def quote(self, ref: str, number: str, seconds: int | None = None, *, at: int | None = None) -> dict:
        """What authorize_call would decide for this account and number for a call starting at
        ``at`` (default now), without writing: the gate's own decision as a dry run
        (BillingCore.dry_run_tx) on today's balance, then the number's price under the deck version
        in effect at ``at`` (``deck_version``; with ``seconds``, ``segments``: each run of increments
        at one rate)."""
        if seconds is not None and seconds < 0:
            raise InvalidInput("--seconds: must be ≥ 0")
        if at is not None:
            check_storage_range(at, field="--at")
        settings = self.core.settings

        def tx(conn):
            acct = conn.execute(account_query().where(accounts.c.ref == ref)).mappings().first()
            if acct is None:
                raise NotFound(f"unknown account {ref!r}")
            when = self._now() if at is None else at
            decision = self.core.dry_run_tx(conn, account_ref=ref, number=number, at=when)
            out: dict[str, Any] = {"account": ref, "number": number, "number_e164": None, "prefix": None,
                                   "rate_per_min": None, "allowed": decision.allowed,
                                   "reason": decision.reason.value if decision.reason else None,
                                   "max_talk_seconds": decision.max_talk_seconds, "emergency": decision.emergency,
                                   "rule": decision.rule}
            if decision.emergency:
                if seconds is not None:
                    out.update(billed_seconds=0, cost=format_amount(0))
                return out
            # the price of the number on the account's plan, whatever the decision (an operator
            # asking about a refused account still learns what the call would cost)
            parsed = normalise(number, settings.home_region)
            if parsed is None:
                return out
            out["number_e164"] = parsed.e164
            table = self.core.rate_table(conn, acct["plan_id"], acct["plan_version"], when)
            schedule = table.schedule(parsed.digits) if table is not None else None
            out["deck_version"] = table.version if table is not None else None
            if schedule is None:
                return out
            rate = schedule.rate_at(when)
            out.update(prefix=rate.prefix, rate_per_min=format_amount(rate.rate_per_min),
                       connect_fee=format_amount(rate.connect_fee), initial_increment=rate.initial_increment,
                       increment=rate.increment, description=rate.description,
                       available=format_amount(acct["balance"] + acct["credit_limit"] - acct["held"]))
            if seconds is not None:
                priced = period_cost(seconds, schedule, when)
                out["billed_seconds"] = priced.billed_seconds
                out["cost"] = format_amount(priced.cost)
                out["segments"] = [{"start": format_instant(s.start_ms), "rate_per_min": format_amount(s.rate_per_min),
                                    "seconds": s.seconds, "cost": format_amount(s.cost)} for s in priced.segments]
            return out

        return await self.store.run(tx)

    # --------------------------------------------------------------------------------- verify
    def _verify_spend_caps(self, conn) -> list[str]:
        return _verify_spend_caps_tx(conn, self._now())

    async def verify(self) -> list[str]:
        """Every violation of the money invariants, as one line each (empty = all good)."""

        def tx(conn):
            problems: list[str] = []
            sums = dict(conn.execute(select(ledger.c.account_id, func.coalesce(func.sum(ledger.c.amount), 0)).group_by(ledger.c.account_id)).all())
            live = ("authorized", "answered")
            holds = dict(conn.execute(
                select(call_sessions.c.account_id, func.coalesce(func.sum(call_sessions.c.hold), 0))
                .where(call_sessions.c.state.in_(live)).group_by(call_sessions.c.account_id)).all())
            counts = dict(conn.execute(
                select(call_sessions.c.account_id, func.count())
                .where(call_sessions.c.state.in_(live), call_sessions.c.emergency.is_(False))
                .group_by(call_sessions.c.account_id)).all())
            # how far operator-allowed entries (`credit --allow-below-limit`, PayPal take-backs) took
            # each account below its credit limit: the only way below it that verify accepts
            allowed_below = dict(conn.execute(
                select(ledger.c.account_id, func.coalesce(func.sum(-ledger.c.amount), 0))
                .where(ledger.c.below_limit_allowed.is_(True)).group_by(ledger.c.account_id)).all())
            for a in conn.execute(select(accounts)).mappings():
                ref, aid = a["ref"], a["id"]
                if a["balance"] != sums.get(aid, 0):
                    problems.append(f"account {ref}: balance {format_amount(a['balance'])} != ledger sum {format_amount(sums.get(aid, 0))}")
                if a["balance"] < -a["credit_limit"] - allowed_below.get(aid, 0):
                    problems.append(f"account {ref}: balance {format_amount(a['balance'])} is below -credit_limit {format_amount(-a['credit_limit'])}"
                                    + (f" by more than allowed debits took ({format_amount(allowed_below[aid])})"
                                       if allowed_below.get(aid) else ""))
                if a["held"] != holds.get(aid, 0):
                    problems.append(f"account {ref}: held {format_amount(a['held'])} != open holds {format_amount(holds.get(aid, 0))}")
                if a["held"] < 0:
                    problems.append(f"account {ref}: held is negative ({format_amount(a['held'])})")
                if a["live_calls"] != counts.get(aid, 0):
                    problems.append(f"account {ref}: live_calls {a['live_calls']} != live sessions {counts.get(aid, 0)}")
            for s in conn.execute(select(call_sessions.c.id, call_sessions.c.hold).where(
                    call_sessions.c.state == "settled", call_sessions.c.hold != 0)):
                problems.append(f"session {s.id}: settled with an open hold {format_amount(s.hold)}")
            for s in conn.execute(select(call_sessions.c.id, call_sessions.c.hold).where(call_sessions.c.hold < 0)):
                problems.append(f"session {s.id}: negative hold {format_amount(s.hold)}")
            problems += self._verify_spend_caps(conn)
            problems += day_totals_mismatches(conn)  # the dashboard's totals = the settled calls' sums
            # The balance_after chain of each account must be a running sum.
            running: dict[int, int] = {}
            for e in conn.execute(select(ledger.c.id, ledger.c.account_id, ledger.c.amount, ledger.c.balance_after).order_by(ledger.c.id)):
                bal = running.get(e.account_id, 0) + e.amount
                running[e.account_id] = bal
                if bal != e.balance_after:
                    problems.append(f"ledger entry {e.id}: balance_after {format_amount(e.balance_after)} != running sum {format_amount(bal)}")
                    running[e.account_id] = e.balance_after
            return problems

        return await self.store.run(tx)


def _verify_spend_caps_tx(conn, now: int) -> list[str]:
    """Issue 18: each account's spend counters equal its call charges in the ledger for the current
    day and month (package time zone), and no period's charges exceed a cap in force."""
    problems: list[str] = []
    for a in conn.execute(account_query()).mappings():
        tz = a["timezone"]
        day, month = fraud_limits.period_keys(now, tz)
        today, this_month = fraud_limits.spent(a, now)
        for label, key, counted, cap in (("day", day, today, fraud_limits.effective(a, "daily_cap")),
                                          ("month", month, this_month, fraud_limits.effective(a, "monthly_cap"))):
            start = fraud_limits.period_start_ms(key, tz)
            charged = conn.execute(select(func.coalesce(func.sum(-ledger.c.amount), 0)).where(
                ledger.c.account_id == a["id"], ledger.c.kind.in_(fraud_limits.CALL_CHARGE_KINDS),
                ledger.c.created_at >= start)).scalar()
            if counted != charged:
                problems.append(f"account {a['ref']}: this {label}'s spend counter {format_amount(counted)} != "
                                f"call charges in the ledger {format_amount(charged)}")
            if cap is not None and charged > cap:
                problems.append(f"account {a['ref']}: this {label}'s call charges {format_amount(charged)} exceed "
                                f"its {label == 'day' and 'daily' or 'monthly'} cap {format_amount(cap)}")
    return problems


def did_tx(conn, e164: str) -> dict:
    """DID ``e164`` of the pool: its number, account ref (None: free) and endpoint."""
    row = conn.execute(select(dids.c.number, dids.c.endpoint, accounts.c.ref)
                       .select_from(dids.outerjoin(accounts, accounts.c.id == dids.c.account_id))
                       .where(dids.c.number == e164)).first()
    if row is None:
        raise NotFound(f"NUMBER: unknown DID {e164}")
    return {"number": row.number, "account": row.ref, "endpoint": row.endpoint}


def assign_did_tx(conn, e164: str, ref: str, endpoint: str | None, now: int) -> dict:
    """Assign DID ``e164`` to account ``ref`` (ringing ``endpoint``, else the account's first),
    or move it to another endpoint of the same account, inside the caller's transaction."""
    row = conn.execute(select(dids).where(dids.c.number == e164)).mappings().first()
    if row is None:
        raise NotFound(f"NUMBER: unknown DID {e164} (add it with `callgate did add`)")
    acct = conn.execute(select(accounts.c.id).where(accounts.c.ref == ref)).scalar()
    if acct is None:
        raise NotFound(f"unknown account {ref!r}")
    if row["account_id"] is not None and row["account_id"] != acct:
        raise InvalidInput(f"NUMBER: DID {e164} is assigned to another account; release it first")
    ep = endpoint
    if ep is not None:
        owner = conn.execute(select(endpoints.c.account_id).where(endpoints.c.name == ep)).scalar()
        if owner != acct:
            raise InvalidInput(f"--endpoint: {ep!r} is not an endpoint of account {ref!r}")
    else:
        ep = conn.execute(select(endpoints.c.name).where(endpoints.c.account_id == acct).order_by(endpoints.c.name)).scalar()
    if row["account_id"] == acct:
        conn.execute(update(dids).where(dids.c.number == e164).values(endpoint=ep))
        conn.execute(update(did_assignments).where(did_assignments.c.number == e164,
                                                   did_assignments.c.released_at.is_(None)).values(endpoint=ep))
    else:
        conn.execute(update(dids).where(dids.c.number == e164).values(account_id=acct, endpoint=ep, assigned_at=now))
        conn.execute(insert(did_assignments).values(number=e164, account_id=acct, endpoint=ep, assigned_at=now))
    return {"number": e164, "account": ref, "endpoint": ep}


def release_assigned_did_tx(conn, e164: str, reason: str, now: int) -> dict:
    """``did release``: an assigned DID back to the pool, inside the caller's transaction."""
    row = conn.execute(select(dids).where(dids.c.number == e164)).mappings().first()
    if row is None:
        raise NotFound(f"NUMBER: unknown DID {e164}")
    if row["account_id"] is None:
        raise InvalidInput(f"NUMBER: DID {e164} is not assigned")
    release_did_tx(conn, e164, reason, now)
    return {"number": e164, "account": None, "released": True}


def release_did_tx(conn, e164: str, reason: str, now: int) -> None:
    """Return a DID to the pool inside the caller's transaction, keeping the assignment history."""
    conn.execute(update(dids).where(dids.c.number == e164).values(account_id=None, endpoint=None, assigned_at=None))
    conn.execute(
        update(did_assignments)
        .where(did_assignments.c.number == e164, did_assignments.c.released_at.is_(None))
        .values(released_at=now, release_reason=reason[:200])
    )


# ------------------------------------------------------------------------ toll-fraud settings
#: Whole-number limits: (smallest allowed value, largest).
_COUNT_RULES = {"max_call_minutes": (1, 7 * 24 * 60), "max_attempts_per_minute": (1, 1_000_000),
                "anomaly_blocked_attempts": (1, 1_000_000), "anomaly_window_minutes": (1, 7 * 24 * 60)}


#: The package rule columns' database defaults (what a package from before migration 0009 has).
_COLUMN_DEFAULTS: dict[str, Any] = {
    c.name: (c.server_default.arg if c.server_default is not None else None)
    for c in packages.columns if c.name in PACKAGE_RULES
}


def package_rule_defaults(home_region: str) -> dict[str, Any]:
    """What a new package gets for the rules it is not given (issue 18): calls to the home region
    and the US only; premium-rate, shared-cost and UAN numbers blocked; no prefix lists, no
    high-cost guard."""
    return dict(allow_regions=dest.default_allow_regions(home_region), block_types=",".join(dest.DEFAULT_BLOCK_TYPES),
                deny_prefixes="", allow_prefixes="", max_rate_per_min=None, timezone=DEFAULT_TIMEZONE,
                anomaly_blocked_attempts=fraud_limits.DEFAULT_ANOMALY_BLOCKED_ATTEMPTS,
                anomaly_window_minutes=fraud_limits.DEFAULT_ANOMALY_WINDOW_MINUTES)


def setting_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_rule(name: str, value: Any) -> Any:
    field = setting_flag(name)
    if name == "allow_regions":
        return dest.parse_regions(value, field)
    if name == "block_types":
        return dest.parse_types(value, field)
    if name in ("deny_prefixes", "allow_prefixes"):
        return dest.parse_prefixes(value, field)
    if name == "timezone":
        load_zone(value, field=field)
        return value
    if name in _COUNT_RULES:
        low, high = _COUNT_RULES[name]
        text = str(value).strip()
        if isinstance(value, bool) or not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
            raise InvalidInput(f"{field}: must be a whole number from {low} to {high} (got {value!r})")
        return int(text)
    if name in AMOUNT_RULES:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidInput(f"{field}: must be an amount ≥ 0 (got {value!r})")
        return check_storage_range(value, field=field)
    raise InvalidInput(f"{field}: unknown setting")


def check_package_rules(rules: dict[str, Any]) -> dict[str, Any]:
    """The given (not None) package rules, checked and in their stored form."""
    unknown = set(rules) - set(PACKAGE_RULES)
    if unknown:
        raise InvalidInput(f"{setting_flag(sorted(unknown)[0])}: unknown package setting")
    return {k: _check_rule(k, v) for k, v in rules.items() if v is not None}


def check_package_settings(*, low_balance: int | None = None, max_calls: int | None = None,
                           inbound_rate: int | None = None, **rules: Any) -> dict[str, Any]:
    """The given (not None) settings of ``package set``, checked, as package columns."""
    values: dict[str, Any] = {}
    if low_balance is not None:
        if low_balance < 0:
            raise InvalidInput("--low-balance: must not be negative")
        values["low_balance"] = check_storage_range(low_balance, field="--low-balance")
    if max_calls is not None:
        if not isinstance(max_calls, int) or not 1 <= max_calls <= INTEGER_MAX:
            raise InvalidInput(f"--max-calls: must be a whole number from 1 to {INTEGER_MAX} (got {max_calls!r})")
        values["max_calls"] = max_calls
    if inbound_rate is not None:
        if inbound_rate < 0:
            raise InvalidInput("--inbound-rate: must not be negative")
        values["inbound_rate"] = check_storage_range(inbound_rate, field="--inbound-rate")
    values.update(check_package_rules(rules))
    return values


def rule_from_text(name: str, text: str | None, *, inherit: bool = False) -> Any:
    """A package rule or account override as its flag's text gives it (``package set --daily-cap
    5.00``, the console's package form) → the value :func:`check_package_rules` takes: amounts in
    micro-units (a rate to rate precision), ``INHERIT`` when allowed, other rules as text."""
    if text is None:
        return None
    if inherit and text.strip() == INHERIT:
        return INHERIT
    if name == "max_rate_per_min":
        return parse_amount(text, field=setting_flag(name), decimals=RATE_DECIMALS, allow_negative=False)
    if name in AMOUNT_RULES:
        return parse_amount(text, field=setting_flag(name), decimals=CUSTOMER_DECIMALS, allow_negative=False)
    return text


def check_account_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = set(overrides) - set(ACCOUNT_OVERRIDES)
    if unknown:
        raise InvalidInput(f"{setting_flag(sorted(unknown)[0])}: not an account override")
    return {k: (None if v == INHERIT else _check_rule(k, v)) for k, v in overrides.items() if v is not None}
