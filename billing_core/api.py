"""The few operations adapters call: authorize a call, answer, extend, settle, credit.

Every operation is one transaction (see :mod:`billing_core.store.engine`): the account row is locked
first (``FOR UPDATE`` on PostgreSQL; SQLite has one writer), then the session, the ledger and the
outbox change together. Money decisions live here and in :mod:`billing_core.domain`; adapters only
translate.

Holds: a live session reserves ``session.hold`` = cost(granted seconds) − what chunk debits already
took; ``accounts.held`` is the sum over the account's live sessions, and
available = balance + credit_limit − held. A call is never granted time the available money cannot
pay for, so concurrent calls on one account (even on different PBXs sharing PostgreSQL) stay within
its money.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from . import metrics
from .clock import SystemClock
from .domain import authorize as auth_steps
from .domain import fraud_limits
from .domain import money_rules as rules
from .domain.errors import BelowCreditLimit, DenyReason, InvalidInput, NotFound
from .domain.identifiers import check_text
from .domain.money import check_storage_range, format_amount
from .domain.numbers import DEFAULT_EMERGENCY_NUMBERS, DEFAULT_HOME_REGION, is_emergency
from .domain.days import utc_day
from .domain.decks import LOAD_VERSIONS, DeckCache
from .domain.rating import RateTable, billable_seconds
from .domain.records import AccountView, Authorization, CallSession, LedgerEntry, LiveCutoff, Settlement
from .admin import Admin
from .store.engine import Store, open_store
from .store.errors import StorageError
from .store import fraud as fraud_store
from .store import statements as sql
from .store.tables import accounts, call_sessions, endpoints, outbox

log = logging.getLogger("callgate.core")

LIVE_STATES = ("authorized", "answered")
#: Session ids per heartbeat transaction (see :meth:`BillingCore.heartbeat`).
HEARTBEAT_BATCH = 64
#: An answer time further ahead of the core's clock than this is the core's clock plus this
#: (a switch's clock is never a day ahead; an absurd value must still fit the BIGINT column).
_ANSWER_FUTURE_LIMIT_MS = 86_400_000
LEDGER_KINDS = ("credit", "debit", "payment", "refund", "reversal", "call", "chunk")
PAYMENT_KINDS = rules.PAYMENT_KINDS


@dataclass(frozen=True)
class CoreSettings:
    """Knobs of the core (the config layer fills them from files and environment)."""

    home_region: str = DEFAULT_HOME_REGION
    """Region for national numbers (CA: 10-digit NANP, 1+NPA, 011+CC)."""
    emergency_numbers: frozenset[str] = DEFAULT_EMERGENCY_NUMBERS
    """Never gated, never charged."""
    max_call_seconds: int = 4 * 3600
    """No call is granted more talk than this, whatever the balance."""
    chunk_seconds: int = 60
    """Talk bought per hold chunk and debited per chunk by the sidecar."""
    inbound_initial_increment: int = 1
    """Inbound calls are billed per second at the package's inbound rate (a choice: fairest)."""
    inbound_increment: int = 1
    currency: str = "CAD"
    presuspend_days: float = 7
    did_release_days: float = 7
    operator_email: str | None = None
    """Where anomaly suspensions are reported (CALLGATE_OPERATOR_EMAIL); None: the customer only."""


