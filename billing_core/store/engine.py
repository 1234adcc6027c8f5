"""Running transactions on SQLite or PostgreSQL with one code path.

Every storage operation in billing_core is a plain *synchronous* function ``op(conn, *args)`` on a
SQLAlchemy Core ``Connection``; :meth:`Store.run` executes it in one transaction and returns its
result. The same function runs on both databases:

* **SQLite (embedded default)** — one writer thread owns one ``sqlite3`` connection and applies
  *group commit*: it drains every operation queued while the previous batch was committing, runs each
  inside its own ``SAVEPOINT`` (a failing operation rolls back alone), and commits the batch with one
  fsync. Why: SQLite allows one writer at a time anyway; SQLAlchemy-async over aiosqlite measured
  ≈330 conditional debits/s (a thread hop and a commit per transaction), while batching pays the hop
  and the fsync once per batch. ``BEGIN IMMEDIATE`` + ``busy_timeout`` makes other processes (a CLI, a
  second service) wait their turn instead of failing. The WAL is copied into the database file by a
  second thread on its own connection (``wal_checkpoint(PASSIVE)`` once a second), never by the
  writer: SQLite's automatic checkpoint runs inside the commit that crosses 1,000 WAL pages, and that
  commit (with every authorize queued behind it) took 20–40 ms in the gate benchmark. A passive
  checkpoint never blocks the writer; the WAL still restarts from its beginning once it has been
  copied. Commits stay durable: no caller hears of a commit before the WAL holding it is fsynced —
  but the fsync is not the writer's (see :class:`_CommitSyncer`): SQLite commits with
  ``synchronous=NORMAL`` and a third thread fsyncs the WAL while the writer runs the next batch.
* **PostgreSQL** — SQLAlchemy async over asyncpg; the sync function runs through
  ``AsyncConnection.run_sync`` (greenlet), inside ``BEGIN … COMMIT``. Row locks (``FOR UPDATE`` on
  the account) serialise concurrent money operations on one account across processes and PBXs;
  deadlocks and serialization failures are retried a few times.

Errors never leak driver types to callers: they surface as :class:`StorageError`, which the core
turns into ``billing_unavailable`` (fail closed).
"""
from __future__ import annotations

import asyncio
import logging
import os
import queue
import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

# StorageError and DatabaseUrlError live in store/errors.py; importing them from here keeps working
from .errors import DatabaseUrlError, StorageError, is_unavailable_sqlstate, pause_before_retry
from .schema import metadata
from .sqlite_fast import FastConnection

log = logging.getLogger("callgate.store")

T = TypeVar("T")


@dataclass(frozen=True)
class DbUrl:
    """A parsed database URL."""

    dialect: str
    """``sqlite`` or ``postgresql``."""
    sqlalchemy_url: str
    """The URL with the driver we use (``sqlite://`` sync, ``postgresql+asyncpg://``)."""
    schema: str | None = None
    """PostgreSQL only: the schema to use (``?schema=NAME``); tests use a throw-away one."""
    path: str | None = None
    """SQLite only: the file path."""


def parse_db_url(url: str) -> DbUrl:
    """Accept ``sqlite:///path``, ``sqlite:////abs/path`` and ``postgresql://…`` (``postgres://`` too)."""
    if not isinstance(url, str) or not url.strip():
        raise DatabaseUrlError("database URL is empty; expected sqlite:///path or postgresql://host/db")
    url = url.strip()
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"):
        rest = url.split(":", 1)[1]
        if not rest.startswith("///"):
            raise DatabaseUrlError(f"bad SQLite URL {url!r}: use sqlite:///relative/path or sqlite:////abs/path")
        path = rest[3:]
        if not path or path == ":memory:":
            raise DatabaseUrlError("SQLite needs a file path (an in-memory database is not shared between connections)")
        return DbUrl("sqlite", f"sqlite:///{path}", path=path)
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        schema = None
        if "schema" in query:
            schema = query.pop("schema")[-1]
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
                raise DatabaseUrlError(f"bad schema name {schema!r} in database URL")
        new = parts._replace(scheme="postgresql+asyncpg", query=urlencode(query, doseq=True))
        return DbUrl("postgresql", urlunsplit(new), schema=schema)
    raise DatabaseUrlError(f"unsupported database URL {url!r}: expected sqlite:///path or postgresql://host/db")


