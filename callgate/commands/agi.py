"""``callgate agi``: the FastAGI server (agi.server) on the group's database."""
from __future__ import annotations

import asyncio
import signal

import click

from callgate import config as cfgmod
from callgate.commands.common import CliError, command_config, grace_option, open_core, run_async
from callgate.heap import freeze_startup_heap


def register(main: click.Group) -> None:
    """Add this area's commands to the ``callgate`` group."""
    main.add_command(agi_command)


@click.command("agi")
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Address to listen on (env CALLGATE_AGI_LISTEN, default 127.0.0.1:4573).")
@grace_option
@click.pass_context
@run_async
async def agi_command(ctx: click.Context, listen: str | None, grace: float) -> None:
    """Run the FastAGI server (authorize, answered, settle routes).

    On SIGINT/SIGTERM it drains: it stops accepting, and requests in progress are answered
    (within --grace seconds) before it exits.

    Asterisk calls it as AGI(agi://127.0.0.1:4573/authorize|answered|settle,…). Timeouts: CALLGATE_AGI_READ_TIMEOUT (per line, 10 s), CALLGATE_AGI_SESSION_TIMEOUT (30 s),
    CALLGATE_AGI_DECISION_TIMEOUT (5 s); sessions are keyed by CALLGATE_AGI_PBX_ID (agi@<host>)."""
    from agi.server import serve
    from callgate.logs import setup_logging

    cfg = command_config(ctx, {("agi", "listen"): ("--listen", listen)} if listen is not None else None)
    settings = cfgmod.agi_settings(cfg)
    setup_logging(cfg.get("log", "format"), cfg.get("log", "level"))
    cfgmod.warn_if_secrets_exposed(cfg.file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_core(ctx) as core:
        freeze_startup_heap()
        try:
            await serve(core, settings, stop=stop, grace_seconds=grace)
        except OSError as exc:  # address in use, permission denied
            raise CliError(f"cannot listen on {settings.listen}: {exc.strerror or exc}") from None
