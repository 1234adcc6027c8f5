"""`callgate gate` as a real process against the simulator (SQLite file and PostgreSQL)."""
from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from click.testing import CliRunner

import re

from ari_app.settings import GateSettings
from callgate_fakes.ari_simulator import Party
from billing_core.api import BillingCore
from billing_core.store import migrate
from callgate import config as cfgmod
from callgate.cli import main
from tests.ari.gate_support import ARI_PASSWORD, ARI_USER, wait_for
from tests.factories import seed

NUMBER = "15145550100"


async def test_callgate_gate_serves_calls_and_logs_each_decision(simulator_factory, db_url, tmp_path):
    sim = await simulator_factory(time_scale=0.05)
    await migrate.upgrade(db_url)
    core = await BillingCore.open(db_url)
    try:
        await seed(core)
        await seed(core, account="broke", endpoint="bob", balance="0", did=None, package="p2")
    finally:
        await core.close()
    sim.script_destination(f"PJSIP/{NUMBER}@trunk", Party(answer_after=1.0))
    env = dict(os.environ, CALLGATE_DB=db_url, CALLGATE_ARI_URL=sim.url, CALLGATE_ARI_USER=ARI_USER,
               CALLGATE_ARI_PASSWORD=ARI_PASSWORD, CALLGATE_LOG_FORMAT="kv", CALLGATE_DIAL_TIMEOUT="20")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "callgate", "gate", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await sim.wait_app_connected(timeout=30)
        ok = await sim.place_call(endpoint="alice", exten=NUMBER, caller_hangup_after=2.0)
        refused = await sim.place_call(endpoint="bob", exten=NUMBER)
        out_ok, out_refused = await ok.ended(timeout=20), await refused.ended(timeout=20)
        await wait_for(lambda: not sim.channels, 10)
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
    text = stderr.decode()
    assert proc.returncode == 0, text
    assert out_ok.answered and out_refused.sip_final == 403
    allowed = [line for line in text.splitlines() if 'msg="call allowed"' in line]
    refused_lines = [line for line in text.splitlines() if 'msg="call refused"' in line]
    assert len(allowed) == 1 and len(refused_lines) == 1, text
    assert "account=acme" in allowed[0] and f"number={NUMBER}" in allowed[0] and "granted_seconds=60" in allowed[0]
    assert "session=" in allowed[0] and "session=-" not in allowed[0]
    assert "account=broke" in refused_lines[0] and "reason=depleted" in refused_lines[0]
    assert "startup heap frozen" in text  # gen-2 collector passes skip the startup heap (callgate.heap)


def test_bad_settings_are_one_clear_error(tmp_path):
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'x.db'}"
    for env, needle in ((dict(CALLGATE_DIAL_TIMEOUT="soon"), "CALLGATE_DIAL_TIMEOUT"),
                        (dict(CALLGATE_TRUNK_TEMPLATE="PJSIP/trunk"), "CALLGATE_TRUNK_TEMPLATE"),
                        (dict(CALLGATE_ANNOUNCE_DEPLETED="cannot-complete"), "CALLGATE_ANNOUNCE_DEPLETED"),
                        (dict(CALLGATE_ARI_URL="localhost:8088"), "CALLGATE_ARI_URL")):
        result = runner.invoke(main, ["--db", db, "gate"], env=env)
        assert result.exit_code == 1, result.output
        assert needle in result.output and result.output.startswith("error: ")
    assert not (tmp_path / "x.db").exists()  # nothing written


def from_env(environ) -> GateSettings:
    """GateSettings through the one configuration path ([ari], [announcements]: file + environment)."""
    return cfgmod.gate_settings(cfgmod.load(None, environ=environ))


