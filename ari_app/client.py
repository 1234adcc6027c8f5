"""AriClient: one Stasis application's ARI connection, the events stream and REST composed.

* :mod:`ari_app.events` (``AriEvents``): the events WebSocket — connect, reconnect with backoff,
  resync hooks, events dropped unparsed, each event handed to ``on_event_now`` handlers in arrival
  order. The client keeps no per-key queues or workers: per-call ordering is the gate's per-call
  inbox (ari_app.calls), the one event-ordering mechanism.
* :mod:`ari_app.rest` (``AriRest``): typed REST requests on keep-alive HTTP/1.1 connections.

``AriClient(base_url, user, password, app, ...)`` offers both under one name, as callers have always
used it (``client.run()``, ``client.on_event_now(...)``, ``client.hangup(...)``, ``client.connected``):
an attribute not defined here is the REST side's, else the events side's. Each new events connection
makes the REST side forget what it learnt of the previous Asterisk (``array_function``).
"""
from __future__ import annotations

from typing import Any

import aiohttp

from ari_app.errors import AriError
from ari_app.events import AriEvents, backoff_delay
from ari_app.rest import AriRest


class AriClient:
    """ARI REST + events for one Stasis application."""

    def __init__(
        self,
        base_url: str,
        user: str,
        password: str,
        app: str,
        *,
        subscribe_all: bool = False,
        http_session: aiohttp.ClientSession | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        request_timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app = app
        self.events = AriEvents(base_url, user, password, app, subscribe_all=subscribe_all, http_session=http_session,
                                backoff_initial=backoff_initial, backoff_max=backoff_max)
        self.rest = AriRest(base_url, user, password, app, request_timeout=request_timeout)
        self.events.on_new_connection(self.rest.forget_asterisk)

    def __getattr__(self, name: str) -> Any:
        # only reached for names not defined here: REST helpers first, then the events stream's API
        if name in ("events", "rest"):  # not yet set (during __init__): never recurse
            raise AttributeError(name)
        try:
            return getattr(self.rest, name)
        except AttributeError:
            return getattr(self.events, name)

    async def stop(self) -> None:
        """Stop the events stream (stop reconnecting, close the socket)."""
        await self.events.stop()

    async def close(self) -> None:
        """Stop the events stream, close the REST connections, and the HTTP session if owned."""
        await self.events.close()
        await self.rest.close()

    async def __aenter__(self) -> "AriClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


__all__ = ["AriClient", "AriError", "backoff_delay"]
