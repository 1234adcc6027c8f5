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
import os
import time
from dataclasses import dataclass, field
from typing import Mapping

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
from .stale import StaleReport, settle_stale

log = logging.getLogger("callgate.sidecar")


class SidecarSettingsError(ValueError):
    """A CALLGATE_* value of the sidecar is not acceptable; the message names the variable."""


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
    outbox: OutboxSettings = field(default_factory=OutboxSettings)

    @property
    def lookahead(self) -> int:
        if self.lookahead_seconds is not None:
            return self.lookahead_seconds
        return max(10, math.ceil(2 * self.debit_interval))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "SidecarSettings":
        env = os.environ if environ is None else environ

        def num(name: str, default: float, *, minimum: float = 0.0, exclusive: bool = False) -> float:
            text = env.get(name)
            if text is None or text == "":
                return default
            try:
                value = float(text)
            except ValueError:
                raise SidecarSettingsError(f"{name}: must be a number (got {text!r})") from None
            if not math.isfinite(value) or value < minimum or (exclusive and value == minimum):
                raise SidecarSettingsError(f"{name}: must be {'>' if exclusive else '≥'} {minimum:g} (got {text!r})")
            return value

        look = env.get("CALLGATE_DEBIT_LOOKAHEAD")
        return cls(
            debit_interval=num("CALLGATE_DEBIT_INTERVAL", cls.debit_interval, exclusive=True),
            stale_seconds=num("CALLGATE_STALE_SECONDS", cls.stale_seconds, exclusive=True),
            stale_per_pass=int(num("CALLGATE_STALE_PER_PASS", cls.stale_per_pass, minimum=1)),
            presuspend_days=num("CALLGATE_PRESUSPEND_DAYS", cls.presuspend_days),
            did_release_days=num("CALLGATE_DID_RELEASE_DAYS", cls.did_release_days),
            lookahead_seconds=int(num("CALLGATE_DEBIT_LOOKAHEAD", 0)) if look else None,
            set_based_debits=_flag(env, "CALLGATE_SIDECAR_SET_BASED", True),
            outbox=OutboxSettings(
                backoff_base_seconds=num("CALLGATE_MAIL_BACKOFF_SECONDS", OutboxSettings.backoff_base_seconds),
                backoff_max_seconds=num("CALLGATE_MAIL_BACKOFF_MAX_SECONDS", OutboxSettings.backoff_max_seconds),
                max_attempts=int(num("CALLGATE_MAIL_MAX_ATTEMPTS", OutboxSettings.max_attempts, minimum=1)),
            ),
        )


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = (env.get(name) or "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SidecarSettingsError(f"{name}: must be true or false (got {text!r})")


@dataclass(frozen=True)
class PassReport:
    """What one pass did (logged, printed by `callgate sidecar --once --json`)."""

    stale: StaleReport
    debits: DebitReport
    lifecycle: LifecycleReport
    mail: OutboxReport
    seconds: float
    errors: tuple[str, ...] = ()
    """Steps that failed this pass (``step: error``); the next pass tries again."""


class Sidecar:
    """``Sidecar(core, settings, clock)``; ``sender``/``renderer`` default to SMTP + package templates
    configured from the environment."""

    def __init__(self, core, settings: SidecarSettings | None = None, clock=None, *,
                 sender: MailSender | None = None, renderer: Renderer | None = None):
        self.core = core
        self.settings = settings or SidecarSettings()
        self.clock = clock or getattr(core, "clock", None) or SystemClock()
        self.outbox = Outbox(core.store, sender or SmtpSender(SmtpSettings.from_env()),
                             renderer or Renderer.from_env(), self.clock, self.settings.outbox)
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
        await step("metrics", self._gauges(), None)
        seconds = time.perf_counter() - started
        metrics.SIDECAR_PASS_SECONDS.observe(seconds)
        report = PassReport(stale, debits, life, mail, seconds, tuple(errors))
        if storage_failed:
            self._outage.failed(storage_failed[-1])
        else:
            self._outage.ok()
        if stale.settled or stale.closed or debits.processed or life.presuspended or life.suspended or mail.sent \
                or mail.failed or (errors and not storage_failed):
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


__all__ = ["Sidecar", "SidecarSettings", "SidecarSettingsError", "PassReport"]
