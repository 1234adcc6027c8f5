"""The outbox against a real aiosmtpd server, on SQLite and PostgreSQL."""
from __future__ import annotations

from tests.factories import seed

from .helpers import FAST_OUTBOX, debit, make_sidecar, outbox_rows, pay
from .smtpd import SmtpServer, free_port


async def _five_alerts(core) -> None:
    for ref in ("acme", "bravo"):
        await seed(core, account=ref, endpoint=f"{ref}-ep", did=None, package=f"pkg-{ref}", balance="10.00")
        await debit(core, ref, "6.00")  # 4.00 < 5.00: one low-balance alert each
    await pay(core, "acme", "25.00", key="pp-1")  # receipts
    await pay(core, "bravo", "25.00", key="pp-2")
    await debit(core, "acme", "40.00")  # balance -11.00: depleted (the crossing re-armed at 29.00)


async def test_smtp_down_then_up_delivers_every_alert_exactly_once(core):
    await _five_alerts(core)
    rows = await outbox_rows(core)
    kinds = sorted(r["kind"] for r in rows)
    assert kinds == ["depleted", "low_balance", "low_balance", "topup_receipt", "topup_receipt"]

    port = free_port()
    sidecar = make_sidecar(core, port)
    for _ in range(4):  # the server is down: every pass stops at the first unreachable attempt
        report = await sidecar.run_once()
        assert report.mail.sent == 0 and report.mail.stopped_early
        core.clock.advance(2)
    rows = await outbox_rows(core)
    assert all(r["status"] == "queued" for r in rows)
    assert sum(r["attempts"] for r in rows) == 4
    assert any("cannot connect" in (r["last_error"] or "") for r in rows)

    server = await SmtpServer(port).start()
    try:
        for _ in range(10):
            core.clock.advance(10)  # past every backoff
            await sidecar.run_once()
            await sidecar.run_once()  # a replayed pass sends nothing again
        rows = await outbox_rows(core)
        assert [r["status"] for r in rows] == ["sent"] * 5
        ids = sorted(m.message["Message-ID"] for m in server.received)
        assert len(ids) == 5 and len(set(ids)) == 5
        assert sorted(m.subject.split(":")[0] for m in server.received) == [
            "Balance depleted", "Low balance", "Low balance", "Payment received", "Payment received"]
        low = [m for m in server.received if m.subject.startswith("Low balance")]
        assert all("4.00" in m.part("plain") and "5.00" in m.part("plain") for m in low)
    finally:
        await server.stop()


async def test_4xx_then_accept(core, smtp_server):
    await seed(core, balance="10.00")
    await debit(core, "acme", "6.00")
    smtp_server.handler.replies = ["451 4.7.1 greylisted, try again later"]
    sidecar = make_sidecar(core, smtp_server.port)
    first = await sidecar.run_once()
    assert (first.mail.sent, first.mail.retrying) == (0, 1)
    [row] = await outbox_rows(core)
    assert row["status"] == "queued" and row["attempts"] == 1 and "451" in row["last_error"]
    again = await sidecar.run_once()  # backoff not elapsed: nothing tried
    assert again.mail == type(again.mail)()
    core.clock.advance(FAST_OUTBOX.backoff_base_seconds)
    second = await sidecar.run_once()
    assert second.mail.sent == 1
    [row] = await outbox_rows(core)
    assert row["status"] == "sent" and row["attempts"] == 2 and row["sent_at"] is not None
    assert len(smtp_server.received) == 1 and smtp_server.handler.data_commands == 2


async def test_5xx_marks_failed_with_the_reason_and_retry_requeues(core, smtp_server):
    from billing_core.sidecar.outbox import list_alerts, retry_alert

    await seed(core, balance="10.00")
    await debit(core, "acme", "6.00")
    smtp_server.handler.replies = ["550 5.1.1 <acme@example.test>: no such user"]
    sidecar = make_sidecar(core, smtp_server.port)
    report = await sidecar.run_once()
    assert report.mail.failed == 1
    [alert] = await list_alerts(core.store)
    assert alert.status == "failed" and "550" in alert.last_error and "no such user" in alert.last_error
    assert alert.account_ref == "acme" and alert.kind == "low_balance"
    core.clock.advance(3600)
    assert (await sidecar.run_once()).mail.sent == 0  # failed stays failed
    requeued = await retry_alert(core.store, alert.id, core.clock.now_ms())
    assert requeued.status == "queued" and requeued.attempts == 0
    assert (await sidecar.run_once()).mail.sent == 1
    assert [a.status for a in await list_alerts(core.store)] == ["sent"]


async def test_too_many_retryable_failures_end_failed(core, smtp_server):
    from dataclasses import replace

    await seed(core, balance="10.00")
    await debit(core, "acme", "6.00")
    smtp_server.handler.replies = ["452 4.2.2 mailbox full"] * 3
    sidecar = make_sidecar(core, smtp_server.port, outbox=replace(FAST_OUTBOX, max_attempts=3))
    for _ in range(3):
        await sidecar.run_once()
        core.clock.advance(60)
    [row] = await outbox_rows(core)
    assert row["status"] == "failed" and row["last_error"].startswith("gave up after 3 attempts: 452")


async def test_two_senders_never_send_one_alert_twice(core, smtp_server):
    import asyncio

    for i in range(6):
        await seed(core, account=f"a{i}", endpoint=f"ep{i}", did=None, package=f"p{i}", balance="10.00")
        await debit(core, f"a{i}", "6.00")
    one, two = make_sidecar(core, smtp_server.port), make_sidecar(core, smtp_server.port)
    await asyncio.gather(one.outbox.send_due(), two.outbox.send_due(), one.outbox.send_due())
    assert len(smtp_server.received) == 6
    assert len({m.message["Message-ID"] for m in smtp_server.received}) == 6


async def test_run_forever_sends_within_a_few_intervals_and_stops(core, smtp_server):
    import asyncio

    await seed(core, balance="10.00")
    sidecar = make_sidecar(core, smtp_server.port)  # debit_interval 0.05 s
    task = asyncio.create_task(sidecar.run_forever())
    try:
        await asyncio.sleep(0.1)
        await debit(core, "acme", "6.00")  # queued while the sidecar runs
        for _ in range(200):
            if smtp_server.received:
                break
            await asyncio.sleep(0.02)
        assert len(smtp_server.received) == 1
    finally:
        sidecar.stop()
        await asyncio.wait_for(task, 5)
    assert [r["status"] for r in await outbox_rows(core)] == ["sent"]


async def test_a_sender_that_died_after_claiming_is_replaced_after_the_lease(core, smtp_server):
    from billing_core.sidecar.outbox import claim_tx

    await seed(core, balance="10.00")
    await debit(core, "acme", "6.00")
    [row] = await outbox_rows(core)
    lease_ms = int(FAST_OUTBOX.lease_seconds * 1000)
    claimed = await core.store.run(claim_tx, row["id"], core.clock.now_ms(), lease_ms)
    assert claimed is not None  # ... and that sender crashed before sending
    sidecar = make_sidecar(core, smtp_server.port)
    assert (await sidecar.run_once()).mail.sent == 0  # still leased: nobody else touches it
    core.clock.advance(FAST_OUTBOX.lease_seconds)
    assert (await sidecar.run_once()).mail.sent == 1
    [row] = await outbox_rows(core)
    assert row["status"] == "sent" and row["attempts"] == 2 and len(smtp_server.received) == 1
