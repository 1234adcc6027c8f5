"""The client area's sign-in form refuses an email with a control character before anything is
recorded or logged (issue 15: header and log injection through identifiers)."""
from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from billing_core.store.tables_web import web_signin_attempts


@pytest.mark.parametrize("email", ["alice@example.test\n", "alice@example.test\r\nX: y", "alice@example.test\x00",
                                   "alice\x1b[2J@example.test", "a" * 250 + "@example.test"])
async def test_a_sign_in_email_with_a_control_character_is_refused_and_nothing_is_recorded(client, alice, core, caplog,
                                                                                           email):
    caplog.set_level(logging.INFO)
    resp = await client.sign_in(email, alice.password, expect=400)
    assert "Enter the email address of your account" in resp.body
    assert "callgate_session" not in resp.headers.getall("Set-Cookie", [])
    count = await core.store.run(lambda conn: conn.execute(select(func.count()).select_from(web_signin_attempts)).scalar())
    assert count == 0
    assert "\x00" not in caplog.text and "\x1b" not in caplog.text and "X: y" not in caplog.text
    await client.sign_in(alice.email, alice.password)  # the real address still signs in
