"""Running the client area: an aiohttp site on the configured address until SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio
import logging
import signal
from typing import Callable

from aiohttp import web

from .app import WebSettings, make_web_app

log = logging.getLogger("callgate.web")


async def start(core, settings: WebSettings, *, paypal=None, webhook_handler=None) -> tuple[web.AppRunner, str]:
    """Start serving; returns the runner (``await runner.cleanup()`` stops it) and the base URL.
    Port 0 binds a free port (tests)."""
    app = make_web_app(core, paypal, settings, webhook_handler=webhook_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = settings.listen_host_port()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()  # the real port when 0 was asked for
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return runner, f"http://{shown}:{bound[1]}"


async def serve(core, settings: WebSettings, *, ready: Callable[[str], None] | None = None) -> None:
    """``callgate web``: the client area with PayPal checkout and webhooks from the environment."""
    from .payments import from_env

    paypal, webhook_handler, closer = await from_env(core)
    runner, url = await start(core, settings, paypal=paypal, webhook_handler=webhook_handler)
    if ready:
        ready(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await closer()
