"""`callgate run`: every part in one process (see callgate.service)."""
from __future__ import annotations

import asyncio
import logging
import signal

import click

from callgate import config as cfgmod
from callgate.heap import freeze_startup_heap

from .common import CliError, command_config, grace_option, open_core, run_async

log = logging.getLogger("callgate.service")


def register(main: click.Group) -> None:
    @main.command("run")
    @click.option("--gate/--no-gate", "gate", default=None, help="Run the ARI gate ([ari] enabled).")
    @click.option("--sidecar/--no-sidecar", "sidecar", default=None, help="Run the sidecar ([sidecar] enabled).")
    @click.option("--agi/--no-agi", "agi", default=None, help="Run the FastAGI server ([agi] enabled).")
    @click.option("--web/--no-web", "web", default=None, help="Run the client area ([web] enabled).")
    @grace_option
    @click.pass_context
    @run_async
    async def run_cmd(ctx: click.Context, gate, sidecar, agi, web, grace) -> None:
        """Run the gate, the sidecar, the FastAGI server and the client area in one process.

        Works with nothing configured: SQLite at ./var/callgate.db (created and migrated on first
        start), ARI at http://127.0.0.1:8088, FastAGI on 127.0.0.1:4573, web on 127.0.0.1:8080,
        /metrics and /healthz on the operator listener 127.0.0.1:9464 ([ops] listen).
        An invalid configuration is refused before anything starts."""
        from callgate.logs import setup_logging
        from callgate.service import Parts, run_service

        cfg = command_config(ctx)
        setup_logging(cfg.get("log", "format"), cfg.get("log", "level"))
        cfgmod.warn_if_secrets_exposed(cfg.file)

        def pick(flag, section):
            return cfg.get(section, "enabled") if flag is None else flag

        parts = Parts(gate=pick(gate, "ari"), sidecar=pick(sidecar, "sidecar"), agi=pick(agi, "agi"), web=pick(web, "web"))
        if parts.sidecar:
            from billing_core.mail.render import TemplateProblem

            try:  # the one setting a valid configuration can still fail on: a templates directory gone
                cfgmod.mail_renderer(cfg)
            except TemplateProblem as exc:
                raise CliError(str(exc)) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover
                pass
        async with open_core(ctx) as core:
            freeze_startup_heap()
            try:
                await run_service(core, parts=parts, stop=stop, grace_seconds=grace, config=cfg)
            except OSError as exc:  # a port in use, an address we cannot bind
                raise CliError(f"cannot start: {exc}") from None
        log.info("callgate stopped")
