"""Secrets never reach a terminal, a journal or a log line (issue 15), and a configuration file
holding secrets that others can read is warned about at start."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys

import pytest
from click.testing import CliRunner

from callgate import config as cfgmod
from callgate.cli import main
from callgate.logs import setup_logging
from callgate.redaction import mask_url, redact

DB_PASSWORD = "Db-Pa55word-xyz"
ARI_PASSWORD = "ari-pa55-word"
SMTP_PASSWORD = "smtp-pa55-word"
PAYPAL_SECRET = "pp-secret-value-123"
WEBHOOK_ID = "WH-0123456789ABCDEF"
ALL_SECRETS = (DB_PASSWORD, ARI_PASSWORD, SMTP_PASSWORD, PAYPAL_SECRET, WEBHOOK_ID)
# Nothing listens on port 1: every database operation fails at once.
DOWN_DB = f"postgresql://callgate:{DB_PASSWORD}@127.0.0.1:1/callgate"


@pytest.fixture
def clean_env(monkeypatch):
    for var in list(os.environ):
        if var.startswith("CALLGATE_"):
            monkeypatch.delenv(var)
    return monkeypatch


@pytest.fixture
def secret_config(tmp_path):
    f = tmp_path / "callgate.toml"
    f.write_text(f'[database]\nurl = "{DOWN_DB}"\n[ari]\npassword = "{ARI_PASSWORD}"\n'
                 f'[smtp]\npassword = "{SMTP_PASSWORD}"\n[paypal]\nsecret = "{PAYPAL_SECRET}"\nwebhook_id = "{WEBHOOK_ID}"\n')
    f.chmod(0o600)
    return f


def _assert_no_secret(text: str) -> None:
    for secret in ALL_SECRETS:
        assert secret not in text, f"{secret!r} leaked in:\n{text}"


def test_mask_url_and_redact():
    assert mask_url(DOWN_DB) == "postgresql://callgate:********@127.0.0.1:1/callgate"
    assert mask_url("postgresql://u:p@ss@db/x") == "postgresql://u:********@db/x"
    assert mask_url("http://127.0.0.1:8088/ari") == "http://127.0.0.1:8088/ari"
    assert mask_url("postgresql://callgate@db/x") == "postgresql://callgate@db/x"
    assert redact("connect host=db password=hunter22 user=x", ()) == "connect host=db password=******** user=x"
    assert redact(f"boom ({DOWN_DB}): refused", ()) == "boom (postgresql://callgate:********@127.0.0.1:1/callgate): refused"
    assert redact(f"token {PAYPAL_SECRET} seen", {PAYPAL_SECRET}) == "token ******** seen"


@pytest.mark.parametrize("fmt", [[], ["--json"]])
def test_config_check_masks_every_secret_and_url_password(clean_env, secret_config, fmt):
    r = CliRunner().invoke(main, ["--config", str(secret_config), "config", "check", *fmt])
    assert r.exit_code == 0, r.output
    _assert_no_secret(r.output)
    assert "postgresql://callgate:********@127.0.0.1:1/callgate" in r.output
    clean_env.setenv("CALLGATE_DB", DOWN_DB.replace("callgate@", "x@"))
    r = CliRunner().invoke(main, ["config", "check", *fmt])
    assert r.exit_code == 0 and DB_PASSWORD not in r.output


def test_config_errors_do_not_print_the_url_password(clean_env, tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(f'[database]\nurl = "mysql://callgate:{DB_PASSWORD}@db/callgate"\n')
    r = CliRunner().invoke(main, ["--config", str(f), "config", "check"])
    assert r.exit_code == 1 and "[database] url" in r.output
    _assert_no_secret(r.output)


@pytest.mark.parametrize("args", [["db", "upgrade"], ["account", "list"], ["balance", "acme"]])
def test_cli_database_errors_do_not_print_the_password(clean_env, args):
    r = CliRunner().invoke(main, ["--db", DOWN_DB, *args])
    assert r.exit_code == 1 and r.output.startswith("error: ")
    assert "127.0.0.1:1" in r.output  # still says where
    _assert_no_secret(r.output)
    r = CliRunner().invoke(main, ["--db", f"mysql://callgate:{DB_PASSWORD}@db/x", *args])
    assert r.exit_code == 1 and "unsupported database URL" in r.output
    _assert_no_secret(r.output)


async def _run_cli(args, env, timeout=60):
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "callgate", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("command", [["run"], ["gate"], ["agi"], ["sidecar", "--once"]])
async def test_a_failing_service_start_puts_no_secret_in_the_journal(clean_env, secret_config, command):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGATE_")}
    code, out, err = await _run_cli(["--config", str(secret_config), *command], env)
    assert code != 0
    assert "database unavailable" in out + err and "127.0.0.1:1" in out + err
    _assert_no_secret(out + err)
    assert "chmod 600" not in err  # mode 600: nothing to warn about


@pytest.mark.parametrize("fmt", ["kv", "json"])
def test_log_lines_mask_passwords_secrets_and_tracebacks(clean_env, fmt):
    clean_env.setenv("CALLGATE_SMTP_PASSWORD", SMTP_PASSWORD)
    clean_env.setenv("CALLGATE_PAYPAL_SECRET", PAYPAL_SECRET)
    clean_env.setenv("CALLGATE_DB", DOWN_DB)
    buf = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging(fmt, "INFO", stream=buf)
        log = logging.getLogger("callgate.test")
        log.error("cannot reach %s", DOWN_DB, extra={"detail": f"auth with {SMTP_PASSWORD}"})
        try:
            raise ConnectionError(f"refused: {DOWN_DB} secret={PAYPAL_SECRET}")
        except ConnectionError:
            log.exception("part stopped")
        log.warning("bare password %s", DB_PASSWORD)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    text = buf.getvalue()
    assert text.count("\n") == 3 and "********" in text
    _assert_no_secret(text)


def test_warns_once_when_a_secret_file_is_readable_by_others(secret_config, tmp_path, caplog):
    cfgmod._warned_exposed.clear()
    caplog.set_level(logging.WARNING, "callgate.config")
    assert cfgmod.warn_if_secrets_exposed(str(secret_config)) is None  # 0600
    plain = tmp_path / "plain.toml"
    plain.write_text('[agi]\nlisten = "127.0.0.1:4573"\n')
    plain.chmod(0o644)
    assert cfgmod.warn_if_secrets_exposed(str(plain)) is None  # no secret in it
    secret_config.chmod(0o644)
    line = cfgmod.warn_if_secrets_exposed(str(secret_config))
    assert line and str(secret_config) in line and "chmod 600" in line and "[ari] password" in line
    assert cfgmod.warn_if_secrets_exposed(str(secret_config)) is None  # once per process
    records = [r for r in caplog.records if r.name == "callgate.config"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    _assert_no_secret(caplog.text)


async def test_service_start_warns_about_a_readable_secret_file(clean_env, secret_config):
    secret_config.chmod(0o640)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGATE_")}
    code, out, err = await _run_cli(["--config", str(secret_config), "run"], env)
    assert code == 1
    warnings = [line for line in err.splitlines() if "chmod 600" in line]
    assert len(warnings) == 1 and "level=warning" in warnings[0] and str(secret_config) in warnings[0]
    _assert_no_secret(out + err)
