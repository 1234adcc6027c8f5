"""The client area's password reset: an emailed, single-use, expiring link; nobody learns who has
an account; requests are limited."""
from __future__ import annotations

import json
import re

from sqlalchemy import select

from billing_core.store.tables import outbox
from billing_core.store.tables_web import password_resets, web_sessions

from .conftest import Browserless


async def _outbox(core, kind="password_reset"):
    return await core.store.run(lambda conn: conn.execute(
        select(outbox.c.to_addr, outbox.c.context).where(outbox.c.kind == kind).order_by(outbox.c.id)).all())


async def _ask(client: Browserless, email: str, expect: int = 200):
    token = await client.csrf("/reset")
    resp = await client.post("/reset", {"csrf": token, "email": email})
    assert resp.status == expect, resp.body[:400]
    return resp


async def test_reset_by_emailed_link_once(client, client2, alice, core, web_app):
    await client2.sign_in(alice.email, alice.password)  # a session elsewhere: ended by the reset
    resp = await _ask(client, alice.email.upper())
    assert 'id="reset-sent"' in resp.body
    [(to, context)] = await _outbox(core)
    facts = json.loads(context)
    assert to == alice.email and facts["account_ref"] == "alice" and facts["expires_minutes"] == 60
    link = facts["reset_url"]
    assert link.startswith(web_app + "/reset/")
    path = link.removeprefix(web_app)
    stored = await core.store.run(lambda conn: conn.execute(select(password_resets.c.token_hash)).scalars().all())
    assert len(stored) == 1 and path.rsplit("/", 1)[1] not in stored  # only the hash is kept

    form = await client.get(path)
    assert form.status == 200 and 'name="confirm"' in form.body
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.body).group(1)
    differ = await client.post(path, {"csrf": csrf, "password": "a brand new secret", "confirm": "something else"})
    assert differ.status == 400 and "The two passwords differ" in differ.body
    short = await client.post(path, {"csrf": csrf, "password": "short", "confirm": "short"})
    assert short.status == 400 and "at least 10 characters" in short.body
    no_csrf = await client.post(path, {"password": "a brand new secret", "confirm": "a brand new secret"})
    assert no_csrf.status == 403
    done = await client.post(path, {"csrf": csrf, "password": "a brand new secret", "confirm": "a brand new secret"})
    assert done.status == 303 and done.headers["Location"] == "/signin?reset=done"
    assert "Your new password is set" in (await client.get("/signin?reset=done")).body
    assert await core.store.run(lambda conn: conn.execute(select(web_sessions)).all()) == []

    again = await client.get(path)
    assert again.status == 410 and "expired or was already used" in again.body
    csrf = await client.csrf("/reset")  # a valid form token again: the spent link is what refuses
    reuse = await client.post(path, {"csrf": csrf, "password": "yet another secret", "confirm": "yet another secret"})
    assert reuse.status == 410
    await client.sign_in(alice.email, alice.password, expect=401)
    await client.sign_in(alice.email, "a brand new secret")


async def test_unknown_email_gets_the_same_answer_and_no_email(client, alice, core):
    resp = await _ask(client, "nobody@example.test")
    assert 'id="reset-sent"' in resp.body
    assert await _outbox(core) == []


def path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def test_a_link_expires_and_a_newer_one_voids_it(client, alice, core, clock):
    await _ask(client, alice.email)
    old = json.loads((await _outbox(core))[0][1])["reset_url"]
    assert (await client.get(path(old))).status == 200
    clock.advance(3601)
    assert (await client.get(path(old))).status == 410
    await _ask(client, alice.email)
    await _ask(client, alice.email)
    first, second = [json.loads(c)["reset_url"] for _, c in (await _outbox(core))[1:]]
    assert (await client.get(path(first))).status == 410
    assert (await client.get(path(second))).status == 200


async def test_reset_requests_are_limited(client, alice, core, web_settings):
    for _ in range(web_settings.auth.signin_max_per_email):
        await _ask(client, alice.email)
    resp = await _ask(client, alice.email, expect=429)
    assert "Too many reset requests" in resp.body
    assert len(await _outbox(core)) == web_settings.auth.signin_max_per_email
