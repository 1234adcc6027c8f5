"""Issue 18's scenario through FastAGI (the real server, the real core, both databases): 30
calls to premium-rate and satellite numbers within 10 s, 10 at a time → every one DENY
destination_blocked (cause 21), one suspension, one email to each address, nothing charged."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from agi.routes import VAR_HANGUPCAUSE, VAR_MAX_MS, VAR_REASON, VAR_STATUS
from billing_core.api import CoreSettings
from billing_core.store.tables import ledger, outbox
from tests.factories import seed

from .test_routes import authorize, running

FRAUD = ["19005550100", "011881631234567", "19005551234", "011881631234568", "011882161234567"]


@pytest.fixture
def core_settings() -> CoreSettings:
    return CoreSettings(operator_email="noc@provider.test")


async def test_thirty_calls_to_premium_and_satellite_numbers(core):
    await seed(core, balance="25.00", max_calls=50, allow_regions=None, block_types=None)  # a new package
    # placed back to back, 10 at a time (well within the scenario's 10 s; timing is not what is tested)
    played = []
    async with running(core) as srv:
        for wave in range(3):
            played += await asyncio.gather(*(
                authorize(srv, number=FRAUD[(wave * 10 + i) % len(FRAUD)], uniqueid=f"{wave}.{i}") for i in range(10)))
    assert len(played) == 30
    assert all(p.variables[VAR_STATUS] == "DENY" and p.variables[VAR_REASON] == "destination_blocked"
               and p.variables[VAR_HANGUPCAUSE] == "21" and p.variables[VAR_MAX_MS] == "0" for p in played)
    events = await core.admin.fraud_events("acme")
    assert [(e["kind"], e["reason"]) for e in events] == [("suspended", "fraud_suspected")]
    mails = await core.store.run(lambda conn: [(r.kind, r.to_addr) for r in conn.execute(
        select(outbox.c.kind, outbox.c.to_addr).where(outbox.c.kind.like("fraud%")).order_by(outbox.c.id))])
    assert mails == [("fraud_suspected", "acme@example.test"), ("fraud_suspected_operator", "noc@provider.test")]
    assert await core.store.run(lambda conn: [r.kind for r in conn.execute(select(ledger.c.kind))]) == ["credit"]
    acct = await core.account("acme")
    assert acct.balance == 25_000_000 and acct.held == 0 and acct.status == "suspended"
