"""Retention of the refused-call records (store.tables.call_refusals; issue 20): the sidecar deletes
those older than ``refusal_retention_days`` (CALLGATE_REFUSAL_RETENTION_DAYS, default 90).

Why in batches: on SQLite every write waits for the one writer, so a first prune of months of
refusals must not hold it for seconds; PRUNE_BATCH rows per transaction, at most PRUNE_BATCHES per
pass (the next pass goes on). With nothing to prune it is one index probe on ``at``.
"""
from __future__ import annotations

from sqlalchemy import delete, select

from ..domain.days import DAY_MS
from ..store.tables import call_refusals

PRUNE_BATCH = 5000
PRUNE_BATCHES = 20


def _prune_tx(conn, cutoff: int, limit: int) -> int:
    oldest = select(call_refusals.c.id).where(call_refusals.c.at < cutoff).order_by(call_refusals.c.at).limit(limit)
    return conn.execute(delete(call_refusals).where(call_refusals.c.id.in_(oldest.scalar_subquery()))).rowcount


async def prune_refusals(store, now: int, retention_days: float, *, batch: int = PRUNE_BATCH,
                         batches: int = PRUNE_BATCHES) -> int:
    """Delete refusals recorded more than ``retention_days`` before ``now``; returns how many."""
    cutoff = now - int(retention_days * DAY_MS)
    total = 0
    for _ in range(batches):
        n = await store.run(_prune_tx, cutoff, batch)
        total += n
        if n < batch:
            break
    return total
