"""The gate's once-a-second passes during a database outage: one line when it starts and one when
it ends, no traceback (issue 15: a full traceback at ERROR every second)."""
from __future__ import annotations

import asyncio
import logging

import pytest

from callgate_fakes.ari_simulator import Party
from tests.ari.gate_support import running_gate, wait_for
from tests.factories import seed
from tests.sidecar.test_outage_logging import failing_store

from .test_gate_resilience import NUMBER, TRUNK


@pytest.fixture
async def sim(simulator_factory):
    return await simulator_factory(time_scale=0.02)


async def test_refresh_and_heartbeat_passes_log_an_outage_once_per_state_change(sim, core, monkeypatch, caplog):
    await seed(core)
    sim.script_destination(TRUNK, Party(answer_after=1.0))
    caplog.set_level(logging.DEBUG)
    async with running_gate(sim, core) as gate:
        # A call that talks through the outage (150 simulated s = 3 s real), so both passes touch the store.
        call = await sim.place_call(endpoint="alice", exten=NUMBER, caller_hangup_after=150.0)
        await wait_for(lambda: any(getattr(c, "cutoff_at", None) for c in gate.calls.values()), 5)
        caplog.clear()
        restore = failing_store(core, monkeypatch)
        await asyncio.sleep(1.0)  # ~50 refresh passes (20 ms) and ~20 heartbeats (50 ms)
        restore()
        await asyncio.sleep(0.5)
        outage_lines = [r for r in caplog.records if r.name == "ari_app.gate"]
        await call.ended(timeout=15)
        assert await gate.wait_idle(5)
    messages = [r.getMessage() for r in outage_lines]
    passes = [m for m in messages if m.startswith(("gate refresh_once:", "gate heartbeat_once:"))]
    down = [m for m in passes if "database unavailable" in m]
    back = [m for m in passes if "database back" in m]
    assert {m.split(":")[0] for m in down} == {"gate refresh_once", "gate heartbeat_once"}, messages
    assert len(down) == 2 and len(back) == 2 and len(passes) == 4, messages
    # The live call says once that it could not extend (or settle) — a few lines, not one a pass.
    assert len(outage_lines) < 10, messages
    assert not any(r.exc_info for r in caplog.records)
    s = await core.find_session(sim.asterisk_id, call.channel_id)
    assert s.state == "settled"  # the call itself went on and was billed once the store was back
