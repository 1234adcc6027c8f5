"""The mail layer is the last line of defence against header injection (issue 15): a message whose
address or subject carries a control character is never sent."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from billing_core.domain.errors import InvalidInput
from billing_core.mail.render import RenderedMail, Renderer
from billing_core.mail.smtp import SmtpSender, SmtpSettings, SmtpSettingsError, build_message
from callgate import config as cfgmod
from callgate.cli import main

from .test_mail import FACTS

SETTINGS = SmtpSettings(host="127.0.0.1", port=25, mail_from="billing@voip.test", timeout=5)


@pytest.mark.parametrize("to_addr", ["acme@example.test\n", "acme@example.test\r\nBcc: x@evil.test", "acme@example.test\x00",
                                     "acme@example.test\u2028"])
async def test_an_address_with_a_control_character_is_rejected_and_nothing_is_sent(smtp_server, to_addr):
    with pytest.raises(InvalidInput, match="To header"):
        build_message(SETTINGS, to_addr, Renderer().render("topup_receipt", FACTS))
    sender = SmtpSender(SmtpSettings(host="127.0.0.1", port=smtp_server.port, mail_from="billing@voip.test", timeout=5))
    outcome = await sender.send(to_addr, Renderer().render("topup_receipt", FACTS))
    assert outcome.status == "rejected" and "control character" in outcome.reason
    assert smtp_server.received == []


def test_a_subject_with_a_newline_cannot_be_built():
    mail = RenderedMail(subject="Receipt\nBcc: x@evil.test", text="t", html="<p>t</p>")
    with pytest.raises(InvalidInput, match="Subject header"):
        build_message(SETTINGS, "acme@example.test", mail)


@pytest.mark.parametrize("bad", ["billing@voip.test\n", "billing@voip.test\r\nX: y", "billing@voip.test\x00"])
def test_the_from_address_is_checked_in_settings_and_in_the_configuration(bad, tmp_path, monkeypatch):
    with pytest.raises(SmtpSettingsError, match="CALLGATE_MAIL_FROM"):
        SmtpSettings(mail_from=bad)
    with pytest.raises(cfgmod.ConfigError, match=r"\[smtp\] mail_from"):
        cfgmod.load(None, environ={"CALLGATE_MAIL_FROM": bad})
    f = tmp_path / "c.toml"
    f.write_text('[smtp]\nmail_from = ' + json.dumps(bad) + '\n')
    for var in [v for v in __import__("os").environ if v.startswith("CALLGATE_")]:
        monkeypatch.delenv(var)
    r = CliRunner().invoke(main, ["--config", str(f), "config", "check"])
    assert r.exit_code == 1 and "[smtp] mail_from" in r.output and "control character" in r.output
    assert SmtpSettings(mail_from="callgate@localhost").mail_from == "callgate@localhost"  # the default stays valid


def test_no_configuration_string_may_carry_a_control_character():
    with pytest.raises(cfgmod.ConfigError, match=r"\[ari\] user\): must not contain a control character"):
        cfgmod.load(None, environ={"CALLGATE_ARI_USER": "callgate\n"})
