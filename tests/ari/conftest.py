"""ARI test fixtures: a started ARI simulator on 127.0.0.1 (port 0).

``simulator``: AriSimulator(user="callgate", password="secret", apps=("callgate",)), real time
(time_scale=1.0): script parties with short delays (Party(answer_after=0.05, ...)).
``simulator_factory``: ``await simulator_factory(time_scale=0.02, ...)`` for other settings;
every simulator it starts is stopped after the test.
"""
from __future__ import annotations

import pytest

from ari_app.simulator import AriSimulator

ARI_USER = "callgate"
ARI_PASSWORD = "secret"
ARI_APP = "callgate"


@pytest.fixture
async def simulator_factory():
    started: list[AriSimulator] = []

    async def make(**kw) -> AriSimulator:
        kw.setdefault("user", ARI_USER)
        kw.setdefault("password", ARI_PASSWORD)
        kw.setdefault("apps", (ARI_APP,))
        sim = AriSimulator(**kw)
        await sim.start(port=0)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()


@pytest.fixture
async def simulator(simulator_factory) -> AriSimulator:
    return await simulator_factory()
