"""`CALLGATE_DEMO_FAST=1 make demo` checks its own outcomes: run it (in a scratch directory, so
./var of the checkout is untouched) and require every step to pass."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fast_demo_passes_every_step(tmp_path):
    env = {**os.environ, "CALLGATE_DEMO_FAST": "1", "PYTHONPATH": str(ROOT)}
    env.pop("CALLGATE_CONFIG", None)
    env.pop("CALLGATE_DB", None)
    proc = subprocess.run([sys.executable, "-m", "callgate.demo"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=170)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "demo passed" in out
    assert out.count("[ok]") >= 10 and "[FAILED]" not in out
    mails = list((tmp_path / "var" / "mail").glob("*.eml"))
    subjects = " ".join(p.name for p in mails)
    assert "low-balance" in subjects and "payment-received" in subjects and "balance-depleted" in subjects
