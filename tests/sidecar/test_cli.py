"""`callgate sidecar --once` and `callgate alerts` end to end on both databases."""
from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from billing_core.api import BillingCore
from callgate.cli import main
from tests.factories import seed

from .helpers import debit
from .smtpd import ThreadedSmtpServer


@pytest.fixture
def url(sync_db_url):
    return sync_db_url


@pytest.fixture
def smtpd():
    with ThreadedSmtpServer() as server:
        yield server


@pytest.fixture
def cg(url, smtpd):
    runner = CliRunner()
    env = {"CALLGATE_SMTP_HOST": "127.0.0.1", "CALLGATE_SMTP_PORT": str(smtpd.port),
           "CALLGATE_MAIL_FROM": "billing@voip.test", "CALLGATE_SMTP_TLS": "none"}

    def run(*args, ok=True, extra_env=None):
        result = runner.invoke(main, ["--db", url, *args], env={**env, **(extra_env or {})}, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    run("db", "upgrade")
    return run


def _low_balance_alert(url):
    async def go():
        core = await BillingCore.open(url)
        try:
            await seed(core, balance="10.00")
            await debit(core, "acme", "6.00")
        finally:
            await core.close()

    asyncio.run(go())


def test_failed_alert_is_visible_and_retry_sends_it(cg, url, smtpd):
    _low_balance_alert(url)
    smtpd.handler.replies = ["550 5.1.1 <acme@example.test>: no such user"]
    out = cg("sidecar", "--once").output
    assert "mail: 0 sent, 0 retrying, 1 failed" in out

    [alert] = json.loads(cg("alerts", "--json").output)
    assert alert["status"] == "failed" and alert["kind"] == "low_balance" and alert["account_ref"] == "acme"
    assert alert["attempts"] == 1 and "550" in alert["last_error"] and "no such user" in alert["last_error"]
    text = cg("alerts").output
    assert "failed" in text and "low_balance" in text and "no such user" in text
    assert json.loads(cg("alerts", "--status", "sent", "--json").output) == []

    assert "queued again" in cg("alerts", "retry", str(alert["id"])).output
    again = cg("alerts", "retry", str(alert["id"]), ok=False)
    assert again.exit_code == 1 and "only failed alerts can be retried" in again.output
    missing = cg("alerts", "retry", "99999", ok=False)
    assert missing.exit_code == 1 and "no alert 99999" in missing.output

    report = json.loads(cg("sidecar", "--once", "--json").output)
    assert report["mail"]["sent"] == 1 and report["errors"] == []
    [sent] = json.loads(cg("alerts", "--json").output)
    assert sent["status"] == "sent" and sent["sent_at"] is not None
    [msg] = smtpd.server.received
    assert "4.00" in msg.subject and "5.00" in msg.subject


def test_bad_settings_are_one_clear_line(cg):
    bad = cg("sidecar", "--once", ok=False, extra_env={"CALLGATE_SMTP_TLS": "ssl"})
    assert bad.exit_code == 1 and "CALLGATE_SMTP_TLS: must be one of none, starttls, tls" in bad.output
    bad = cg("sidecar", "--once", ok=False, extra_env={"CALLGATE_STALE_SECONDS": "soon"})
    assert bad.exit_code == 1 and "CALLGATE_STALE_SECONDS: must be a number" in bad.output
    assert "no alerts" in cg("alerts").output


def test_sidecar_runs_until_sigterm(url, smtpd, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "CALLGATE_SMTP_HOST": "127.0.0.1", "CALLGATE_SMTP_PORT": str(smtpd.port),
           "CALLGATE_MAIL_FROM": "billing@voip.test", "CALLGATE_DEBIT_INTERVAL": "0.1", "PYTHONPATH": str(root)}
    CliRunner().invoke(main, ["--db", url, "db", "upgrade"], catch_exceptions=False)
    _low_balance_alert(url)
    proc = subprocess.Popen([sys.executable, "-m", "callgate", "--db", url, "sidecar"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not smtpd.server.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(smtpd.server.received) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"sidecar running every 0.1s" in err
