"""The live page's End call (issue 20): an admin ends an ARI call the gate times (its cut-off moves
to now, audited); a call whose limit is in the dialplan (FastAGI, continue mode) says it cannot be
ended here and the action is refused with that reason; support sees no button and is refused."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from billing_core.store.tables import call_sessions
from billing_core.store.tables_operators import audit_log

from .conftest import Browserless, admin_sign_in


@pytest.fixture
async def admin_client(web_app, admin_op, clock):
    c = Browserless(web_app)
    await admin_sign_in(c, admin_op, clock)
    try:
        yield c
    finally:
        await c.close()


async def answered(core, clock, channel: str, *, full_hold: bool = False, pbx_id: str = "asterisk-1") -> str:
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice-phone",
                                  channel_id=channel, pbx_id=pbx_id, full_hold=full_hold)
    assert a.allowed
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(30)
    return a.session_id


async def row(core, sid: str):
    return await core.store.run(lambda conn: conn.execute(
        select(call_sessions.c.hold_mode, call_sessions.c.cutoff_at, call_sessions.c.granted_seconds,
               call_sessions.c.answered_at).where(call_sessions.c.id == sid)).one())


async def test_an_admin_ends_an_ari_call_and_a_dialplan_call_is_refused(core, admin_client, alice, clock):
    ari = await answered(core, clock, "ari-1")
    agi = await answered(core, clock, "agi-1", full_hold=True, pbx_id="agi@pbx")
    page = await admin_client.get("/admin/live")
    assert f'action="/admin/live/{ari}/end"' in page.body
    assert f'action="/admin/live/{agi}/end"' not in page.body
    assert "cannot be ended here: its time limit is in the dialplan" in page.body
    data = {c["id"]: c for c in json.loads((await admin_client.get("/admin/live.json")).body)["calls"]}
    assert data[ari]["endable"] is True and data[agi]["endable"] is False
    assert "FastAGI" in data[agi]["why_not"]
    csrf = await admin_client.csrf("/admin/live")

    before = await row(core, agi)
    refused = await admin_client.post(f"/admin/live/{agi}/end", {"csrf": csrf})
    assert refused.status == 409 and "time limit is in the dialplan" in refused.body
    assert await row(core, agi) == before

    now = clock.now_ms()
    done = await admin_client.post(f"/admin/live/{ari}/end", {"csrf": csrf, "reason": "fraud"})
    assert done.status == 303 and done.headers["Location"].endswith("/admin/live?done=ended")
    r = await row(core, ari)
    assert r.hold_mode == "ended" and r.cutoff_at == now
    assert r.granted_seconds * 1000 >= now - r.answered_at > (r.granted_seconds - 1) * 1000
    # ending it again changes nothing and writes no second record
    again = await admin_client.post(f"/admin/live/{ari}/end", {"csrf": csrf})
    assert again.status == 303 and await row(core, ari) == r
    records = await core.store.run(lambda conn: conn.execute(
        select(audit_log.c.action, audit_log.c.target, audit_log.c.reason)
        .where(audit_log.c.action == "call.end")).all())
    assert [tuple(x) for x in records] == [("call.end", ari, "fraud")]
    # the core never extends an ended call again
    assert (await core.extend(ari)).cutoff_at == now
    assert "cannot be ended here: already ended" in (await admin_client.get("/admin/live")).body


async def test_support_sees_no_end_button(core, web_app, support_op, alice, clock):
    ari = await answered(core, clock, "ari-2")
    c = Browserless(web_app)
    try:
        await admin_sign_in(c, support_op, clock)
        page = await c.get("/admin/live")
        assert f'/admin/live/{ari}/end' not in page.body and "can be ended by an admin" in page.body
        resp = await c.post(f"/admin/live/{ari}/end", {"csrf": await c.csrf("/admin/live")})
        assert resp.status == 403
        assert (await row(core, ari)).hold_mode == "chunked"
    finally:
        await c.close()
