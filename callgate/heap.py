"""Keeping the garbage collector's full passes off the call path.

A long-running callgate process (gate, run, FastAGI server, sidecar) imports ~96,000 objects that
live as long as it does: modules, SQLAlchemy's tables and compiled
statements, phonenumbers' metadata. CPython's cyclic collector walks all of them on every
generation-2 pass. Measured on the gate benchmark (2 cores, 300 bridged calls/s): one such pass
took 53–60 ms, during which the event loop and the SQLite writer thread both stood still, and the
decisions queued behind it made the run's p99 (a gate's full pass idle: 22–30 ms). Freezing the
startup heap moves those objects into the permanent generation, which the collector skips
(``gc.freeze``, Python ≥ 3.7); a full pass over what calls allocate afterwards measured ~0 ms.

What it costs: a frozen object that later becomes cyclic garbage is never reclaimed. Only what
exists at startup is frozen, and that lives until exit anyway. Objects allocated later (calls,
sessions, events) are collected as before.
"""
from __future__ import annotations

import gc
import logging

log = logging.getLogger("callgate.heap")


def freeze_startup_heap() -> int:
    """Collect once, then freeze every object allocated so far; returns how many are frozen.

    Call it once a service has finished starting (imports done, store open), before it serves."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("startup heap frozen: %d objects left out of the collector's passes", frozen)
    return frozen
