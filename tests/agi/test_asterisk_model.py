"""The fake Asterisk used by the replay tests answers every recorded command exactly as the real
Asterisk 22 did in the traces (HANGUP placement, 511 on a dead channel, EXEC results)."""
from __future__ import annotations

import pytest

from .fakes import TRACES, AsteriskModel, after_env, agi_records, load

ALL = sorted(p.stem for p in TRACES.glob("*.jsonl"))


def test_all_traces_are_here():
    assert len(ALL) == 7


@pytest.mark.parametrize("trace", ALL)
def test_model_reproduces_every_recorded_reply(trace):
    records = load(trace)
    connections = sorted({r.get("connection") for r in agi_records(records)}, key=str)
    for conn in connections:
        model = AsteriskModel(variables={"CALLERID(num)": "alice"},
                              dial_outcome="callee_hangup" if "callee_hangup" in trace else "caller_hangup")
        produced: list[str] = []
        expected: list[str] = []
        outstanding = 0
        for r in after_env(records, conn):
            if r["direction"] == "agi->asterisk":
                produced += model.reply(r["line"])
                outstanding += 1
                continue
            expected.append(r["line"])
            if r["line"] == "HANGUP" and outstanding == 0:
                produced += model.hangup_now()  # pushed while the AGI was idle
            elif r["line"] != "HANGUP":
                outstanding -= 1
        assert produced == expected, (trace, conn)
