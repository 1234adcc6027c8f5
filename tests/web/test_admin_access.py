"""The operator console's door: sign-in (password + TOTP), sessions apart from customers', CSRF,
rate limits, and the rule that every /admin route refuses anonymous visitors and customers (403,
nothing written) — checked by walking the app's own router, so a new route cannot be forgotten."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from billing_core.operators import ADMIN, SUPPORT
from billing_core.store.tables import accounts, deck_versions, did_assignments, dids, ledger, packages, rates
from billing_core.store.tables_invoices import invoices
from billing_core.store.tables_operators import account_notes, audit_log, operator_sessions, operators
from callgate.web.admin_access import PREFIX, allowed_roles
from callgate.web.app import make_web_app

from .conftest import Browserless, admin_sign_in

# A value for each route parameter, so every route is called on something that exists.
SAMPLES = {"ref": "alice", "alert_id": "1", "session_id": "s1", "name": "basic", "e164": "+15145551000",
           "invoice_id": "1"}
# Fields a POST might take: if a guard were missing, the handler would have enough to write.
FORM = {"amount": "5.00", "reason": "goodwill", "body": "a note", "status": "suspended", "key": "k-1",
        "direction": "credit", "package": "basic", "account": "alice", "endpoint": "alice-phone", "max_calls": "7",
        "low_balance": "1.00"}


def admin_routes(core, web_settings) -> list[tuple[str, str, object]]:
    """(method, concrete path, handler) of every /admin route the app serves."""
    app = make_web_app(core, None, web_settings)
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        pattern = info.get("path") or info.get("formatter")
        if not pattern or not (pattern == PREFIX or pattern.startswith(PREFIX + "/")):
            continue
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD next to each GET: the same handler and rule
        names = re.findall(r"\{(\w+)", pattern)
        missing = [n for n in names if n not in SAMPLES]
        assert not missing, f"add a sample value for {missing} of {pattern} to SAMPLES"
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: SAMPLES[m.group(1)], pattern)
        out.append((route.method, path, route.handler))
    return out


async def snapshot(core) -> dict:
    def tx(conn):
        return {t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                for t in (accounts, ledger, audit_log, account_notes, operators, deck_versions, rates, packages, dids,
                          did_assignments, invoices)}

    return await core.store.run(tx)


async def test_every_admin_route_refuses_anonymous_and_customers(core, web_settings, web_app, client, alice, admin_op):
    routes = admin_routes(core, web_settings)
    paths = {(m, p) for m, p, _ in routes}
    # the walk really sees the console (a broken walk would prove nothing)
    assert {("GET", "/admin"), ("GET", "/admin/accounts"), ("GET", "/admin/accounts/alice"),
            ("POST", "/admin/accounts/alice/credit"), ("GET", "/admin/calls.csv"),
            ("GET", "/admin/rates"), ("POST", "/admin/rates/preview"), ("POST", "/admin/rates/apply"),
            ("POST", "/admin/live/s1/end")} <= paths
    before = await snapshot(core)

    anonymous = Browserless(web_app)
    await client.sign_in(alice.email, alice.password)  # a customer with a live client-area session
    customer_csrf = await client.csrf("/balance")
    try:
        for method, path, handler in routes:
            if getattr(handler, "admin_public", False):
                continue
            for who, c, data in (("anonymous", anonymous, dict(FORM)),
                                 ("customer", client, dict(FORM, csrf=customer_csrf))):
                resp = await (c.get(path) if method == "GET" else c.post(path, data))
                assert resp.status == 403, f"{who} {method} {path}: {resp.status}"
                assert "Operators only" in resp.body, f"{who} {method} {path}"
    finally:
        await anonymous.close()
    assert await snapshot(core) == before


async def test_support_may_read_everything_and_change_nothing_but_notes(core, web_settings, web_app, support_op,
                                                                         alice, clock):
    c = Browserless(web_app)
    try:
        await admin_sign_in(c, support_op, clock)
        csrf = await c.csrf("/admin")
        before = await snapshot(core)
        changing = []
        for method, path, handler in admin_routes(core, web_settings):
            if getattr(handler, "admin_public", False) or path == PREFIX + "/signout":
                continue
            if method == "GET":
                resp = await c.get(path)
                assert resp.status == 200, f"support GET {path}: {resp.status}"
            elif SUPPORT not in allowed_roles(handler, method):
                changing.append(path)
                resp = await c.post(path, dict(FORM, csrf=csrf))
                assert resp.status == 403, f"support POST {path}: {resp.status}"
                assert "Your role (support) may not do this." in resp.body
        assert await snapshot(core) == before
        assert changing, "no admin-only action was tried"
    finally:
        await c.close()


def test_new_routes_are_admin_only_unless_marked():
    async def handler(request):  # pragma: no cover - never called
        pass

    assert allowed_roles(handler, "GET") == (ADMIN, SUPPORT)
    assert allowed_roles(handler, "POST") == (ADMIN,)


async def test_an_operator_signs_in_with_password_and_totp(core, client, admin_op, clock):
    page = await client.get("/admin/signin")
    assert page.status == 200 and 'name="code"' in page.body
    await admin_sign_in(client, admin_op, clock)
    home = await client.get("/admin")
    assert home.status == 200 and "ops@example.test (admin)" in home.body
    # the operator's cookie is only sent to /admin: the client area still sees nobody
    assert (await client.get("/balance")).status == 303
    records = await core.store.run(lambda conn: conn.execute(
        select(audit_log.c.actor, audit_log.c.action).where(audit_log.c.action == "operator.signin")).all())
    assert [tuple(r) for r in records] == [("ops@example.test", "operator.signin")]


@pytest.mark.parametrize("code", ["", "000000", "12345", "abcdef"])
async def test_a_missing_or_wrong_code_is_refused_like_a_wrong_password(core, client, admin_op, clock, code):
    if code == "000000" and admin_op.code(clock) == "000000":
        code = "111111"
    resp = await admin_sign_in(client, admin_op, clock, code=code, expect=401)
    assert "Wrong email, password or code." in resp.body
    assert (await client.get("/admin")).status == 403
    assert await core.store.run(lambda conn: conn.execute(select(operator_sessions)).all()) == []


async def test_a_code_signs_in_once(core, web_app, admin_op, clock):
    first, second = Browserless(web_app), Browserless(web_app)
    try:
        code = admin_op.code(clock)
        await admin_sign_in(first, admin_op, clock, code=code)
        await admin_sign_in(second, admin_op, clock, code=code, expect=401)
        # the next step's code (the phone a little ahead) is still good
        await admin_sign_in(second, admin_op, clock, code=admin_op.code(clock, drift_steps=1))
    finally:
        await first.close()
        await second.close()


async def test_wrong_password_and_rate_limit(core, client, admin_op, clock, web_settings):
    for _ in range(web_settings.auth.signin_max_per_email):
        token = await client.csrf("/admin/signin")
        resp = await client.post("/admin/signin", {"csrf": token, "email": admin_op.email, "password": "wrong password",
                                                   "code": admin_op.code(clock)})
        assert resp.status == 401
    resp = await admin_sign_in(client, admin_op, clock, expect=429)
    assert "Too many failed sign-ins" in resp.body


async def test_customer_credentials_do_not_open_the_console(client, alice, admin_op, clock):
    token = await client.csrf("/admin/signin")
    resp = await client.post("/admin/signin", {"csrf": token, "email": alice.email, "password": alice.password})
    assert resp.status == 401


async def test_signin_without_its_csrf_token_is_refused(core, client, admin_op, clock):
    resp = await client.post("/admin/signin", {"email": admin_op.email, "password": admin_op.password,
                                               "code": admin_op.code(clock)})
    assert resp.status == 403
    assert await core.store.run(lambda conn: conn.execute(select(operator_sessions)).all()) == []


async def test_a_disabled_operator_is_signed_out_and_cannot_sign_in(core, client, support_op, clock):
    from billing_core import operators as ops

    await admin_sign_in(client, support_op, clock)
    assert (await client.get("/admin")).status == 200
    await ops.disable_operator(core, support_op.email, actor=ops.Actor("cli"))
    assert (await client.get("/admin")).status == 403
    await admin_sign_in(client, support_op, clock, expect=401)


async def test_signout_needs_the_csrf_token(core, client, support_op, clock):
    await admin_sign_in(client, support_op, clock)
    assert (await client.post("/admin/signout", {})).status == 403
    assert (await client.get("/admin")).status == 200
    csrf = await client.csrf("/admin")
    assert (await client.post("/admin/signout", {"csrf": csrf})).status == 303
    assert (await client.get("/admin")).status == 403
