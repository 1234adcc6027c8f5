"""The console's rate decks (/admin/rates): a bad deck shows its line and column and writes
nothing; a good one shows what it changes against the version in effect and applies, audited,
only on confirm, once, and only if the plan did not change since the preview."""
from __future__ import annotations

import re

from aiohttp import FormData
from sqlalchemy import func, select

from billing_core.domain.money import parse_amount
from billing_core.domain.rating import Rate
from billing_core.store.tables import deck_versions, rates
from billing_core.store.tables_operators import audit_log

from .conftest import Browserless, admin_sign_in

HEADER = "prefix,description,rate_per_min,connect_fee,initial_increment,increment\n"


def m(text: str) -> int:
    return parse_amount(text, field="x", decimals=6)


async def seed_plan(core):
    await core.admin.import_plan("std", [Rate("1", m("0.01"), 0, 60, 60, "NANP"),
                                         Rate("44", m("0.05"), 0, 60, 60, "UK"),
                                         Rate("33", m("0.04"), 0, 60, 60, "France")])


async def counts(core) -> tuple[int, int, int]:
    def tx(conn):
        return (conn.execute(select(func.count()).select_from(deck_versions)).scalar_one(),
                conn.execute(select(func.count()).select_from(rates)).scalar_one(),
                conn.execute(select(func.count()).select_from(audit_log)
                             .where(audit_log.c.action == "plan.import")).scalar_one())

    return await core.store.run(tx)


async def upload(c: Browserless, csrf: str, plan: str, body: str, **fields):
    form = FormData()
    form.add_field("csrf", csrf)
    form.add_field("plan", plan)
    for k, v in fields.items():
        form.add_field(k, v)
    form.add_field("file", body.encode(), filename="deck.csv", content_type="text/csv")
    return await c.post("/admin/rates/preview", form)


