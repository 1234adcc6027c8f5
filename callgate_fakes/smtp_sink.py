"""A local SMTP sink for the demo: accepts every message on 127.0.0.1 and writes it to a folder
(one .eml file per message), so the demo's emails can be read with any mail client or `cat`."""
from __future__ import annotations

import itertools
import socket
import time
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller


class _Handler:
    def __init__(self, folder: Path):
        self.folder = folder
        self.counter = itertools.count(1)
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        n = next(self.counter)
        msg = message_from_bytes(envelope.content, policy=policy.default)
        subject = str(msg.get("Subject", ""))
        slug = "".join(ch if ch.isalnum() else "-" for ch in subject.lower())[:50].strip("-")
        path = self.folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{n:03d}-{slug or 'message'}.eml"
        path.write_bytes(envelope.content)
        self.messages.append({"to": list(envelope.rcpt_tos), "subject": subject, "path": str(path)})
        return "250 Message accepted for delivery"


class SmtpSink:
    """``sink = SmtpSink(folder); sink.start(); sink.port; sink.messages; sink.stop()``."""

    def __init__(self, folder: str | Path, host: str = "127.0.0.1", port: int = 0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.handler = _Handler(self.folder)
        self._controller = Controller(self.handler, hostname=host, port=port or _free_port(host))

    @property
    def port(self) -> int:
        return self._controller.port

    @property
    def messages(self) -> list[dict]:
        return self.handler.messages

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
