"""`callgate operator add|list|disable|password|totp enable`, on both databases, and the audit log
they write (append-only, enforced by the database)."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError

from billing_core import operators as ops
from billing_core.store.tables_operators import audit_log, operators


def test_operator_lifecycle_through_the_cli(cg):
    cg("db", "upgrade")
    added = cg("operator", "add", "Ops@Example.COM", "--role", "admin", "--json")
    assert json.loads(added.output)["email"] == "ops@example.com"
    assert cg("operator", "add", "help@example.com", "--role", "support").output.startswith(
        "operator help@example.com created (support)")

    dup = cg("operator", "add", "ops@example.com", "--role", "support", ok=False)
    assert dup.exit_code == 1 and "operator 'ops@example.com' already exists" in dup.output
    bad_role = cg("operator", "add", "x@example.com", "--role", "root", ok=False)
    assert bad_role.exit_code == 2 and "'root' is not one of 'admin', 'support'" in bad_role.output
    bad_email = cg("operator", "add", "not-an-email", "--role", "admin", ok=False)
    assert bad_email.exit_code == 1 and "EMAIL: not an email address" in bad_email.output

    short = cg("operator", "password", "ops@example.com", "--password-stdin", input="short\n", ok=False)
    assert short.exit_code == 1 and "password: must be at least 10 characters" in short.output
    unknown = cg("operator", "password", "nobody@example.com", "--password-stdin", input="long enough pw\n", ok=False)
    assert unknown.exit_code == 1 and "unknown operator 'nobody@example.com'" in unknown.output
    ok = cg("operator", "password", "OPS@example.com", "--password-stdin", "--json", input="long enough pw\n")
    assert json.loads(ok.output) == {"email": "ops@example.com", "password_set": True}

    totp = cg("operator", "totp", "enable", "ops@example.com", "--json")
    uri = json.loads(totp.output)["provisioning_uri"]
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp" and "ops%40example.com" in parts.path
    secret = parse_qs(parts.query)["secret"][0]
    assert parse_qs(parts.query)["issuer"] == ["callgate"]
    assert pyotp.TOTP(secret).verify(pyotp.TOTP(secret).now())

    cg("operator", "disable", "help@example.com")
    listed = json.loads(cg("operator", "list", "--json").output)
    assert [(o["email"], o["role"], o["password_set"], o["totp"], o["disabled"]) for o in listed] == [
        ("help@example.com", "support", False, False, True),
        ("ops@example.com", "admin", True, True, False),
    ]
    text = cg("operator", "list").output.splitlines()
    assert text == ["help@example.com  support, no password, no totp, disabled",
                    "ops@example.com  admin, password set, totp"]
    missing = cg("operator", "disable", "nobody@example.com", ok=False)
    assert missing.exit_code == 1 and "unknown operator" in missing.output


async def test_every_operator_change_is_audited_and_the_log_is_append_only(core):
    actor = ops.Actor("cli:tester")
    await ops.add_operator(core, "ops@example.com", "admin", actor=actor)
    await ops.set_operator_password(core, "ops@example.com", "$argon2id$fake", actor=actor)
    await ops.set_operator_totp(core, "ops@example.com", pyotp.random_base32(), actor=actor)
    await ops.disable_operator(core, "ops@example.com", actor=actor)
    await ops.disable_operator(core, "ops@example.com", actor=actor)  # no change, no record

    records = await core.store.run(ops.audit_page_tx)
    assert [(r.actor, r.action, r.target, json.loads(r.before or "null"), json.loads(r.after or "null"))
            for r in reversed(records)] == [
        ("cli:tester", "operator.add", "ops@example.com", None, {"role": "admin"}),
        ("cli:tester", "operator.password", "ops@example.com", {"password_set": False}, {"password_set": True}),
        ("cli:tester", "operator.totp_enable", "ops@example.com", {"totp": False}, {"totp": True}),
        ("cli:tester", "operator.disable", "ops@example.com", {"disabled": False}, {"disabled": True}),
    ]
    assert all("argon2" not in (r.after or "") for r in records)

    def rewrite(conn):
        conn.execute(update(audit_log).values(actor="someone else"))

    def erase(conn):
        conn.execute(delete(audit_log))

    for attempt in (rewrite, erase):
        with pytest.raises(DBAPIError, match="append-only"):
            await core.store.run(attempt)
    assert len(await core.store.run(ops.audit_page_tx)) == 4


async def test_a_refused_change_writes_no_audit_record(core):
    actor = ops.Actor("cli")
    await ops.add_operator(core, "ops@example.com", "admin", actor=actor)
    with pytest.raises(Exception, match="already exists"):
        await ops.add_operator(core, "OPS@example.com", "support", actor=actor)
    with pytest.raises(Exception, match="--role"):
        await ops.add_operator(core, "new@example.com", "owner", actor=actor)
    assert [r.action for r in await core.store.run(ops.audit_page_tx)] == ["operator.add"]
    rows = await core.store.run(lambda conn: conn.execute(select(operators.c.email, operators.c.role)).all())
    assert [tuple(r) for r in rows] == [("ops@example.com", "admin")]


async def test_the_migration_makes_the_audit_log_append_only_too(db_url, clock):
    from billing_core.api import BillingCore
    from billing_core.store import migrate

    await migrate.upgrade(db_url)
    core = await BillingCore.open(db_url, clock=clock)
    try:
        await ops.add_operator(core, "ops@example.com", "support", actor=ops.Actor("cli"))

        def rewrite(conn):
            conn.execute(update(audit_log).values(action="nothing"))

        with pytest.raises(DBAPIError, match="append-only"):
            await core.store.run(rewrite)
        assert [r.action for r in await core.store.run(ops.audit_page_tx)] == ["operator.add"]
    finally:
        await core.close()
