"""`/metrics` (Prometheus) and `/healthz` for monitoring, on the operator listener.

The operator listener (``[ops] listen`` / CALLGATE_OPS_LISTEN, default 127.0.0.1:9464; ``off`` for
none) is its own socket, started by `callgate run` and `callgate web`. Why not on the client area:
that one faces customers (and the internet), and metrics and health details are for operators.
Point Prometheus and health checks at it; keep it on loopback or a management network.

/healthz says which check failed, never why in words: the reason (a database error can name hosts,
users and paths) goes to the log, once per change.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text

log = logging.getLogger("callgate.ops")

HealthCheck = Callable[[], Awaitable[tuple[bool, str]]]


class AriClientCollector:
    """Exposes an ARI client's connection state and reconnect count (ari_app stays free of
    prometheus wiring; the service registers its client here)."""

    def __init__(self, client):
        self.client = client

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield GaugeMetricFamily("callgate_ari_connected", "1 when the events WebSocket to Asterisk is up",
                                value=1 if getattr(self.client, "connected", False) else 0)
        yield CounterMetricFamily("callgate_ari_reconnects", "Reconnects of the ARI events WebSocket",
                                  value=getattr(self.client, "reconnects", 0))


def register_ari_client(client):
    """Register (and return) the collector; unregister it with ``REGISTRY.unregister``."""
    collector = AriClientCollector(client)
    REGISTRY.register(collector)
    return collector


def database_check(core) -> HealthCheck:
    last_error: list[str | None] = [None]

    async def check() -> tuple[bool, str]:
        try:
            await asyncio.wait_for(core.store.run(lambda conn: conn.execute(text("SELECT 1")).scalar()), timeout=2.0)
        except Exception as exc:  # any failure is "not healthy"; the reason goes to the log only
            reason = f"{exc.__class__.__name__}: {exc}"[:300]
            if reason != last_error[0]:
                log.warning("health check: database unreachable: %s", reason)
                last_error[0] = reason
            return False, "unreachable"
        if last_error[0] is not None:
            log.info("health check: database reachable again")
            last_error[0] = None
        return True, "reachable"

    return check


def add_ops_routes(app: web.Application, checks: dict[str, HealthCheck]) -> None:
    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        results = {}
        ok = True
        for name, check in checks.items():
            good, detail = await check()
            results[name] = {"ok": good, "detail": detail}
            ok = ok and good
        return web.json_response({"ok": ok, "checks": results}, status=200 if ok else 503)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)


def ops_app(checks: dict[str, HealthCheck]) -> web.Application:
    from callgate.http_hardening import harden_aiohttp_servers

    harden_aiohttp_servers()
    app = web.Application()
    add_ops_routes(app, checks)
    return app


async def start_ops_listener(checks: dict[str, HealthCheck], address: tuple[str, int] | None
                             ) -> tuple[web.AppRunner, str] | None:
    """Serve /metrics and /healthz on the operator listener at ``address`` (callgate.config.ops_listen);
    (runner, base URL), or None when it is off (None). ``await runner.cleanup()`` stops it."""
    if address is None:
        return None
    runner = web.AppRunner(ops_app(checks), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, *address)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = site._server.sockets[0].getsockname()  # the real port when 0 was asked for
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return runner, f"http://{shown}:{bound[1]}"
