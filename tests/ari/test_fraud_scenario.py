"""Issue 18's scenario through the ARI simulator (bridge mode): a hijacked endpoint places 30 calls
to premium-rate and satellite numbers within 10 s, 10 at a time → every call refused as
destination_blocked (SIP 403 with the refusal announcement, nothing dialled), the anomaly
suspension fires once, one email to the customer and one to the operator, nothing charged; and a
live call of an account suspended for fraud is cut by the gate within 5 s."""
from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

from callgate_fakes.ari_simulator import Party
from billing_core.api import CoreSettings
from billing_core.store.tables import ledger, outbox
from tests.ari.gate_support import TIME_SCALE, running_gate
from tests.factories import seed

FRAUD = ["19005550100", "011881631234567", "19005551234", "011881631234568", "011882161234567"]


@pytest.fixture
def core_settings() -> CoreSettings:
    return CoreSettings(operator_email="noc@provider.test")


@pytest.fixture
async def sim(simulator_factory):
    return await simulator_factory(time_scale=TIME_SCALE)


async def _fraud_mails(core):
    return await core.store.run(lambda conn: [(r.kind, r.to_addr) for r in conn.execute(
        select(outbox.c.kind, outbox.c.to_addr).where(outbox.c.kind.like("fraud%")).order_by(outbox.c.id))])


async def test_thirty_calls_to_premium_and_satellite_numbers(sim, core):
    await seed(core, balance="25.00", max_calls=50, allow_regions=None, block_types=None)  # a new package
    # placed back to back, 10 at a time (well within the scenario's 10 s; timing is not what is tested)
    outcomes = []
    async with running_gate(sim, core) as gate:
        for wave in range(3):
            calls = [await sim.place_call(endpoint="alice", exten=FRAUD[(wave * 10 + i) % len(FRAUD)])
                     for i in range(10)]
            outcomes += await asyncio.gather(*(c.ended(timeout=10) for c in calls))
        assert await gate.wait_idle(5)
    assert len(outcomes) == 30
    assert {(o.sip_final, o.answered) for o in outcomes} == {(403, False)}
    assert all(o.heard == ["sound:cannot-complete-as-dialed"] for o in outcomes)
    assert not [r for r in sim.requests if "/create" in r.path]  # nothing dialled
    events = await core.admin.fraud_events("acme")
    assert [(e["kind"], e["reason"]) for e in events] == [("suspended", "fraud_suspected")]
    assert await _fraud_mails(core) == [("fraud_suspected", "acme@example.test"),
                                        ("fraud_suspected_operator", "noc@provider.test")]
    assert await core.store.run(lambda conn: [r.kind for r in conn.execute(select(ledger.c.kind))]) == ["credit"]
    acct = await core.account("acme")
    assert acct.balance == 25_000_000 and acct.held == 0 and acct.status == "suspended"


async def test_a_live_call_is_cut_within_5_s_of_the_suspension(sim, core):
    await seed(core, balance="25.00", max_calls=50, allow_regions=None, block_types=None)
    await core.admin.set_package("basic", anomaly_blocked_attempts="1")
    sim.script_destination("PJSIP/15145550100@trunk", Party(answer_after=0.5))
    async with running_gate(sim, core) as gate:
        call = await sim.place_call(endpoint="alice", exten="15145550100")
        for _ in range(200):  # until the callee answered
            s = await core.find_session(sim.asterisk_id, call.channel_id)
            if s is not None and s.state == "answered":
                break
            await asyncio.sleep(0.02)
        for i in range(2):  # the same account dials premium numbers from another PBX
            await core.authorize_call(direction="outbound", number="19005550100", endpoint="alice",
                                      pbx_id="other", channel_id=f"x{i}")
        suspended_at = time.monotonic()
        out = await call.ended(timeout=5)
        elapsed = time.monotonic() - suspended_at
        assert await gate.wait_idle(5)
    assert out.answered and out.ended_by == "app" and elapsed < 5
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled"
    assert await core.admin.verify() == []
