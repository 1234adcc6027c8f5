"""Sending one email with aiosmtplib; the outcome is a value, never an exception.

Three outcomes, because the outbox acts differently on each:

* ``delivered`` — the server accepted the message (250 after DATA). Only then is an alert "sent".
* ``retry`` — worth trying again later: the server is unreachable, the connection dropped, a
  timeout, or a 4xx answer (greylisting, mailbox busy, "try again later").
  ``unreachable`` tells the outbox that the server itself is down, so it stops the pass instead of
  knocking once per queued message.
* ``rejected`` — a permanent 5xx answer (unknown mailbox, policy, bad auth): retrying cannot help;
  the alert is marked failed with the server's reason and an operator can re-queue it.
"""
from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from ..domain.errors import InvalidInput
from ..domain.identifiers import check_email, check_header_value
from .render import RenderedMail

TLS_MODES = ("none", "starttls", "tls")


class SmtpSettingsError(ValueError):
    """A CALLGATE_SMTP_* value is not acceptable; the message names the variable."""


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how alert emails are sent."""

    host: str = "127.0.0.1"
    """CALLGATE_SMTP_HOST."""
    port: int = 25
    """CALLGATE_SMTP_PORT."""
    user: str = ""
    """CALLGATE_SMTP_USER; empty: no AUTH."""
    password: str = ""
    """CALLGATE_SMTP_PASSWORD."""
    tls: str = "none"
    """CALLGATE_SMTP_TLS: ``none``, ``starttls`` (upgrade after connect) or ``tls`` (implicit TLS)."""
    mail_from: str = "callgate@localhost"
    """CALLGATE_MAIL_FROM: envelope sender and From: header."""
    timeout: float = 30.0
    """Seconds for connecting and for each SMTP reply (CALLGATE_SMTP_TIMEOUT)."""
    validate_certs: bool = True
    """Verify the server's certificate with TLS (CALLGATE_SMTP_VALIDATE_CERTS=false for a lab)."""

    def __post_init__(self) -> None:
        if self.tls not in TLS_MODES:
            raise SmtpSettingsError(f"CALLGATE_SMTP_TLS: must be one of none, starttls, tls (got {self.tls!r})")
        if not (0 < int(self.port) < 65536):
            raise SmtpSettingsError(f"CALLGATE_SMTP_PORT: must be 1-65535 (got {self.port!r})")
        if not self.host:
            raise SmtpSettingsError("CALLGATE_SMTP_HOST: must not be empty")
        try:
            check_email(self.mail_from, "CALLGATE_MAIL_FROM", dotted_domain=False)
        except InvalidInput as exc:
            raise SmtpSettingsError(str(exc)) from None
        if self.timeout <= 0:
            raise SmtpSettingsError(f"CALLGATE_SMTP_TIMEOUT: must be > 0 (got {self.timeout!r})")


@dataclass(frozen=True)
class SendOutcome:
    """What happened to one message."""

    status: str
    """``delivered``, ``retry`` or ``rejected``."""
    reason: str = ""
    """The server's answer or the connection problem (empty when delivered)."""
    unreachable: bool = False
    """``retry`` because the server could not be reached at all (stop the pass)."""

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"


DELIVERED = SendOutcome("delivered")


def build_message(settings: SmtpSettings, to_addr: str, mail: RenderedMail, *, message_id_key: str | None = None) -> EmailMessage:
    """A multipart/alternative message: the plain-text part first, the HTML part preferred.

    Raises :class:`InvalidInput` when an address or the subject could break out of its header
    (the email library accepts a trailing newline in a header value): the last line of defence
    behind the checks where addresses enter."""
    check_email(settings.mail_from, "From header", dotted_domain=False)
    check_email(to_addr, "To header", dotted_domain=False)
    check_header_value(mail.subject, "Subject")
    if message_id_key is not None:
        check_header_value(message_id_key, "Message-ID")
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = to_addr
    msg["Subject"] = mail.subject
    msg["Date"] = formatdate(localtime=False)
    domain = settings.mail_from.rsplit("@", 1)[-1] or "localhost"
    # A stable Message-ID per alert lets a mail client (or a human) spot the rare duplicate that a
    # crash between "server accepted" and "marked sent" can cause.
    msg["Message-ID"] = f"<{message_id_key}@{domain}>" if message_id_key else make_msgid(domain=domain)
    msg.set_content(mail.text)
    msg.add_alternative(mail.html, subtype="html")
    return msg


class SmtpSender:
    """Sends messages with the configured server; one connection per message (alerts are few)."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings

    async def send(self, to_addr: str, mail: RenderedMail, *, message_id_key: str | None = None) -> SendOutcome:
        s = self.settings
        try:
            msg = build_message(s, to_addr, mail, message_id_key=message_id_key)
        except InvalidInput as exc:  # a bad address or subject: sending the same bytes again cannot help
            return SendOutcome("rejected", f"not sent: {exc}")
        kwargs = dict(
            sender=s.mail_from, recipients=[to_addr], hostname=s.host, port=s.port, timeout=s.timeout,
            use_tls=s.tls == "tls", start_tls=s.tls == "starttls",
            validate_certs=s.validate_certs,
        )
        if s.user:
            kwargs.update(username=s.user, password=s.password)
        try:
            await aiosmtplib.send(msg, **kwargs)
        except Exception as exc:  # classified below; nothing escapes
            return classify(exc)
        return DELIVERED


def classify(exc: BaseException) -> SendOutcome:
    """Turn an aiosmtplib/socket error into an outcome (4xx / connection → retry, 5xx → rejected)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refusals = list(exc.recipients)
        codes = [r.code for r in refusals]
        reason = "; ".join(f"{r.code} {r.message}".strip() for r in refusals) or str(exc)
        if codes and all(500 <= c < 600 for c in codes):
            return SendOutcome("rejected", reason)
        return SendOutcome("retry", reason)
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        # The greeting itself was refused (e.g. 421 "service not available" while a server drains).
        reason = f"{exc.code} {exc.message}".strip()
        if 500 <= exc.code < 600:
            return SendOutcome("rejected", reason)
        return SendOutcome("retry", reason, unreachable=True)
    if isinstance(exc, (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPConnectTimeoutError)):
        return SendOutcome("retry", f"cannot connect: {exc}", unreachable=True)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        code = exc.code
        reason = f"{code} {exc.message}".strip()
        if 500 <= code < 600:
            return SendOutcome("rejected", reason)
        # 4xx, or a connection-level pseudo-code (aiosmtplib uses -1 when the server vanished).
        return SendOutcome("retry", reason if code > 0 else f"connection lost: {exc.message}")
    if isinstance(exc, (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, asyncio.TimeoutError)):
        return SendOutcome("retry", f"connection lost: {exc or type(exc).__name__}")
    if isinstance(exc, (ConnectionError, OSError, ssl.SSLError)):
        return SendOutcome("retry", f"cannot connect: {exc}", unreachable=True)
    if isinstance(exc, aiosmtplib.SMTPException):
        return SendOutcome("retry", str(exc))
    # Anything else is a bug or a bad message; retrying the same bytes will not help.
    return SendOutcome("rejected", f"{type(exc).__name__}: {exc}")


__all__ = ["SmtpSettings", "SmtpSettingsError", "SmtpSender", "SendOutcome", "DELIVERED", "build_message", "classify",
           "TLS_MODES"]
