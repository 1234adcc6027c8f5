"""The FastAGI keepalive during a database outage: one line when it starts, one when it ends."""
from __future__ import annotations

import asyncio
import logging

from agi.keepalive import KeepaliveSettings, keepalive_loop
from billing_core.api import StorageError


class FlakyCore:
    class clock:
        @staticmethod
        def now_ms() -> int:
            return 0

    def __init__(self):
        self.down = True
        self.calls = 0

    async def live_sessions(self, pbx_id):
        self.calls += 1
        if self.down:
            raise StorageError("database unavailable: ConnectionRefusedError(111)")
        return []

    async def heartbeat(self, ids, now):  # pragma: no cover - no sessions
        pass


async def test_keepalive_logs_an_outage_once_per_state_change(caplog):
    caplog.set_level(logging.DEBUG)
    core = FlakyCore()
    task = asyncio.ensure_future(keepalive_loop(core, "agi@test", KeepaliveSettings(interval=0.01)))
    try:
        while core.calls < 30:
            await asyncio.sleep(0.01)
        core.down = False
        seen = core.calls
        while core.calls < seen + 5:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    lines = [r for r in caplog.records if r.name == "callgate.agi"]
    assert [r.levelno for r in lines] == [logging.ERROR, logging.WARNING], [r.getMessage() for r in lines]
    assert "database unavailable" in lines[0].getMessage() and "back after" in lines[1].getMessage()
    assert not any(r.exc_info for r in lines)
