"""Stale sessions: live calls whose gate stopped reporting are settled, so no hold stays forever.

A gate reports its live calls with ``core.heartbeat``. A session unseen for CALLGATE_STALE_SECONDS
(default 120 s: two missed minutes of a gate that heartbeats every few seconds, longer than a
normal ARI reconnect) is settled by the sidecar and flagged ``stale``:

* answered → settled at its granted time, i.e. at the cut-off the gate was enforcing — or at the
  time elapsed since answer when the cut-off is still ahead (the call cannot have talked longer
  than either, and the customer is never charged for money merely held);
* never answered → closed at zero.

Settlement is the core's exactly-once ``settle``: if the gate comes back and settles the same call
at the same moment, one of the two is a replay and nothing is charged twice.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import func, or_, select

from billing_core.api import LIVE_STATES
from billing_core.domain import money_rules as rules
from billing_core.store.tables import call_sessions

log = logging.getLogger("callgate.stale")


@dataclass(frozen=True)
class StaleReport:
    settled: int = 0
    """Answered sessions settled at their granted (or elapsed) time."""
    closed: int = 0
    """Never-answered sessions closed at zero."""


def stale_sessions_tx(conn, seen_before: int, limit: int | None = None) -> list:
    # A full-hold session (Dial L(), AGI, continue mode) has all its money held and a hard limit
    # in the switch: it is only stale once even its longest possible call is over, however long
    # nobody reported it (classic AGI has nobody to report it).
    latest_end = func.coalesce(call_sessions.c.answered_at, call_sessions.c.created_at) + call_sessions.c.granted_seconds * 1000
    q = (select(call_sessions.c.id, call_sessions.c.state, call_sessions.c.answered_at,
                call_sessions.c.granted_seconds, call_sessions.c.last_seen_at)
         .where(call_sessions.c.state.in_(LIVE_STATES), call_sessions.c.last_seen_at < seen_before,
                or_(call_sessions.c.hold_mode != "full", latest_end < seen_before))
         .order_by(call_sessions.c.last_seen_at))
    if limit is not None:
        q = q.limit(limit)
    return list(conn.execute(q))


def stale_talk_ms(answered_at: int | None, granted_seconds: int, now: int) -> int:
    """The talk a stale answered session is settled at (see the module docstring): the core's
    bounded talk (billing_core.domain.money_rules.bounded_talk_ms)."""
    return rules.bounded_talk_ms(answered_at, granted_seconds, now)


async def settle_stale(core, now: int, stale_seconds: float, *, concurrency: int = 4,
                       limit: int | None = 500, batch_size: int = 100) -> StaleReport:
    """Settle the stale sessions, the longest-silent first, at most ``limit`` per pass.

    Why a limit: after a gate dies with thousands of calls, settling them all (one core.settle
    each: ≈3 ms on PostgreSQL) would hold the pass for half a minute, and the debit step of the
    *other* gates' calls — whose next chunk must be held before their cut-off — would wait behind
    it. A bounded slice per pass keeps every pass short; the storm clears over a few passes.
    Settlements go ``batch_size`` per transaction (``core.settle_many``), ``concurrency``
    transactions at a time."""
    rows = await core.store.run(stale_sessions_tx, now - int(stale_seconds * 1000), limit)
    if not rows:
        return StaleReport()
    gate = asyncio.Semaphore(concurrency)
    state_of = {r.id: r.state for r in rows}

    def item(row):
        answered = row.state == "answered"
        talk = stale_talk_ms(row.answered_at, row.granted_seconds, now) if answered else 0
        note = f"stale: gate silent since {row.last_seen_at}" + ("" if answered else "; never answered")
        return row.id, talk, note

    async def batch(group) -> list[str | None]:
        async with gate:
            results = await core.settle_many([item(r) for r in group], stale=True, batch=batch_size, path="stale",
                                              basis="bounded_stale")
        out = []
        for result in results:
            if result.replayed:
                out.append(None)  # the gate (or another sidecar) settled it meanwhile
                continue
            log.info("session %s settled as stale (%s, talk %d ms)", result.session_id, state_of[result.session_id],
                     result.talk_ms)
            out.append(state_of[result.session_id])
        return out

    groups = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    outcomes = [o for part in await asyncio.gather(*(batch(g) for g in groups)) for o in part]
    settled = sum(1 for o in outcomes if o == "answered")
    closed = sum(1 for o in outcomes if o == "authorized")
    log.warning("%d stale sessions settled, %d never-answered closed (gate silent > %gs)", settled, closed, stale_seconds)
    return StaleReport(settled, closed)


__all__ = ["StaleReport", "settle_stale", "stale_talk_ms"]
