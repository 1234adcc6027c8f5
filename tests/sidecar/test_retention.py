"""Issue 20: the sidecar deletes refused-call records older than the retention (default 90 days),
in batches, and keeps the newer ones; on both databases."""
from __future__ import annotations

from sqlalchemy import select

from billing_core.sidecar.retention import prune_refusals
from billing_core.sidecar.runner import Sidecar, SidecarSettings
from billing_core.store.tables import call_refusals
from tests.factories import seed

DAY_S = 86_400


async def channels(core) -> list[str]:
    return await core.store.run(lambda conn: [c for (c,) in conn.execute(
        select(call_refusals.c.channel_id).order_by(call_refusals.c.at))])


async def test_refusals_past_the_retention_are_deleted_by_the_sidecar(core, clock):
    await seed(core, balance="0", did=None)
    for i in range(7):  # one refusal a day from 95 days ago...
        await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", channel_id=f"old{i}")
        clock.advance(DAY_S)
    clock.advance(88 * DAY_S)  # now they are 95 to 89 days old
    await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", channel_id="new")
    assert len(await channels(core)) == 8
    assert await prune_refusals(core.store, clock.now_ms(), 91, batch=2) == 4  # 95 to 92 days old, 2 at a time
    assert (await channels(core))[0] == "old4"
    report = await Sidecar(core, SidecarSettings(refusal_retention_days=90), clock).run_once()
    assert report.refusals_pruned == 1 and report.errors == ()
    assert await channels(core) == ["old5", "old6", "new"]  # 90 days old is not past 90 days
    assert (await Sidecar(core, SidecarSettings(), clock).run_once()).refusals_pruned == 0  # default 90 days
