"""A FastAGI server on 127.0.0.1 (port 0) with short timers, over the shared ``core`` fixture."""
from __future__ import annotations

from contextlib import asynccontextmanager

import pytest

from agi.routes import Router
from agi.server import FastAgiServer
from agi.settings import AgiSettings

PBX = "agi@test"


@asynccontextmanager
async def running(core, **overrides):
    settings = AgiSettings(**{"host": "127.0.0.1", "port": 0, "read_timeout": 1.0, "session_timeout": 3.0,
                              "decision_timeout": 2.0, "pbx_id": PBX, **overrides})
    router = Router(core, pbx_id=settings.pbx_id, decision_timeout=settings.decision_timeout)
    async with FastAgiServer(router, settings) as srv:
        yield srv


@pytest.fixture
def agi_server():
    return running
