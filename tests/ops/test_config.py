"""Configuration: file + environment, short names, errors naming file/variable and key."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from callgate import config as cfgmod
from callgate.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_work_with_nothing_configured():
    cfg = cfgmod.load(None, environ={})
    assert cfg.get("database", "url") == "sqlite:///./var/callgate.db"
    assert cfg.get("ari", "url") == "http://127.0.0.1:8088"
    assert cfg.get("agi", "listen") == "127.0.0.1:4573"
    assert cfg.get("web", "listen") == "127.0.0.1:8080"


def test_env_beats_file_and_short_names_work(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[ari]\nurl = "http://10.0.0.1:8088"\nuser = "fromfile"\n[smtp]\nhost = "mail.test"\n')
    env = {"CALLGATE_ARI_USER": "fromenv", "CALLGATE_DB": "sqlite:///x.db", "CALLGATE_SIDECAR_DEBIT_INTERVAL": "5"}
    cfg = cfgmod.load(str(f), environ=env)
    assert cfg.get("ari", "url") == "http://10.0.0.1:8088"
    assert cfg.get("ari", "user") == "fromenv"
    assert cfg.get("database", "url") == "sqlite:///x.db"
    assert cfg.get("sidecar", "debit_interval") == 5.0
    assert cfg.values["ari"]["url"].source.endswith("[ari] url")
    # Each component's settings are built from the one validated configuration.
    assert cfgmod.ari_connection(cfg).url == "http://10.0.0.1:8088"
    assert cfgmod.smtp_settings(cfg).host == "mail.test"
    assert cfgmod.ari_connection(cfg).user == "fromenv"  # the environment beats the file
    assert cfgmod.sidecar_settings(cfg).debit_interval == 5.0  # a long name reaches the component


def test_every_problem_is_named(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[ari]\nurl = "ftp://x"\nbogus = 1\n[agi]\nlisten = "nope"\n[nosuch]\na = 1\n')
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.load(str(f), environ={"CALLGATE_SMTP_PORT": "abc", "CALLGATE_SMTP_TLS": "maybe"})
    text = str(err.value)
    for needle in ("[ari] unknown key 'bogus'", "[ari] url: must be a http", "[agi] listen: must be host:port",
                   "unknown section [nosuch]", "env CALLGATE_SMTP_PORT ([smtp] port)", "env CALLGATE_SMTP_TLS ([smtp] tls)"):
        assert needle in text, text


def test_not_toml_and_missing_file(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text("[ari\n")
    with pytest.raises(cfgmod.ConfigError, match="not valid TOML"):
        cfgmod.load(str(f), environ={})
    with pytest.raises(cfgmod.ConfigError, match="file not found"):
        cfgmod.load(str(tmp_path / "nope.toml"), environ={})


def test_config_check_masks_secrets(tmp_path, monkeypatch):
    f = tmp_path / "c.toml"
    f.write_text('[ari]\npassword = "s3cret"\n[paypal]\nsecret = "pp-secret"\n')
    for var in list(__import__("os").environ):
        if var.startswith("CALLGATE_"):
            monkeypatch.delenv(var)
    r = CliRunner().invoke(main, ["--config", str(f), "config", "check", "--json"])
    assert r.exit_code == 0, r.output
    assert "s3cret" not in r.output and "pp-secret" not in r.output
    data = json.loads(r.output)
    assert data["config"]["ari"]["password"]["value"] == "********"


def test_config_check_fails_on_bad_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[smtp]\ntls = "sometimes"\n')
    r = CliRunner().invoke(main, ["--config", str(f), "config", "check"])
    assert r.exit_code == 1 and "[smtp] tls" in r.output


def test_example_file_is_current_and_valid():
    example = ROOT / "callgate.example.toml"
    assert example.read_text() == cfgmod.example_toml()
    cfgmod.load(str(example), environ={})


@pytest.mark.parametrize("listen", ["127.0.0.1:٨٠٨٠", "127.0.0.1:８０"])
def test_listen_addresses_take_ascii_digits_only(listen):
    with pytest.raises(cfgmod.ConfigError, match=r"\[web\] listen"):
        cfgmod.load(None, {"CALLGATE_WEB_LISTEN": listen})
    from callgate.web.app import WebSettings

    with pytest.raises(ValueError):
        WebSettings(listen=listen).listen_host_port()


@pytest.mark.parametrize("value", ["٣", "１０"])
def test_whole_numbers_take_ascii_digits_only(value):
    with pytest.raises(cfgmod.ConfigError, match=r"\[agi\] read_timeout|\[smtp\] port"):
        cfgmod.load(None, {"CALLGATE_SMTP_PORT": value, "CALLGATE_AGI_READ_TIMEOUT": value})
