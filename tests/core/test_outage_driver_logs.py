"""PostgreSQL going away under a running core: the drivers' own pool warnings are one line (no
traceback) and at most one a minute, and calls are refused with billing_unavailable meanwhile."""
from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit, urlunsplit

import pytest

from billing_core.api import BillingCore
from billing_core.domain.errors import DenyReason
from tests.factories import seed


class TcpProxy:
    """127.0.0.1:<port> → the real PostgreSQL, with a switch that cuts every connection."""

    def __init__(self, host: str, port: int):
        self.upstream = (host, port)
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_writer]

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        for w in self.writers:
            w.transport.abort()
        self.writers = []


async def test_postgres_outage_gives_one_line_driver_warnings_and_refusals(db_url, caplog):
    if not db_url.startswith("postgresql"):
        pytest.skip("a network outage is a PostgreSQL matter")
    parts = urlsplit(db_url)
    proxy = TcpProxy(parts.hostname, parts.port or 5432)
    await proxy.start()
    core = await BillingCore.open(urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}")))
    try:
        await core.create_schema()
        await seed(core)
        first = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice",
                                          pbx_id="p", channel_id="before")
        assert first.allowed
        caplog.set_level(logging.DEBUG)
        for name in ("sqlalchemy.engine", "asyncio"):
            logging.getLogger(name).setLevel(logging.WARNING)
        await proxy.cut()
        for i in range(10):
            a = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice",
                                          pbx_id="p", channel_id=f"during-{i}")
            assert not a.allowed and a.reason == DenyReason.BILLING_UNAVAILABLE
            await asyncio.sleep(0.3)  # asyncpg's pool retries its floor meanwhile (1 s, 2 s, …)
        await proxy.start()  # same port: the database is back
        again = await core.authorize_call(direction="outbound", number="15145550100", endpoint="alice",
                                          pbx_id="p", channel_id="after")
        assert again.reason != DenyReason.BILLING_UNAVAILABLE
    finally:
        await core.close()
        await proxy.cut()
    driver = [r for r in caplog.records if r.name.startswith(("asyncpg", "sqlalchemy.pool"))]
    assert len(driver) <= 2, [r.getMessage() for r in driver]
    assert not any(r.exc_info for r in caplog.records), [r.getMessage() for r in caplog.records if r.exc_info]
