"""The classic AGI script (agi.stdio on pyst2) as Asterisk runs it: a subprocess, the environment
block on stdin, commands on stdout, replies on stdin."""
from __future__ import annotations

import asyncio
import os
import sys

from agi.routes import VAR_HANGUPCAUSE, VAR_MAX_MS, VAR_REASON, VAR_SESSION, VAR_STATUS
from billing_core.store.tables import call_sessions
from tests.factories import seed

from .fakes import AsteriskModel, env_block, load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A classic AGI gets the same block without the agi_network* lines, agi_request = the script.
ENV = [l for l in env_block(load("agi_dial_u_answered_and_hangup_handler_settle"), "agi1")
       if not l.startswith("agi_network")]
ENV = ["agi_request: callgate-agi\n" if l.startswith("agi_request: ") else l for l in ENV]
DENY_UNAVAILABLE = {VAR_MAX_MS: "0", VAR_SESSION: "", VAR_REASON: "billing_unavailable", VAR_HANGUPCAUSE: "34",
                    VAR_STATUS: "DENY"}


async def run_script(args: list[str], db_url: str | None, env_lines=ENV, *, hangup_first=False, close_stdin=False,
                     extra_env=None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CALLGATE_")}
    environ["PYTHONPATH"] = ROOT
    environ["CALLGATE_AGI_PBX_ID"] = "agi@stdio-test"
    if db_url is not None:
        environ["CALLGATE_DB"] = db_url
    environ.update(extra_env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agi.stdio", *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=environ, cwd=ROOT,
    )
    model = AsteriskModel()
    proc.stdin.write("".join(env_lines).encode())
    if close_stdin:
        proc.stdin.close()
    commands = []
    async with asyncio.timeout(30):
        while line := await proc.stdout.readline():
            command = line.decode().rstrip("\n")
            commands.append(command)
            if hangup_first and len(commands) == 1:
                model.dead = model.hangup_pending = True
            if close_stdin:
                continue
            proc.stdin.write("".join(f"{r}\n" for r in model.reply(command)).encode())
            await proc.stdin.drain()
        stderr = (await proc.stderr.read()).decode()
        rc = await proc.wait()
    return rc, commands, model.variables, stderr


async def test_authorize_allow_and_settle(core, db_url):
    await seed(core, balance="10.00")
    rc, commands, variables, _ = await run_script(["outbound", "15145550100"], db_url)
    assert rc == 0 and variables[VAR_STATUS] == "ALLOW"
    s = await core.find_session("agi@stdio-test", "1795853324.4")
    assert variables == {VAR_MAX_MS: str(s.granted_seconds * 1000), VAR_SESSION: s.session_id, VAR_STATUS: "ALLOW"}
    assert commands[0] == f"SET VARIABLE CALLGATE_MAX_MS {s.granted_seconds * 1000}"
    rc, commands, _, _ = await run_script(["answered", s.session_id], db_url)
    assert rc == 0 and commands == []
    # the scripts run on the wall clock: the call rang and talked for real (authorized 10 s and
    # answered 4 s ago), or the settle bound would cut 3020 ms of talk to the few ms that passed
    await core.store.run(lambda c: c.execute(
        call_sessions.update().where(call_sessions.c.id == s.session_id)
        .values(created_at=call_sessions.c.created_at - 10_000, answered_at=call_sessions.c.answered_at - 4_000)))
    rc, commands, _, _ = await run_script(["settle", s.session_id, "3", "3020"], db_url)
    s = await core.get_session(s.session_id)
    assert s.state == "settled" and s.talk_ms == 3020


async def test_args_from_the_environment_when_argv_is_empty(core, db_url):
    await seed(core, balance="0")
    rc, _, variables, _ = await run_script([], db_url)  # agi_arg_1: outbound, agi_arg_2: 15145550100
    assert variables[VAR_STATUS] == "DENY" and variables[VAR_REASON] == "depleted" and variables[VAR_HANGUPCAUSE] == "21"


async def test_hangup_during_authorize_releases_the_grant(core, db_url):
    await seed(core, balance="10.00")
    rc, _, variables, _ = await run_script(["outbound", "15145550100"], db_url, hangup_first=True)
    s = await core.find_session("agi@stdio-test", "1795853324.4")
    assert s.state == "settled" and s.cost == 0 and (await core.account("acme")).held == 0


async def test_database_unreachable_fails_closed():
    rc, _, variables, stderr = await run_script(["outbound", "15145550100"], "postgresql://127.0.0.1:1/nothing")
    assert rc == 0 and variables == DENY_UNAVAILABLE
    assert "billing unavailable" in stderr


async def test_no_database_configured_fails_closed():
    rc, _, variables, stderr = await run_script(["outbound", "15145550100"], None)
    assert rc == 0 and variables == DENY_UNAVAILABLE
    assert "CALLGATE_DB is not set" in stderr


async def test_bad_arguments_fail_closed():
    rc, _, variables, stderr = await run_script(["alice", "15145550100"], "sqlite:////nonexistent/x.db")
    assert rc == 0 and variables == DENY_UNAVAILABLE
    assert "expected outbound|inbound,<number>" in stderr


async def test_truncated_environment_then_eof_ends_cleanly(core, db_url):
    await seed(core, balance="10.00")
    rc, commands, _, stderr = await run_script(["outbound", "15145550100"], db_url, env_lines=ENV[:3], close_stdin=True)
    assert rc == 0 and "Asterisk closed stdin" in stderr
    # the grant could not be delivered (no reply to the first SET): released at once
    sessions = await core.live_sessions()
    assert sessions == [] and (await core.account("acme")).held == 0
    assert commands[0].startswith("SET VARIABLE CALLGATE_MAX_MS ")


async def test_silent_asterisk_is_bounded_by_the_watchdog():
    rc, commands, _, stderr = await run_script(["outbound", "15145550100"], "sqlite:////nonexistent/x.db",
                                               env_lines=ENV[:3], extra_env={"CALLGATE_AGI_SESSION_TIMEOUT": "1"})
    assert rc == 0 and commands == [] and "no result within 1s" in stderr


async def test_keepalive_from_cron_reports_live_agi_calls(core, db_url):
    await seed(core, balance="10.00")
    rc, _, variables, _ = await run_script(["outbound", "15145550100"], db_url)
    assert variables[VAR_STATUS] == "ALLOW"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CALLGATE_")}
    environ.update(PYTHONPATH=ROOT, CALLGATE_DB=db_url, CALLGATE_AGI_PBX_ID="agi@stdio-test")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agi.stdio", "--keepalive", env=environ, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert out.decode() == "1 live AGI call(s) of agi@stdio-test reported\n"
    s = await core.find_session("agi@stdio-test", "1795853324.4")
    assert s.last_seen_at > s.created_at  # reported after the authorize (both on the wall clock)
