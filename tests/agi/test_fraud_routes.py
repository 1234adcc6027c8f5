"""Issue 18 through FastAGI (the real server, the real core, both databases): a blocked
destination is DENY destination_blocked with cause 21 (403), and --max-call-minutes shortens
CALLGATE_MAX_MS."""
from __future__ import annotations

from agi.routes import VAR_HANGUPCAUSE, VAR_MAX_MS, VAR_REASON, VAR_STATUS
from tests.factories import seed

from .test_routes import authorize, running


async def test_blocked_destination_is_refused_with_403(core):
    await seed(core, balance="10.00", allow_regions=None, block_types=None)  # a new package's defaults: CA and US
    async with running(core) as srv:
        played = await authorize(srv, number="011442079460000")
    assert played.variables[VAR_STATUS] == "DENY" and played.variables[VAR_REASON] == "destination_blocked"
    assert played.variables[VAR_HANGUPCAUSE] == "21" and played.variables[VAR_MAX_MS] == "0"
    assert (await core.account("acme")).held == 0


async def test_max_call_minutes_shortens_the_dial_limit(core):
    await seed(core, balance="10.00")
    await core.admin.set_package("basic", max_call_minutes="2")
    async with running(core) as srv:
        played = await authorize(srv, uniqueid="1.1")
    assert played.variables[VAR_STATUS] == "ALLOW" and played.variables[VAR_MAX_MS] == "120000"
    await core.admin.set_account_rules("acme", max_call_minutes=1)
    async with running(core) as srv:
        played = await authorize(srv, uniqueid="1.2")
    assert played.variables[VAR_MAX_MS] == "60000"


async def test_rate_limited_is_503(core):
    await seed(core, balance="10.00")
    await core.admin.set_package("basic", max_attempts_per_minute="1")
    async with running(core) as srv:
        assert (await authorize(srv, uniqueid="2.1")).variables[VAR_STATUS] == "ALLOW"
        played = await authorize(srv, uniqueid="2.2")
    assert played.variables[VAR_REASON] == "rate_limited" and played.variables[VAR_HANGUPCAUSE] == "34"
