"""The PostgreSQL hot path: drives :func:`billing_core.domain.authorize.authorize_steps` on raw
asyncpg (prepared statements, one pooled connection, one transaction).

Why: SQLAlchemy's async layer costs about as much CPU per statement as the rest of an authorize;
measured on this machine, raw asyncpg runs a 3-statement transaction ~1.9× faster. The SQL is
compiled from the same SQLAlchemy statements the generic driver uses, so both read the same columns.
The decision itself is shared (the generator), so there is one decision and two drivers; the test
suite runs every authorize test on PostgreSQL through this driver.
"""
from __future__ import annotations

import asyncio
import functools
import re
from typing import Any

import asyncpg
from sqlalchemy import bindparam, literal_column
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import asyncpg as _sa_asyncpg
from sqlalchemy.util import await_only

from ..domain import authorize as steps
from ..log_limits import quiet_driver_logger
from ..domain.decks import LOAD_VERSIONS, DeckCache
from ..domain.records import Authorization
from . import sqlite_fast
from . import fraud as fraud_store
from . import statements as sql
from .fraud import alert_facts
from .errors import StorageError, is_unavailable_sqlstate, pause_before_retry
from .tables import call_sessions


async def run_fast_op(op, *args):
    """The fast path's error policy, the same as PostgresStore.run's for SQLAlchemy: a deadlock
    victim or serialization failure is retried (up to 5 attempts; the operation's transaction was
    rolled back, so a retry starts clean), a database that cannot answer is StorageError, a
    duplicate key is SQLAlchemy's IntegrityError (callers catch one class whichever path ran);
    anything else is raised as it is."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await op(*args)
        except asyncpg.UniqueViolationError as exc:
            raise sa_exc.IntegrityError(None, None, exc) from exc
        except asyncpg.PostgresError as exc:
            if await pause_before_retry(exc.sqlstate, attempt):
                continue
            if is_unavailable_sqlstate(exc.sqlstate or ""):
                raise StorageError(f"database unavailable: {exc!r}") from exc
            raise
        except (OSError, asyncio.TimeoutError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"database unavailable: {exc!r}") from exc


def _to_asyncpg(stmt) -> tuple[str, list[str], dict[str, Any]]:
    """Compile a SQLAlchemy statement to asyncpg SQL ($1…), the order of its bind names, and the
    values of its literal binds (e.g. the ``1`` of ``live_calls + 1``)."""
    compiled = stmt.compile(dialect=postgresql.dialect())
    sql = str(compiled)
    order: list[str] = []

    def repl(m: re.Match) -> str:
        name = m.group(1)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return re.sub(r"%\((\w+)\)s", repl, sql), order, dict(compiled.params)


async def _reset_if_needed(conn: asyncpg.Connection) -> None:
    """Released connections skip asyncpg's reset query (advisory unlock, CLOSE ALL, UNLISTEN, RESET
    ALL: one more round trip per authorize) unless a transaction was left open (a cancelled
    authorize). The authorize transaction leaves nothing else behind: no LISTEN, locks outside the
    transaction, cursors or SET (the schema is a startup setting, which RESET ALL keeps anyway)."""
    if conn.is_in_transaction():
        await conn.reset()


#: the account row's version as the optimistic read returns it: PostgreSQL's ``xmin``, the id of the
#: transaction that wrote this version of the row. Every UPDATE of an account (a take, a settle, a
#: credit, an operator's change, another gate's authorize) writes a new version with a new xmin, so
#: "xmin unchanged" means "no write since my read" for every column of the row — with no version
#: column that each writer would have to remember to bump.
_ROW_VERSION = "row_xmin"


def _guarded(stmt):
    """``stmt`` (an UPDATE of accounts) applied only to the version of the row that was read."""
    return stmt.where(literal_column("accounts.xmin") == bindparam(_ROW_VERSION)).returning(literal_column("1"))


class _TakeAndInsert:
    """The take (an UPDATE of the account) and the session insert as one statement.

    Unguarded (inside the locked transaction), a data-modifying WITH runs exactly once whether or not
    it is read. Guarded (the optimistic authorize), the INSERT selects from the UPDATE's RETURNING:
    no row taken, no session inserted — the statement reports ``INSERT 0 0`` and nothing is written.
    """

    __slots__ = ("sql", "order", "literals")

    def __init__(self, take: tuple[str, list[str], dict[str, Any]], cols: list[str], *, guarded: bool = False):
        take_sql, self.order, self.literals = take
        n = len(self.order)
        values = ", ".join(f"${n + i + 1}" for i in range(len(cols)))
        insert = f"INSERT INTO call_sessions ({', '.join(cols)}) "
        self.sql = (f"WITH take AS ({take_sql}) " + insert
                    + (f"SELECT {values} FROM take" if guarded else f"VALUES ({values})"))

    def args(self, params: dict[str, Any], insert: steps.InsertSession, cols: list[str]) -> list[Any]:
        return ([params[n] if n in params else self.literals[n] for n in self.order]
                + [insert.values[c] for c in cols])


_OPTIMISTIC_READS = (steps.SessionByChannel, steps.AccountRef, steps.RatesOf)


class PgFastPath:
    def __init__(self, dsn: str, schema: str | None, rate_cache: DeckCache, *, pool_size: int = 20):
        self._dsn = dsn
        self._schema = schema
        self._rate_cache = rate_cache
        self._pool_size = pool_size
        self._rare: dict[int, tuple[str, list[str], dict[str, Any]]] = {}
        #: where anomaly suspensions are reported (the core's settings.operator_email; set by the store)
        self.operator_email: str | None = None
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._sql = {  # the generic driver's statements (store/statements.py): one source for the columns
            "by_channel": _to_asyncpg(sql.Q_SESSION_BY_CHANNEL),
            "by_endpoint": _to_asyncpg(sql.Q_ACCOUNT_BY_ENDPOINT),
            "by_endpoint_lock": _to_asyncpg(sql.Q_ACCOUNT_BY_ENDPOINT_LOCK),
            "by_ref": _to_asyncpg(sql.Q_ACCOUNT_BY_REF),
            "by_did_lock": _to_asyncpg(sql.Q_ACCOUNT_BY_DID_LOCK),
            "take_call": _to_asyncpg(sql.U_ACCOUNT_TAKE_CALL),
            "count_attempt": _to_asyncpg(sql.U_ACCOUNT_ATTEMPTS),
            "take_call_counted": _to_asyncpg(sql.U_ACCOUNT_TAKE_CALL_COUNTED),
            "answer": _to_asyncpg(sql.U_SESSION_ANSWER),
            "deck_versions": _to_asyncpg(sql.Q_DECK_VERSIONS),
            "deck_rates": _to_asyncpg(sql.Q_DECK_RATES),
            "refusal": _to_asyncpg(sql.I_REFUSAL),
        }
        cols = [c.name for c in call_sessions.columns]
        self._insert_cols = cols
        self._insert_sql = (
            f"INSERT INTO call_sessions ({', '.join(cols)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(cols)))})"
        )
        # TakeCall and the InsertSession that always follows it, as one statement (one round trip
        # less per authorize): a data-modifying WITH runs exactly once whether or not it is read,
        # in the same snapshot, and the account row is already ours (locked FOR UPDATE before).
        # The "_counted" forms carry the attempt counter of --max-attempts-per-minute (issue 18) in
        # the same UPDATE: the decision never reads it back, so it travels with the take (two CTEs
        # may not update one row in one statement, hence one UPDATE).
        self._take_sql = {key: _TakeAndInsert(self._sql[key], cols) for key in ("take_call", "take_call_counted")}
        # The optimistic authorize (see authorize): the account read with its row version, and the
        # writes guarded by it, in autocommit — two round trips instead of BEGIN, SELECT … FOR
        # UPDATE, the writes and COMMIT.
        self._sql["by_endpoint_versioned"] = _to_asyncpg(
            sql.Q_ACCOUNT_BY_ENDPOINT.add_columns(literal_column("accounts.xmin").label(_ROW_VERSION)))
        self._guarded_take_sql = {
            key: _TakeAndInsert(_to_asyncpg(_guarded(stmt)), cols, guarded=True)
            for key, stmt in (("take_call", sql.U_ACCOUNT_TAKE_CALL), ("take_call_counted", sql.U_ACCOUNT_TAKE_CALL_COUNTED))
        }

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:  # many first calls at once must create ONE pool
                if self._pool is None:
                    # The pools log each reconnect failure with a traceback: one line a minute is enough
                    # (the store's callers already say "database unavailable" once per state change).
                    quiet_driver_logger("asyncpg.pool")
                    quiet_driver_logger("sqlalchemy.pool")
                    settings = {"search_path": self._schema} if self._schema else {}
                    self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._pool_size,
                                                           server_settings=settings, reset=_reset_if_needed)
        return self._pool

    def _args(self, key: str, params: dict[str, Any]) -> list[Any]:
        """Positional values for statement ``key``: the named parameters, else its literal binds."""
        _, order, literals = self._sql[key]
        return [params[n] if n in params else literals[n] for n in order]

    async def _exec(self, conn, stmt, params: dict[str, Any]):
        """A rarely run statement (issue 18's suspension writes), compiled on first use."""
        compiled = self._rare.get(id(stmt))
        if compiled is None:
            compiled = self._rare[id(stmt)] = _to_asyncpg(stmt)
        sql_text, order, literals = compiled
        return await conn.execute(sql_text, *[params[n] if n in params else literals[n] for n in order])

    async def _q(self, conn, key: str, fetch: str, **params: Any):
        sql, args = self._sql[key][0], self._args(key, params)
        if fetch == "row":
            return await conn.fetchrow(sql, *args)
        return await conn.execute(sql, *args)

    async def _perform(self, conn, e) -> Any:
        if isinstance(e, steps.SessionByChannel):
            return await self._q(conn, "by_channel", "row", pbx_id=e.pbx_id, channel_id=e.channel_id)
        if isinstance(e, steps.AccountRef):
            return await conn.fetchval("SELECT ref FROM accounts WHERE id = $1", e.account_id)
        if isinstance(e, steps.AccountByEndpoint):
            return await self._q(conn, "by_endpoint_lock" if e.lock else "by_endpoint", "row", endpoint=e.endpoint)
        if isinstance(e, steps.AccountByRef):
            return await self._q(conn, "by_ref", "row", ref=e.ref)
        if isinstance(e, steps.AccountByDid):
            return await self._q(conn, "by_did_lock", "row", number=e.e164)
        if isinstance(e, steps.FirstEndpoint):
            return await conn.fetchval("SELECT name FROM endpoints WHERE account_id = $1 ORDER BY name LIMIT 1", e.account_id)
        if isinstance(e, steps.RatesOf):
            return await self._rates_of(conn, e)
        if isinstance(e, steps.TakeCall):
            return await self._q(conn, "take_call", "exec", aid=e.account_id, hold=e.hold, now=e.now)
        if isinstance(e, steps.InsertSession):
            return await conn.execute(self._insert_sql, *[e.values[c] for c in self._insert_cols])
        if isinstance(e, steps.CountAttempt):
            return await self._q(conn, "count_attempt", "exec", aid=e.account_id, minute=e.minute, count=e.count,
                                 prev=e.prev)
        if isinstance(e, steps.CountAnomaly):
            return await self._exec(conn, fraud_store.U_ACCOUNT_ANOMALY, fraud_store.anomaly_params(e.account_id, e.counters))
        if isinstance(e, steps.RecordRefusal):
            try:
                return await self._q(conn, "refusal", "exec", **e.values)
            except Exception as exc:  # the refusal stands unrecorded (the core decides again)
                raise steps.RefusalNotRecorded(repr(exc)) from exc
        if isinstance(e, steps.SuspendForFraud):
            for stmt, params in fraud_store.suspension_writes("postgresql", e.account, e.detail, e.now,
                                                              self.operator_email, alert_facts(e.account)):
                await self._exec(conn, stmt, params)
            return None
        raise TypeError(f"unknown effect {e!r}")

    async def _rates_of(self, conn, e: steps.RatesOf):
        """The deck version in effect at ``e.at`` through the shared cache (as BillingCore.rate_table)."""
        decks = self._rate_cache
        while (need := decks.need(e.plan_id, e.version, e.at)) is not None:
            if need == LOAD_VERSIONS:
                sql_, _, _ = self._sql["deck_versions"]
                decks.put_versions(e.plan_id, e.version,
                                   await conn.fetch(sql_, *self._args("deck_versions", {"plan_id": e.plan_id})))
            else:
                sql_, _, _ = self._sql["deck_rates"]
                decks.put_rates(e.plan_id, need, await conn.fetch(sql_, *self._args("deck_rates", {"plan_id": e.plan_id, "version": need})))
        return decks.table_at(e.plan_id, e.version, e.at)

    async def authorize(self, req: steps.AuthorizeRequest, lim: steps.Limits) -> Authorization:
        """The decision on one pooled connection: optimistic first for an outbound call, else (or
        when the optimistic run cannot finish) in a transaction holding the account's row lock."""
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            if req.direction == "outbound" and req.account_ref is None and not req.emergency:
                decided = await self._authorize_optimistic(conn, req, lim)
                if decided is not None:
                    return decided
            async with conn.transaction():
                return await self._authorize_locked(conn, req, lim)

    async def _authorize_optimistic(self, conn, req: steps.AuthorizeRequest, lim: steps.Limits) -> Authorization | None:
        """The decision in two round trips and no transaction of its own: read the account with its
        row version (xmin), decide, then write the take, the attempt count and the session in one
        statement that applies only if the row is still that version (or, for a refusal that writes
        nothing else, its record alone). None when it cannot be decided so — the row changed in
        between (another call of the account, a settle, a credit), or the decision needs a write
        this path does not make (a refusal that counts, a suspension) — and the caller decides again
        under the lock.

        Why: on PostgreSQL each round trip costs the client and the server a send, a wake-up and a
        receive (~60 µs of CPU each side on this 2-core host, measured); the locked transaction
        takes four (BEGIN, SELECT … FOR UPDATE, the writes, COMMIT), this two. It is as safe: the
        guard covers every column the decision read from the account row, and what else it read
        (package, plan, deck) is read unlocked on the locked path too (FOR UPDATE OF accounts)."""
        gen = steps.authorize_steps(req, lim)
        version: int | None = None
        count: steps.CountAttempt | None = None
        take: steps.TakeCall | None = None
        insert: steps.InsertSession | None = None
        try:
            effect = gen.send(None)
            while True:
                if isinstance(effect, _OPTIMISTIC_READS):
                    result = await self._perform(conn, effect)
                elif isinstance(effect, steps.AccountByEndpoint) and version is None:
                    result = await self._q(conn, "by_endpoint_versioned", "row", endpoint=effect.endpoint)
                    version = result[_ROW_VERSION] if result is not None else None
                elif isinstance(effect, steps.CountAttempt) and count is None and take is None:
                    count, result = effect, None  # never read back
                elif isinstance(effect, steps.TakeCall) and take is None:
                    take, result = effect, None  # never read back
                elif isinstance(effect, steps.InsertSession) and take is not None and insert is None:
                    insert, result = effect, None
                elif isinstance(effect, steps.RecordRefusal) and take is None and count is None:
                    # a refusal decided on a committed snapshot of the row, recorded by itself
                    # (one INSERT … ON CONFLICT DO NOTHING, atomic in autocommit)
                    result = await self._perform(conn, effect)
                else:  # a write of the rare kinds: decide again under the lock
                    gen.close()
                    return None
                effect = gen.send(result)
        except StopIteration as stop:
            decided: Authorization = stop.value
        if take is None and count is None and insert is None:
            return decided  # nothing to write: decided on a committed snapshot of the row
        if take is None or insert is None or version is None or (count is not None and count.account_id != take.account_id):
            return None
        status = await conn.execute(*self._take_statement(self._guarded_take_sql, take, insert, count,
                                                           **{_ROW_VERSION: version}))
        return decided if status == "INSERT 0 1" else None

    async def _authorize_locked(self, conn, req: steps.AuthorizeRequest, lim: steps.Limits) -> Authorization:
        """The decision inside the caller's transaction, the account row locked FOR UPDATE."""
        gen = steps.authorize_steps(req, lim)
        take: steps.TakeCall | None = None  # held back to travel with the session insert
        count: steps.CountAttempt | None = None  # held back likewise (never read back)
        try:
            effect = gen.send(None)
            while True:
                if isinstance(effect, steps.CountAttempt) and count is None:
                    count, result = effect, None
                elif isinstance(effect, steps.TakeCall) and take is None:
                    take, result = effect, None  # the decision does not read its result
                elif isinstance(effect, steps.InsertSession) and take is not None:
                    result = await self._take_and_insert(conn, take, effect, count)
                    take = count = None
                elif isinstance(effect, steps.RatesOf):  # a read the held-back writes cannot change
                    result = await self._perform(conn, effect)
                else:
                    for held in (count, take):  # anything else in between: write them first
                        if held is not None:
                            await self._perform(conn, held)
                    take = count = None
                    result = await self._perform(conn, effect)
                effect = gen.send(result)
        except StopIteration as stop:
            for held in (count, take):
                if held is not None:
                    await self._perform(conn, held)
            return stop.value

    async def answer(self, session_id: str, at: int, now: int):
        """The answer of an "authorized" session in one statement (autocommit: a single UPDATE is
        atomic), returning the session view's row; None when no row was "authorized" (already
        answered, settled or unknown), for the generic path to tell which."""
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            return await self._q(conn, "answer", "row", sid=session_id, at=at, now=now)

    async def _take_and_insert(self, conn, take: steps.TakeCall, insert: steps.InsertSession,
                               count: steps.CountAttempt | None = None) -> str:
        if count is not None and count.account_id != take.account_id:
            await self._perform(conn, count)
            count = None
        return await conn.execute(*self._take_statement(self._take_sql, take, insert, count))

    def _take_statement(self, statements: dict[str, _TakeAndInsert], take: steps.TakeCall,
                        insert: steps.InsertSession, count: steps.CountAttempt | None, **guard: Any) -> list[Any]:
        """The SQL and the values of a take with its session insert (and, with ``count``, the attempt
        counter in the same UPDATE), from ``statements`` (plain or guarded by ``guard``)."""
        params = {"aid": take.account_id, "hold": take.hold, "now": take.now, **guard}
        if count is not None:
            params.update(minute=count.minute, count=count.count, prev=count.prev)
        stmt = statements["take_call" if count is None else "take_call_counted"]
        return [stmt.sql, *stmt.args(params, insert, self._insert_cols)]

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


# ------------------------------------------------------------------- transaction functions
# The generic driver runs the core's (sync) transaction functions inside SQLAlchemy's greenlet
# (AsyncConnection.run_sync). PgFastConnection gives them the same connection, except that the
# core's registered hot statements (sqlite_fast.register_fast) go straight to the asyncpg
# connection under it, compiled once for the asyncpg dialect with SQLAlchemy's bind/result
# processors. Why: py-spy on the gate benchmark showed SQLAlchemy's per-execution work (execution
# context, parameter dicts, result metadata) as the largest avoidable cost of answer and settle
# on PostgreSQL. Same statements, same transaction (the adapter's own BEGIN is started first), and
# asyncpg errors become the exceptions SQLAlchemy would raise (so retries on 40001/40P01 and the
# IntegrityError handling see no difference). It relies on the asyncpg adapter's internals
# (``_connection``, ``_transaction``, ``_start_transaction``, ``_handle_exception``):
# :func:`fast_supported` checks them (once per adapter class), and without them everything runs
# through SQLAlchemy.

_PG_DIALECT = _sa_asyncpg.dialect()
_STATUS_COUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")
_ADAPTER_INTERNALS = ("_connection", "_transaction", "_start_transaction", "_handle_exception")


@functools.cache
def fast_supported(adapter_class: type) -> bool:
    """Whether this SQLAlchemy version's asyncpg adapter has the internals PgFastConnection uses."""
    return all(hasattr(adapter_class, a) for a in _ADAPTER_INTERNALS)


def run_with_fast_connection(conn, fn, *args):
    """``fn(connection, *args)`` inside run_sync, on a PgFastConnection when the adapter allows it."""
    if fast_supported(type(conn.connection.dbapi_connection)):
        return fn(PgFastConnection(conn), *args)
    return fn(conn, *args)


class PgFastConnection:
    """A SQLAlchemy sync connection (inside run_sync) whose registered statements run on raw asyncpg."""

    def __init__(self, conn) -> None:
        self._conn = conn
        self._adapt = conn.connection.dbapi_connection
        self._raw = self._adapt._connection

    def execute(self, stmt, params: dict[str, Any] | None = None, *args, **kwargs):
        fast = sqlite_fast.bind(stmt, params, args, kwargs, _PG_DIALECT)
        if fast is None:
            return self._conn.execute(stmt, params, *args, **kwargs)
        c, bound = fast
        adapt = self._adapt
        try:
            if adapt._transaction is None:  # the adapter's lazy BEGIN, exactly as its cursor does it
                await_only(adapt._start_transaction())
            if c.returns_rows:
                rows = [tuple(r) for r in await_only(self._raw.fetch(c.sql, *bound))]
                rowcount = len(rows)
            else:
                status = await_only(self._raw.execute(c.sql, *bound))
                m = _STATUS_COUNT.match(status or "")
                rows, rowcount = [], (int(m.group(1)) if m else -1)
        except Exception as error:
            try:
                adapt._handle_exception(error)  # raises the adapter's DBAPI exception
            except Exception as dbapi_error:
                if isinstance(dbapi_error, adapt.dbapi.Error):
                    raise sa_exc.DBAPIError.instance(c.sql, bound, dbapi_error, adapt.dbapi.Error) from error
                raise
            raise
        return c.result(rows, rowcount)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)
