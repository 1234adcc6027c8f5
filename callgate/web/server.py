"""Running the client area: an aiohttp site on the configured address until SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio
import logging
import signal
from typing import Callable

from aiohttp import web

from callgate.paypal.config import PayPalConfig

from .app import WebSettings, make_web_app

log = logging.getLogger("callgate.web")


def warn_if_checkout_cannot_start(settings: WebSettings) -> None:
    """Say at start, not at the first customer's checkout, that PayPal links have no base URL."""
    if settings.checkout_base_url() is None:
        log.warning("PayPal checkout is refused: the client area listens on %s, not on loopback; set [web] "
                    "public_url (CALLGATE_WEB_PUBLIC_URL) to the https URL customers reach", settings.listen)


async def start(core, settings: WebSettings, *, paypal=None, verifier=None) -> tuple[web.AppRunner, str]:
    """Start serving; returns the runner (``await runner.cleanup()`` stops it) and the base URL.
    Port 0 binds a free port (tests)."""
    app = make_web_app(core, paypal, settings, verifier=verifier)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = settings.listen_host_port()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()  # the real port when 0 was asked for
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return runner, f"http://{shown}:{bound[1]}"


async def serve(core, settings: WebSettings, *, paypal_config: PayPalConfig, ops_listen: tuple[str, int] | None,
                ready: Callable[[str], None] | None = None, ops_ready: Callable[[str], None] | None = None) -> None:
    """``callgate web``: the client area, with PayPal checkout and webhooks when ``paypal_config``
    is complete (without it the pages work and Add Funds says payments are not set up), and the
    operator listener (/metrics, /healthz) on ``ops_listen`` unless that is None (``off``)."""
    from callgate.ops_http import database_check, start_ops_listener
    from callgate.paypal.client import PayPalClient

    config = paypal_config
    problems = config.problems()
    paypal = None if problems else PayPalClient(config)
    if problems:
        log.warning("PayPal checkout and webhooks are off: %s", "; ".join(problems))
    else:
        warn_if_checkout_cannot_start(settings)
    ops = await start_ops_listener({"database": database_check(core)}, ops_listen)
    try:
        runner, url = await start(core, settings, paypal=paypal)
    except BaseException:
        if ops is not None:
            await ops[0].cleanup()
        raise
    if ready:
        ready(url)
    if ops is not None and ops_ready:
        ops_ready(ops[1])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if ops is not None:
            await ops[0].cleanup()
        if paypal is not None:
            await paypal.close()
