"""One configuration path (issue 17): every command, whole or part, validates file + environment
the same way, before anything starts or is written, and names the variable or the file's key.

Before, `callgate web` without --config read CALLGATE_WEB_SECURE_COOKIES=maybe as false, each
component parsed its own variables, and `--config` files were exported into the environment.
"""
from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from callgate.cli import main

ROOT = Path(__file__).resolve().parents[2]

#: Every command that starts a part of callgate, and CLI commands that read settings
#: (the core's numbers and emergency rules; the web's password hashing).
COMMANDS = (
    ["run"],
    ["gate"],
    ["agi"],
    ["sidecar", "--once"],
    ["web"],
    ["balance", "acme"],
    ["account", "password", "acme", "--password-stdin"],
    ["invoice", "refund", "INV-1"],
)

#: One bad value of one key of each section: (variable, value, "[section] key").
BAD_VALUES = (
    ("CALLGATE_DB", "mysql://db/callgate", "[database] url"),
    ("CALLGATE_ARI_DIAL_TIMEOUT", "soon", "[ari] dial_timeout"),
    ("CALLGATE_AGI_READ_TIMEOUT", "never", "[agi] read_timeout"),
    ("CALLGATE_WEB_SECURE_COOKIES", "maybe", "[web] secure_cookies"),
    ("CALLGATE_OPS_LISTEN", "nowhere", "[ops] listen"),
    ("CALLGATE_LOG_LEVEL", "loud", "[log] level"),
    ("CALLGATE_STALE_SECONDS", "soon", "[sidecar] stale_seconds"),
    ("CALLGATE_SMTP_TLS", "ssl", "[smtp] tls"),
    ("CALLGATE_PAYPAL_TIMEOUT", "slow", "[paypal] timeout"),
    ("CALLGATE_HOME_REGION", "Canada", "[numbers] home_region"),
    ("CALLGATE_EMERGENCY_NUMBERS", "nine-one-one", "[emergency] numbers"),
    ("CALLGATE_ANNOUNCE_DEPLETED", "goodbye", "[announcements] depleted"),
)


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("CALLGATE_"):
            monkeypatch.delenv(name)


def test_every_section_covered():
    from callgate.config import SCHEMA

    assert {key.split("]")[0].strip("[") for _, _, key in BAD_VALUES} == set(SCHEMA)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("variable,value,key", BAD_VALUES, ids=lambda v: v if v.startswith("CALLGATE_") else "")
def test_a_bad_variable_refuses_every_command(clean_env, tmp_path, command, variable, value, key):
    db = tmp_path / "x.db"
    env = {"CALLGATE_DB": f"sqlite:///{db}", variable: value}
    result = CliRunner().invoke(main, command, env=env, input="a-long-enough-password\n")
    assert result.exit_code == 1, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {variable}: ") and key in lines[0], lines[0]
    assert repr(value).lower() in lines[0].lower()  # says what was wrong
    assert not db.exists()  # refused before anything was opened or written


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_bad_file_key_refuses_every_command(clean_env, tmp_path, command):
    db = tmp_path / "x.db"
    f = tmp_path / "callgate.toml"
    f.write_text('[web]\nsecure_cookies = "maybe"\n')
    result = CliRunner().invoke(main, ["--config", str(f), *command], env={"CALLGATE_DB": f"sqlite:///{db}"},
                                input="a-long-enough-password\n")
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.stderr == f"error: {f}: [web] secure_cookies: must be true or false (got 'maybe')\n"
    assert not db.exists()


async def test_callgate_web_without_a_file_refuses_a_bad_cookie_flag(tmp_path):
    """The issue's own example, as a real process: it used to serve with cookies silently not Secure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGATE_")}
    env.update(CALLGATE_DB=f"sqlite:///{tmp_path / 'web.db'}", CALLGATE_WEB_SECURE_COOKIES="maybe",
               CALLGATE_WEB_LISTEN="127.0.0.1:0", CALLGATE_OPS_LISTEN="off", PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "callgate", "web", env=env, cwd=tmp_path,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:  # it started serving: the regression; leave no process behind
            proc.kill()
            await proc.wait()
    assert proc.returncode == 1
    assert err.decode() == ("error: CALLGATE_WEB_SECURE_COOKIES: must be true or false (got 'maybe') "
                            "([web] secure_cookies)\n")
    assert not (tmp_path / "web.db").exists()


def test_a_command_line_option_is_validated_as_its_variable(clean_env, tmp_path):
    for command, needle in ((["web", "--listen", "nowhere"], "CALLGATE_WEB_LISTEN: expected host:port"),
                            (["web", "--ops-listen", "nowhere"], "CALLGATE_OPS_LISTEN: must be host:port"),
                            (["gate", "--ari-url", "ftp://pbx"], "CALLGATE_ARI_URL: must be a http or https URL"),
                            (["--db", "mysql://db/x", "balance", "acme"], "CALLGATE_DB: ")):
        result = CliRunner().invoke(main, command, env={"CALLGATE_DB": f"sqlite:///{tmp_path / 'x.db'}"})
        assert result.exit_code == 1 and result.stderr.startswith(f"error: {needle}"), (command, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


COMPONENTS = ("ari_app", "agi", "billing_core")
#: The stdio AGI script is started by Asterisk, not by callgate, and may not import callgate
#: (setup.cfg): it reads its three variables itself (agi.stdio.script_settings).
ALLOWED = {"agi/stdio.py"}
ENV_READ = re.compile(r"\bos\.environ\b|\bgetenv\(|\bfrom_env\b|\benviron\.get\(")


def test_components_do_not_read_the_environment():
    """callgate/config.py is the one place that reads the configuration; a component that parses
    its own variables again would accept what the commands refuse (or the reverse)."""
    found = []
    for package in COMPONENTS:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ALLOWED:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if ENV_READ.search(line):
                    found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "components read the environment (build their settings in callgate/config.py):\n" + \
        "\n".join(found)


def test_no_environment_export_left():
    """File values are passed to constructors, never exported into os.environ."""
    from callgate import config as cfgmod

    assert not hasattr(cfgmod, "apply_to_environ")
    for path in (ROOT / "callgate").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"os\.environ\[[^\]]+\]\s*=|os\.environ\.(setdefault|update)\(", text), path
