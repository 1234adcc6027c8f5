"""A second sidecar in another process (the SQLite cross-process test runs this).

Usage: python -m tests.sidecar.other_process DB_URL NOW_MS... — for each instant, a few full
passes with a fake clock at that instant. Prints "ok <passes>" on success.
"""
from __future__ import annotations

import asyncio
import sys

from billing_core.api import BillingCore
from billing_core.clock import FakeClock

from .helpers import make_sidecar
from .smtpd import free_port


async def main(url: str, nows: list[int]) -> int:
    clock = FakeClock(nows[0])
    core = await BillingCore.open(url, clock=clock)
    passes = 0
    try:
        sidecar = make_sidecar(core, free_port(), stale_seconds=3600)
        print("ready", flush=True)  # the parent starts its own passes now, so both overlap
        for now in nows:
            clock.set(now)
            for _ in range(4):
                report = await sidecar.run_once()
                if report.errors:
                    print("errors", report.errors, flush=True)
                    return 1
                passes += 1
    finally:
        await core.close()
    print("ok", passes, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], [int(x) for x in sys.argv[2:]])))
