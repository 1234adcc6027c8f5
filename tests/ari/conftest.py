"""ARI test fixtures: a started ARI simulator on 127.0.0.1 (port 0).

``simulator``: AriSimulator(user="callgate", password="secret", apps=("callgate",)), real time
(time_scale=1.0): script parties with short delays (Party(answer_after=0.05, ...)).
``simulator_factory``: ``await simulator_factory(time_scale=0.02, ...)`` for other settings;
every simulator it starts is stopped after the test.
"""
from __future__ import annotations

import pytest

from callgate_fakes.ari_simulator import AriSimulator
from billing_core.clock import FakeClock

ARI_USER = "callgate"
ARI_PASSWORD = "secret"
ARI_APP = "callgate"


class SimulatorClock(FakeClock):
    """The core's clock in the gate tests: the (scaled) time of the latest simulator started, the
    time line the gate reads event timestamps on — in production both are the host's clock. A
    frozen core clock would see no time pass while simulated calls talk, and the core's settle
    bound (no more talk than the time since authorize) would cut every call to zero. ``set`` and
    ``advance`` shift it; before any simulator starts it is a plain FakeClock."""

    def __init__(self) -> None:
        super().__init__()
        self._sim: AriSimulator | None = None
        self._offset = 0

    def follow(self, sim: AriSimulator) -> None:
        self._sim, self._offset = sim, 0

    def _sim_ms(self) -> int:
        return int(self._sim.now() * 1000)

    def now_ms(self) -> int:
        return self._now if self._sim is None else self._sim_ms() + self._offset

    def set(self, now_ms: int) -> None:
        if self._sim is None:
            super().set(now_ms)
        else:
            self._offset = int(now_ms) - self._sim_ms()

    def advance(self, seconds: float = 0, *, ms: int = 0, days: float = 0) -> int:
        if self._sim is None:
            return super().advance(seconds, ms=ms, days=days)
        self._offset += int(seconds * 1000) + int(ms) + int(days * 86_400_000)
        return self.now_ms()


@pytest.fixture
def clock() -> SimulatorClock:
    return SimulatorClock()


@pytest.fixture
async def simulator_factory(clock):
    started: list[AriSimulator] = []

    async def make(**kw) -> AriSimulator:
        kw.setdefault("user", ARI_USER)
        kw.setdefault("password", ARI_PASSWORD)
        kw.setdefault("apps", (ARI_APP,))
        sim = AriSimulator(**kw)
        await sim.start(port=0)
        started.append(sim)
        clock.follow(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()


@pytest.fixture
async def simulator(simulator_factory) -> AriSimulator:
    return await simulator_factory()
