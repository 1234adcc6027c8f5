"""PayPal fixtures: the stand-in on 127.0.0.1, a client for it, and a webhook receiver (the
``paypal_routes`` aiohttp routes on their own port) wired to the ``core`` fixture."""
from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from callgate.paypal.client import PayPalClient
from callgate_fakes.paypal_standin import PayPalStandIn
from callgate.paypal.webhook import WebhookVerifier, paypal_routes


@pytest.fixture
async def standin():
    s = await PayPalStandIn().start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def paypal(standin):
    async with PayPalClient(standin.config()) as client:
        yield client


@pytest.fixture
def verifier(standin):
    return WebhookVerifier(standin.config(webhook_max_age=120))


@pytest.fixture
async def receiver(core, standin, verifier):
    """A web app with the webhook route; the stand-in posts its webhooks there."""
    app = web.Application()
    app.add_routes(paypal_routes(core, verifier=verifier))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = site._server.sockets[0].getsockname()[:2]
    standin.webhook_url = f"http://{host}:{port}/paypal/webhook"
    try:
        yield standin.webhook_url
    finally:
        await standin.settle()
        await runner.cleanup()


async def approve_over_http(approval_url: str, method: str) -> str:
    """What the buyer's browser does on the approval page: load it, press a button; returns the
    redirect target (the shop's return or cancel URL)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(approval_url) as page:
            assert page.status == 200
            text = await page.text()
        for label in ("Pay with PayPal", "Pay with card", "Pay by eCheque", "Cancel and return"):
            assert label in text
        token = approval_url.split("token=", 1)[1]
        base = approval_url.split("/checkoutnow", 1)[0]
        async with session.post(f"{base}/checkoutnow/{token}", data={"action": method}, allow_redirects=False) as resp:
            assert resp.status == 303, await resp.text()
            return resp.headers["Location"]
