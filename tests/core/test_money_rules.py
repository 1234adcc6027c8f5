"""billing_core.domain.money_rules owns the chunk-due rule and what talk beyond the grant costs;
the per-call path, the sidecar's set-based pass and the stale sweep all ask it."""
from __future__ import annotations

from sqlalchemy import select

from billing_core.domain import money_rules as rules
from billing_core.domain.rating import Rate
from billing_core.sidecar import batch_debit, stale
from billing_core.store.tables import call_sessions
from tests.factories import seed

OUT = dict(direction="outbound", endpoint="alice")


def _row(**kw):
    row = dict(answered_at=1_000_000, granted_seconds=120, chunk_seconds=60, chunks_debited=0, hold_mode="chunked",
               created_at=990_000, emergency=False, prefix="1", rate_per_min=60_000, connect_fee=0, initial_increment=1, increment=1)
    row.update(kw)
    return row


def test_chunks_due_counts_whole_elapsed_granted_chunks():
    r = _row()
    assert rules.chunks_due(r, 1_000_000) == 0
    assert rules.chunks_due(r, 1_059_999) == 0
    assert rules.chunks_due(r, 1_060_000) == 1
    assert rules.chunks_due(r, 1_000_000 + 10 * 60_000) == 2  # never beyond the grant
    assert rules.chunks_due(r, 0) == 0  # a clock before the answer
    assert rules.chunks_due(_row(chunk_seconds=0), 1_003_000) == 3  # a zero chunk counts as one second
    assert [k for k, _ in rules.due_chunks(_row(chunks_debited=1), 1_000_000 + 10 * 60_000)] == [2]


def test_debit_work_due_is_a_chunk_due_or_an_extension_needed():
    r = _row(granted_seconds=600)
    assert not rules.debit_work_due(r, 1_000_000, 10)
    assert rules.debit_work_due(r, 1_060_000, 10)  # chunk 1 elapsed
    assert not rules.debit_work_due(_row(granted_seconds=600, chunks_debited=1), 1_060_000, 10)
    assert rules.debit_work_due(_row(granted_seconds=60), 1_000_000, 10)  # less than chunk + lookahead left
    assert not rules.debit_work_due(_row(granted_seconds=60, hold_mode="full"), 1_000_000, 10)


def test_both_debit_pickers_ask_the_one_rule(monkeypatch):
    asked = []

    def spy(row, now, lookahead):
        asked.append(row["id"])
        return False

    monkeypatch.setattr(rules, "debit_work_due", spy)

    class Rows(list):
        def mappings(self):
            return self

    class Conn:
        def execute(self, *a, **kw):
            return Rows([dict(_row(), id="s1", account_id=1)])

    assert batch_debit.pick_due_tx(Conn(), 2_000_000, 10) == []
    assert asked == ["s1"]


def test_bounded_talk_is_elapsed_since_answer_capped_at_the_grant():
    assert rules.bounded_talk_ms(None, 60, 5_000_000) == 0
    assert rules.bounded_talk_ms(1_000_000, 60, 1_030_000) == 30_000
    assert rules.bounded_talk_ms(1_000_000, 60, 9_000_000) == 60_000
    assert rules.bounded_talk_ms(1_000_000, 60, 900_000) == 0
    assert stale.stale_talk_ms(1_000_000, 60, 9_000_000) == 60_000


def test_talk_bound_caps_bounded_bases_at_the_grant_whatever_the_hold_mode():
    r = _row(granted_seconds=60)
    assert rules.talk_bound(r, 1_000_000 + 90_000).talk_ms == 92_000  # measured: elapsed (+ clock allowance)
    for basis in ("bounded_at_restart", "bounded_stale"):
        b = rules.talk_bound(r, 1_000_000 + 90_000, basis)
        assert (b.talk_ms, b.bound) == (60_000, "grant")


def test_settlement_cost_charges_talk_beyond_the_grant_as_overrun():
    r = _row(granted_seconds=60, charged=0)
    c = rules.settlement_cost(r, 90_000)
    assert (c.billable_seconds, c.total, c.overrun) == (90, 90_000, 30_000)
    assert rules.settlement_cost(_row(emergency=True), 90_000).total == 0


async def test_a_call_billed_up_to_a_restart_is_capped_at_its_grant_by_the_core(core, clock):
    await seed(core, balance="10.00", deck=[Rate("1", 60_000, 0, 1, 1)])
    a = await core.authorize_call(number="15145550100", **OUT)
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(90)
    st = await core.settle(a.session_id, 90_000, path="restart", basis="bounded_at_restart")
    assert st.talk_ms == 60_000 and st.cost == 60_000 and st.overrun == 0
    assert st.billing_basis == "bounded_at_restart" and st.clamped == ("grant",)
    row = await core.store.run(lambda conn: conn.execute(
        select(call_sessions.c.billing_basis).where(call_sessions.c.id == a.session_id)).scalar())
    assert row == "bounded_at_restart"


async def test_the_core_debit_pass_asks_the_one_rule(core, clock, monkeypatch):
    await seed(core, balance="10.00", deck=[Rate("1", 60_000, 0, 1, 1)])
    a = await core.authorize_call(number="15145550100", **OUT)
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(120)
    monkeypatch.setattr(rules, "debit_work_due", lambda row, now, lookahead: False)
    assert (await core.debit_due())["examined_due"] == 0
    monkeypatch.undo()
    assert (await core.debit_due())["examined_due"] == 1


def test_an_ended_call_keeps_its_talk_so_far_rounded_up_never_more_than_its_grant():
    from billing_core.domain.rating import billable_seconds

    ended_grant_seconds = rules.ended_grant_seconds
    assert ended_grant_seconds(60, 1_000, 1_000) == 0
    assert ended_grant_seconds(60, 1_000, 1_001) == 1
    assert ended_grant_seconds(60, 1_000, 13_500) == 13  # 12.5 s rounds up
    assert ended_grant_seconds(60, 1_000, 200_000) == 60  # never more than it had
    assert ended_grant_seconds(60, 5_000, 1_000) == 0  # a clock behind the answer: nothing
    for talked in range(0, 5_000, 37):  # the settle never bills past the new grant
        assert billable_seconds(talked) <= ended_grant_seconds(60, 0, talked)