class BillingCore:
    """The billing core. Create with :meth:`open`; adapters share one instance per process."""

    def __init__(self, store: Store, *, clock: Any = None, settings: CoreSettings | None = None):
        self.store = store
        self.clock = clock or SystemClock()
        self.settings = settings or CoreSettings()
        self._decks = DeckCache()

    @classmethod
    async def open(cls, url: str, *, clock: Any = None, settings: CoreSettings | None = None, **store_kwargs: Any) -> "BillingCore":
        return cls(open_store(url, **store_kwargs), clock=clock, settings=settings)

    async def create_schema(self) -> None:
        await self.store.create_schema()

    async def close(self) -> None:
        await self.store.close()

    @property
    def admin(self) -> Admin:
        return Admin(self)

    # ------------------------------------------------------------------------------ authorize
    async def authorize_call(
        self,
        *,
        direction: str,
        number: str,
        endpoint: str | None = None,
        did: str | None = None,
        caller_id: str | None = None,
        pbx_id: str = "local",
        channel_id: str | None = None,
        full_hold: bool = False,
    ) -> Authorization:
        """Decide a call in one transaction: a session with a hold on the first chunk (or the whole
        grant with ``full_hold``), or a deny reason. Never raises for storage trouble: the answer is
        then ``billing_unavailable`` (fail closed) — except for emergency numbers, always allowed."""
        if direction not in ("outbound", "inbound"):
            raise InvalidInput(f"direction: must be outbound or inbound (got {direction!r})")
        dialled = did if direction == "inbound" and did is not None else number
        now = self.clock.now_ms()
        emergency = direction == "outbound" and is_emergency(number or "", self.settings.emergency_numbers)
        started = time.perf_counter()
        try:
            result = await self._authorize_once(direction, dialled or "", endpoint, caller_id, pbx_id, channel_id,
                                                full_hold, emergency, now)
        except Exception as exc:  # fail closed — any storage error is a refusal with a clear cause
            if emergency:
                log.error("emergency call %s allowed without a record: %s", number, exc)
                result = Authorization(True, None, None, direction, number, emergency=True,
                                       granted_seconds=self.settings.max_call_seconds)
            else:
                log.error("billing unavailable for %s call to %s: %s", direction, dialled, exc)
                result = Authorization(False, DenyReason.BILLING_UNAVAILABLE, None, direction, dialled or "")
        metrics.DECISION_SECONDS.observe(time.perf_counter() - started)
        if result.allowed:
            metrics.CALLS_AUTHORIZED.labels(direction, "yes" if result.emergency else "no").inc()
        else:
            metrics.CALLS_REFUSED.labels(direction, result.reason.value).inc()
            if result.rule is not None:
                metrics.DESTINATION_BLOCKED.labels(result.rule).inc()
        return result

    async def _authorize_once(self, *args):
        try:
            return await self._authorize_tries(*args, record_refusal=True)
        except auth_steps.RefusalNotRecorded as exc:
            # the refusal's record could not be written (its transaction rolled back): the refusal
            # stands, decided again without the record, so its reason is not billing_unavailable
            log.error("a refused %s call to %s was not recorded: %s", args[0], args[1], exc.__cause__ or exc)
            return await self._authorize_tries(*args, record_refusal=False)

    async def _authorize_tries(self, direction, number, endpoint, caller_id, pbx_id, channel_id, full_hold, emergency,
                               now, *, record_refusal: bool):
        for attempt in (1, 2):
            req = auth_steps.AuthorizeRequest(direction, number, endpoint, caller_id, pbx_id, channel_id, full_hold,
                                              emergency, now, uuid.uuid4().hex, record_refusal=record_refusal)
            try:
                fast = self.store.fast_path
                if fast is not None:
                    driver = fast(self._decks)
                    driver.operator_email = self.settings.operator_email  # for an anomaly suspension
                    return await self.store.run_fast(driver.authorize, req, self._limits())
                return await self.store.run(self._decide_tx, req)
            except IntegrityError:
                # The same channel authorized twice at once: the second attempt finds the first's session.
                if attempt == 2 or channel_id is None:
                    raise

    def dry_run_tx(self, conn, *, account_ref: str, number: str, at: int | None = None) -> Authorization:
        """What :meth:`authorize_call` would decide now for an outbound call of ``account_ref`` to
        ``number``, inside the caller's transaction: the same decision steps as a dry run (the
        same reads; no lock, no session, no hold). ``quote`` is this, so it cannot disagree with
        the gate."""
        emergency = is_emergency(number or "", self.settings.emergency_numbers)
        req = auth_steps.AuthorizeRequest("outbound", number or "", None, None, "", None, False, emergency,
                                          self.clock.now_ms() if at is None else at, "", account_ref=account_ref,
                                          dry_run=True)
        return self._decide_tx(conn, req)

    def _decide_tx(self, conn, req: auth_steps.AuthorizeRequest) -> Authorization:
        """Drive the shared decision (billing_core.domain.authorize) on a SQLAlchemy connection."""
        gen = auth_steps.authorize_steps(req, self._limits())
        try:
            effect = gen.send(None)
            while True:
                effect = gen.send(self._perform(conn, effect))
        except StopIteration as stop:
            return stop.value

    def _perform(self, conn, e) -> Any:
        if isinstance(e, auth_steps.SessionByChannel):
            return conn.execute(sql.Q_SESSION_BY_CHANNEL, {"pbx_id": e.pbx_id, "channel_id": e.channel_id}).mappings().first()
        if isinstance(e, auth_steps.AccountRef):
            return conn.execute(select(accounts.c.ref).where(accounts.c.id == e.account_id)).scalar()
        if isinstance(e, auth_steps.AccountByEndpoint):
            return self._account_for_endpoint(conn, e.endpoint, lock=e.lock)
        if isinstance(e, auth_steps.AccountByRef):
            return conn.execute(sql.Q_ACCOUNT_BY_REF, {"ref": e.ref}).mappings().first()
        if isinstance(e, auth_steps.AccountByDid):
            return self._account_for_did(conn, e.e164)
        if isinstance(e, auth_steps.FirstEndpoint):
            return self._first_endpoint(conn, e.account_id)
        if isinstance(e, auth_steps.RatesOf):
            return self.rate_table(conn, e.plan_id, e.version, e.at)
        if isinstance(e, auth_steps.TakeCall):
            return conn.execute(sql.U_ACCOUNT_TAKE_CALL, {"aid": e.account_id, "hold": e.hold, "now": e.now})
        if isinstance(e, auth_steps.InsertSession):
            return conn.execute(sql.I_SESSION, dict(e.values))
        if isinstance(e, auth_steps.CountAnomaly):
            return conn.execute(fraud_store.U_ACCOUNT_ANOMALY, fraud_store.anomaly_params(e.account_id, e.counters))
        if isinstance(e, auth_steps.SuspendForFraud):
            return self.suspend_for_fraud_tx(conn, e.account, e.detail, e.now)
        if isinstance(e, auth_steps.RecordRefusal):
            try:
                return conn.execute(sql.I_REFUSAL, dict(e.values))
            except Exception as exc:
                raise auth_steps.RefusalNotRecorded(str(exc)) from exc
        if isinstance(e, auth_steps.CountAttempt):
            return conn.execute(sql.U_ACCOUNT_ATTEMPTS, {"aid": e.account_id, "minute": e.minute, "count": e.count,
                                                         "prev": e.prev})
        raise TypeError(f"unknown effect {e!r}")

    def _limits(self) -> auth_steps.Limits:
        s = self.settings
        return auth_steps.Limits(s.home_region, s.max_call_seconds, s.chunk_seconds, s.inbound_initial_increment,
                                 s.inbound_increment)

    def _account_for_endpoint(self, conn, endpoint, *, lock: bool):
        q = sql.Q_ACCOUNT_BY_ENDPOINT_LOCK if lock else sql.Q_ACCOUNT_BY_ENDPOINT
        return conn.execute(q, {"endpoint": endpoint}).mappings().first()

    def _account_for_did(self, conn, e164):
        return conn.execute(sql.Q_ACCOUNT_BY_DID_LOCK, {"number": e164}).mappings().first()

    def _first_endpoint(self, conn, account_id):
        return conn.execute(
            select(endpoints.c.name).where(endpoints.c.account_id == account_id).order_by(endpoints.c.name).limit(1)
        ).scalar()

    def rate_table(self, conn, plan_id: int, generation: int, at_ms: int) -> RateTable | None:
        """The plan's deck version in effect at ``at_ms`` (None: none yet), through the deck cache
        (billing_core.domain.decks; store.pg_fast does the same reads on raw asyncpg)."""
        decks = self._decks
        while (need := decks.need(plan_id, generation, at_ms)) is not None:
            if need == LOAD_VERSIONS:
                decks.put_versions(plan_id, generation, conn.execute(sql.Q_DECK_VERSIONS, {"plan_id": plan_id}).mappings().all())
            else:
                decks.put_rates(plan_id, need, conn.execute(sql.Q_DECK_RATES, {"plan_id": plan_id, "version": need}).mappings().all())
        return decks.table_at(plan_id, generation, at_ms)

    def deck_version_at(self, plan_id: int, at_ms: int):
        """The cached :class:`DeckVersion` in effect at ``at_ms`` (after :meth:`rate_table`)."""
        return self._decks.version_at(plan_id, at_ms)

    # --------------------------------------------------------------------------- call progress
    async def answer(self, session_id: str, at_ms: int | None = None) -> CallSession:
        """The callee answered at ``at_ms`` (the switch's event time): the cut-off starts ticking."""
        now = self.clock.now_ms()
        at = _answer_time(at_ms, now)
        fast = self.store.fast_path
        if fast is not None:  # PostgreSQL: the same statement on raw asyncpg, no explicit transaction
            answered = await self.store.run_fast(fast(self._decks).answer, session_id, at, now)
            if answered is not None:
                return sql.session_from_row(answered)
            # not (or no longer) "authorized", or unknown: the generic path says which
        return await self.store.run(self._answer_tx, session_id, at, now)

    def _answer_tx(self, conn, session_id, at, now):
        # One guarded UPDATE … RETURNING (the rule is in sql.U_SESSION_ANSWER, shared with the fast
        # path); when it changed nothing (already answered or settled), the view says what is.
        answered = conn.execute(sql.U_SESSION_ANSWER, {"sid": session_id, "at": at, "now": now}).mappings().first()
        if answered is not None:
            return sql.session_from_row(answered)
        return self._session_view(conn, session_id)

    async def extend(self, session_id: str, now_ms: int | None = None) -> CallSession:
        """Hold the next chunk (or what is left: a partial grant moves the cut-off earlier)."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        return await self.store.run(self._extend_tx, session_id, now)

    def _extend_tx(self, conn, session_id, now):
        row = self._session_row(conn, session_id)
        if row["state"] in LIVE_STATES and row["hold_mode"] == "chunked" and not row["emergency"]:
            acct = self._lock_account(conn, row["account_id"])
            row = self._session_row(conn, session_id)  # re-read under the account lock
            # ... and check again: a settle that held the lock first has ended the call, and
            # extending it would leave a hold on a settled session (and on the account) for good
            if row["state"] in LIVE_STATES:
                self._extend_locked(conn, acct, row, now)
        return self._session_view(conn, session_id)

    def _extend_locked(self, conn, acct, row, now) -> None:
        ext = rules.extension(acct, row, charged=row["charged"], hold=row["hold"],
                              cap=fraud_limits.call_cap_seconds(acct, self.settings.max_call_seconds), now=now)
        if ext is None:
            return
        conn.execute(sql.U_ACCOUNT_HELD, {"aid": acct["id"], "delta": ext.hold - row["hold"], "now": now})
        conn.execute(sql.U_SESSION_GRANT, {"sid": row["id"], "granted": ext.granted_seconds, "hold": ext.hold,
                                        "cutoff": ext.cutoff_at})

    async def debit_elapsed(self, session_id: str, now_ms: int | None = None, *, lookahead_seconds: int = 10) -> CallSession:
        """Sidecar: debit every fully elapsed chunk (ledger key = session + chunk number) and, when
        less than a chunk plus ``lookahead_seconds`` of granted talk remains, hold the next one."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        return await self.store.run(self._debit_tx, session_id, now, lookahead_seconds)

    def _debit_tx(self, conn, session_id, now, lookahead):
        row = self._session_row(conn, session_id)
        if row["state"] != "answered" or row["emergency"] or row["account_id"] is None:
            return self._session_view(conn, session_id)
        acct = self._lock_account(conn, row["account_id"])
        row = self._session_row(conn, session_id)
        if row["state"] != "answered":
            return self._session_view(conn, session_id)
        self._debit_locked(conn, acct, row, now, lookahead)
        return self._session_view(conn, session_id)

    def _debit_locked(self, conn, acct, row, now, lookahead) -> None:
        chunks = rules.due_chunks(row, now)
        charged, hold = row["charged"], row["hold"]
        for k, amount in chunks:
            released = min(amount, hold)
            acct = self._apply_balance_change(
                conn, acct, -amount, kind="chunk", reason=f"call {row['number_e164']} chunk {k}",
                key=f"chunk:{row['id']}:{k}", session_id=row["id"], now=now, held_delta=-released,
            )
            hold -= released
            charged += amount
        if chunks:
            conn.execute(sql.U_SESSION_DEBITED, {"sid": row["id"], "charged": charged, "hold": hold, "chunks": chunks[-1][0]})
            row = self._session_row(conn, row["id"])
        if rules.needs_extension(row, now, lookahead):
            self._extend_locked(conn, acct, row, now)

    async def debit_due(self, now_ms: int | None = None, *, lookahead_seconds: int = 10, batch: int = 200) -> dict[str, int]:
        """Sidecar pass over every answered chunked call: only the sessions with a chunk due or a
        hold to extend are touched, ``batch`` sessions per transaction. Returns counts.

        Why a batch operation: a pass over 10,000 live calls must take < 2 s; most calls need no
        work in a given pass (a 60 s chunk vs a 10 s interval), so one read picks the few that do.
        """
        now = self.clock.now_ms() if now_ms is None else now_ms

        def pick(conn):
            q = select(call_sessions.c.id, call_sessions.c.answered_at, call_sessions.c.granted_seconds,
                       call_sessions.c.chunk_seconds, call_sessions.c.chunks_debited, call_sessions.c.hold_mode,
                       call_sessions.c.cutoff_at).where(call_sessions.c.state == "answered",
                                                        call_sessions.c.emergency.is_(False))
            return [r["id"] for r in conn.execute(q).mappings() if rules.debit_work_due(r, now, lookahead_seconds)]

        todo = await self.store.run(pick)

        def work(conn, ids):
            for sid in ids:
                self._debit_tx(conn, sid, now, lookahead_seconds)
            return len(ids)

        done = 0
        for i in range(0, len(todo), batch):
            done += await self.store.run(work, todo[i:i + batch])
        return {"examined_due": len(todo), "processed": done}

    async def settle(self, session_id: str, talk_ms: int, *, stale: bool = False, note: str | None = None,
                     path: str = "api", basis: str = "measured", answered_at_ms: int | None = None) -> Settlement:
        """Charge cost(billable talk) minus what chunks took, release the hold — exactly once.

        ``answered_at_ms``: when the callee answered, for a switch that learns it only at the end
        (continue mode's hangup handler, FastAGI's ANSWEREDTIME): recorded in the same transaction,
        as :meth:`answer` would (a session already answered keeps its first answer). One
        transaction instead of two per call on the gate's busiest path.

        ``talk_ms`` is what the adapter reports; the core bounds it (money_rules.talk_bound: never
        more than the time since authorize/answer, never more than a full hold's grant) and never
        charges the account below its credit limit. ``path`` names the caller in the
        ``callgate_settle_clamped_total`` metric; ``basis`` (money_rules.BILLING_BASES) says how
        the talk was known and is stored on the session."""
        talk_ms = _checked_talk_ms(talk_ms, "talk_ms")
        _check_basis(basis)
        now = self.clock.now_ms()
        answered_at = None if answered_at_ms is None else _answer_time(answered_at_ms, now)
        result = await self.store.run(self._settle_tx, session_id, talk_ms, now, stale, note, basis, answered_at)
        if not result.replayed:  # counted after the commit, once per session
            metrics.CALLS_SETTLED.labels("yes" if stale else "no").inc()
            _count_clamps(result, path)
        return result

    def _settle_tx(self, conn, session_id, talk_ms, now, stale, note, basis="measured", answered_at=None):
        # The session's account is locked first (found through the session in the same statement),
        # then the session is read under that lock: a concurrent settle or debit of this call has
        # either committed (we see it) or waits for us.
        acct = conn.execute(sql.Q_ACCOUNT_BY_SESSION_LOCK, {"sid": session_id}).mappings().first()
        if answered_at is not None:  # answer()'s guarded statement: only an "authorized" session moves
            conn.execute(sql.U_SESSION_ANSWER, {"sid": session_id, "at": answered_at, "now": now})
        row = self._session_row(conn, session_id)
        if row["state"] == "settled":
            return sql.settlement_from_row(row, replayed=True)
        if row["emergency"] or row["account_id"] is None:
            acct = None  # emergency sessions never took a hold nor a live-call slot: nothing to release
        elif acct is None:
            raise NotFound(f"account id {row['account_id']} is gone")
        if row["state"] == "authorized" and not rules.answer_may_be_unknown(row, basis):
            talk_ms = 0  # never answered: nothing to pay whatever the adapter says
        clamps: list[str] = []
        bound = rules.talk_bound(row, now, basis)
        if talk_ms > bound.talk_ms:
            log.warning("session %s: reported talk %d ms is more than could have happened; settled at %d ms (%s bound)",
                        session_id, talk_ms, bound.talk_ms, bound.bound)
            note = _join_note(note, f"talk clamped from {talk_ms} ms ({bound.bound})")
            talk_ms = bound.talk_ms
            clamps.append(bound.bound)
            if basis == "measured":
                basis = "clamped"
        charge = rules.settlement_cost(row, talk_ms)
        billable, total, overrun = charge.billable_seconds, charge.total, charge.overrun
        final = total - row["charged"]
        if acct is not None:
            limit = rules.settle_charge_limit(acct, row, now)
            if final > limit:
                # the money, or (issue 18) a spend cap: the period's charges never exceed it
                what = "spend cap" if rules.cap_bound(acct, row, now) else "credit limit"
                log.warning("session %s: charge %d would take account %s over its %s; %d charged, %d unpaid",
                            session_id, final, acct["ref"], what, limit, final - limit)
                note = _join_note(note, f"unpaid {final - limit} micro-units ({what})")
                total -= final - limit
                final = limit
                clamps.append(what.replace(" ", "_"))
            # the hold is released and the live-call slot freed in the same UPDATE as the charge
            if final != 0:
                acct = self._apply_balance_change(
                    conn, acct, -final, kind="call",
                    reason=f"call {row['number_e164'] or row['number']} {billable}s" + (" (stale)" if stale else ""),
                    key=f"call:{row['id']}", session_id=row["id"], now=now, held_delta=-row["hold"], calls_delta=-1,
                )
            else:
                conn.execute(sql.U_ACCOUNT_END_CALL, {"aid": acct["id"], "delta": -row["hold"], "now": now})
        if overrun:
            log.warning("session %s: talk cost %d exceeds its grant by %d micro-units", session_id, total, overrun)
        conn.execute(sql.U_SESSION_SETTLED, {"sid": session_id, "now": now, "talk": talk_ms, "cost": total, "overrun": overrun,
                                          "stale": stale, "note": note, "basis": basis})
        # the dashboard's totals (store.tables.call_day_totals), in the settle's transaction
        conn.execute(sql.U_DAY_TOTALS, {
            "day": utc_day(row["created_at"]), "aid": row["account_id"] or 0, "calls": 1, "talk": talk_ms,
            "cost": total})
        return Settlement(session_id, talk_ms, billable, total, row["charged"], final, overrun,
                          billing_basis=basis, clamped=tuple(clamps))

    async def settle_many(self, items: list[tuple[str, int, str | None]], *, stale: bool = False,
                          batch: int = 100, path: str = "api", basis: str = "measured") -> list[Settlement]:
        """Settle (session id, talk ms, note) items, ``batch`` per transaction — the same
        ``settle`` for each, exactly once each; for the sidecar's stale sweeps, where one
        transaction per call costs ~3 ms on PostgreSQL. Accounts are locked in id order, so two
        concurrent sweeps never deadlock."""
        items = [(sid, _checked_talk_ms(talk_ms, f"talk_ms of {sid}"), note) for sid, talk_ms, note in items]
        _check_basis(basis)
        now = self.clock.now_ms()

        def tx(conn, group):
            ids = [sid for sid, _, _ in group]
            owner = dict(conn.execute(select(call_sessions.c.id, call_sessions.c.account_id)
                                      .where(call_sessions.c.id.in_(ids))).all())
            ordered = sorted(group, key=lambda it: (owner.get(it[0]) or 0, it[0]))
            return [self._settle_tx(conn, sid, talk, now, stale, note, basis) for sid, talk, note in ordered
                    if sid in owner]

        out: list[Settlement] = []
        for i in range(0, len(items), batch):
            out += await self.store.run(tx, items[i:i + batch])
        fresh = sum(1 for r in out if not r.replayed)
        if fresh:
            metrics.CALLS_SETTLED.labels("yes" if stale else "no").inc(fresh)
        for result in out:
            if not result.replayed:
                _count_clamps(result, path)
        return out

    async def heartbeat(self, session_ids: Iterable[str], now_ms: int | None = None) -> int:
        """The gate reports these calls alive (stale-session detection). Returns rows touched.

        In transactions of at most :data:`HEARTBEAT_BATCH` ids, one after the other: on SQLite the
        writer runs every transaction, and one UPDATE of 300 ids held it ~6 ms, with every
        authorize arriving meanwhile waiting behind it. Each part is complete on its own (a
        heartbeat only moves ``last_seen_at`` forward), so a failure midway loses nothing."""
        ids = list(session_ids)
        if not ids:
            return 0
        now = self.clock.now_ms() if now_ms is None else now_ms

        def tx(conn, part):
            return conn.execute(
                update(call_sessions).where(call_sessions.c.id.in_(part), call_sessions.c.state.in_(LIVE_STATES))
                .values(last_seen_at=now)
            ).rowcount

        touched = 0
        for i in range(0, len(ids), HEARTBEAT_BATCH):
            touched += await self.store.run(tx, ids[i:i + HEARTBEAT_BATCH])
        return touched

    async def get_session(self, session_id: str) -> CallSession | None:
        def tx(conn):
            try:
                return self._session_view(conn, session_id)
            except NotFound:
                return None

        return await self.store.run(tx)

    async def find_session(self, pbx_id: str, channel_id: str) -> CallSession | None:
        def tx(conn):
            sid = conn.execute(
                select(call_sessions.c.id).where(call_sessions.c.pbx_id == pbx_id, call_sessions.c.channel_id == channel_id)
            ).scalar()
            return None if sid is None else self._session_view(conn, sid)

        return await self.store.run(tx)

    async def live_cutoffs(self, pbx_id: str) -> list[LiveCutoff]:
        """The answered calls of one PBX and their cut-offs: what the gate's refresh pass reads
        every second to follow the money. Lean on purpose (four columns, one prebuilt statement on
        the SQLite fast path): the full :meth:`live_sessions` of 300 live calls held the SQLite
        writer 13 ms (p50; max 22 ms) once a second, and every authorize arriving meanwhile
        queued behind it: the gate benchmark's p99."""

        def tx(conn):
            return [LiveCutoff(sid, cutoff, mode, bool(emergency))
                    for sid, cutoff, mode, emergency in conn.execute(sql.Q_ANSWERED_CUTOFFS, {"pbx_id": pbx_id}).all()]

        return await self.store.run(tx)

    async def live_sessions(self, pbx_id: str | None = None) -> list[CallSession]:
        def tx(conn):
            q = sql.session_select().where(call_sessions.c.state.in_(LIVE_STATES))
            if pbx_id is not None:
                q = q.where(call_sessions.c.pbx_id == pbx_id)
            return [sql.session_from_row(r) for r in conn.execute(q.order_by(call_sessions.c.created_at)).mappings()]

        return await self.store.run(tx)

    # ---------------------------------------------------------------------------------- money
    async def credit(self, ref: str, amount: int, reason: str, *, kind: str = "credit",
                     idempotency_key: str | None = None, allow_below_limit: bool = False) -> LedgerEntry:
        """Change a balance by ``amount`` (negative = debit) with a ledger entry. A replayed
        idempotency key returns the original entry and changes nothing. A debit that would take the
        balance below the credit limit raises :class:`BelowCreditLimit` unless
        ``allow_below_limit``, which is then recorded on the entry (``verify`` accepts it)."""
        if kind not in ("credit", "debit", "payment", "refund", "reversal"):
            raise InvalidInput(f"kind: must be credit, debit, payment, refund or reversal (got {kind!r})")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
            raise InvalidInput(f"amount: must be a non-zero amount (got {amount!r})")
        check_storage_range(amount, field="amount")
        reason = check_text(reason, "reason", max_length=300)
        if idempotency_key is not None:
            check_text(idempotency_key, "idempotency key", max_length=200)
        key = idempotency_key or f"{kind}:{uuid.uuid4().hex}"
        args = (ref, amount, reason.strip(), kind, key)
        try:
            return await self.store.run(self.credit_tx, *args, self.clock.now_ms(), allow_below_limit)
        except IntegrityError:
            # Two writers raced on the same key for different accounts: the loser sees the winner's.
            return await self.store.run(self.credit_tx, *args, self.clock.now_ms(), allow_below_limit)

    def credit_tx(self, conn: Connection, ref: str, amount: int, reason: str, kind: str, key: str, now: int,
                  allow_below_limit: bool = False) -> LedgerEntry:
        """The credit inside a caller's transaction (deposit invoices pay through this, so the
        invoice and the ledger change together)."""
        acct = self._lock_account_by_ref(conn, ref)
        existing = conn.execute(sql.Q_LEDGER_BY_KEY, {"key": key}).mappings().first()
        if existing is not None:
            if existing["account_id"] != acct["id"] or existing["amount"] != amount:
                raise InvalidInput(f"idempotency key {key!r} was already used for a different account or amount")
            return sql.entry_from_row(existing, ref, replayed=True)
        below = amount < 0 and acct["balance"] + amount < -acct["credit_limit"]
        if below and not allow_below_limit:
            raise BelowCreditLimit(
                f"amount: debiting {format_amount(-amount)} would take account {ref} to "
                f"{format_amount(acct['balance'] + amount)}, below its credit limit ({format_amount(-acct['credit_limit'])})")
        self._apply_balance_change(conn, acct, amount, kind=kind, reason=reason, key=key, session_id=None, now=now,
                                   below_limit_allowed=below)
        row = conn.execute(sql.Q_LEDGER_BY_KEY, {"key": key}).mappings().one()
        return sql.entry_from_row(row, ref)

    def _apply_balance_change(self, conn, acct, delta: int, *, kind: str, reason: str, key: str, session_id: str | None,
                              now: int, held_delta: int = 0, calls_delta: int = 0, below_limit_allowed: bool = False):
        """The only place a balance changes: ledger entry + balance + lifecycle + alerts, one
        transaction (the arithmetic is billing_core.domain.money_rules, shared with the sidecar).
        ``calls_delta`` moves the live-call count in the same UPDATE (settle frees the call's slot)."""
        change = rules.balance_change(acct, delta, kind=kind, reason=reason, key=key, session_id=session_id, now=now,
                                      held_delta=held_delta, below_limit_allowed=below_limit_allowed)
        a = change.account
        conn.execute(sql.I_LEDGER, change.ledger_row)
        conn.execute(sql.U_ACCOUNT_BALANCE, sql.account_balance_params(a, delta=delta, now=now, held_delta=held_delta,
                                                                       calls_delta=calls_delta))
        for alert in change.alerts:
            self.enqueue_alert(conn, account_id=a["id"], to_addr=a["email"], kind=alert.kind,
                               dedupe_key=alert.dedupe_key, context=alert.context, now=now)
        if change.suspend is not None:
            self.suspend_for_fraud_tx(conn, a, change.suspend, now)
        return a

    def suspend_for_fraud_tx(self, conn, acct, detail: str, now: int) -> None:
        """An anomaly suspension inside the caller's transaction (billing_core.store.fraud)."""
        log.warning("account %s suspended: fraud_suspected (%s)", acct["ref"], detail)
        metrics.FRAUD_SUSPENSIONS.inc()
        for stmt, params in fraud_store.suspension_writes(conn.dialect.name, acct, detail, now,
                                                          self.settings.operator_email, fraud_store.alert_facts(acct)):
            conn.execute(stmt, params)

    @staticmethod
    def enqueue_alert(conn, *, account_id, to_addr, kind, dedupe_key, context: dict, now: int) -> None:
        """Queue an email in the caller's transaction; the unique key makes a replay a no-op."""
        values = dict(account_id=account_id, kind=kind, dedupe_key=dedupe_key, to_addr=to_addr,
                      context=json.dumps(context, sort_keys=True), status="queued", attempts=0,
                      next_attempt_at=now, created_at=now)
        dialect = conn.dialect.name
        ins = (pg_dialect.insert(outbox) if dialect == "postgresql" else sqlite_dialect.insert(outbox)).values(**values)
        conn.execute(ins.on_conflict_do_nothing(index_elements=["dedupe_key"]))

    # ------------------------------------------------------------------------------- accounts
    async def account(self, ref: str) -> AccountView:
        return await self.store.run(self.account_tx, ref)

    def account_tx(self, conn, ref: str) -> AccountView:
        row = conn.execute(sql.Q_ACCOUNT_BY_REF, {"ref": ref}).mappings().first()
        if row is None:
            raise NotFound(f"unknown account {ref!r}")
        return sql.account_view(row)

    def _lock_account(self, conn, account_id):
        row = conn.execute(sql.Q_ACCOUNT_BY_ID_LOCK, {"aid": account_id}).mappings().first()
        if row is None:
            raise NotFound(f"account id {account_id} is gone")
        return row

    def _lock_account_by_ref(self, conn, ref):
        row = conn.execute(sql.Q_ACCOUNT_BY_REF_LOCK, {"ref": ref}).mappings().first()
        if row is None:
            raise NotFound(f"unknown account {ref!r}")
        return row

    def _session_row(self, conn, session_id):
        row = conn.execute(sql.Q_SESSION, {"sid": session_id}).mappings().first()
        if row is None:
            raise NotFound(f"unknown call session {session_id!r}")
        return row

    def _session_view(self, conn, session_id) -> CallSession:
        row = conn.execute(sql.Q_SESSION_VIEW, {"sid": session_id}).mappings().first()
        if row is None:
            raise NotFound(f"unknown call session {session_id!r}")
        return sql.session_from_row(row)


