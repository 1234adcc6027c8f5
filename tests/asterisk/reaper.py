"""Nothing the suite starts outlives pytest, however pytest ends.

Fixtures stop Asterisk, SIPp and the callgate services, but fixtures do not run when pytest itself is
killed (SIGTERM from a CI timeout, SIGKILL, a closed terminal): the processes stayed behind on 8088 and
4573 and the next run found its ports taken. So the suite starts one small watcher process and tells
it, over a pipe, every process group it starts. The kernel closes pytest's end of the pipe whatever
ends pytest; the watcher then reads EOF and SIGKILLs every group whose leader is still the process
it was told about.

Why not ``PR_SET_PDEATHSIG`` in each child: it fires when the *thread* that forked the child exits, and
the services are started from ``asyncio.to_thread`` worker threads, which end with each test's event
loop. Why the start time: a pid can be reused; a group is killed only if its leader still has the
start time (``/proc/PID/stat`` field 22) it had when it was registered.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

_lock = threading.Lock()
_watcher: subprocess.Popen | None = None


def _starttime(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # the command name (field 2) may hold spaces; fields after its ")" are fixed
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def reap_on_exit(pid: int) -> None:
    """Kill process group ``pid`` (a child started with ``start_new_session=True``) when pytest ends."""
    global _watcher
    start = _starttime(pid)
    if start is None:  # already gone
        return
    with _lock:
        if _watcher is None:
            # its own session: a Ctrl-C to pytest's process group must not take the watcher first
            _watcher = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True, text=True)
        assert _watcher.stdin is not None
        _watcher.stdin.write(f"{pid} {start}\n")
        _watcher.stdin.flush()


def _watch() -> None:
    """The watcher: lines "PID STARTTIME" on stdin; on EOF, kill the groups whose leader still runs."""
    groups = [line.split() for line in sys.stdin]
    for pid, start in groups:
        if _starttime(int(pid)) == start:
            try:
                os.killpg(int(pid), signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    _watch()
