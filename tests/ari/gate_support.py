"""Helpers for the gate tests: a running Gate on a real AriClient against the ARI simulator."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

from ari_app.client import AriClient
from ari_app.gate import Gate
from ari_app.settings import GateSettings

ARI_USER = "callgate"
ARI_PASSWORD = "secret"
ARI_APP = "callgate"
#: Real seconds per simulated second in the gate tests (1 simulated minute = 1.2 real seconds).
TIME_SCALE = 0.02


def gate_settings(sim, **kw) -> GateSettings:
    """Short timers: every delay scaled to the simulator, refresh passes every 20 ms."""
    kw.setdefault("time_scale", sim.time_scale)
    kw.setdefault("refresh_interval", 0.02)
    kw.setdefault("heartbeat_interval", 0.05)
    kw.setdefault("warning_seconds", 10)
    kw.setdefault("dial_timeout", 30)
    kw.setdefault("stasis_timeout", 2.0)
    kw.setdefault("answer_grace", 2.0)
    kw.setdefault("announcement_timeout", 5.0)
    kw.setdefault("orphan_grace", 0.1)
    return GateSettings(**kw)


def sim_now_ms(sim):
    return lambda: int(sim.now() * 1000)


@asynccontextmanager
async def running_gate(sim, core, settings: GateSettings | None = None, *,
                       client: AriClient | None = None) -> AsyncIterator[Gate]:
    """A Gate serving ``sim`` until the block ends (the client is closed afterwards)."""
    client = client or AriClient(sim.url, ARI_USER, ARI_PASSWORD, ARI_APP, backoff_initial=0.02, backoff_max=0.1)
    gate = Gate(client, core, settings or gate_settings(sim), now_ms=sim_now_ms(sim))
    task = asyncio.create_task(gate.run())
    try:
        await sim.wait_app_connected(timeout=5)
        assert await client.wait_connected(5)
        yield gate
    finally:
        await gate.stop()
        try:
            await asyncio.wait_for(task, 5)
        except (asyncio.CancelledError, Exception):
            pass
        await client.close()


def requests_of(sim, *, method: str | None = None, contains: str = "") -> list:
    return [r for r in sim.requests if (method is None or r.method == method) and contains in r.path]


async def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


def ts_ms(event: dict) -> int:
    from ari_app.calls import parse_ts

    return parse_ts(event["timestamp"])


def callee_answer_ts(sim, call) -> int:
    """Timestamp of the callee's answer (ChannelStateChange Up) as the simulator sent it."""
    callee = call.callee_ids[0]
    return min(ts_ms(e) for e in sim.events_of(callee)
               if e["type"] == "ChannelStateChange" and e["channel"]["id"] == callee and e["channel"]["state"] == "Up")


def first_hangup_ts(sim, channel_id: str) -> int:
    """Timestamp of the first far-end hangup request of a channel."""
    return min(ts_ms(e) for e in sim.events_of(channel_id)
               if e["type"] == "ChannelHangupRequest" and e["channel"]["id"] == channel_id and not e.get("soft"))

def slack_ms(time_scale: float) -> int:
    """Simulated ms that a 250 ms stall of a loaded CI machine (2 cores shared by the whole suite)
    adds at this time scale: the tolerance of assertions on what the simulated phones experienced.
    What the store records (talk_ms, cost) is asserted exactly: it comes from event timestamps, not
    from our timing."""
    return int(0.25 / time_scale * 1000)


SLACK_MS = slack_ms(TIME_SCALE)
