"""`callgate gate`: the ARI gate in the foreground (one log line per call decision).

Configuration ([ari] and [announcements], callgate.config): CALLGATE_DB (the group's --db),
CALLGATE_ARI_URL (default http://127.0.0.1:8088), CALLGATE_ARI_USER, CALLGATE_ARI_PASSWORD,
CALLGATE_ARI_APP (default callgate), CALLGATE_WARNING_SECONDS, CALLGATE_TRUNK_TEMPLATE (default
PJSIP/{number}@trunk), CALLGATE_DIAL_TIMEOUT, CALLGATE_PBX_ID, CALLGATE_ANNOUNCE_<REASON>.
"""
from __future__ import annotations

import asyncio
import logging
import signal

import click

from ari_app.client import AriClient
from ari_app.gate import Gate
from ari_app.settings import GateSettings

from callgate import config as cfgmod
from callgate.heap import freeze_startup_heap

from .common import command_config, grace_option, open_core, run_async

log = logging.getLogger("callgate.gate")

#: Exit status when another connection took the Stasis application (do not fight it in a loop).
EXIT_REPLACED = 3


async def run_gate(core, *, url: str, user: str, password: str, settings: GateSettings,
                   stop: asyncio.Event | None = None, grace_seconds: float = 60.0) -> Gate:
    """Serve until ``stop`` is set or the application is replaced; returns the stopped Gate.

    On ``stop`` the gate drains as `callgate run` does (Gate.drain): no new calls, live calls
    go on until they end or ``grace_seconds`` pass.
    """
    client = AriClient(url, user, password, settings.app)
    gate = Gate(client, core, settings)
    task = asyncio.create_task(gate.run(), name="callgate-gate")
    waiter = asyncio.create_task((stop or asyncio.Event()).wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            log.info("gate stopping: no new calls; live calls go on until they end or the grace time passes",
                     extra={"grace_seconds": grace_seconds})
            await gate.drain(grace_seconds)
            await asyncio.wait_for(task, 10)
        else:
            task.result()
    finally:
        waiter.cancel()
        await client.close()
    return gate


def register(main: click.Group) -> None:
    @main.command("gate")
    # The options override [ari] (file, then CALLGATE_ARI_*), which callgate.config reads.
    @click.option("--ari-url", default=None,
                  help="Asterisk's HTTP server (env CALLGATE_ARI_URL, default http://127.0.0.1:8088).")
    @click.option("--ari-user", default=None, help="ari.conf user (env CALLGATE_ARI_USER, default callgate).")
    @click.option("--ari-password", default=None, help="ari.conf password (env CALLGATE_ARI_PASSWORD).")
    @click.option("--app", default=None, help="Stasis application name (env CALLGATE_ARI_APP, default callgate).")
    @grace_option
    @click.pass_context
    @run_async
    async def gate_cmd(ctx: click.Context, ari_url: str | None, ari_user: str | None, ari_password: str | None,
                       app: str | None, grace: float) -> None:
        """Run the ARI gate in the foreground: decide, bridge, time and settle every call.

        Dialplan: Stasis(callgate,outbound) / Stasis(callgate,inbound), or
        Stasis(callgate,outbound,continue) before Dial(...,L(${CALLGATE_MAX_MS}:...)).
        On SIGINT/SIGTERM it drains: new calls are refused, live calls go on until they end or
        --grace seconds pass. Exits 3 if another connection takes the application.
        """
        options = {("ari", "url"): ("--ari-url", ari_url), ("ari", "user"): ("--ari-user", ari_user),
                   ("ari", "password"): ("--ari-password", ari_password), ("ari", "app"): ("--app", app)}
        cfg = command_config(ctx, {key: given for key, given in options.items() if given[1] is not None})
        settings = cfgmod.gate_settings(cfg)
        ari = cfgmod.ari_connection(cfg)
        if not logging.getLogger().handlers:
            from callgate.logs import setup_logging

            setup_logging(cfg.get("log", "format"), cfg.get("log", "level"))
        cfgmod.warn_if_secrets_exposed(cfg.file)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
                pass
        async with open_core(ctx) as core:
            freeze_startup_heap()
            log.info("gate serving Stasis app %s on %s (trunk %s, dial timeout %ss, warning %ss)",
                     settings.app, ari.url, settings.trunk_template, settings.dial_timeout, settings.warning_seconds)
            gate = await run_gate(core, url=ari.url, user=ari.user, password=ari.password, settings=settings, stop=stop,
                                  grace_seconds=grace)
        if gate.replaced:
            click.echo(f"error: Stasis application {settings.app!r} was taken over by another connection "
                       f"(is a second gate running against this Asterisk?)", err=True)
            raise SystemExit(EXIT_REPLACED)
