"""A real SMTP server (aiosmtpd) on 127.0.0.1 for the outbox tests, scriptable per message."""
from __future__ import annotations

import asyncio
import email
import socket
from dataclasses import dataclass, field
from email import policy

from aiosmtpd.smtp import SMTP


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        return body.get_content() if body is not None else ""


@dataclass
class ScriptedHandler:
    """Answers DATA from ``replies`` (one per message, then 250) and keeps what it accepted."""

    replies: list[str] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)
    """Answers to RCPT TO (one per recipient, then 250)."""
    received: list[Received] = field(default_factory=list)
    data_commands: int = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_replies:
            reply = self.rcpt_replies.pop(0)
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_commands += 1
        if self.replies:
            reply = self.replies.pop(0)
            if not reply.startswith("250"):
                return reply
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK accepted"


def free_port() -> int:
    """A port nothing listens on (yet): "the SMTP server is down" until :meth:`SmtpServer.start`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    """aiosmtpd on the test's event loop, bound to 127.0.0.1."""

    def __init__(self, port: int = 0, *, tls: str = "none", ssl_context=None):
        self.port = port
        self.tls = tls
        """``none``, ``starttls`` (offered after EHLO) or ``tls`` (implicit, from the first byte)."""
        self.ssl_context = ssl_context
        self.handler = ScriptedHandler()
        self._server: asyncio.AbstractServer | None = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    async def start(self) -> "SmtpServer":
        loop = asyncio.get_running_loop()
        starttls = self.ssl_context if self.tls == "starttls" else None
        implicit = self.ssl_context if self.tls == "tls" else None
        self._server = await loop.create_server(
            lambda: SMTP(self.handler, hostname="mx.test", tls_context=starttls, require_starttls=starttls is not None),
            "127.0.0.1", self.port, ssl=implicit)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


class ThreadedSmtpServer:
    """The same server on its own event loop in a thread, for synchronous tests (click's runner)."""

    def __init__(self):
        import threading

        self.server = SmtpServer()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="smtpd", daemon=True)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def handler(self) -> ScriptedHandler:
        return self.server.handler

    def __enter__(self) -> "ThreadedSmtpServer":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def self_signed_context(tmp_path):
    """A server TLS context with a throw-away self-signed certificate for 127.0.0.1."""
    from tests.tls import server_context

    return server_context(tmp_path, "mx.test")[0]