def test_settings_from_env_defaults_and_overrides():
    assert from_env({}) == GateSettings()
    s = from_env({"CALLGATE_ARI_APP": "gate2", "CALLGATE_WARNING_SECONDS": "30", "CALLGATE_DIAL_TIMEOUT": "45",
                  "CALLGATE_TRUNK_TEMPLATE": "PJSIP/{number}@carrier", "CALLGATE_PBX_ID": "pbx-a",
                  "CALLGATE_ANNOUNCE_TOO_MANY_CALLS": "sound:busy-now", "CALLGATE_ANNOUNCE_NO_RATE": ""})
    assert (s.app, s.warning_seconds, s.dial_timeout, s.trunk_template, s.pbx_id) == (
        "gate2", 30.0, 45, "PJSIP/{number}@carrier", "pbx-a")
    assert s.announcement_for("too_many_calls") == "sound:busy-now" and s.announcement_for("no_rate") == ""
    assert s.announcement_for("depleted") == "sound:cannot-complete-as-dialed"
    with pytest.raises(cfgmod.ConfigError, match="CALLGATE_WARNING_SECONDS"):
        from_env({"CALLGATE_WARNING_SECONDS": "-1"})
    # the configuration schema's long names work too; the short names win; errors name what was set
    s = from_env({"CALLGATE_ARI_DIAL_TIMEOUT": "12", "CALLGATE_ANNOUNCEMENTS_DEPLETED": "sound:vm-goodbye",
                  "CALLGATE_ARI_WARNING_SECONDS": "5", "CALLGATE_WARNING_SECONDS": "7"})
    assert (s.dial_timeout, s.warning_seconds, s.announcement_for("depleted")) == (12, 7.0, "sound:vm-goodbye")
    with pytest.raises(cfgmod.ConfigError) as err:
        from_env({"CALLGATE_ARI_DIAL_TIMEOUT": "soon"})
    # the line a command prints when it refuses to start
    assert re.match("^CALLGATE_ARI_DIAL_TIMEOUT: must be a whole number", err.value.lines[0])


async def test_callgate_gate_drains_on_sigterm_like_callgate_run(simulator_factory, db_url):
    """Issue 15: `callgate gate` alone exited at once on SIGTERM and a live call lost its cut-off.
    Now it drains: a new call is refused, the live call keeps going to its end, and its talk is
    settled as measured; then the process exits 0 (well within systemd's TimeoutStopSec)."""
    sim = await simulator_factory(time_scale=1.0)  # real time: the gate's core runs on the wall clock
    await migrate.upgrade(db_url)
    core = await BillingCore.open(db_url)
    try:
        await seed(core, max_calls=5)
        sim.script_destination(f"PJSIP/{NUMBER}@trunk", Party(answer_after=0.2))
        env = dict(os.environ, CALLGATE_DB=db_url, CALLGATE_ARI_URL=sim.url, CALLGATE_ARI_USER=ARI_USER,
                   CALLGATE_ARI_PASSWORD=ARI_PASSWORD, CALLGATE_LOG_FORMAT="kv", CALLGATE_SHUTDOWN_GRACE="30")
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "callgate", "gate", env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stderr = asyncio.ensure_future(proc.stderr.read())
        try:
            await sim.wait_app_connected(timeout=30)
            live = await sim.place_call(endpoint="alice", exten=NUMBER, caller_hangup_after=3.0)

            async def answered() -> bool:
                s = await core.find_session(sim.asterisk_id, live.channel_id)
                return s is not None and s.state == "answered"

            for _ in range(200):
                if await answered():
                    break
                await asyncio.sleep(0.02)
            assert await answered()
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.8)  # a window longer than a CI stall: the old gate was gone by now
            assert proc.returncode is None, "callgate gate exited with a call still up"
            late = await sim.place_call(endpoint="alice", exten=NUMBER)
            out_late = await late.ended(timeout=10)
            out_live = await live.ended(timeout=15)
            rc = await asyncio.wait_for(proc.wait(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = (await stderr).decode()
        assert rc == 0, text
        assert not out_late.answered and out_late.sip_final >= 500  # refused: shutting down
        assert "shutting_down" in text
        assert out_live.answered
        s = await core.find_session(sim.asterisk_id, live.channel_id)
        assert s.state == "settled" and not s.stale and s.billing_basis == "measured"
        assert 2_500 <= s.talk_ms <= 3_500  # its own end (3 s), measured: not the grace time
    finally:
        await core.close()
