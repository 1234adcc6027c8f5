"""Lifecycle time rules with the clock jumped days ahead, and a top-up at each stage."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from billing_core.domain.errors import DenyReason
from billing_core.store.tables import did_assignments, dids
from tests.factories import seed

from .helpers import account_row, debit, make_sidecar, outbox_rows, pay

DAY = 86_400


async def _depleted(core):
    await seed(core, balance="10.00", did="15145551000")
    await core.admin.add_did("15145551001")
    await core.admin.assign_did("15145551001", "acme", "alice")
    await debit(core, "acme", "10.00")
    assert (await account_row(core, "acme"))["status"] == "depleted"


def _utc_date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def _kinds(rows):
    return [r["kind"] for r in rows]


async def test_depleted_to_presuspended_to_suspended(core, smtp_server):
    await _depleted(core)
    sidecar = make_sidecar(core, smtp_server.port)
    await sidecar.run_once()
    core.clock.advance(days=7)
    core.clock.advance(-1)  # one second short of 7 days
    assert (await sidecar.run_once()).lifecycle.presuspended == 0
    assert (await account_row(core, "acme"))["status"] == "depleted"

    core.clock.advance(1)
    report = await sidecar.run_once()
    assert report.lifecycle.presuspended == 1
    acct = await account_row(core, "acme")
    assert acct["status"] == "pre_suspended" and acct["presuspended_at"] == core.clock.now_ms()
    notice = [r for r in await outbox_rows(core) if r["kind"] == "pre_suspension"]
    assert len(notice) == 1 and notice[0]["status"] == "sent"
    assert notice[0]["context"]["dids"] == ["+15145551000", "+15145551001"]
    release_date = _utc_date(core.clock.now_ms() + 7 * DAY * 1000)
    assert notice[0]["context"]["release_date"] == release_date
    mail = smtp_server.received[-1]
    assert "Pre-suspension" in mail.subject and "+15145551001" in mail.part("plain") and release_date in mail.subject

    for _ in range(3):  # replayed passes: no second notice
        assert (await sidecar.run_once()).lifecycle == type(report.lifecycle)()
    core.clock.advance(days=7)
    report = await sidecar.run_once()
    assert report.lifecycle.suspended == 1
    acct = await account_row(core, "acme")
    assert acct["status"] == "suspended"

    def tx(conn):
        held = conn.execute(select(dids.c.number).where(dids.c.account_id.is_not(None))).scalars().all()
        hist = conn.execute(select(did_assignments).order_by(did_assignments.c.number)).mappings().all()
        return held, [dict(h) for h in hist]

    held, history = await core.store.run(tx)
    assert held == []
    assert [h["number"] for h in history] == ["+15145551000", "+15145551001"]
    assert all(h["released_at"] == core.clock.now_ms() and "suspended" in h["release_reason"] for h in history)
    inbound = await core.authorize_call(direction="inbound", number="15145550100", did="15145551000",
                                        caller_id="15145550100", pbx_id="pbx", channel_id="in-1")
    assert not inbound.allowed and inbound.reason == DenyReason.UNKNOWN_DID
    assert _kinds(await outbox_rows(core)) == ["depleted", "pre_suspension", "dids_released"]
    assert [r["status"] for r in await outbox_rows(core)] == ["sent"] * 3
    assert "Account suspended" in smtp_server.received[-1].subject
    core.clock.advance(days=30)
    assert (await sidecar.run_once()).lifecycle == type(report.lifecycle)()
    assert len(smtp_server.received) == 3


async def test_topup_while_depleted_cancels_every_step(core, smtp_server):
    await _depleted(core)
    sidecar = make_sidecar(core, smtp_server.port)
    core.clock.advance(days=3)
    await pay(core, "acme", "25.00")
    assert (await account_row(core, "acme"))["status"] == "active"
    core.clock.advance(days=30)
    report = await sidecar.run_once()
    assert report.lifecycle == type(report.lifecycle)()
    assert (await account_row(core, "acme"))["status"] == "active"
    assert _kinds(await outbox_rows(core)) == ["depleted", "topup_receipt"]


async def test_topup_while_presuspended_keeps_the_dids(core, smtp_server):
    await _depleted(core)
    sidecar = make_sidecar(core, smtp_server.port)
    core.clock.advance(days=7)
    assert (await sidecar.run_once()).lifecycle.presuspended == 1
    core.clock.advance(days=6)
    await pay(core, "acme", "25.00")
    acct = await account_row(core, "acme")
    assert acct["status"] == "active" and acct["presuspended_at"] is None and acct["low_balance_armed"]
    core.clock.advance(days=30)
    assert (await sidecar.run_once()).lifecycle.suspended == 0
    held = await core.store.run(lambda c: c.execute(select(dids.c.number).where(dids.c.account_id.is_not(None))).scalars().all())
    assert sorted(held) == ["+15145551000", "+15145551001"]
    call = await core.authorize_call(direction="inbound", number="15145550100", did="15145551000",
                                     caller_id="15145550100", pbx_id="pbx", channel_id="in-2")
    assert call.allowed


async def test_a_partial_topup_does_not_stop_the_clock(core, smtp_server):
    await seed(core, balance="10.00")
    await debit(core, "acme", "20.00")  # -10.00
    sidecar = make_sidecar(core, smtp_server.port)
    core.clock.advance(days=2)
    await pay(core, "acme", "5.00")  # still -5.00: depleted since the first day
    assert (await account_row(core, "acme"))["status"] == "depleted"
    core.clock.advance(days=5)
    assert (await sidecar.run_once()).lifecycle.presuspended == 1


async def test_depleted_again_after_a_topup_gets_fresh_notices(core, smtp_server):
    await _depleted(core)
    sidecar = make_sidecar(core, smtp_server.port)
    core.clock.advance(days=7)
    await sidecar.run_once()
    await pay(core, "acme", "25.00")
    await debit(core, "acme", "25.00")  # second depletion
    core.clock.advance(days=7)
    await sidecar.run_once()
    core.clock.advance(days=7)
    await sidecar.run_once()
    rows = await outbox_rows(core)
    # The debit to 0 crosses the threshold and depletes at once: only "depleted" (the core's choice).
    assert _kinds(rows) == ["depleted", "pre_suspension", "topup_receipt", "depleted", "pre_suspension", "dids_released"]
    keys = [r["dedupe_key"] for r in rows if r["kind"] in ("pre_suspension", "dids_released")]
    assert keys == ["acme:pre_suspension:1", "acme:pre_suspension:2", "acme:dids_released:2"]
    assert all(r["status"] == "sent" for r in rows)


async def test_suspended_account_topup_restores_calling_not_dids(core, smtp_server):
    await _depleted(core)
    sidecar = make_sidecar(core, smtp_server.port)
    core.clock.advance(days=7)
    await sidecar.run_once()
    core.clock.advance(days=7)
    await sidecar.run_once()
    await pay(core, "acme", "25.00")
    assert (await account_row(core, "acme"))["status"] == "active"
    out = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", pbx_id="pbx",
                                    channel_id="out-1")
    assert out.allowed
    inbound = await core.authorize_call(direction="inbound", number="15145550100", did="15145551000",
                                        caller_id="15145550100", pbx_id="pbx", channel_id="in-3")
    assert inbound.reason == DenyReason.UNKNOWN_DID


async def test_day_counts_come_from_settings(core, smtp_server):
    await _depleted(core)
    sidecar = make_sidecar(core, smtp_server.port, presuspend_days=1, did_release_days=0)
    core.clock.advance(days=1)
    report = await sidecar.run_once()
    assert (report.lifecycle.presuspended, report.lifecycle.suspended) == (1, 1)
