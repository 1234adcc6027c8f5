"""Where a latency tail comes from: event-loop stalls and garbage-collector pauses of one benchmark
process, reported with the results (``app_*`` / ``sim_*`` in gate_bench's JSON).

A stall is a wake-up of a 5 ms sleep that came more than 10 ms late: the loop was busy (a long
callback, a collector pass) or the process waited for a core. Cheap enough to leave on: 200 wake-ups
a second.
"""
from __future__ import annotations

import asyncio
import gc
import time

INTERVAL_S = 0.005
STALL_MS = 10.0


class LoopWatch:
    def __init__(self) -> None:
        self.stalls: list[float] = []
        self.gc_ms: list[float] = []
        self._gc_started = 0.0
        self._task: asyncio.Task | None = None

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_ms.append((time.perf_counter() - self._gc_started) * 1000)

    async def _watch(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(INTERVAL_S)
            late = (time.perf_counter() - t - INTERVAL_S) * 1000
            if late > STALL_MS:
                self.stalls.append(late)

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def stop(self, prefix: str) -> dict:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
        return {f"{prefix}_stalls_over_10ms": len(self.stalls),
                f"{prefix}_stall_max_ms": round(max(self.stalls, default=0.0), 1),
                f"{prefix}_gc_ms": round(sum(self.gc_ms), 1),
                f"{prefix}_gc_max_ms": round(max(self.gc_ms, default=0.0), 1)}
