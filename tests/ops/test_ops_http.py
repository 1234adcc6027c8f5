"""/metrics and /healthz over real HTTP on loopback."""
from __future__ import annotations

import aiohttp
from aiohttp import web

from billing_core.api import BillingCore
from callgate.ops_http import database_check, ops_app
from tests.factories import seed


async def _serve(app):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


async def test_metrics_count_decisions_and_healthz_reports_the_database(core):
    await seed(core, balance="0")
    await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice")
    state = {"ari": True}

    async def ari_check():
        return state["ari"], "connected" if state["ari"] else "disconnected"

    runner, base = await _serve(ops_app({"database": database_check(core), "ari": ari_check}))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
                assert r.status == 200
                assert 'callgate_calls_refused_total{direction="outbound",reason="depleted"}' in text
                assert "callgate_decision_seconds_bucket" in text
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200 and (await r.json())["checks"]["database"]["ok"] is True
            state["ari"] = False
            async with http.get(f"{base}/healthz") as r:
                body = await r.json()
                assert r.status == 503 and body["checks"]["ari"] == {"ok": False, "detail": "disconnected"}
    finally:
        await runner.cleanup()


async def test_healthz_fails_when_the_database_is_gone(tmp_path, clock, caplog):
    broken = await BillingCore.open("postgresql://someone:hunter2@127.0.0.1:1/nothing", clock=clock)
    runner, base = await _serve(ops_app({"database": database_check(broken)}))
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.get(f"{base}/healthz") as r:
                    body = await r.json()
                    assert r.status == 503 and body["checks"]["database"]["ok"] is False
                    # Which check failed, never the error text (hosts, users, paths) in the answer.
                    assert body["checks"]["database"]["detail"] == "unreachable"
                    assert "127.0.0.1" not in await r.text() and "Error" not in await r.text()
        # The reason is in the log, once for the outage rather than once per probe.
        reasons = [r for r in caplog.records if "database unreachable" in r.getMessage()]
        assert len(reasons) == 1
    finally:
        await runner.cleanup()
        await broken.close()


async def test_webhook_results_are_counted(core):
    from prometheus_client import REGISTRY

    from callgate.paypal.webhook import paypal_routes

    app = web.Application()
    app.add_routes(paypal_routes(core))
    runner, base = await _serve(app)

    def count(reason):
        return REGISTRY.get_sample_value("callgate_paypal_webhooks_total", {"status": "rejected", "reason": reason}) or 0

    try:
        async with aiohttp.ClientSession() as http:
            async def post_unsigned():
                async with http.post(f"{base}/paypal/webhook", data=b'{"id": "WH-1"}') as r:
                    body = await r.json()
                    assert r.status == 400 and body["status"] == "rejected"
                    return body["reason"]

            reason = await post_unsigned()
            before = count(reason)
            assert before >= 1
            assert await post_unsigned() == reason
            assert count(reason) == before + 1
    finally:
        await runner.cleanup()


def test_operator_listener_address(monkeypatch):
    from callgate import config as cfgmod

    def ops_listen(environ):  # the one configuration path: [ops] listen, file + environment
        return cfgmod.ops_listen(cfgmod.load(None, environ=environ))

    assert ops_listen({}) == ("127.0.0.1", 9464)
    assert ops_listen({"CALLGATE_OPS_LISTEN": "[::1]:9100"}) == ("::1", 9100)
    assert ops_listen({"CALLGATE_OPS_LISTEN": "off"}) is None
    import pytest

    for bad in ("nonsense", "127.0.0.1:99999", "127.0.0.1:٩٤٦٤"):
        with pytest.raises(ValueError, match="CALLGATE_OPS_LISTEN"):
            ops_listen({"CALLGATE_OPS_LISTEN": bad})
