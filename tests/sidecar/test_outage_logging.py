"""A database outage is logged once per state change — down, still down every minute, back — and
never as a traceback per pass (issue 15: the gate logged a full traceback every second)."""
from __future__ import annotations

import logging

from billing_core.log_limits import OutageLog, RateLimitedLog
from billing_core.store.engine import StorageError

from .helpers import make_sidecar


class FakeMonotonic:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failing_store(core, monkeypatch):
    """Make every database operation of ``core`` fail as an outage does; returns a restore()."""
    store = core.store
    saved = {name: getattr(store, name) for name in ("run", "run_fast") if hasattr(store, name)}

    async def down(*args, **kwargs):
        raise StorageError("database unavailable: ConnectionRefusedError(111, 'Connect call failed')")

    for name in saved:
        monkeypatch.setattr(store, name, down)

    def restore():
        for name, fn in saved.items():
            monkeypatch.setattr(store, name, fn)

    return restore


def test_outage_log_says_down_still_down_each_minute_and_back(caplog):
    caplog.set_level(logging.DEBUG)
    clock = FakeMonotonic()
    outage = OutageLog(logging.getLogger("t.outage"), "gate refresh_once", monotonic=clock)
    outage.ok()  # nothing to say while up
    for _ in range(150):  # 150 s of passes, one a second
        outage.failed(StorageError("database unavailable: refused"))
        clock.now += 1
    outage.ok()
    outage.ok()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines
    assert "database unavailable" in lines[0] and "refused" in lines[0]
    assert "still unavailable after 60 s" in lines[1] and "still unavailable after 120 s" in lines[2]
    assert "back after 150 s (150 failed attempts)" in lines[3]
    assert not any(r.exc_info for r in caplog.records)


def test_rate_limited_log_counts_what_it_left_out(caplog):
    caplog.set_level(logging.DEBUG)
    clock = FakeMonotonic()
    limited = RateLimitedLog(logging.getLogger("t.limited"), 60, monotonic=clock)
    for _ in range(1000):
        limited("flood %d", 1)
    clock.now += 61
    limited("flood %d", 2)
    assert [r.getMessage() for r in caplog.records] == ["flood 1", "flood 2 (999 more like this in the last 60 s not logged)"]


async def test_sidecar_passes_during_an_outage_log_one_line_per_state_change(core, smtp_server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    sidecar = make_sidecar(core, smtp_server.port)
    await sidecar.run_once()  # healthy
    restore = failing_store(core, monkeypatch)
    for _ in range(30):
        report = await sidecar.run_once()
        assert report.errors  # the pass still says what failed
    restore()
    report = await sidecar.run_once()
    assert not report.errors
    lines = [r for r in caplog.records if r.name == "callgate.sidecar"]
    assert [r.levelno for r in lines] == [logging.ERROR, logging.WARNING], [r.getMessage() for r in lines]
    assert "database unavailable" in lines[0].getMessage() and "back after" in lines[1].getMessage()
    assert not any(r.exc_info for r in caplog.records)
