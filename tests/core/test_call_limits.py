"""Issue 18's --max-call-minutes on both databases: every grant (authorize with a full hold — what
continue mode and FastAGI put in CALLGATE_MAX_MS —, chunked holds and their extensions by the core
and by the sidecar's batched pass — the bridge timer's cut-off —, quote) stops at it; the global
cap still applies on top; emergency calls are not limited."""
from __future__ import annotations

import pytest

from billing_core.api import CoreSettings
from billing_core.domain import fraud_limits
from billing_core.domain.errors import InvalidInput
from billing_core.sidecar.batch_debit import debit_due_batched
from tests.factories import seed


def test_the_cap_is_the_smaller_of_global_and_package_or_account():
    assert fraud_limits.call_cap_seconds({"max_call_minutes": None}, 14_400) == 14_400
    assert fraud_limits.call_cap_seconds({"max_call_minutes": 2}, 14_400) == 120
    assert fraud_limits.call_cap_seconds({"max_call_minutes": 2, "acct_max_call_minutes": 5}, 14_400) == 300
    assert fraud_limits.call_cap_seconds({"max_call_minutes": 600}, 3_600) == 3_600
    assert fraud_limits.call_cap_seconds(None, 60) == 60


async def test_full_hold_grant_and_quote_stop_at_the_package_cap(core):
    await seed(core, balance="100.00")
    await core.admin.set_package("basic", max_call_minutes="3")
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", channel_id="f1",
                                  full_hold=True)
    assert a.allowed and a.granted_seconds == a.max_talk_seconds == 180 and a.granted_ms == 180_000
    q = await core.admin.quote("acme", "15145550100")
    assert q["max_talk_seconds"] == 180
    await core.admin.set_account_rules("acme", max_call_minutes=10)
    assert (await core.admin.quote("acme", "15145550100"))["max_talk_seconds"] == 600
    await core.admin.set_account_rules("acme", max_call_minutes="package")
    assert (await core.admin.quote("acme", "15145550100"))["max_talk_seconds"] == 180


@pytest.mark.parametrize("core_settings", [CoreSettings(max_call_seconds=100)])
async def test_the_global_cap_still_applies_on_top(core):
    await seed(core, balance="100.00")
    await core.admin.set_package("basic", max_call_minutes="3")
    a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", full_hold=True)
    assert a.granted_seconds == 100


async def test_chunk_extensions_stop_at_the_cap_core_and_sidecar(core, clock):
    await seed(core, balance="100.00")
    await core.admin.set_package("basic", max_call_minutes="2")
    ids = []
    for ch in ("c1", "c2"):
        a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice", channel_id=ch)
        assert a.allowed and a.granted_seconds == 60 and a.max_talk_seconds == 120
        await core.answer(a.session_id, clock.now_ms())
        ids.append(a.session_id)
    for _ in range(4):  # several passes: the grant grows to the cap and stays there
        clock.advance(ms=55_000)
        await core.extend(ids[0])
        await debit_due_batched(core, clock.now_ms(), lookahead_seconds=10)
    for sid in ids:
        s = await core.get_session(sid)
        assert s.granted_seconds == 120 and s.cutoff_at == s.answered_at + 120_000


async def test_emergency_calls_have_no_package_cap(core):
    await seed(core, balance="100.00")
    await core.admin.set_package("basic", max_call_minutes="1")
    a = await core.authorize_call(direction="outbound", number="911", endpoint="alice")
    assert a.allowed and a.emergency and a.granted_seconds == core.settings.max_call_seconds


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "ten", "100000000"])
async def test_bad_max_call_minutes_names_the_field(core, value):
    await seed(core)
    with pytest.raises(InvalidInput, match="^--max-call-minutes"):
        await core.admin.set_package("basic", max_call_minutes=value)
    assert (await core.admin.show_package("basic"))["max_call_minutes"] is None
