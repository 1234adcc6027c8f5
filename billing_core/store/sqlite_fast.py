"""The SQLite hot path: the writer thread runs the core's prebuilt SELECT/UPDATE statements straight
on the sqlite3 connection.

Why: a call is three short transactions (authorize, answer, settle) of ~15 statements in all, and
SQLAlchemy's per-execution work (execution context, parameter dicts, result metadata) cost about
twice what SQLite itself spends running them (py-spy on the gate benchmark: the writer thread was a
third of the gate process). The statements stay the SQLAlchemy objects the core builds once at
import (billing_core/store/statements.py), compiled here once for the SQLite dialect with the same bind
and result processors, so both paths read and write the same columns the same way; anything not
registered (inserts with column defaults, admin queries) goes through SQLAlchemy unchanged, on the
same sqlite3 connection and so in the same transaction.
"""
from __future__ import annotations

import sqlite3
from typing import Any, Callable, Iterable

from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import sqlite

_DIALECT = sqlite.dialect()


class _Compiled:
    __slots__ = ("sql", "order", "literals", "bind_procs", "keys", "result_procs", "returns_rows")

    def __init__(self, stmt, dialect=_DIALECT) -> None:
        if getattr(stmt, "is_insert", False):
            # every column bound, fast only when all are given; except a database-assigned key
            # (the ledger's autoincrement id), which the database fills in on both paths
            auto = stmt.table.autoincrement_column
            compiled = stmt.compile(dialect=dialect, column_keys=[c.key for c in stmt.table.columns if c is not auto])
        else:
            compiled = stmt.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("expanding (IN) parameters are not supported on the fast path")
        self.sql: str = compiled.string
        self.order: list[str] = list(compiled.positiontup or [])
        # an insert's binds are its columns (no literals: a missing one means "use the default")
        self.literals: dict[str, Any] = {} if getattr(stmt, "is_insert", False) else dict(compiled.params)
        procs = compiled._bind_processors
        self.bind_procs: dict[str, Callable] = {k: v for k, v in procs.items() if v is not None}
        cols = compiled._result_columns
        self.returns_rows = bool(cols)
        self.keys: tuple[str, ...] = tuple(c[0] for c in cols)
        self.result_procs: tuple[Callable | None, ...] = tuple(
            c[3]._cached_result_processor(dialect, None) for c in cols)

    def result(self, rows: list, rowcount: int) -> "FastResult":
        """The rows as SQLAlchemy would return them (its result processors applied)."""
        if rows and any(p is not None for p in self.result_procs):
            procs = self.result_procs
            rows = [tuple(v if p is None or v is None else p(v) for p, v in zip(procs, r)) for r in rows]
        return FastResult(rows, self.keys, rowcount)

    def args(self, params: dict[str, Any] | None) -> tuple:
        params = params or {}
        literals, procs = self.literals, self.bind_procs
        out = []
        for name in self.order:
            value = params[name] if name in params else literals[name]
            proc = procs.get(name)
            out.append(value if proc is None or value is None else proc(value))
        return tuple(out)


# id(stmt) -> (stmt, {dialect name: its compiled form}); SQLite's is compiled at registration (so a
# statement the fast path cannot run fails at import), another dialect's on first use.
_REGISTRY: dict[int, tuple[Any, dict[str, _Compiled]]] = {}


def register_fast(*stmts) -> None:
    """Run these statement objects (built once, kept alive by their module) on the fast path."""
    for stmt in stmts:
        _REGISTRY[id(stmt)] = (stmt, {_DIALECT.name: _Compiled(stmt)})


def bind(stmt, params, args: tuple, kwargs: dict, dialect=_DIALECT) -> tuple[_Compiled, tuple] | None:
    """(compiled statement, positional values) when ``stmt`` can run on the fast path with these
    arguments; None when SQLAlchemy must run it (not registered, unusual call, or an insert leaving
    columns to their defaults, which SQLAlchemy applies)."""
    entry = _REGISTRY.get(id(stmt))
    if entry is None or entry[0] is not stmt or args or kwargs or not isinstance(params, (dict, type(None))):
        return None
    compiled = entry[1].get(dialect.name)
    if compiled is None:
        compiled = entry[1][dialect.name] = _Compiled(stmt, dialect)
    try:
        return compiled, compiled.args(params)
    except KeyError:
        return None


class FastResult:
    """What the core reads of a result: ``.mappings().first()/.one()/.all()``, ``.first()``,
    ``.scalar()``, ``.rowcount``."""

    __slots__ = ("_rows", "_keys", "rowcount", "_as_maps")

    def __init__(self, rows: list[tuple], keys: tuple[str, ...], rowcount: int) -> None:
        self._rows = rows
        self._keys = keys
        self.rowcount = rowcount
        self._as_maps = False

    def mappings(self) -> "FastResult":
        self._as_maps = True
        return self

    def _out(self, row: tuple):
        return dict(zip(self._keys, row)) if self._as_maps else row

    def first(self):
        return self._out(self._rows[0]) if self._rows else None

    def one(self):
        if len(self._rows) != 1:
            if not self._rows:
                raise sa_exc.NoResultFound("No row was found when one was required")
            raise sa_exc.MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._out(self._rows[0])

    def all(self) -> list:
        return [self._out(r) for r in self._rows]

    def scalar(self):
        return self._rows[0][0] if self._rows else None


class FastConnection:
    """The writer's SQLAlchemy connection as transaction functions see it: registered statements
    run on the raw sqlite3 cursor, everything else is delegated."""

    def __init__(self, conn) -> None:
        self._conn = conn
        self._raw: sqlite3.Connection = conn.connection.driver_connection

    def execute(self, stmt, params: dict[str, Any] | None = None, *args, **kwargs):
        fast = bind(stmt, params, args, kwargs)
        if fast is None:
            return self._conn.execute(stmt, params, *args, **kwargs)
        c, bound = fast
        try:
            cur = self._raw.execute(c.sql, bound)
            rows = cur.fetchall() if c.returns_rows else []
        except sqlite3.Error as exc:  # the same exception classes SQLAlchemy would raise
            raise sa_exc.DBAPIError.instance(c.sql, bound, exc, sqlite3.Error) from exc
        return c.result(rows, cur.rowcount)

    def raw(self, sql: str) -> None:
        """A statement without parameters or results (BEGIN, SAVEPOINT, COMMIT, ...)."""
        try:
            self._raw.execute(sql)
        except sqlite3.Error as exc:
            raise sa_exc.DBAPIError.instance(sql, (), exc, sqlite3.Error) from exc

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def registered() -> Iterable[Any]:
    return [stmt for stmt, _ in _REGISTRY.values()]
