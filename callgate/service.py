"""`callgate run`: the gate, the sidecar, the FastAGI server and the client area in one process
(one asyncio loop), each switchable off.

Shutdown (SIGTERM/SIGINT): stop taking new calls (the gate refuses new Stasis calls with
congestion, the AGI server stops accepting), keep live calls' timers until they end or the grace
time passes, flush the outbox once more, close the database. Calls still up after the grace time
stay in Asterisk; the next start re-adopts them from the stored cut-offs (restart safety).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

from billing_core.api import BillingCore
from callgate import config as cfgmod

log = logging.getLogger("callgate.service")


@dataclass(frozen=True)
class Parts:
    gate: bool = True
    sidecar: bool = True
    agi: bool = True
    web: bool = True


@dataclass
class RunningService:
    """What `run_service` started (for tests and the demo)."""

    core: BillingCore
    web_url: str | None = None
    """The client area (None when the web part is off)."""
    ops_url: str | None = None
    """The operator listener: /metrics and /healthz (None when CALLGATE_OPS_LISTEN is off)."""
    agi_listen: str | None = None
    gate: object | None = None
    sidecar: object | None = None


async def run_service(
    core: BillingCore,
    *,
    parts: Parts,
    stop: asyncio.Event,
    grace_seconds: float = 60.0,
    config: cfgmod.Config | None = None,
    ready: Callable[[RunningService], Awaitable[None] | None] | None = None,
) -> RunningService:
    """Serve until ``stop`` is set, then shut down gracefully. Every part's settings are built from
    ``config`` (default: the environment alone, through the same validation)."""
    from billing_core.log_limits import quiet_accept_errors
    from callgate.ops_http import database_check, start_ops_listener

    # Every listener of the process (FastAGI, web): accept() out of descriptors is one line a minute.
    quiet_accept_errors(asyncio.get_running_loop(), log)
    cfg = config if config is not None else cfgmod.load()
    state = RunningService(core)
    tasks: list[asyncio.Task] = []
    cleanups: list[Callable[[], Awaitable[None]]] = []
    checks = {"database": database_check(core)}

    # --- gate
    gate_task = None
    if parts.gate:
        from ari_app.client import AriClient
        from ari_app.gate import Gate

        settings = cfgmod.gate_settings(cfg)
        ari = cfgmod.ari_connection(cfg)
        client = AriClient(ari.url, ari.user, ari.password, settings.app)
        gate = Gate(client, core, settings)
        state.gate = gate
        gate_task = asyncio.create_task(gate.run(), name="callgate-gate")
        tasks.append(gate_task)

        async def ari_check() -> tuple[bool, str]:
            ok = bool(getattr(client, "connected", False))
            return ok, "connected" if ok else "not connected to Asterisk ARI"

        checks["ari"] = ari_check
        cleanups.append(client.close)
        from prometheus_client import REGISTRY

        from callgate.ops_http import register_ari_client

        collector = register_ari_client(client)

        async def unregister() -> None:
            REGISTRY.unregister(collector)

        cleanups.append(unregister)

    # --- sidecar
    sidecar = None
    sidecar_task = None
    if parts.sidecar:
        from billing_core.mail.smtp import SmtpSender
        from billing_core.sidecar.runner import Sidecar

        sidecar = Sidecar(core, cfgmod.sidecar_settings(cfg), sender=SmtpSender(cfgmod.smtp_settings(cfg)),
                          renderer=cfgmod.mail_renderer(cfg))
        state.sidecar = sidecar
        sidecar_task = asyncio.create_task(sidecar.run_forever(), name="callgate-sidecar")
        tasks.append(sidecar_task)

    # --- FastAGI
    agi_stop = asyncio.Event()
    agi_task = None
    if parts.agi:
        from agi.server import serve as agi_serve

        agi_settings = cfgmod.agi_settings(cfg)
        state.agi_listen = agi_settings.listen
        agi_task = asyncio.create_task(agi_serve(core, agi_settings, stop=agi_stop, grace_seconds=grace_seconds),
                                       name="callgate-agi")
        tasks.append(agi_task)

    # --- the operator listener (/metrics, /healthz), whatever else runs
    ops = await start_ops_listener(checks, cfgmod.ops_listen(cfg))
    if ops is not None:
        cleanups.append(ops[0].cleanup)
        state.ops_url = ops[1]

    # --- web (client area + PayPal)
    runner = None
    paypal = None
    if parts.web:
        from callgate.paypal.client import PayPalClient
        from callgate.web.app import make_web_app
        from callgate.web.server import warn_if_checkout_cannot_start

        web_settings = cfgmod.web_settings(cfg)
        pp_config = cfgmod.paypal_config(cfg)
        problems = pp_config.problems()
        if problems:
            log.warning("PayPal checkout and webhooks are off: %s", "; ".join(problems))
        else:
            paypal = PayPalClient(pp_config)
            warn_if_checkout_cannot_start(web_settings)
        runner = web.AppRunner(make_web_app(core, paypal, web_settings), access_log=None)
        await runner.setup()
        host, port = web_settings.listen_host_port()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()
        state.web_url = f"http://{bound[0]}:{bound[1]}"
    log.info("callgate running", extra={"web": state.web_url or False, "ops": state.ops_url or False,
                                        "gate": parts.gate, "sidecar": parts.sidecar, "agi": state.agi_listen or False})
    if ready is not None:
        maybe = ready(state)
        if asyncio.iscoroutine(maybe):
            await maybe

    # --- wait for the stop signal (or a part dying)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    for t in done:
        if t is not stopper and t.exception() is not None:
            log.error("a part of callgate stopped: %s", t.exception(), exc_info=t.exception())
    stopper.cancel()

    # --- graceful shutdown
    log.info("shutting down: no new calls; live calls keep their timers", extra={"grace_seconds": grace_seconds})
    agi_stop.set()
    if state.gate is not None:
        await state.gate.drain(grace_seconds)
    if sidecar is not None:
        sidecar.stop()
    for t in tasks:
        try:
            await asyncio.wait_for(t, timeout=15)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            t.cancel()
        except Exception:  # already logged above
            pass
    if sidecar is not None:
        try:
            await sidecar.outbox.send_due()  # flush: emails queued by the last settlements
        except Exception:
            log.exception("final outbox flush failed (the messages stay queued)")
    if runner is not None:
        await runner.cleanup()
    if paypal is not None:
        await paypal.close()
    for fn in cleanups:
        try:
            await fn()
        except Exception:
            pass
    return state
