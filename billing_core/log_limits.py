"""Log lines that stay few when the same thing happens thousands of times: a rate-limited warning,
and an outage logged once per state change. Shared by the gate, the sidecar and the FastAGI server.

Why: an expected condition that repeats (a database outage seen by a once-a-second pass, a flood of
connections) must not bury the journal in identical tracebacks; the operator needs to know when it
started, that it goes on, and when it ended.
"""
from __future__ import annotations

import logging
import time
from typing import Callable


class RateLimitedLog:
    """At most one line per ``interval`` seconds; the next line says how many were left out."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0, *, level: int = logging.WARNING,
                 monotonic: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.interval = interval
        self.level = level
        self._monotonic = monotonic
        self._next_at = float("-inf")
        self.suppressed = 0
        self.total = 0

    def __call__(self, msg: str, *args, **kwargs) -> bool:
        """Log ``msg`` unless a line went out less than ``interval`` ago; True when it was logged."""
        self.total += 1
        now = self._monotonic()
        if now < self._next_at:
            self.suppressed += 1
            return False
        if self.suppressed:
            msg = f"{msg} ({self.suppressed} more like this in the last {self.interval:g} s not logged)"
            self.suppressed = 0
        self._next_at = now + self.interval
        self.logger.log(self.level, msg, *args, **kwargs)
        return True


class OutageLog:
    """One line when a dependency goes down, one every ``repeat`` seconds while it stays down, one
    when it is back — never a traceback for the expected failure (the caller passes its text)."""

    def __init__(self, logger: logging.Logger, what: str, *, repeat: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.what = what
        self.repeat = repeat
        self._monotonic = monotonic
        self.down_since: float | None = None
        self._next_reminder = 0.0
        self.failures = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, error: object, *, extra: dict | None = None) -> None:
        now = self._monotonic()
        self.failures += 1
        if self.down_since is None:
            self.down_since = now
            self._next_reminder = now + self.repeat
            self.logger.error("%s: database unavailable (%s); retrying", self.what, error, extra=extra)
        elif now >= self._next_reminder:
            self._next_reminder = now + self.repeat
            self.logger.error("%s: database still unavailable after %.0f s (%d failed attempts; last: %s)",
                              self.what, now - self.down_since, self.failures, error, extra=extra)

    def ok(self) -> None:
        if self.down_since is None:
            return
        self.logger.warning("%s: database back after %.0f s (%d failed attempts)", self.what,
                            self._monotonic() - self.down_since, self.failures)
        self.down_since = None
        self.failures = 0


class OneLineDriverWarnings(logging.Filter):
    """For a database driver's own logger: its warnings and errors become one line each (the
    exception's text instead of a traceback), and the same message at most once per ``interval``
    seconds. asyncpg's pool, for one, logs "Failed to restore the pool connection floor" with a
    full traceback on every retry while the database is down."""

    def __init__(self, interval: float = 60.0, *, monotonic: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval = interval
        self._monotonic = monotonic
        self._next_at: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        now = self._monotonic()
        if now < self._next_at.get(message, float("-inf")):
            return False
        self._next_at[message] = now + self.interval
        if record.exc_info and record.exc_info[1] is not None:
            record.msg, record.args = f"{message}: {record.exc_info[1]!r}", ()
            record.exc_info, record.exc_text = None, None
        return True


# What asyncio reports (with a traceback, at ERROR, then retries each second) each time accept()
# fails for lack of file descriptors — for every server on the loop (FastAGI, aiohttp).
ACCEPT_OUT_OF_RESOURCES = "socket.accept() out of system resource"


class QuietAcceptErrors:
    """A loop exception handler: accept() out of descriptors is one warning a minute without a
    traceback; everything else goes to the handler that was there before."""

    def __init__(self, logger: logging.Logger, hint: str, previous: Callable | None):
        self.hint = hint
        self.previous = previous
        self.log = RateLimitedLog(logger)

    def __call__(self, loop, context: dict) -> None:
        if context.get("message") == ACCEPT_OUT_OF_RESOURCES:
            self.log("cannot accept connections: %s (out of file descriptors: %s)", context.get("exception"), self.hint)
            return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)


def quiet_accept_errors(loop, logger: logging.Logger, hint: str = "raise LimitNOFILE") -> None:
    """Install :class:`QuietAcceptErrors` on ``loop`` once (later calls keep the first)."""
    if not isinstance(loop.get_exception_handler(), QuietAcceptErrors):
        loop.set_exception_handler(QuietAcceptErrors(logger, hint, loop.get_exception_handler()))


def quiet_driver_logger(name: str, interval: float = 60.0) -> None:
    """Install :class:`OneLineDriverWarnings` on logger ``name`` once."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, OneLineDriverWarnings) for f in logger.filters):
        logger.addFilter(OneLineDriverWarnings(interval))


__all__ = ["ACCEPT_OUT_OF_RESOURCES", "OneLineDriverWarnings", "OutageLog", "QuietAcceptErrors", "RateLimitedLog",
           "quiet_accept_errors", "quiet_driver_logger"]
