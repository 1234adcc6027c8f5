"""``callgate rerate`` (issue 19): settled calls priced again by the deck version now in effect for
their start, one ``rerate`` ledger entry per changed call, lifecycle rules, idempotent, both costs
kept; verify clean after; on both databases, with live calls on the same accounts meanwhile."""
from __future__ import annotations

import asyncio
import json

from sqlalchemy import select

from billing_core.api import BillingCore
from billing_core.domain.money import parse_amount
from billing_core.domain.rating import Rate
from billing_core.store.tables import ledger, outbox
from tests.factories import seed


def micro(text: str) -> int:
    return parse_amount(text, decimals=6)


def deck(price: str, desc: str = "") -> list[Rate]:
    return [Rate("1", micro(price), 0, 60, 60, desc)]


async def call(core, clock, endpoint="alice", talk_s=60, channel=None) -> str:
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint=endpoint, channel_id=channel)
    assert a.allowed, a
    await core.answer(a.session_id, clock.now_ms())
    clock.advance(talk_s)
    await core.settle(a.session_id, talk_s * 1000)
    return a.session_id


async def rerate_entries(core):
    return await core.store.run(lambda conn: [dict(r) for r in conn.execute(
        select(ledger).where(ledger.c.kind == "rerate").order_by(ledger.c.id)).mappings()])


async def test_a_correction_refunds_past_calls_once(core, clock):
    await core.admin.import_plan("std", deck("0.02", "wrong"))
    await seed(core, plan="std", balance="10.00", did=None)
    await seed(core, plan="std", account="beta", endpoint="bob", balance="10.00", did=None)
    since = clock.now_ms()
    clock.advance(10)
    ids = [await call(core, clock), await call(core, clock), await call(core, clock, "bob", 120)]
    clock.advance(10)
    await core.admin.import_plan("std", deck("0.015", "right"), effective_at=since, correction=True)

    dry = await core.admin.rerate("std", since=since, dry_run=True)
    assert dry["dry_run"] and dry["calls_changed"] == 3 and dry["amount"] == "0.02"
    assert {a["account"]: (a["calls"], a["amount"]) for a in dry["accounts"]} == {"acme": (2, "0.01"),
                                                                                  "beta": (1, "0.01")}
    assert await rerate_entries(core) == []  # a dry run writes nothing
    assert (await core.account("acme")).balance == micro("9.96")

    done = await core.admin.rerate("std", since=since)
    assert not done["dry_run"] and done["calls_changed"] == 3 and done["amount"] == "0.02"
    entries = await rerate_entries(core)
    assert sorted(e["idempotency_key"] for e in entries) == sorted(f"rerate:{i}:2" for i in ids)
    assert all(e["amount"] == micro("0.005") * (2 if e["session_id"] == ids[2] else 1) for e in entries)
    assert (await core.account("acme")).balance == micro("9.97")
    calls = {c["id"]: c for c in await core.admin.calls()}
    assert [(calls[i]["cost"], calls[i]["rerated_cost"], calls[i]["rerated_version"]) for i in ids] == [
        (micro("0.02"), micro("0.015"), 2), (micro("0.02"), micro("0.015"), 2), (micro("0.04"), micro("0.03"), 2)]

    again = await core.admin.rerate("std", since=since)
    assert again["calls_changed"] == 0 and again["calls_unchanged"] == 3 and again["accounts"] == []
    assert len(await rerate_entries(core)) == 3
    assert await core.admin.verify() == []


async def test_the_window_and_calls_already_priced_by_the_version_in_effect(core, clock):
    await core.admin.import_plan("std", deck("0.02"))
    await seed(core, plan="std", balance="10.00", did=None)
    early = await call(core, clock)
    clock.advance(3600)
    since = clock.now_ms()
    inside = await call(core, clock)
    clock.advance(3600)
    until = clock.now_ms()
    late = await call(core, clock)
    clock.advance(10)
    await core.admin.import_plan("std", deck("0.03"), effective_at=since, correction=True)
    after = await call(core, clock)  # priced by the correction already
    result = await core.admin.rerate("std", since=since, until=until)
    assert result["calls_examined"] == 1 and result["calls_changed"] == 1 and result["amount"] == "-0.01"
    calls = {c["id"]: c for c in await core.admin.calls()}
    assert calls[inside]["rerated_cost"] == micro("0.03")
    assert all(calls[i]["rerated_cost"] is None for i in (early, late, after))
    whole = await core.admin.rerate("std", since=since)
    assert whole["calls_changed"] == 1 and whole["calls_unchanged"] == 2  # late changes; after was v2 already
    assert await core.admin.verify() == []


async def test_a_charge_depletes_and_a_refund_reactivates(core, clock):
    await core.admin.import_plan("std", deck("0.01"))
    await seed(core, plan="std", balance="0.02", low_balance="0.01", did=None)
    since = clock.now_ms()
    first = await call(core, clock)  # 0.01 → balance 0.01
    clock.advance(10)
    await core.admin.import_plan("std", deck("0.03"), effective_at=since, correction=True)
    charged = await core.admin.rerate("std", since=since)
    # 0.02 more is owed, 0.01 can be taken (no credit limit): the rest is unpaid, written down
    assert charged["amount"] == "-0.01" and charged["accounts"][0]["unpaid"] == "0.01"
    acct = await core.account("acme")
    assert acct.balance == 0 and acct.status == "depleted"
    kinds = await core.store.run(lambda conn: conn.execute(select(outbox.c.kind)).scalars().all())
    assert "depleted" in kinds
    row = {c["id"]: c for c in await core.admin.calls()}[first]
    assert row["rerated_cost"] == micro("0.02") and "unpaid" in row["settle_note"]
    clock.advance(10)
    await core.admin.import_plan("std", deck("0.005"), effective_at=since, correction=True)
    refunded = await core.admin.rerate("std", since=since)
    assert refunded["amount"] == "0.015"  # from 0.02 to 0.005
    acct = await core.account("acme")
    assert acct.balance == micro("0.015") and acct.status == "active"
    assert await core.admin.verify() == []


