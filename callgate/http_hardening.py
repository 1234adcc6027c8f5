"""What every aiohttp server of callgate (client area, operator listener) does the same way.

* No framework or Python version in the ``Server`` header: it only helps someone pick exploits.
  aiohttp writes its own name into every response it prepares, including the ones its protocol
  layer makes for requests it cannot parse (no application hook runs for those), so the module
  constant it reads is replaced once, here.
* Requests aiohttp cannot parse (an oversized Cookie header, a malformed line) are logged as one
  INFO line naming the client and the kind of error, without the exception text: aiohttp's message
  quotes the offending header, and a Cookie header carries a live session token. Why INFO: anyone
  on the internet can send them; they are noise, not something an operator must act on.
"""
from __future__ import annotations

import logging

SERVER_NAME = "callgate"


class _RequestErrorFilter(logging.Filter):
    """Rewrites aiohttp's "Error handling request" records for unparseable requests."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "-"
            record.msg = "bad request from %s: %s (HTTP %s)"
            record.args = (remote, type(exc).__name__, getattr(exc, "code", 400))
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_FILTER = _RequestErrorFilter()


def harden_aiohttp_servers() -> None:
    """Idempotent: call before serving any aiohttp application."""
    import aiohttp.web_response

    aiohttp.web_response.SERVER_SOFTWARE = SERVER_NAME
    server_log = logging.getLogger("aiohttp.server")
    if _FILTER not in server_log.filters:
        server_log.addFilter(_FILTER)


__all__ = ["SERVER_NAME", "harden_aiohttp_servers"]
