"""`callgate agi` as an operator runs it: a process that listens, answers, and stops on SIGTERM."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

from agi.routes import VAR_STATUS
from billing_core.api import BillingCore
from billing_core.clock import FakeClock
from tests.factories import seed

from .fakes import env_block, load, play

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def start_agi_process(db_url: str, **extra_env: str):
    """A migrated, seeded SQLite database and `callgate agi` serving it as a real process on a free
    port: (core on the same database, the process, the port it announced)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGATE_")}
    env.update(CALLGATE_DB=db_url, CALLGATE_AGI_PBX_ID="agi@cli-test", PYTHONPATH=ROOT, **extra_env)
    up = await asyncio.create_subprocess_exec(sys.executable, "-m", "callgate", "db", "upgrade", env=env, cwd=ROOT,
                                              stderr=asyncio.subprocess.DEVNULL)
    assert await up.wait() == 0
    core = await BillingCore.open(db_url, clock=FakeClock())
    await seed(core, balance="10.00")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callgate", "agi", "--listen", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
    async with asyncio.timeout(20):
        while True:
            line = (await proc.stderr.readline()).decode()
            assert line, "callgate agi exited early"
            if m := re.search(r"FastAGI server listening on 127\.0\.0\.1:(\d+)", line):
                return core, proc, int(m.group(1))


async def test_callgate_agi_serves_and_stops_on_sigterm(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    core, proc, port = await start_agi_process(db_url)
    try:
        played = await play("127.0.0.1", port, env_block(load("agi_dial_u_answered_and_hangup_handler_settle"), "agi1"))
        assert played.variables[VAR_STATUS] == "ALLOW"
        assert (await core.find_session("agi@cli-test", "1795853324.4")).state == "authorized"
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 10)
        await core.close()
    assert rc == 0


def test_bad_listen_is_one_clear_line(monkeypatch):
    from click.testing import CliRunner

    from callgate.cli import main

    monkeypatch.delenv("CALLGATE_AGI_LISTEN", raising=False)
    result = CliRunner().invoke(main, ["agi", "--listen", "localhost"])
    assert result.exit_code == 1
    assert result.stderr == "error: CALLGATE_AGI_LISTEN: must be host:port (got 'localhost')\n"


async def test_callgate_agi_drains_on_sigterm(tmp_path):
    """Issue 15: on SIGTERM `callgate agi` stops accepting, but a request in progress (here a
    hangup handler's settle whose environment is still arriving) is answered before it exits."""
    from sqlalchemy import update

    from billing_core.store.tables import call_sessions

    db_url = f"sqlite:///{tmp_path / 'drain.db'}"
    core, proc, port = await start_agi_process(db_url, CALLGATE_SHUTDOWN_GRACE="20")
    records = load("agi_dial_u_answered_and_hangup_handler_settle")
    try:
        assert (await play("127.0.0.1", port, env_block(records, "agi1"))).variables[VAR_STATUS] == "ALLOW"
        s = await core.find_session("agi@cli-test", "1795853324.4")
        # the call rang and talked on the wall clock the server runs on: authorized 10 s ago
        await core.store.run(lambda c: c.execute(update(call_sessions).where(call_sessions.c.id == s.session_id)
                                                 .values(created_at=call_sessions.c.created_at - 10_000)))
        settle_env = [line.replace("s-123", s.session_id) for line in env_block(records, "agi3")]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write("".join(settle_env[:-1]).encode())  # the environment, all but its blank line
        await writer.drain()
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.8)  # a window longer than a CI stall
        assert proc.returncode is None, "callgate agi exited with a request in progress"
        try:
            late = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            pass
        else:  # accepted by the kernel's backlog at most: never served
            assert await asyncio.wait_for(late[0].read(), 5) == b""
            late[1].close()
        writer.write(settle_env[-1].encode())
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # settled and closed by the server
        writer.close()
        rc = await asyncio.wait_for(proc.wait(), 15)
        s = await core.get_session(s.session_id)
        assert s.state == "settled" and s.talk_ms == 2006
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await core.close()
    assert rc == 0
