"""Sign-in, sessions, cookies, CSRF and the persisted sign-in limits, over real HTTP."""
from __future__ import annotations

from http.cookies import SimpleCookie

import pytest
from sqlalchemy import func, select

from billing_core.domain.errors import InvalidInput, NotFound
from billing_core.store.tables import accounts
from billing_core.store.tables_web import web_sessions, web_signin_attempts
from callgate.web.app import WebSettings
from callgate.web.auth import Passwords, set_password
from callgate.web.server import start

from .conftest import FAST_AUTH, PASSWORD, Browserless


def _set_cookies(resp) -> dict[str, SimpleCookie]:
    out = {}
    for header in resp.headers.getall("Set-Cookie", []):
        c = SimpleCookie()
        c.load(header)
        for name, morsel in c.items():
            out[name] = (morsel, header)
    return out


async def _count(core, table, *where):
    return await core.store.run(lambda conn: conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


async def test_pages_need_sign_in(client, alice):
    for path in ("/balance", "/funds", "/invoices", "/calls", "/dids", "/invoices/1"):
        resp = await client.get(path)
        assert resp.status == 303, path
        assert resp.headers["Location"].startswith("/signin?next="), path
        head = await client.http.head(client.base + path, allow_redirects=False)
        assert head.status == 303, path


async def test_sign_in_sets_a_hardened_session_cookie_and_signs_out(client, alice, core):
    resp = await client.sign_in(alice.email, alice.password)
    assert resp.headers["Location"] == "/balance"
    morsel, header = _set_cookies(resp)["callgate_session"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/"
    assert not morsel["secure"]
    token = morsel.value
    # Only the hash of the token is stored.
    stored = await core.store.run(lambda conn: conn.execute(select(web_sessions.c.token_hash)).scalars().all())
    assert len(stored) == 1 and token not in stored

    page = await client.get("/balance")
    assert page.status == 200
    assert "Credit Balance" in page.body and "10.00 CAD" in page.body
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]

    csrf = await client.csrf()
    out = await client.post("/signout", {"csrf": csrf})
    assert out.status == 303 and out.headers["Location"] == "/signin"
    assert await _count(core, web_sessions) == 0
    assert (await client.get("/balance")).status == 303
    # The old cookie value is dead even if a copy of it is replayed.
    replay = Browserless(client.base)
    try:
        replay.http.cookie_jar.update_cookies({"callgate_session": token})
        assert (await replay.get("/balance")).status == 303
    finally:
        await replay.close()


async def test_secure_cookies_setting_marks_cookies_secure(core, alice):
    settings = WebSettings(listen="127.0.0.1:0", secure_cookies=True, auth=FAST_AUTH)
    runner, url = await start(core, settings)
    c = Browserless(url)
    try:
        page = await c.get("/signin")
        morsel, header = _set_cookies(page)["callgate_signin"]
        assert morsel["secure"] is True and morsel["httponly"] is True
        # The client will not send a Secure cookie back over plain http, so post the token by hand.
        token = morsel.value
        resp = await c.post("/signin", {"csrf": token, "email": alice.email, "password": alice.password},
                            headers={"Cookie": f"callgate_signin={token}"})
        assert resp.status == 303
        morsel, header = _set_cookies(resp)["__Host-callgate_session"]
        assert morsel["secure"] is True and morsel["httponly"] is True and morsel["samesite"] == "Lax"
        assert morsel["path"] == "/" and not morsel["domain"]
    finally:
        await c.close()
        await runner.cleanup()


async def test_wrong_password_and_unknown_email_look_the_same(client, alice):
    wrong = await client.sign_in(alice.email, "not the password", expect=401)
    unknown = await client.sign_in("nobody@example.test", "whatever whatever", expect=401)
    assert "Wrong email or password." in wrong.body and "Wrong email or password." in unknown.body
    assert "callgate_session" not in _set_cookies(wrong)
    assert (await client.get("/balance")).status == 303


async def test_email_is_case_insensitive(client, alice):
    await client.sign_in("  ALICE@Example.TEST ", alice.password)
    assert (await client.get("/balance")).status == 200


async def test_sign_in_without_csrf_token_is_refused(client, alice, core):
    await client.get("/signin")  # has the cookie, but the form does not send the token
    resp = await client.post("/signin", {"email": alice.email, "password": alice.password})
    assert resp.status == 403
    assert "did not come from this site" in resp.body
    resp = await client.post("/signin", {"csrf": "forged-token-forged-token", "email": alice.email,
                                         "password": alice.password})
    assert resp.status == 403
    assert await _count(core, web_sessions) == 0
    assert await _count(core, web_signin_attempts) == 0


async def test_every_form_refuses_a_missing_or_foreign_csrf_token(client, client2, alice, bob, core):
    await client.sign_in(alice.email, alice.password)
    await client2.sign_in(bob.email, bob.password)
    bobs_token = await client2.csrf()
    before = await core.account("alice")
    for path, data in (("/funds", {"amount": "50.00"}), ("/signout", {}), ("/invoices/1/pay", {})):
        for token in (None, "", bobs_token):
            form = dict(data) if token is None else {**data, "csrf": token}
            resp = await client.post(path, form)
            assert resp.status == 403, (path, token, resp.body[:200])
            assert "did not come from this site" in resp.body
    assert await core.account("alice") == before
    from billing_core import invoices as inv

    assert await inv.list_invoices(core, "alice") == []
    assert (await client.get("/balance")).status == 200  # the forged sign-out did nothing


async def test_sign_in_is_limited_per_email_and_persisted(core, alice, web_settings):
    runner, url = await start(core, web_settings)
    c = Browserless(url)
    try:
        for _ in range(FAST_AUTH.signin_max_per_email):
            await c.sign_in(alice.email, "wrong password!", expect=401)
        limited = await c.sign_in(alice.email, alice.password, expect=429)
        assert "Too many failed sign-ins" in limited.body
    finally:
        await c.close()
        await runner.cleanup()
    # A restart does not forget (the attempts are in the database).
    runner, url = await start(core, web_settings)
    c = Browserless(url)
    try:
        await c.sign_in(alice.email, alice.password, expect=429)
        # The window passes: the right password works again and clears the email's failures.
        core.clock.advance(FAST_AUTH.signin_window_seconds + 1)
        await c.sign_in(alice.email, alice.password)
        assert await _count(core, web_signin_attempts, web_signin_attempts.c.key_kind == "email",
                            web_signin_attempts.c.succeeded.is_(False)) == 0
    finally:
        await c.close()
        await runner.cleanup()


async def test_sign_in_is_limited_per_address_across_emails(client, alice, bob):
    for i in range(FAST_AUTH.signin_max_per_ip):
        await client.sign_in(f"guess{i}@example.test", "some password", expect=401)
    # Bob's email has no failures, but this address used up its own.
    await client.sign_in(bob.email, bob.password, expect=429)


async def test_a_success_clears_the_emails_failures(client, alice):
    for _ in range(FAST_AUTH.signin_max_per_email - 1):
        await client.sign_in(alice.email, "wrong password!", expect=401)
    await client.sign_in(alice.email, alice.password)
    csrf = await client.csrf()
    await client.post("/signout", {"csrf": csrf})
    for _ in range(FAST_AUTH.signin_max_per_email - 1):
        await client.sign_in(alice.email, "wrong password!", expect=401)
    await client.sign_in(alice.email, alice.password)


async def test_idle_and_absolute_session_expiry(client, alice, core):
    await client.sign_in(alice.email, alice.password)
    core.clock.advance(FAST_AUTH.session_idle_seconds - 10)
    assert (await client.get("/balance")).status == 200  # use keeps it alive
    core.clock.advance(FAST_AUTH.session_idle_seconds - 10)
    assert (await client.get("/balance")).status == 200
    core.clock.advance(FAST_AUTH.session_idle_seconds + 1)
    assert (await client.get("/balance")).status == 303
    assert await _count(core, web_sessions) == 0

    await client.sign_in(alice.email, alice.password)
    for _ in range(FAST_AUTH.session_max_seconds // (FAST_AUTH.session_idle_seconds - 60) + 1):
        core.clock.advance(FAST_AUTH.session_idle_seconds - 60)
        await client.get("/balance")
    assert (await client.get("/balance")).status == 303  # absolute limit, however busy


async def test_next_parameter_is_never_an_open_redirect(client, alice):
    token = await client.csrf("/signin")
    resp = await client.post("/signin", {"csrf": token, "email": alice.email, "password": alice.password,
                                         "next": "//evil.example/x"})
    assert resp.headers["Location"] == "/balance"
    csrf = await client.csrf()
    await client.post("/signout", {"csrf": csrf})
    token = await client.csrf("/signin?next=/calls")
    resp = await client.post("/signin", {"csrf": token, "email": alice.email, "password": alice.password,
                                         "next": "/calls"})
    assert resp.headers["Location"] == "/calls"


async def test_set_password_rules(core, alice):
    pw = Passwords(FAST_AUTH)
    with pytest.raises(InvalidInput, match="at least 10"):
        await set_password(core, pw, "alice", "short")
    with pytest.raises(NotFound, match="REF"):
        await set_password(core, pw, "nobody", PASSWORD)
    # A second account with the same email cannot get a password: an email names one account.
    await core.admin.add_account("alice2", name="Alice Two", email="Alice@example.test", package="basic")
    with pytest.raises(InvalidInput, match="already signs in with alice@example.test"):
        await set_password(core, pw, "alice2", PASSWORD)
    stored = await core.store.run(lambda conn: conn.execute(
        select(accounts.c.password_hash).where(accounts.c.ref == "alice2")).scalar())
    assert stored is None


async def test_new_password_signs_out_everywhere_and_old_one_stops_working(client, alice, core):
    await client.sign_in(alice.email, alice.password)
    await set_password(core, Passwords(FAST_AUTH), "alice", "a brand new password")
    assert (await client.get("/balance")).status == 303
    await client.sign_in(alice.email, alice.password, expect=401)
    await client.sign_in(alice.email, "a brand new password")


async def test_weak_hash_parameters_are_upgraded_at_sign_in(core, alice, web_settings):
    stronger = WebSettings(listen="127.0.0.1:0", auth=FAST_AUTH.__class__(**{**FAST_AUTH.__dict__, "argon2_time_cost": 2}))
    runner, url = await start(core, stronger)
    c = Browserless(url)
    try:
        await c.sign_in(alice.email, alice.password)
    finally:
        await c.close()
        await runner.cleanup()
    stored = await core.store.run(lambda conn: conn.execute(
        select(accounts.c.password_hash).where(accounts.c.ref == "alice")).scalar())
    assert stored.startswith("$argon2id$") and ",t=2," in stored


async def test_form_posts_without_a_session_are_refused_and_write_nothing(client, alice, core):
    await client.sign_in(alice.email, alice.password)
    csrf = await client.csrf()
    client.http.cookie_jar.clear()
    for path in ("/funds", "/invoices/1/pay"):
        resp = await client.post(path, {"csrf": csrf, "amount": "50.00"})
        assert resp.status == 403 and "Sign in and try again" in resp.body
    from billing_core import invoices as inv

    assert await inv.list_invoices(core, "alice") == []


async def test_dead_sessions_are_swept_at_the_next_sign_in(client, client2, alice, bob, core):
    await client.sign_in(alice.email, alice.password)
    core.clock.advance(FAST_AUTH.session_idle_seconds + 1)
    await client2.sign_in(bob.email, bob.password)
    assert await _count(core, web_sessions) == 1


# ------------------------------------------------------------------ issue 15: sign-in hardening
async def test_good_sign_ins_never_count_against_the_address(client, alice, core):
    """A NATed office or every customer behind one reverse proxy: one client address, many good
    sign-ins in the window, never 429 (only failures count for the address)."""
    for _ in range(max(20, FAST_AUTH.signin_max_per_ip + 1)):
        await client.sign_in(alice.email, alice.password)
        await client.post("/signout", {"csrf": await client.csrf()})
    assert await _count(core, web_signin_attempts, web_signin_attempts.c.key_kind == "ip") == 0


async def test_a_success_clears_its_own_typos_from_the_address_but_not_others_guesses(client, alice, bob, core):
    for _ in range(FAST_AUTH.signin_max_per_email - 1):
        await client.sign_in(alice.email, "wrong password!", expect=401)
    await client.sign_in(bob.email, "wrong password!", expect=401)
    await client.sign_in(alice.email, alice.password)
    # Alice's typos are gone from the address's count; the guess at Bob's email is not.
    assert await _count(core, web_signin_attempts, web_signin_attempts.c.key_kind == "ip") == 1
    assert await _count(core, web_signin_attempts, web_signin_attempts.c.key_kind == "email",
                        web_signin_attempts.c.key_value == bob.email) == 1


class _CountingPasswords(Passwords):
    def __init__(self, settings):
        super().__init__(settings)
        self.checks = 0

    async def verify(self, stored, password):
        self.checks += 1
        return await super().verify(stored, password)


async def test_parallel_guesses_for_one_email_check_at_most_the_limit(core, alice, db_url, clock):
    """12 guesses at once against a limit of 5, through two stores (two processes' worth of
    connections): at most 5 password checks, on both databases."""
    import asyncio
    from dataclasses import replace

    from billing_core.api import BillingCore
    from callgate.web.auth import SignInRefused, sign_in

    settings = replace(FAST_AUTH, signin_max_per_email=5, signin_max_per_ip=1000)
    passwords = _CountingPasswords(settings)
    other = await BillingCore.open(db_url, clock=clock)
    try:
        results = await asyncio.gather(*(
            sign_in(core if i % 2 else other, passwords, settings, alice.email, f"guess number {i}", f"10.0.0.{i}")
            for i in range(12)))
    finally:
        await other.close()
    assert passwords.checks <= 5
    assert sum(1 for r in results if isinstance(r, SignInRefused) and r.reason == "rate_limited") >= 7
    assert await _count(core, web_signin_attempts, web_signin_attempts.c.key_kind == "email") <= 5


async def test_parallel_guesses_from_one_address_check_at_most_its_limit(core, alice):
    import asyncio
    from dataclasses import replace

    from callgate.web.auth import sign_in

    settings = replace(FAST_AUTH, signin_max_per_email=1000, signin_max_per_ip=4)
    passwords = _CountingPasswords(settings)
    await asyncio.gather(*(
        sign_in(core, passwords, settings, f"guess{i}@example.test", "some password", "10.9.9.9") for i in range(12)))
    assert passwords.checks <= 4


@pytest.mark.parametrize("stored, typed", [
    ("Émile@Exemple.test", "émile@exemple.test"),
    ("émile@exemple.test", "ÉMILE@EXEMPLE.TEST"),
    ("Ωmega@example.test", "ωMEGA@example.test"),
    ("plain@Example.TEST", "PLAIN@example.test"),
])
async def test_non_ascii_emails_sign_in_on_both_databases(client, core, stored, typed):
    from tests.factories import seed

    await seed(core, account="intl", balance="1.00", did=None, endpoint=None, email=stored)
    await set_password(core, Passwords(FAST_AUTH), "intl", PASSWORD)
    await client.sign_in(typed, PASSWORD)
    assert (await client.get("/balance")).status == 200


async def test_one_email_signs_in_one_account_even_when_it_differs_in_non_ascii_case(core):
    from tests.factories import seed

    await seed(core, account="first", balance="1.00", did=None, endpoint=None, email="ZOË@example.test")
    await seed(core, account="second", balance="1.00", did=None, endpoint="second-phone", email="Zoë@example.test")
    await set_password(core, Passwords(FAST_AUTH), "first", PASSWORD)
    with pytest.raises(InvalidInput, match="already signs in"):
        await set_password(core, Passwords(FAST_AUTH), "second", PASSWORD)


async def test_migration_gives_existing_accounts_their_canonical_signin_email(db_url, clock):
    """Accounts that had a password before 0007 sign in afterwards, non-ASCII emails included."""
    from billing_core.api import BillingCore
    from billing_core.store import migrate
    from callgate.web.auth import SignedIn, sign_in

    import sqlalchemy as sa

    await migrate.upgrade(db_url, "0006")
    passwords = Passwords(FAST_AUTH)
    hashed = await passwords.hash(PASSWORD)

    def old_rows(conn):
        # The rows a 0006 schema holds, in its own columns: today's statements read columns it
        # does not have (0008's ledger columns, 0009's package rules and account limits).
        def table(name, *cols):
            return sa.table(name, *(sa.column(c) for c in cols))

        conn.execute(sa.insert(table("plans", "name", "version", "rate_count", "created_at", "updated_at"))
                     .values(name="std", version=1, rate_count=0, created_at=0, updated_at=0))
        plan = conn.exec_driver_sql("SELECT id FROM plans").scalar()
        conn.execute(sa.insert(table("packages", "name", "plan_id", "low_balance", "max_calls", "inbound_rate",
                                     "created_at", "updated_at"))
                     .values(name="basic", plan_id=plan, low_balance=0, max_calls=1, inbound_rate=0,
                             created_at=0, updated_at=0))
        pkg = conn.exec_driver_sql("SELECT id FROM packages").scalar()
        conn.execute(sa.insert(table("accounts", "ref", "name", "email", "package_id", "currency", "balance",
                                     "credit_limit", "held", "live_calls", "status", "low_balance_armed",
                                     "low_balance_crossings", "depletions", "password_hash", "created_at",
                                     "updated_at"))
                     .values(ref="old", name="Old", email="Ørsted@Example.test", package_id=pkg, currency="CAD",
                             balance=0, credit_limit=0, held=0, live_calls=0, status="active", low_balance_armed=True,
                             low_balance_crossings=0, depletions=0, password_hash=hashed, created_at=0, updated_at=0))

    await migrate._run(db_url, old_rows)
    await migrate.upgrade(db_url)
    core = await BillingCore.open(db_url, clock=clock)
    try:
        result = await sign_in(core, passwords, FAST_AUTH, "ØRSTED@example.TEST", PASSWORD, "10.1.1.1")
        assert isinstance(result, SignedIn) and result.session.account_ref == "old"
    finally:
        await core.close()


def test_sign_in_limits_are_settings():
    from callgate import config as cfgmod

    def web_settings(environ):  # the one configuration path: [web], file + environment
        return cfgmod.web_settings(cfgmod.load(None, environ=environ))

    settings = web_settings({"CALLGATE_WEB_SIGNIN_MAX_PER_EMAIL": "7", "CALLGATE_WEB_SIGNIN_MAX_PER_IP": "50",
                             "CALLGATE_WEB_SIGNIN_WINDOW_SECONDS": "600"})
    assert (settings.auth.signin_max_per_email, settings.auth.signin_max_per_ip,
            settings.auth.signin_window_seconds) == (7, 50, 600)
    assert web_settings({}).auth == WebSettings().auth
    with pytest.raises(ValueError, match="CALLGATE_WEB_SIGNIN_MAX_PER_IP"):
        web_settings({"CALLGATE_WEB_SIGNIN_MAX_PER_IP": "0"})
    # The file's [web] keys reach the component through the same path.
    cfg = cfgmod.load(None, {"CALLGATE_WEB_SIGNIN_MAX_PER_EMAIL": "3"})
    assert cfgmod.web_settings(cfg).auth.signin_max_per_email == 3
    assert cfgmod.web_settings(cfg).auth.signin_max_per_ip == 20


async def test_an_overlong_email_signs_in_nobody(client, alice, core):
    """Never truncated to fit (a cut-down email could name someone): an email no account can have
    (over 254 characters, whitespace inside) is refused by the form before any password check or
    record, on PostgreSQL too (no 500 from a value too long for the column); the real one still works."""
    for _ in range(2):
        await client.sign_in("a" * 400 + "@example.test", alice.password, expect=400)
        await client.sign_in(alice.email + " " * 10 + "x" * 400, alice.password, expect=400)
    assert await _count(core, web_signin_attempts, web_signin_attempts.c.key_kind == "ip") == 0
    await client.sign_in(alice.email, alice.password)
