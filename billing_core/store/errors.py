"""The store's errors and its PostgreSQL error policy, apart from the engine that raises them.

Why a module of their own: the engine and both fast paths (sqlite_fast, pg_fast) raise and retry
by the same rules, and the engine opens the fast paths, so the rules cannot live in the engine
without the fast paths importing it back. Callers catch :class:`StorageError` whichever path ran.
"""
from __future__ import annotations

import asyncio


class StorageError(RuntimeError):
    """The database could not answer (down, locked too long, schema missing…)."""


class DatabaseUrlError(ValueError):
    """A --db / CALLGATE_DB value that is not a supported URL."""


#: Serialization failure, deadlock victim: the transaction was rolled back, a retry starts clean.
RETRY_SQLSTATES = frozenset({"40001", "40P01"})


async def pause_before_retry(code: str | None, attempt: int) -> bool:
    """Whether a transaction that failed with SQLSTATE ``code`` on its ``attempt``-th run goes
    again (after a short, growing pause): deadlock victims and serialization failures, 5 runs at
    most. Shared by both PostgreSQL drivers (SQLAlchemy's and the raw asyncpg hot path)."""
    if code in RETRY_SQLSTATES and attempt < 5:
        await asyncio.sleep(0.005 * attempt)
        return True
    return False


def is_unavailable_sqlstate(code: str) -> bool:
    """Connection trouble (08), operator intervention such as a shutdown (57), or the database,
    table or schema gone: the database cannot answer (StorageError, fail closed)."""
    return code.startswith("08") or code.startswith("57") or code in ("3D000", "42P01", "3F000")


__all__ = ["DatabaseUrlError", "RETRY_SQLSTATES", "StorageError", "is_unavailable_sqlstate", "pause_before_retry"]
