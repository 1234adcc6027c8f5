"""Client-area fixtures: seeded customers with passwords and the app on a real 127.0.0.1 socket."""
from __future__ import annotations

import re
from dataclasses import dataclass

import pyotp
import pytest
from aiohttp import ClientSession, CookieJar

from billing_core import operators as ops
from callgate.web.app import WebSettings
from callgate.web.auth import AuthSettings, Passwords, set_password
from callgate.web.server import start
from tests.core.conftest import cg  # noqa: F401  (the CLI runner fixture: operator and account commands)
from tests.factories import seed

PASSWORD = "correct horse battery"
OTHER_PASSWORD = "another long secret"

# Cheap Argon2 parameters: the tests exercise the flow, not the work factor.
FAST_AUTH = AuthSettings(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1, signin_max_per_email=3,
                         signin_max_per_ip=6, signin_window_seconds=600, session_idle_seconds=1800,
                         session_max_seconds=7200)


@dataclass(frozen=True)
class Customer:
    ref: str
    email: str
    password: str


async def add_customer(core, ref: str, password: str, *, balance: str = "10.00", did: str | None = None,
                       endpoint: str | None = None, **kwargs) -> Customer:
    email = f"{ref}@example.test"
    await seed(core, account=ref, balance=balance, did=did, endpoint=endpoint, email=email, **kwargs)
    await set_password(core, Passwords(FAST_AUTH), ref, password)
    return Customer(ref, email, password)


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(listen="127.0.0.1:0", auth=FAST_AUTH)


@pytest.fixture
async def alice(core) -> Customer:
    return await add_customer(core, "alice", PASSWORD, did="15145551000", endpoint="alice-phone")


@pytest.fixture
async def bob(core, alice) -> Customer:
    return await add_customer(core, "bob", OTHER_PASSWORD, balance="30.00", did="15145552000", endpoint="bob-phone")


class Browserless:
    """A cookie-keeping HTTP client on the running app (no redirects followed unless asked)."""

    def __init__(self, base: str):
        self.base = base
        self.http = ClientSession(cookie_jar=CookieJar(unsafe=True))

    async def get(self, path: str, **kw):
        kw.setdefault("allow_redirects", False)
        resp = await self.http.get(self.base + path, **kw)
        resp.body = await resp.text()
        return resp

    async def post(self, path: str, data: dict, **kw):
        kw.setdefault("allow_redirects", False)
        resp = await self.http.post(self.base + path, data=data, **kw)
        resp.body = await resp.text()
        return resp

    async def csrf(self, path: str = "/balance") -> str:
        page = await self.get(path)
        m = re.search(r'name="csrf" value="([^"]+)"', page.body)
        assert m, f"no csrf token on {path}: {page.status} {page.body[:300]}"
        return m.group(1)

    async def sign_in(self, email: str, password: str, *, expect: int = 303):
        token = await self.csrf("/signin")
        resp = await self.post("/signin", {"csrf": token, "email": email, "password": password})
        assert resp.status == expect, resp.body[:500]
        return resp

    async def close(self):
        await self.http.close()


@pytest.fixture
async def web_app(core, web_settings):
    """The client area without PayPal (pages, auth); tests that pay use the stand-in fixtures."""
    runner, url = await start(core, web_settings)
    try:
        yield url
    finally:
        await runner.cleanup()


@pytest.fixture
async def client(web_app):
    c = Browserless(web_app)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def client2(web_app):
    c = Browserless(web_app)
    try:
        yield c
    finally:
        await c.close()


@dataclass
class PayingSite:
    """The client area wired to the PayPal stand-in (webhooks from the stand-in to the app)."""

    url: str
    standin: object
    paypal: object


@pytest.fixture
async def paying_site(core, web_settings):
    from callgate.paypal.client import PayPalClient
    from callgate_fakes.paypal_standin import PayPalStandIn

    standin = await PayPalStandIn().start()
    paypal = PayPalClient(standin.config())
    runner, url = await start(core, web_settings, paypal=paypal)
    standin.webhook_url = f"{url}/paypal/webhook"
    try:
        yield PayingSite(url, standin, paypal)
    finally:
        await standin.settle()
        await runner.cleanup()
        await paypal.close()
        await standin.stop()


@pytest.fixture
async def pay_client(paying_site):
    c = Browserless(paying_site.url)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def pay_client2(paying_site):
    c = Browserless(paying_site.url)
    try:
        yield c
    finally:
        await c.close()


# --------------------------------------------------------------------------- operator console
ADMIN_PASSWORD = "operator secret one"
SUPPORT_PASSWORD = "operator secret two"


@dataclass(frozen=True)
class Operator:
    email: str
    password: str
    role: str
    totp_secret: str | None = None

    def code(self, clock, drift_steps: int = 0) -> str:
        return pyotp.TOTP(self.totp_secret).at(clock.now_ms() // 1000 + drift_steps * 30)


async def add_operator(core, email: str, role: str, password: str, *, totp: bool = False) -> Operator:
    actor = ops.Actor("test")
    await ops.add_operator(core, email, role, actor=actor)
    await ops.set_operator_password(core, email, await Passwords(FAST_AUTH).hash(password), actor=actor)
    secret = None
    if totp:
        secret = pyotp.random_base32()
        await ops.set_operator_totp(core, email, secret, actor=actor)
    return Operator(email, password, role, secret)


@pytest.fixture
async def admin_op(core) -> Operator:
    return await add_operator(core, "ops@example.test", "admin", ADMIN_PASSWORD, totp=True)


@pytest.fixture
async def support_op(core) -> Operator:
    return await add_operator(core, "help@example.test", "support", SUPPORT_PASSWORD)


async def admin_sign_in(c: Browserless, op: Operator, clock, *, code: str | None = None, expect: int = 303):
    """Sign ``c`` in to /admin as ``op`` (with its current TOTP code unless ``code`` is given)."""
    token = await c.csrf("/admin/signin")
    if code is None:
        code = op.code(clock) if op.totp_secret else ""
    resp = await c.post("/admin/signin", {"csrf": token, "email": op.email, "password": op.password, "code": code})
    assert resp.status == expect, resp.body[:500]
    return resp