# ----------------------------------------------------------------------------------- helpers
def _answer_time(at_ms: int | None, now: int) -> int:
    """An answer time the switch reported, within the storage range (U_SESSION_ANSWER then moves
    it to the authorize at the earliest); none reported: now."""
    return now if at_ms is None else min(max(int(at_ms), 0), now + _ANSWER_FUTURE_LIMIT_MS)


def _checked_talk_ms(talk_ms, field: str) -> int:
    """A talk time as an int ≥ 0 (any size: the settle bound cuts it before it is stored)."""
    if talk_ms is None or isinstance(talk_ms, bool):
        raise InvalidInput(f"{field}: must be a whole number ≥ 0 (got {talk_ms!r})")
    try:
        value = int(talk_ms)
    except (TypeError, ValueError):
        raise InvalidInput(f"{field}: must be a whole number ≥ 0 (got {talk_ms!r})") from None
    if value < 0 or value != talk_ms:
        raise InvalidInput(f"{field}: must be a whole number ≥ 0 (got {talk_ms!r})")
    return value


def _check_basis(basis: str) -> None:
    if basis not in rules.BILLING_BASES:
        raise InvalidInput(f"basis: must be one of {', '.join(rules.BILLING_BASES)} (got {basis!r})")


def _count_clamps(result: Settlement, path: str) -> None:
    for bound in result.clamped:
        metrics.SETTLE_CLAMPED.labels(path, bound).inc()


def _join_note(note: str | None, more: str) -> str:
    return (f"{note}; {more}" if note else more)[:200]


__all__ = ["BillingCore", "CoreSettings", "StorageError", "LIVE_STATES"]
