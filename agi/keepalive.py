"""Keep AGI calls from being settled as stale while they may still be talking.

The sidecar settles any live session nobody has reported (``core.heartbeat``) for
CALLGATE_STALE_SECONDS (120 s). The ARI gate sees its channels and reports them; an AGI call is
invisible between ``authorize`` and the hangup handler's ``settle``. What is known for certain
is an upper bound: Asterisk's ``Dial(…,L(max))`` ends the talk ``granted`` after the answer, and
the answer comes within the ring window after authorize. So the FastAGI server reports each of
its live full-hold sessions until

    (answered_at, or created_at + answer_window) + granted + margin

and then stops: if the hangup handler's settle never arrives (server down at hangup), the
sidecar settles the session at that bound — the talk L() allowed — instead of cutting a
running call short at 120 s. Without an answer time the ring window is assumed, so a lost
``answered`` session does not make a talking call look over.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from billing_core.log_limits import OutageLog

from .ports import BillingCorePort

log = logging.getLogger("callgate.agi")


@dataclass(frozen=True)
class KeepaliveSettings:
    interval: float = 30.0
    """Seconds between reports; well under the sidecar's CALLGATE_STALE_SECONDS."""
    answer_window: float = 300.0
    """Seconds from authorize to answer at most (ring timeout + anything before Dial)."""
    margin: float = 60.0
    """Slack after the latest possible end (clock skew, hangup handler latency)."""


def latest_end_ms(session: Any, s: KeepaliveSettings) -> int:
    start = session.answered_at if session.answered_at is not None else session.created_at + int(s.answer_window * 1000)
    return start + session.granted_seconds * 1000 + int(s.margin * 1000)


async def keepalive_pass(core: BillingCorePort, pbx_id: str, s: KeepaliveSettings, now_ms: int | None = None) -> int:
    """Report this pbx's full-hold sessions that may still be live; returns how many."""
    now = core.clock.now_ms() if now_ms is None else now_ms
    sessions = await core.live_sessions(pbx_id)
    alive = [x.session_id for x in sessions if x.hold_mode == "full" and now <= latest_end_ms(x, s)]
    if alive:
        await core.heartbeat(alive, now)
    return len(alive)


async def keepalive_loop(core: BillingCorePort, pbx_id: str, s: KeepaliveSettings) -> None:
    """Forever (cancel to stop); a failed pass is logged and retried at the next interval (a
    database outage once per state change: down, still down every minute, back)."""
    from billing_core.api import StorageError  # here: the stdio script imports this module and starts lean

    outage = OutageLog(log, "AGI keepalive")
    while True:
        try:
            await keepalive_pass(core, pbx_id, s)
        except asyncio.CancelledError:
            raise
        except StorageError as exc:
            outage.failed(exc)
        except Exception as exc:
            log.warning("AGI keepalive pass failed: %r", exc)
        else:
            outage.ok()
        await asyncio.sleep(s.interval)
