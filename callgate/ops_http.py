"""`/metrics` (Prometheus) and `/healthz` for load balancers and systemd.

Mounted on the client-area listener by `callgate run`; when the web part is off, served alone on
the same listen address so monitoring keeps working.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text

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
    async def check() -> tuple[bool, str]:
        try:
            await asyncio.wait_for(core.store.run(lambda conn: conn.execute(text("SELECT 1")).scalar()), timeout=2.0)
            return True, "reachable"
        except Exception as exc:  # any failure is "not healthy", with the reason
            return False, f"unreachable: {exc.__class__.__name__}: {exc}"[:200]

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
    app = web.Application()
    add_ops_routes(app, checks)
    return app
