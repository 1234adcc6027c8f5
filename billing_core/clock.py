"""Injectable clocks. Every time rule in the core reads ``clock.now_ms()`` so tests can jump days."""
from __future__ import annotations

import time


class SystemClock:
    """Wall-clock time in epoch milliseconds."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start_ms: int = 1_795_000_000_000):
        self._now = int(start_ms)

    def now_ms(self) -> int:
        return self._now

    def advance(self, seconds: float = 0, *, ms: int = 0, days: float = 0) -> int:
        self._now += int(seconds * 1000) + int(ms) + int(days * 86_400_000)
        return self._now

    def set(self, now_ms: int) -> None:
        self._now = int(now_ms)


DAY_MS = 86_400_000
