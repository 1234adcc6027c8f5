"""What the gate reads and writes about its live calls every few seconds, on both databases: the
lean cut-off read of the refresh pass and the heartbeat, which goes in small transactions."""
from __future__ import annotations

from billing_core import api
from billing_core.domain.records import LiveCutoff
from tests.factories import seed


async def test_live_cutoffs_are_the_answered_calls_of_one_pbx(core):
    await seed(core, balance="10.00")
    now = core.clock.now_ms()
    answered = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice",
                                         pbx_id="pbx-a", channel_id="c1")
    ringing = await core.authorize_call(direction="outbound", number="15145550101", endpoint="alice",
                                        pbx_id="pbx-a", channel_id="c2")
    emergency = await core.authorize_call(direction="outbound", number="911", endpoint="alice",
                                          pbx_id="pbx-a", channel_id="c3")
    elsewhere = await core.authorize_call(direction="outbound", number="15145550102", endpoint="alice",
                                          pbx_id="pbx-b", channel_id="c1")
    ended = await core.authorize_call(direction="outbound", number="15145550103", endpoint="alice",
                                      pbx_id="pbx-a", channel_id="c4")
    for a in (answered, emergency, elsewhere, ended):
        await core.answer(a.session_id, at_ms=now)
    await core.settle(ended.session_id, talk_ms=1_000)

    cutoffs = {c.session_id: c for c in await core.live_cutoffs("pbx-a")}
    assert set(cutoffs) == {answered.session_id, emergency.session_id}  # not ringing, settled or pbx-b's
    s = await core.get_session(answered.session_id)
    assert cutoffs[answered.session_id] == LiveCutoff(answered.session_id, s.cutoff_at, "chunked", False)
    assert s.cutoff_at == now + s.granted_seconds * 1000
    e = await core.get_session(emergency.session_id)
    assert cutoffs[emergency.session_id] == LiveCutoff(emergency.session_id, None, e.hold_mode, True)
    assert isinstance(cutoffs[emergency.session_id].emergency, bool)
    assert [c.session_id for c in await core.live_cutoffs("pbx-b")] == [elsewhere.session_id]
    assert await core.live_cutoffs("pbx-none") == []


async def test_heartbeat_touches_every_live_call_in_small_transactions(core, monkeypatch):
    await seed(core, balance="10.00")
    monkeypatch.setattr(api, "HEARTBEAT_BATCH", 2)
    sessions = [await core.authorize_call(direction="outbound", number=f"1514555010{i}", endpoint="alice",
                                          pbx_id="pbx-a", channel_id=f"c{i}") for i in range(5)]
    ids = [a.session_id for a in sessions]
    await core.settle(ids[4], talk_ms=0)  # ended: not live, not touched
    runs = []
    real_run = core.store.run

    async def counting_run(fn, *args):
        runs.append(fn)
        return await real_run(fn, *args)

    monkeypatch.setattr(core.store, "run", counting_run)
    later = core.clock.now_ms() + 5_000
    assert await core.heartbeat(ids, now_ms=later) == 4
    assert len(runs) == 3  # 5 ids, 2 per transaction
    monkeypatch.undo()
    for sid in ids[:4]:
        assert (await core.get_session(sid)).last_seen_at == later
    assert (await core.get_session(ids[4])).last_seen_at < later