def token_of(body: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', body)
    assert found, body[:500]
    return found.group(1)


async def signed_in(web_app, op, clock) -> tuple[Browserless, str]:
    c = Browserless(web_app)
    await admin_sign_in(c, op, clock)
    return c, await c.csrf("/admin/rates")


async def test_the_page_lists_plans_and_versions(core, web_app, admin_op, clock):
    await seed_plan(core)
    c, _ = await signed_in(web_app, admin_op, clock)
    try:
        page = await c.get("/admin/rates")
        assert page.status == 200
        assert 'id="plan-std"' in page.body and "version 1 in effect" in page.body
        assert 'action="/admin/rates/preview"' in page.body
    finally:
        await c.close()


async def test_a_bad_row_shows_line_and_column_and_writes_nothing(core, web_app, admin_op, clock):
    await seed_plan(core)
    before = await counts(core)
    c, csrf = await signed_in(web_app, admin_op, clock)
    try:
        resp = await upload(c, csrf, "std", HEADER + "1,NANP,0.01,0,60,60\n44,UK,cheap,0,60,60\n")
        assert resp.status == 400
        assert "line 3, column rate_per_min" in resp.body
        assert 'name="token"' not in resp.body
    finally:
        await c.close()
    assert await counts(core) == before


async def test_a_good_deck_shows_the_diff_and_applies_once_on_confirm(core, web_app, admin_op, clock):
    await seed_plan(core)
    c, csrf = await signed_in(web_app, admin_op, clock)
    try:
        deck = HEADER + "1,NANP,0.01,0,60,60\n44,UK,0.06,0,60,60\n49,Germany,0.03,0,60,60\n"
        resp = await upload(c, csrf, "std", deck)
        assert resp.status == 200, resp.body[:500]
        assert re.search(r'id="count-added">1<', resp.body) and re.search(r'id="count-removed">1<', resp.body)
        assert re.search(r'id="count-repriced">1<', resp.body)
        assert "49" in resp.body and "Germany" in resp.body and "0.05/min" in resp.body and "0.06/min" in resp.body
        assert await counts(core) == (1, 3, 0)  # a preview writes nothing
        token = token_of(resp.body)
        done = await c.post("/admin/rates/apply", {"csrf": csrf, "token": token, "action": "apply"})
        assert done.status == 303 and done.headers["Location"].endswith("done=std:2")
        assert await counts(core) == (2, 6, 1)
        shown = await core.admin.show_plan("std")
        assert {r["prefix"]: r["rate_per_min"] for r in shown["rates"]} == {"1": "0.01", "44": "0.06",
                                                                               "49": "0.03"}
        again = await c.post("/admin/rates/apply", {"csrf": csrf, "token": token, "action": "apply"})
        assert again.status == 409 and "no longer available" in again.body
        assert await counts(core) == (2, 6, 1)
        record = await core.store.run(lambda conn: conn.execute(
            select(audit_log.c.actor, audit_log.c.target, audit_log.c.after)
            .where(audit_log.c.action == "plan.import")).one())
        assert record.actor == admin_op.email and record.target == "std" and '"version":2' in record.after
    finally:
        await c.close()


async def test_a_stale_confirm_is_refused(core, web_app, admin_op, clock):
    await seed_plan(core)
    c, csrf = await signed_in(web_app, admin_op, clock)
    try:
        resp = await upload(c, csrf, "std", HEADER + "1,NANP,0.02,0,60,60\n")
        token = token_of(resp.body)
        # someone imports another version meanwhile (the CLI): the diff shown is no longer true
        await core.admin.import_plan("std", [Rate("1", m("0.03"), 0, 60, 60, "NANP")])
        before = await counts(core)
        stale = await c.post("/admin/rates/apply", {"csrf": csrf, "token": token, "action": "apply"})
        assert stale.status == 409 and "was imported since this deck was previewed" in stale.body
        assert await counts(core) == before
    finally:
        await c.close()


async def test_options_map_to_plan_import_and_bad_ones_are_refused(core, web_app, admin_op, clock):
    await seed_plan(core)
    c, csrf = await signed_in(web_app, admin_op, clock)
    try:
        body = HEADER + "1,NANP,0.02,0,60,60\n"
        past = await upload(c, csrf, "std", body, effective="2000-01-01T00:00:00Z")
        assert past.status == 400 and "is in the past" in past.body
        naive = await upload(c, csrf, "std", body, effective="2030-01-01T00:00:00")
        assert naive.status == 400 and "needs a UTC offset" in naive.body
        zone = await upload(c, csrf, "std", body, timezone="Mars/Olympus")
        assert zone.status == 400 and "timezone" in zone.body
        assert await counts(core) == (1, 3, 0)
        ok = await upload(c, csrf, "std", body, effective="2000-01-01T00:00:00Z", correction="on",
                          timezone="Europe/Paris")
        assert ok.status == 200, ok.body[:500]
        done = await c.post("/admin/rates/apply", {"csrf": csrf, "token": token_of(ok.body), "action": "apply"})
        assert done.status == 303
        versions = await core.admin.plan_versions("std")
        v2 = versions["versions"][-1]
        assert v2["correction"] and v2["timezone"] == "Europe/Paris" and v2["effective_at"].startswith("2000-01-01")
    finally:
        await c.close()


async def test_a_new_plan_and_another_operators_token(core, web_app, admin_op, clock):
    from .conftest import add_operator

    other = await add_operator(core, "other@example.test", "admin", "another long password 1")
    c, csrf = await signed_in(web_app, admin_op, clock)
    c2, csrf2 = await signed_in(web_app, other, clock)
    try:
        resp = await upload(c, csrf, "fresh", HEADER + "1,NANP,0.02,0,60,60\n")
        assert resp.status == 200 and "the plan has no deck in effect" in resp.body
        token = token_of(resp.body)
        refused = await c2.post("/admin/rates/apply", {"csrf": csrf2, "token": token, "action": "apply"})
        assert refused.status == 409
        assert await counts(core) == (0, 0, 0)
        done = await c.post("/admin/rates/apply", {"csrf": csrf, "token": token, "action": "apply"})
        assert done.status == 303 and await counts(core) == (1, 1, 1)
    finally:
        await c.close()
        await c2.close()
