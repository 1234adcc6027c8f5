"""`callgate web` as a real process: serves the client area on CALLGATE_WEB_LISTEN, stops on SIGTERM."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import aiohttp

from callgate_fakes.paypal_standin import PayPalStandIn


async def _run_cli(env, *args):
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "callgate", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_callgate_web_serves_and_stops_on_sigterm(tmp_path):
    db = f"sqlite:///{tmp_path / 'web.db'}"
    standin = await PayPalStandIn().start()
    env = {**os.environ, "CALLGATE_DB": db, "CALLGATE_WEB_LISTEN": "127.0.0.1:0", "CALLGATE_OPS_LISTEN": "127.0.0.1:0",
           **standin.env()}
    try:
        await _run_cli(env, "db", "upgrade")
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "callgate", "web", env=env,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            while "client area on" not in line:
                line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
                assert line, "callgate web exited before serving"
            url = re.search(r"client area on (http://\S+)", line).group(1)
            assert url.startswith("http://127.0.0.1:")
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            while "operator listener" not in line:
                line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
                assert line, "callgate web exited before serving the operator listener"
            ops = re.search(r"operator listener \(/metrics, /healthz\) on (http://\S+)", line).group(1)
            assert ops.startswith("http://127.0.0.1:")
            async with aiohttp.ClientSession() as http:
                async with http.get(url + "/signin") as resp:
                    assert resp.status == 200 and "Sign in" in await resp.text()
                    assert "callgate_signin" in resp.cookies
                async with http.post(url + "/paypal/webhook", data=b"{}") as resp:
                    assert resp.status == 400  # mounted, and unsigned posts are rejected
                for path in ("/metrics", "/healthz"):  # operators only: not on the customers' listener
                    async with http.get(url + path) as resp:
                        assert resp.status == 404
                async with http.get(ops + "/healthz") as resp:
                    assert resp.status == 200 and (await resp.json())["checks"]["database"]["ok"]
                async with http.get(ops + "/metrics") as resp:
                    assert resp.status == 200 and "callgate_paypal_webhooks_total" in await resp.text()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        await standin.stop()


async def test_callgate_web_refuses_a_bad_listen_address(tmp_path):
    env = {**os.environ, "CALLGATE_DB": f"sqlite:///{tmp_path / 'web.db'}", "CALLGATE_WEB_LISTEN": "nonsense"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "callgate", "web", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "CALLGATE_WEB_LISTEN: expected host:port" in err.decode()
