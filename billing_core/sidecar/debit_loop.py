"""Chunk debits of answered live calls: one pass = the core's batched ``debit_due``.

The money logic is the core's (``BillingCore.debit_due`` → ``_debit_tx`` per due session): chunk
``k`` of a session is a ledger entry keyed ``chunk:<session>:<k>`` written under the account lock
together with ``chunks_debited``, so a replayed pass, a second sidecar or a settle racing the pass
never charges a chunk twice; when less than a chunk plus the look-ahead remains, the next chunk is
held (a partial grant moves ``cutoff_at`` earlier; the gate follows it).
"""
from __future__ import annotations

from dataclasses import dataclass

from .batch_debit import debit_due_batched


@dataclass(frozen=True)
class DebitReport:
    due: int = 0
    """Sessions that had a chunk to debit or a hold to extend."""
    processed: int = 0


async def debit_pass(core, now: int, *, lookahead_seconds: int = 10, batch: int = 1000,
                     set_based: bool = True) -> DebitReport:
    """One debit pass. ``set_based`` (default) uses the batched workaround of
    :mod:`billing_core.sidecar.batch_debit` (same money, one statement per table per batch);
    False calls the core's ``debit_due`` (one set of statements per session)."""
    if set_based:
        counts = await debit_due_batched(core, now, lookahead_seconds=lookahead_seconds, batch=batch)
    else:
        counts = await core.debit_due(now, lookahead_seconds=lookahead_seconds, batch=batch)
    return DebitReport(counts.get("examined_due", 0), counts.get("processed", 0))


__all__ = ["DebitReport", "debit_pass"]
