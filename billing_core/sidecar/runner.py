"""The sidecar: the periodic worker next to the gates.

One pass (:meth:`Sidecar.run_once`), in this order:

1. stale sessions — settled first, so a call nobody reports is not extended again;
2. chunk debits of answered live calls (and holds extended ahead of the cut-off);
3. lifecycle time rules (pre-suspension, DID release);
4. every due email in the outbox.

Every step is idempotent and safe with several sidecars on one database, so `callgate sidecar
--once` from cron, a crash mid-pass, or two sidecars for availability all give the same money.
:meth:`run_forever` repeats the pass every CALLGATE_DEBIT_INTERVAL seconds; a failing step (the
database or the SMTP server is down) is logged and the next pass tries again.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

from sqlalchemy import func, select

from billing_core import metrics
from billing_core.api import LIVE_STATES, StorageError
from billing_core.clock import SystemClock
from billing_core.log_limits import OutageLog
from billing_core.mail.render import Renderer
from billing_core.mail.smtp import SmtpSender, SmtpSettings
from billing_core.store.tables import call_sessions

from .debit_loop import DebitReport, debit_pass
from .lifecycle_pass import LifecycleReport, lifecycle_pass
from .outbox import MailSender, Outbox, OutboxReport, OutboxSettings, counts_tx
from .retention import prune_refusals
from .stale import StaleReport, settle_stale

log = logging.getLogger("callgate.sidecar")


@dataclass(frozen=True)
class SidecarSettings:
    """Timers and rules of the sidecar (all configurable so tests can use short ones)."""

    debit_interval: float = 10.0
    """Seconds between passes (CALLGATE_DEBIT_INTERVAL)."""
    stale_seconds: float = 120.0
    """A live call unseen this long is settled as stale (CALLGATE_STALE_SECONDS)."""
    stale_per_pass: int = 500
    """At most this many stale sessions settled per pass (CALLGATE_STALE_PER_PASS), so a dead
    gate's thousands of calls cannot stall the debits of the live ones."""
    presuspend_days: float = 7.0
    """Depleted this long → pre-suspension notice (CALLGATE_PRESUSPEND_DAYS)."""
    did_release_days: float = 7.0
    """Pre-suspended this long → DIDs released, suspended (CALLGATE_DID_RELEASE_DAYS)."""
    lookahead_seconds: int | None = None
    """Hold the next chunk when less than chunk + this remains (CALLGATE_DEBIT_LOOKAHEAD). Default:
    two intervals (at least 10 s), so even one missed pass leaves the next chunk reserved in time."""
    batch: int = 1000
    """Sessions per debit transaction."""
    set_based_debits: bool = True
    """Use the set-based debit pass (billing_core.sidecar.batch_debit) rather than core.debit_due
    (CALLGATE_SIDECAR_SET_BASED=false)."""
    refusal_retention_days: float = 90.0
    """Refused-call records older than this are deleted (CALLGATE_REFUSAL_RETENTION_DAYS;
    billing_core.sidecar.retention)."""
    outbox: OutboxSettings = field(default_factory=OutboxSettings)

    @property
    def lookahead(self) -> int:
        if self.lookahead_seconds is not None:
            return self.lookahead_seconds
        return max(10, math.ceil(2 * self.debit_interval))


@dataclass(frozen=True)
class PassReport:
    """What one pass did (logged, printed by `callgate sidecar --once --json`)."""

    stale: StaleReport
    debits: DebitReport
    lifecycle: LifecycleReport
    mail: OutboxReport
    seconds: float
    errors: tuple[str, ...] = ()
    refusals_pruned: int = 0
    """Steps that failed this pass (``step: error``); the next pass tries again."""


class Sidecar:
    """``Sidecar(core, settings, clock)``; ``sender``/``renderer`` default to SMTP on 127.0.0.1:25 and
    the package templates (commands pass the configured ones: callgate.config)."""

    def __init__(self, core, settings: SidecarSettings | None = None, clock=None, *,
                 sender: MailSender | None = None, renderer: Renderer | None = None):
        self.core = core
        self.settings = settings or SidecarSettings()
        self.clock = clock or getattr(core, "clock", None) or SystemClock()
        self.outbox = Outbox(core.store, sender or SmtpSender(SmtpSettings()),
                             renderer or Renderer(), self.clock, self.settings.outbox)
        self._stop = asyncio.Event()
        self._outage = OutageLog(log, "sidecar")

    async def run_once(self) -> PassReport:
        s = self.settings
        started = time.perf_counter()
        errors: list[str] = []

        storage_failed: list[StorageError] = []

        async def step(name, coro, empty):
            try:
                return await coro
            except StorageError as exc:  # an outage: said once per state change below, no traceback
                storage_failed.append(exc)
                errors.append(f"{name}: {exc}")
                return empty
            except Exception as exc:  # one failing step must not starve the others
                log.exception("sidecar %s step failed", name)
                errors.append(f"{name}: {exc}")
                return empty

        stale = await step("stale", settle_stale(self.core, self.clock.now_ms(), s.stale_seconds,
                                                 limit=s.stale_per_pass), StaleReport())
        debits = await step("debits", debit_pass(self.core, self.clock.now_ms(), lookahead_seconds=s.lookahead,
                                                 batch=s.batch, set_based=s.set_based_debits), DebitReport())
        life = await step("lifecycle", lifecycle_pass(self.core.store, self.clock.now_ms(),
                                                      presuspend_days=s.presuspend_days,
                                                      release_days=s.did_release_days), LifecycleReport())
        mail = await step("mail", self.outbox.send_due(), OutboxReport())
        pruned = await step("retention", prune_refusals(self.core.store, self.clock.now_ms(),
                                                        s.refusal_retention_days), 0)
        await step("metrics", self._gauges(), None)
        seconds = time.perf_counter() - started
        metrics.SIDECAR_PASS_SECONDS.observe(seconds)
        report = PassReport(stale, debits, life, mail, seconds, tuple(errors), refusals_pruned=pruned)
        if storage_failed:
            self._outage.failed(storage_failed[-1])
        else:
            self._outage.ok()
        if stale.settled or stale.closed or debits.processed or life.presuspended or life.suspended or mail.sent \
                or mail.failed or pruned or (errors and not storage_failed):
            log.info("sidecar pass: %s", report)
        return report

    async def _gauges(self) -> None:
        def tx(conn):
            live = conn.execute(select(func.count()).select_from(call_sessions)
                                .where(call_sessions.c.state.in_(LIVE_STATES))).scalar()
            return live, counts_tx(conn)

        live, counts = await self.core.store.run(tx)
        metrics.LIVE_CALLS.set(live)
        metrics.OUTBOX_QUEUED.set(counts["queued"])
        metrics.OUTBOX_FAILED.set(counts["failed"])

    async def run_forever(self) -> None:
        """Pass after pass until :meth:`stop`; a pass starts every ``debit_interval`` seconds."""
        self._stop.clear()
        while not self._stop.is_set():
            started = time.monotonic()
            await self.run_once()
            delay = max(0.0, self.settings.debit_interval - (time.monotonic() - started))
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        self._stop.set()


__all__ = ["Sidecar", "SidecarSettings", "PassReport"]
