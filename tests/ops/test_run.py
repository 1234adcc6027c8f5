"""`callgate run` as a real process against the ARI simulator: every part up, calls decided,
/healthz and /metrics answering on the operator listener only, SIGTERM stopping it cleanly; an
invalid config refused."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import aiohttp
import pytest

from callgate_fakes.ari_simulator import AriSimulator, Party
from billing_core.api import BillingCore
from tests.factories import seed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as r:
                    await r.read()
                    return
            except aiohttp.ClientError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)


@pytest.fixture
async def sim():
    # real time: `callgate run` reads the host's clock, and the core bounds a settle by the time
    # since authorize on that clock (a 20x simulated clock would report talk that cannot have been)
    s = AriSimulator(user="callgate", password="secret", apps=("callgate",), time_scale=1.0)
    await s.start(port=0)
    try:
        yield s
    finally:
        await s.stop()


async def test_run_serves_every_part_and_stops_on_sigterm(sim, tmp_path):
    db = f"sqlite:///{tmp_path / 'run.db'}"
    core = await BillingCore.open(db)
    from billing_core.store import migrate

    await migrate.upgrade(db)
    await seed(core, balance="10.00")
    await seed(core, account="broke", endpoint="bob", did=None, balance="0")
    await core.close()
    web_port, agi_port, ops_port = _free_port(), _free_port(), _free_port()
    env = {**os.environ, "CALLGATE_DB": db, "CALLGATE_ARI_URL": sim.url, "CALLGATE_ARI_USER": "callgate",
           "CALLGATE_ARI_PASSWORD": "secret", "CALLGATE_WEB_LISTEN": f"127.0.0.1:{web_port}",
           "CALLGATE_OPS_LISTEN": f"127.0.0.1:{ops_port}",
           "CALLGATE_AGI_LISTEN": f"127.0.0.1:{agi_port}", "CALLGATE_DEBIT_INTERVAL": "0.5", "CALLGATE_SMTP_PORT": "1",
           "CALLGATE_SHUTDOWN_GRACE": "5"}
    env.pop("CALLGATE_CONFIG", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "callgate", "run", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await _wait_http(f"http://127.0.0.1:{ops_port}/healthz")
        await _wait_http(f"http://127.0.0.1:{web_port}/signin")
        await sim.wait_app_connected(timeout=10)
        sim.script_destination_default(Party(answer_after=0.2, hangup_after=1.0))
        funded = await sim.place_call(endpoint="alice", exten="15145550100", app_args=["outbound"])
        refused = await sim.place_call(endpoint="bob", exten="15145550100", app_args=["outbound"])
        out_refused = await refused.ended(timeout=10)
        assert out_refused.sip_final == 403 and not out_refused.answered
        out_funded = await funded.ended(timeout=10)
        assert out_funded.answered
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{ops_port}/healthz") as r:
                body = await r.json()
                assert r.status == 200 and body["checks"]["ari"]["ok"] and body["checks"]["database"]["ok"]
            # The customers' listener serves neither (metrics and health are for operators).
            for path in ("/healthz", "/metrics"):
                async with http.get(f"http://127.0.0.1:{web_port}{path}") as r:
                    assert r.status == 404
            async with http.get(f"http://127.0.0.1:{ops_port}/metrics") as r:
                text = await r.text()
                assert 'callgate_calls_refused_total{direction="outbound",reason="depleted"} 1.0' in text
                assert "callgate_ari_connected 1.0" in text and "callgate_ari_reconnects_total" in text
                assert "callgate_sidecar_pass_seconds_count" in text and "callgate_outbox_queued" in text
                assert "callgate_live_calls" in text
            # the FastAGI part listens too
            _, writer = await asyncio.open_connection("127.0.0.1", agi_port)
            writer.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    check = await BillingCore.open(db)
    try:
        assert await check.admin.verify() == []
        assert (await check.account("acme")).balance < 10_000_000  # the answered call was billed
        assert (await check.account("acme")).live_calls == 0
    finally:
        await check.close()


async def test_invalid_configuration_refuses_to_start(tmp_path):
    env = {**os.environ, "CALLGATE_DB": f"sqlite:///{tmp_path / 'x.db'}", "CALLGATE_AGI_LISTEN": "not-an-address"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "callgate", "run", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert b"CALLGATE_AGI_LISTEN" in out and b"[agi] listen" in out


async def test_run_without_the_web_part_still_serves_the_operator_listener(tmp_path):
    db = f"sqlite:///{tmp_path / 'ops.db'}"
    web_port, ops_port = _free_port(), _free_port()
    env = {**os.environ, "CALLGATE_DB": db, "CALLGATE_WEB_LISTEN": f"127.0.0.1:{web_port}",
           "CALLGATE_OPS_LISTEN": f"127.0.0.1:{ops_port}", "CALLGATE_SHUTDOWN_GRACE": "1"}
    env.pop("CALLGATE_CONFIG", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "callgate", "run", "--no-web", "--no-gate",
                                                "--no-agi", "--no-sidecar", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await _wait_http(f"http://127.0.0.1:{ops_port}/healthz")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{ops_port}/healthz") as r:
                assert r.status == 200 and (await r.json())["checks"]["database"]["ok"]
                assert "python" not in r.headers.get("Server", "").lower()
            with pytest.raises(aiohttp.ClientConnectionError):
                async with http.get(f"http://127.0.0.1:{web_port}/healthz"):
                    pass
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
