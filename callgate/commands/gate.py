"""`callgate gate`: the ARI gate in the foreground (one log line per call decision).

Environment: CALLGATE_DB (the group's --db), CALLGATE_ARI_URL (default http://127.0.0.1:8088),
CALLGATE_ARI_USER, CALLGATE_ARI_PASSWORD, CALLGATE_ARI_APP (default callgate),
CALLGATE_WARNING_SECONDS, CALLGATE_TRUNK_TEMPLATE (default PJSIP/{number}@trunk),
CALLGATE_DIAL_TIMEOUT, CALLGATE_PBX_ID, CALLGATE_ANNOUNCE_<REASON> (see ari_app.settings).
"""
from __future__ import annotations

import asyncio
import logging
import signal
from urllib.parse import urlparse

import click

from ari_app.client import AriClient
from ari_app.gate import Gate
from ari_app.settings import GateSettings, SettingsError, from_env

from callgate.heap import freeze_startup_heap

from .common import CliError, grace_option, open_core, run_async

log = logging.getLogger("callgate.gate")

#: Exit status when another connection took the Stasis application (do not fight it in a loop).
EXIT_REPLACED = 3


def gate_settings_from_env(app: str | None = None) -> GateSettings:
    """The gate's settings; a bad value is one clear error naming the variable."""
    try:
        settings = from_env()
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    if app:
        settings = settings.with_(app=app)
    return settings


def check_ari_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise CliError(f"CALLGATE_ARI_URL: must be http(s)://host:port (got {url!r})")
    return url.rstrip("/")


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
    @click.option("--ari-url", envvar="CALLGATE_ARI_URL", default="http://127.0.0.1:8088", show_default=True,
                  help="Asterisk's HTTP server (env CALLGATE_ARI_URL).")
    @click.option("--ari-user", envvar="CALLGATE_ARI_USER", default="callgate", show_default=True,
                  help="ari.conf user (env CALLGATE_ARI_USER).")
    @click.option("--ari-password", envvar="CALLGATE_ARI_PASSWORD", default="", show_default=False,
                  help="ari.conf password (env CALLGATE_ARI_PASSWORD).")
    @click.option("--app", envvar="CALLGATE_ARI_APP", default="callgate", show_default=True,
                  help="Stasis application name (env CALLGATE_ARI_APP).")
    @grace_option
    @click.pass_context
    @run_async
    async def gate_cmd(ctx: click.Context, ari_url: str, ari_user: str, ari_password: str, app: str,
                       grace: float) -> None:
        """Run the ARI gate in the foreground: decide, bridge, time and settle every call.

        Dialplan: Stasis(callgate,outbound) / Stasis(callgate,inbound), or
        Stasis(callgate,outbound,continue) before Dial(...,L(${CALLGATE_MAX_MS}:...)).
        On SIGINT/SIGTERM it drains: new calls are refused, live calls go on until they end or
        --grace seconds pass. Exits 3 if another connection takes the application.
        """
        url = check_ari_url(ari_url)
        settings = gate_settings_from_env(app)
        if not logging.getLogger().handlers:
            from callgate.logs import setup_logging

            setup_logging()
        from callgate.config import warn_if_secrets_exposed

        warn_if_secrets_exposed(ctx.find_root().obj.get("config_path"))
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
                     settings.app, url, settings.trunk_template, settings.dial_timeout, settings.warning_seconds)
            gate = await run_gate(core, url=url, user=ari_user, password=ari_password, settings=settings, stop=stop,
                                  grace_seconds=grace)
        if gate.replaced:
            click.echo(f"error: Stasis application {settings.app!r} was taken over by another connection "
                       f"(is a second gate running against this Asterisk?)", err=True)
            raise SystemExit(EXIT_REPLACED)
