"""The suite leaves nothing behind when pytest itself is killed (tests/asterisk/reaper.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: A stand-in for pytest: starts a long process as the harness starts Asterisk, registers it, waits.
_PARENT = """
import subprocess, sys, time
from tests.asterisk.reaper import reap_on_exit
child = subprocess.Popen(["sleep", "300"], start_new_session=True)
reap_on_exit(child.pid)
print(child.pid, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_pytest_takes_what_it_started_with_it():
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    os.kill(parent.pid, signal.SIGKILL)  # no fixture, no atexit runs
    parent.wait(10)
    deadline = time.monotonic() + 30  # longer than a CI stall; it normally goes in milliseconds
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), f"sleep {child} outlived its killed parent"
