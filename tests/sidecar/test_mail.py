"""Templates and the SMTP sender against a real aiosmtpd server on 127.0.0.1."""
from __future__ import annotations

import pytest

from billing_core.mail.render import KINDS, MailSite, Renderer, TemplateProblem
from billing_core.mail.smtp import SmtpSender, SmtpSettings

from .smtpd import SmtpServer, free_port

FACTS = {
    "account_ref": "acme", "account_name": "Acme <Corp>", "currency": "CAD", "balance": "4.00", "threshold": "5.00",
    "amount": "25.00", "reference": "PAYPAL-123", "reason": "PayPal top-up", "dids": ["+15145551000", "+15145551001"],
    "release_date": "2026-12-12", "depleted_date": "2026-11-28", "released_date": "2026-12-12",
    "reset_url": "https://voip.example.test/reset/abc", "expires_minutes": 60,
    "detail": "more than 10 refused attempts to blocked destinations in 60 min",  # fraud_suspected*
}


def test_every_kind_renders_subject_text_and_html():
    r = Renderer(site=MailSite(client_area_url="https://voip.example.test/client"))
    for kind in KINDS:
        mail = r.render(kind, FACTS)
        assert mail.subject and "\n" not in mail.subject
        assert "Acme <Corp>" in mail.text
        assert "Acme &lt;Corp&gt;" in mail.html and "Acme <Corp>" not in mail.html  # autoescaped


def test_low_balance_states_balance_threshold_and_how_to_top_up():
    mail = Renderer().render("low_balance", FACTS)
    assert "4.00" in mail.subject and "5.00" in mail.subject and "Low balance" in mail.subject
    for part in (mail.text, mail.html):
        assert "4.00" in part and "5.00" in part and "CAD" in part
        assert "Client Area" in part and "Credit Balance" in part and "Add Funds" in part
        assert "25.00" in part and "1000.00" in part and "PayPal" in part


def test_pre_suspension_names_each_did_and_the_release_date():
    mail = Renderer().render("pre_suspension", FACTS)
    assert "2026-12-12" in mail.subject
    for part in (mail.text, mail.html):
        assert "+15145551000" in part and "+15145551001" in part and "2026-12-12" in part


def test_receipt_and_depleted_subjects_say_what_happened():
    r = Renderer()
    assert r.render("topup_receipt", FACTS).subject == "Payment received: 25.00 CAD added to your balance"
    assert r.render("depleted", FACTS).subject.startswith("Balance depleted")
    assert r.render("dids_released", FACTS).subject.startswith("Account suspended")


def test_operator_templates_replace_single_files(tmp_path):
    (tmp_path / "low_balance.subject.txt").write_text("Only {{ balance }} left")
    r = Renderer(tmp_path)
    mail = r.render("low_balance", FACTS)
    assert mail.subject == "Only 4.00 left"
    assert "Credit Balance" in mail.text  # the other files still come from the package


def test_template_problems_are_clear():
    r = Renderer()
    with pytest.raises(TemplateProblem, match="no_such_kind.subject.txt: template not found"):
        r.render("no_such_kind", FACTS)
    with pytest.raises(TemplateProblem, match="low_balance.subject.txt: 'threshold' is undefined"):
        r.render("low_balance", {k: v for k, v in FACTS.items() if k != "threshold"})
    with pytest.raises(TemplateProblem, match="CALLGATE_MAIL_TEMPLATES"):
        Renderer("/nonexistent/dir")


def smtp_settings(environ) -> SmtpSettings:
    """SmtpSettings through the one configuration path ([smtp]: file + environment)."""
    from callgate import config as cfgmod

    return cfgmod.smtp_settings(cfgmod.load(None, environ=environ))


def test_smtp_settings_from_env_name_the_variable():
    from callgate.config import ConfigError

    s = smtp_settings({"CALLGATE_SMTP_HOST": "mx", "CALLGATE_SMTP_PORT": "2525", "CALLGATE_SMTP_TLS": "STARTTLS",
                               "CALLGATE_MAIL_FROM": "billing@voip.test"})
    assert (s.host, s.port, s.tls, s.mail_from) == ("mx", 2525, "starttls", "billing@voip.test")
    with pytest.raises(ConfigError, match="CALLGATE_SMTP_TLS"):
        smtp_settings({"CALLGATE_SMTP_TLS": "ssl"})
    with pytest.raises(ConfigError, match="CALLGATE_SMTP_PORT"):
        smtp_settings({"CALLGATE_SMTP_PORT": "x"})


def _sender(port: int) -> SmtpSender:
    return SmtpSender(SmtpSettings(host="127.0.0.1", port=port, mail_from="billing@voip.test", timeout=5))


async def test_delivered_message_has_text_and_html_parts(smtp_server):
    mail = Renderer().render("low_balance", FACTS)
    outcome = await _sender(smtp_server.port).send("acme@example.test", mail, message_id_key="acme.low_balance.1")
    assert outcome.delivered
    [got] = smtp_server.received
    assert got.rcpt_tos == ["acme@example.test"] and got.mail_from == "billing@voip.test"
    assert got.subject == mail.subject
    assert "4.00" in got.part("plain") and "<table>" in got.part("html")
    assert got.message["Message-ID"] == "<acme.low_balance.1@voip.test>"


async def test_4xx_is_retry_and_5xx_is_rejected_with_the_reason(smtp_server):
    smtp_server.handler.replies = ["451 4.3.0 try again later", "550 5.1.1 no such mailbox"]
    mail = Renderer().render("depleted", FACTS)
    first = await _sender(smtp_server.port).send("a@example.test", mail)
    assert first.status == "retry" and "451" in first.reason and not first.unreachable
    second = await _sender(smtp_server.port).send("a@example.test", mail)
    assert second.status == "rejected" and "550" in second.reason and "no such mailbox" in second.reason
    assert smtp_server.received == []


async def test_server_down_is_retry_unreachable():
    outcome = await _sender(free_port()).send("a@example.test", Renderer().render("depleted", FACTS))
    assert outcome.status == "retry" and outcome.unreachable and "connect" in outcome.reason


async def test_recipient_refusals_4xx_retry_5xx_rejected(smtp_server):
    smtp_server.handler.rcpt_replies = ["450 4.2.1 mailbox busy", "550 5.1.1 unknown user"]
    mail = Renderer().render("depleted", FACTS)
    busy = await _sender(smtp_server.port).send("a@example.test", mail)
    assert busy.status == "retry" and "450" in busy.reason
    unknown = await _sender(smtp_server.port).send("a@example.test", mail)
    assert unknown.status == "rejected" and "550" in unknown.reason and "unknown user" in unknown.reason
    assert (await _sender(smtp_server.port).send("a@example.test", mail)).delivered


@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_starttls_and_implicit_tls(tmp_path, mode):
    from .smtpd import self_signed_context

    server = await SmtpServer(tls=mode, ssl_context=self_signed_context(tmp_path)).start()
    try:
        settings = SmtpSettings(host="127.0.0.1", port=server.port, mail_from="billing@voip.test", tls=mode,
                                timeout=5, validate_certs=False)
        outcome = await SmtpSender(settings).send("a@example.test", Renderer().render("depleted", FACTS))
        assert outcome.delivered, outcome
        assert len(server.received) == 1
        plain = SmtpSettings(host="127.0.0.1", port=server.port, mail_from="billing@voip.test", tls="none", timeout=1)
        refused = await SmtpSender(plain).send("a@example.test", Renderer().render("depleted", FACTS))
        assert not refused.delivered and len(server.received) == 1  # the server insists on TLS
    finally:
        await server.stop()