async def test_rerate_alongside_live_calls_on_the_same_accounts(db_url, clock):
    cores = [await BillingCore.open(db_url, clock=clock, pool_size=4) for _ in range(2)]
    await cores[0].create_schema()
    try:
        core = cores[0]
        await core.admin.import_plan("std", deck("0.02"))
        for i in range(4):
            await seed(core, plan="std", account=f"a{i}", endpoint=f"e{i}", balance="5.00", did=None, max_calls=50)
        since = clock.now_ms()
        for n in range(40):
            await call(core, clock, f"e{n % 4}", 60, channel=f"old{n}")
        await core.admin.import_plan("std", deck("0.01"), effective_at=since, correction=True)

        live = []
        for n in range(40):  # answered calls on the same accounts, holding money while rerate runs
            a = await cores[n % 2].authorize_call(direction="outbound", number="15145550100", endpoint=f"e{n % 4}",
                                                  channel_id=f"live{n}")
            assert a.allowed
            await cores[n % 2].answer(a.session_id, clock.now_ms())
            live.append(a.session_id)
        clock.advance(30)

        async def settle(n: int):
            await asyncio.sleep(0)
            await cores[n % 2].settle(live[n], 30_000)

        async def authorize(n: int):  # and new calls starting meanwhile
            a = await cores[n % 2].authorize_call(direction="outbound", number="15145550100", endpoint=f"e{n % 4}",
                                                  channel_id=f"new{n}")
            assert a.allowed
            return a.session_id

        results = await asyncio.gather(cores[1].admin.rerate("std", since=since), *(settle(n) for n in range(40)),
                                       *(authorize(n) for n in range(8)))
        assert results[0]["calls_changed"] >= 40
        for n, sid in enumerate(results[41:]):
            await cores[n % 2].settle(sid, 0)
        rest = await core.admin.rerate("std", since=since)  # the live calls are priced by v2 already
        assert rest["calls_changed"] == 0
        assert len(await rerate_entries(core)) == 40
        assert await core.admin.verify() == []
        for i in range(4):  # 10 old calls refunded 0.01 each, 10 live calls at 0.01 (30 s → 60 billed)
            assert (await core.account(f"a{i}")).balance == micro("5.00") - 10 * micro("0.02") + 10 * micro("0.01") \
                - 10 * micro("0.01")
    finally:
        for c in cores:
            await c.close()


def test_cli_rerate(cg, tmp_path):
    cg("db", "upgrade")
    d = tmp_path / "d.csv"
    d.write_text("prefix,description,rate_per_min,connect_fee,initial_increment,increment\n1,NANP,0.02,0,60,60\n")
    cg("plan", "import", "std", str(d))
    bad = cg("rerate", "--plan", "nope", "--since", "2026-01-01T00:00:00Z", ok=False)
    assert bad.exit_code != 0 and "--plan: unknown plan 'nope'" in bad.output
    no_offset = cg("rerate", "--plan", "std", "--since", "2026-01-01T00:00:00", ok=False)
    assert no_offset.exit_code != 0 and "--since: needs a UTC offset" in no_offset.output
    out = json.loads(cg("rerate", "--plan", "std", "--since", "2026-01-01T00:00:00Z", "--dry-run", "--json").output)
    assert out["calls_examined"] == 0 and out["dry_run"] is True and out["since"] == "2026-01-01T00:00:00+00:00"
    text = cg("rerate", "--plan", "std", "--since", "2026-01-01T00:00:00Z", "--until", "2026-02-01T00:00:00Z").output
    assert "0 calls examined" in text
    backwards = cg("rerate", "--plan", "std", "--since", "2026-02-01T00:00:00Z", "--until", "2026-01-01T00:00:00Z",
                   ok=False)
    assert backwards.exit_code != 0 and "--until" in backwards.output


async def test_a_rerate_moves_the_balance_not_the_spend_caps(core, clock):
    """Issue 18 beside issue 19: a re-rate is a correction, not call spending — the spend caps'
    counters keep what the calls took when they ran, and verify (which checks both) stays clean."""
    await core.admin.import_plan("std", deck("0.02"))
    await seed(core, plan="std", balance="10.00", did=None)
    await core.admin.set_package("basic", daily_cap=micro("1.00"), monthly_cap=micro("5.00"))
    since = clock.now_ms()
    clock.advance(10)
    await call(core, clock)
    await call(core, clock)
    spent = (await core.admin.account_rules("acme"))["spend"]
    assert spent["today"] == "0.04"
    await core.admin.import_plan("std", deck("0.03"), effective_at=since, correction=True)
    done = await core.admin.rerate("std", since=since)
    assert done["calls_changed"] == 2
    assert (await core.account("acme")).balance == micro("9.94")  # 0.02 more per call
    assert (await core.admin.account_rules("acme"))["spend"] == spent
    assert await core.admin.verify() == []
