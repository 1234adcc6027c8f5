from __future__ import annotations

import pytest

from .smtpd import SmtpServer


@pytest.fixture
async def smtp_server():
    server = await SmtpServer().start()
    try:
        yield server
    finally:
        await server.stop()