class Store:
    """Runs storage operations in transactions. Use :func:`open_store`."""

    dialect: str

    #: ``fast_path(rate_cache)`` gives the driver of the hot operations (authorize, answer) that
    #: bypass SQLAlchemy, to be run through :meth:`run_fast`; None where there is none (SQLite,
    #: whose writer thread already runs the hot statements raw: store/sqlite_fast.py).
    fast_path: Callable[..., Any] | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:  # pragma: no cover - interface
        raise NotImplementedError

    async def run_fast(self, op: Callable[..., Awaitable[T]], *args: Any) -> T:  # pragma: no cover - interface
        """Run one operation of the fast path with the error policy of :meth:`run`."""
        raise NotImplementedError(f"{type(self).__name__} has no fast path")

    async def create_schema(self) -> None:
        """Create every table from the metadata (tests); production uses Alembic."""
        def _create(conn: Connection) -> None:
            metadata.create_all(conn)

        await self.run(_create)

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Return once every operation already handed to the database has ended, including those
        whose callers were cancelled (they still commit or roll back: see ``uncancellable``).
        SQLite's writer runs its queue in order, so an empty job queued behind them is enough."""
        await asyncio.wait_for(self.run(lambda conn: None), timeout)

    async def close(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


# --------------------------------------------------------------------------------------- SQLite
_STOP = object()


class _Job:
    __slots__ = ("fn", "args", "future", "loop")

    def __init__(self, fn, args, future, loop):
        self.fn = fn
        self.args = args
        self.future = future
        self.loop = loop


def _resolve(future: asyncio.Future, ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class _CommitSyncer:
    """Makes committed batches durable before their callers hear of them, off the writer thread.

    Why: with ``synchronous=FULL`` SQLite fsyncs the WAL inside COMMIT, and the writer — the one
    thread every transaction queues behind — waits for the disk each batch. On this host's virtual
    disk an fsync takes 0.3 ms at the median and 4–9 ms at the 99th percentile, which set the tail of
    every authorize (issue 18: p99 < 5 ms at 2,000/s). Here SQLite commits with ``synchronous=NORMAL``
    (WAL written, not synced) and this thread fsyncs the WAL file, then resolves the callers of every
    batch committed before that fsync began, in commit order, while the writer already runs the next
    batch. What a caller is told is as durable as before: a committed batch whose fsync has not
    finished is acknowledged to nobody, and after a power cut WAL recovery keeps a prefix of the
    commits — every acknowledged one. (A reader in another process may see a commit up to one fsync
    before it is durable; nothing acts on money from such a read.)

    An fsync that fails leaves the durability of the WAL unknown (its dirty pages may be dropped, and
    a second fsync may then wrongly succeed), so the store stops: every waiting and later operation is
    a StorageError — callers fail closed — until the service is restarted and SQLite recovers the WAL.
    """

    def __init__(self, db_path: Path):
        self._wal = Path(f"{db_path}-wal")
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._inode: int | None = None
        #: the OSError of a failed fsync: the store refuses everything after it
        self.failed: OSError | None = None
        #: fsyncs done (the tests read it)
        self.syncs = 0
        self._thread = threading.Thread(target=self._run, name="callgate-sqlite-fsync", daemon=True)
        self._thread.start()

    def failure(self) -> StorageError | None:
        """The error every operation gets once an fsync has failed; None while none has."""
        return None if self.failed is None else StorageError(f"database unavailable: fsync failed: {self.failed}")

    def acknowledge(self, batch: list["_Job"], results: list[tuple[bool, Any]]) -> None:
        """Resolve ``batch`` with ``results`` once everything committed so far is on disk."""
        self._queue.put((batch, results))

    def stop(self) -> None:
        """Acknowledge what is queued, then end the thread (after the writer has ended)."""
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = _STOP in items
            items = [i for i in items if i is not _STOP]
            if items and self.failed is None:
                try:
                    self._sync()
                except OSError as exc:
                    self.failed = exc
                    log.critical("fsync of the SQLite WAL failed (%s): the store stops; restart the service", exc)
            failure = self.failure()
            for batch, results in items:
                _acknowledge(batch, results if failure is None else [(False, failure)] * len(batch))
            if stop:
                return

    def _sync(self) -> None:
        try:
            fd = os.open(self._wal, os.O_RDONLY)
        except FileNotFoundError:
            return  # no WAL yet: nothing was written
        try:
            os.fsync(fd)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        if inode != self._inode:  # a new WAL file: its directory entry must last too (SQLite's FULL does this)
            dir_fd = os.open(self._wal.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self._inode = inode
        self.syncs += 1


def _acknowledge(batch: list["_Job"], results: list[tuple[bool, Any]]) -> None:
    for j, (ok, value) in zip(batch, results):
        try:
            j.loop.call_soon_threadsafe(_resolve, j.future, ok, value)
        except RuntimeError:  # the caller's loop is gone
            pass


class SqliteStore(Store):
    """One writer thread, group commit (see the module docstring)."""

    dialect = "sqlite"

    def __init__(self, url: DbUrl, *, max_batch: int = 256, busy_timeout_ms: int = 10_000, synchronous: str = "FULL",
                 pool_size: int | None = None, checkpoint_interval: float = 1.0):
        # pool_size is accepted for symmetry with PostgresStore: SQLite has one writer connection.
        self.url = url
        self.max_batch = max_batch
        path = Path(url.path or "")
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        # FULL durability, with the fsync moved off the writer (see _CommitSyncer); other levels
        # (tests, a scratch database) are SQLite's own
        self._syncer = _CommitSyncer(path.absolute()) if synchronous.upper() == "FULL" else None
        if self._syncer is not None:
            synchronous = "NORMAL"
        self._engine = create_engine(url.sqlalchemy_url, poolclass=NullPool)
        #: WAL checkpoints done by the checkpoint thread, and its last (busy, WAL frames, copied frames)
        self.checkpoints = 0
        self.last_checkpoint: tuple[int, int, int] | None = None

        @event.listens_for(self._engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - trivial
            dbapi_conn.isolation_level = None  # we issue BEGIN/SAVEPOINT/COMMIT ourselves
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread does it
            cur.close()

        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._writer, name="callgate-sqlite-writer", daemon=True)
        self._closed = False
        self._thread.start()
        # always a file (parse_db_url refuses in-memory databases), so a second connection sees it
        self._checkpoint_stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, args=(str(path), checkpoint_interval, busy_timeout_ms),
            name="callgate-sqlite-checkpoint", daemon=True)
        self._checkpointer.start()

    def _checkpoint_loop(self, path: str, interval: float, busy_timeout_ms: int) -> None:
        """Copy the WAL into the database file, off the writer's commits (see the module docstring)."""
        conn: sqlite3.Connection | None = None
        while not self._checkpoint_stop.wait(interval):
            if conn is None and not Path(path).exists():
                continue  # the writer creates the file; never create it from here
            try:
                if conn is None:
                    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
                row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.last_checkpoint = (int(row[0]), int(row[1]), int(row[2]))
                self.checkpoints += 1
            except sqlite3.Error as exc:  # the next pass tries again on a fresh connection
                log.warning("sqlite WAL checkpoint failed: %s", exc)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _fsync_failure(self) -> StorageError | None:
        return self._syncer.failure() if self._syncer is not None else None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StorageError("store is closed")
        failure = self._fsync_failure()
        if failure is not None:
            raise failure
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put(_Job(fn, args, fut, loop))
        return await fut

    def _writer(self) -> None:
        conn: FastConnection | None = None
        while True:
            job = self._queue.get()
            if job is _STOP:
                break
            batch = [job]
            stop_after = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop_after = True
                    break
                batch.append(nxt)
            failure = self._fsync_failure()
            if failure is not None:  # nothing more is committed once an fsync failed
                results = [(False, failure)] * len(batch)
            else:
                try:
                    if conn is None:
                        conn = FastConnection(self._engine.connect())
                    results = self._run_batch(conn, batch)
                except Exception as exc:  # the whole batch failed (BEGIN/COMMIT): fail every job
                    log.error("sqlite batch failed: %s", exc)
                    err = StorageError(f"database unavailable: {exc}")
                    results = [(False, err) for _ in batch]
                    if conn is not None:
                        try:
                            conn.close()
                        except Exception:  # pragma: no cover
                            pass
                        conn = None
            if self._syncer is not None:
                self._syncer.acknowledge(batch, results)
            else:
                _acknowledge(batch, results)
            if stop_after:
                break
        if conn is not None:
            conn.close()
        self._engine.dispose()

    def _run_batch(self, conn: FastConnection, batch: list[_Job]) -> list[tuple[bool, Any]]:
        raw = conn.raw
        raw("BEGIN IMMEDIATE")
        results: list[tuple[bool, Any]] = []
        try:
            single = len(batch) == 1
            for job in batch:
                if single:
                    try:
                        results.append((True, job.fn(conn, *job.args)))
                    except Exception as exc:
                        raw("ROLLBACK")
                        return [(False, _wrap(exc))]
                    continue
                raw("SAVEPOINT cg_job")
                try:
                    value = job.fn(conn, *job.args)
                except Exception as exc:
                    raw("ROLLBACK TO SAVEPOINT cg_job")
                    raw("RELEASE SAVEPOINT cg_job")
                    results.append((False, _wrap(exc)))
                else:
                    raw("RELEASE SAVEPOINT cg_job")
                    results.append((True, value))
            raw("COMMIT")
        except BaseException:
            try:
                raw("ROLLBACK")
            except Exception:
                pass
            raise
        return results

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._checkpoint_stop.set()
        self._queue.put(_STOP)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._checkpointer.join)
        # the writer's connection closes last, and SQLite checkpoints the WAL as it does
        await loop.run_in_executor(None, self._thread.join)
        if self._syncer is not None:
            await loop.run_in_executor(None, self._syncer.stop)


# ----------------------------------------------------------------------------------- PostgreSQL
class PostgresStore(Store):
    dialect = "postgresql"

    def __init__(self, url: DbUrl, *, pool_size: int = 10):
        # Two pools share the server's connection budget (100 by default): SQLAlchemy's for
        # everything, asyncpg's for the hot paths (authorize, answer): 10 + 10 per process, kept
        # open, no overflow. QueuePool closes an overflow connection as soon as it is returned, so
        # under load every burst opened and closed connections: TCP connect, SSL attempt and
        # authentication here (~14 % of the gate's CPU under py-spy), a backend process started on
        # the server (a loaded gate opened ~100 per 2,500 calls). Past 10 concurrent transactions a
        # caller now waits for a connection instead (pool_timeout: 30 s, then StorageError).
        connect_args: dict[str, Any] = {}
        if url.schema:
            connect_args["server_settings"] = {"search_path": url.schema}
        # imported here, not at the top: asyncpg costs ~0.1 s to import and SQLite stores never need it
        from .pg_fast import run_fast_op, run_with_fast_connection

        self.url = url
        self._fast = None
        self._inflight: set[asyncio.Future] = set()
        self._run_fast = run_with_fast_connection
        self._run_fast_op = run_fast_op
        """Runs a transaction function with the hot statements on raw asyncpg (store/pg_fast.py)."""
        self._pool_size = pool_size
        self._engine = create_async_engine(
            url.sqlalchemy_url,
            pool_size=max(pool_size, 2),
            max_overflow=0,
            pool_pre_ping=False,
            connect_args=connect_args,
        )

    @property
    def engine(self):
        return self._engine

    def fast_path(self, rate_cache):
        """The raw-asyncpg driver of the authorize hot path (see billing_core.store.pg_fast)."""
        if self._fast is None:
            from .pg_fast import PgFastPath  # asyncpg: PostgreSQL stores only (see __init__)

            dsn = self.url.sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)
            self._fast = PgFastPath(dsn, self.url.schema, rate_cache, pool_size=self._pool_size)
        return self._fast

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.uncancellable(self._run(fn, *args))

    async def run_fast(self, op: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await op(*args)`` (a PgFastPath method) as :meth:`run` runs a transaction: never cut
        short by a cancelled caller, retried on deadlock or serialization failure, StorageError when
        the database cannot answer, IntegrityError for a duplicate key (see pg_fast.run_fast_op)."""
        return await self.uncancellable(self._run_fast_op(op, *args))

    async def uncancellable(self, coro: Awaitable[T]) -> T:
        """Run a database operation so that cancelling the caller never interrupts it mid-way.

        Why: a task cancelled inside a transaction (a call torn down, a gate stopping) left its
        pooled connection in a state where a later transaction on it could lose writes: a stress
        run of cancelled extend/settle/heartbeat calls followed by a normal settle found the
        session settled but the account's charge and hold release missing (reproduced on the code
        before session 4 too). Here the operation runs in its own task and always ends with its
        commit or rollback; the caller that gave up gets CancelledError straight away. Money calls
        are idempotent, so finishing one nobody waits for is safe; store.close() waits for them."""
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_retrieve)  # its outcome is nobody's now: no "never retrieved"
            raise

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._engine.begin() as conn:
                    return await conn.run_sync(self._run_fast, fn, *args)
            except DBAPIError as exc:
                if await pause_before_retry(_sqlstate(exc), attempt):
                    continue
                if _is_unavailable(exc):
                    raise StorageError(f"database unavailable: {exc.orig!r}") from exc
                raise
            except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
                raise StorageError(f"database unavailable: {exc!r}") from exc
            except PoolTimeout as exc:
                raise StorageError(f"database busy: no pooled connection came free ({exc})") from exc

    async def wait_idle(self, timeout: float = 10.0) -> None:
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)

    async def close(self) -> None:
        await self.wait_idle()  # operations whose callers were cancelled: let them end cleanly first
        if self._fast is not None:
            await self._fast.close()
        await self._engine.dispose()


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a database operation whose caller was cancelled failed: %s", task.exception())


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = getattr(exc, "orig", None)
    for attr in ("sqlstate", "pgcode"):
        code = getattr(orig, attr, None)
        if code:
            return code
    cause = getattr(orig, "__cause__", None)
    return getattr(cause, "sqlstate", None)


def _is_unavailable(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    return is_unavailable_sqlstate(_sqlstate(exc) or "")


def _wrap(exc: Exception) -> Exception:
    """SQLite operational errors (locked, disk I/O, no such table) become StorageError."""
    if isinstance(exc, OperationalError) or isinstance(exc, sqlite3.OperationalError):
        return StorageError(f"database unavailable: {exc}")
    return exc


def open_store(url: str, **kwargs: Any) -> Store:
    """A store for ``url`` (see :func:`parse_db_url`)."""
    parsed = parse_db_url(url)
    if parsed.dialect == "sqlite":
        return SqliteStore(parsed, **kwargs)
    return PostgresStore(parsed, **kwargs)
