"""Our own asyncio FastAGI server (pyst2's FastAGI is broken on Python 3; panoramisk blocks the loop
on half-open clients).

One task per connection, each bounded by a per-read and a per-session timeout, so a silent or
half-open client only ever costs its own task. Framing follows the recorded Asterisk 22
conversations (/work/shared/agi/traces):

* the ``agi_*`` environment block comes first: ``agi_key: value\\n`` lines (an empty value keeps
  the blank after the colon), ended by an empty line; bare ``\\n`` line ends;
* every command gets one reply line ``200 result=<n>[ (<data>)]`` (``520-`` usage replies span
  lines up to ``520 …``); ``511 …`` means the channel is dead;
* ``HANGUP\\n`` is pushed unprompted when the channel hangs up, even between a command and its
  reply; Asterisk then keeps the session open until we close it, so we close promptly after the
  last command (a DENY's Hangup() in the dialplan only runs once we have closed).

Anything that is not that — garbage, a truncated block, a peer that stops talking — gets one
clear log line and the connection closed; the call is refused because CALLGATE_STATUS never reads
ALLOW (and when the block was complete, DENY billing_unavailable is set explicitly).
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from billing_core.log_limits import RateLimitedLog, quiet_accept_errors

from .keepalive import KeepaliveSettings, keepalive_loop
from .ports import BillingCorePort
from .protocol import (
    HANGUP_LINE, MAX_ENV_LINES, MAX_LINE_BYTES, AgiRequest, ProtocolError, Reply, build_request,
    parse_env_line, parse_reply, set_variable_command,
)
from .routes import Router
from .settings import AgiSettings

log = logging.getLogger("callgate.agi")


class PeerGone(ConnectionError):
    """Asterisk closed the connection (or it broke) before the exchange finished."""


class PeerSilent(TimeoutError):
    """No line from the peer within the read timeout."""


class FastAgiConversation:
    """One FastAGI connection: line reads with a timeout, commands and their replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, read_timeout: float):
        self.reader = reader
        self.writer = writer
        self.read_timeout = read_timeout
        self._hung_up = False
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.sent: list[str] = []
        """Commands sent, for logs and tests."""

    @property
    def hung_up(self) -> bool:
        return self._hung_up

    async def read_line(self) -> str:
        """One line without its ``\\n`` (a trailing ``\\r`` is dropped too)."""
        try:
            async with asyncio.timeout(self.read_timeout):  # no task per read (wait_for makes one)
                raw = await self.reader.readuntil(b"\n")
        except TimeoutError:
            raise PeerSilent(f"nothing from {self.peer} within {self.read_timeout:g}s") from None
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise PeerGone(f"{self.peer} closed the connection in the middle of a line: {exc.partial[:80]!r}") from None
            raise PeerGone(f"{self.peer} closed the connection") from None
        except asyncio.LimitOverrunError:
            raise PeerGone(f"line longer than {MAX_LINE_BYTES} bytes from {self.peer}: not Asterisk") from None
        except (ConnectionError, OSError) as exc:
            raise PeerGone(f"connection to {self.peer} broke: {exc}") from None
        text = raw[:-1].decode("utf-8", errors="replace")
        return text[:-1] if text.endswith("\r") else text

    async def read_request(self) -> AgiRequest:
        """The environment block; ProtocolError (complete block, bad content) or PeerGone/PeerSilent."""
        pairs: list[tuple[str, str]] = []
        problem: str | None = None
        for lineno in range(1, MAX_ENV_LINES + 2):
            try:
                line = await self.read_line()
            except (PeerGone, PeerSilent) as exc:
                raise type(exc)(f"environment block truncated after {len(pairs)} line(s): {exc}") from None
            if line == "":
                if problem:
                    raise ProtocolError(problem)
                if not pairs:
                    raise ProtocolError("empty environment block")
                return build_request(pairs)
            if lineno > MAX_ENV_LINES:
                raise PeerGone(f"environment block longer than {MAX_ENV_LINES} lines: not Asterisk")
            try:
                pairs.append(parse_env_line(line, lineno))
            except ProtocolError as exc:
                problem = problem or str(exc)  # keep reading to the blank line, then refuse
        raise PeerGone(f"environment block longer than {MAX_ENV_LINES} lines: not Asterisk")  # pragma: no cover

    async def command(self, line: str) -> Reply:
        """Send one command, return its reply; ``HANGUP`` lines before it are noted, not replies."""
        try:
            self.writer.write(line.encode() + b"\n")
            async with asyncio.timeout(self.read_timeout):
                await self.writer.drain()
        except TimeoutError:
            raise PeerSilent(f"{self.peer} does not read") from None
        except (ConnectionError, OSError) as exc:
            raise PeerGone(f"connection to {self.peer} broke: {exc}") from None
        self.sent.append(line)
        while True:
            text = await self.read_line()
            if text == HANGUP_LINE:
                self._hung_up = True
                continue
            if text.startswith("520-"):  # usage: lines up to "520 End of proper usage."
                lines = [text]
                while not (text := await self.read_line()).startswith("520 "):
                    lines.append(text)
                lines.append(text)
                return Reply(520, None, None, "\n".join(lines))
            reply = parse_reply(text)
            if reply.dead_channel:
                self._hung_up = True
            return reply

    async def set_variable(self, name: str, value: str) -> Reply:
        reply = await self.command(set_variable_command(name, value))
        if not reply.ok:
            log.warning("SET VARIABLE %s: Asterisk replied %r", name, reply.text, extra={"peer": self.peer})
        return reply

    async def close(self) -> None:
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            self.writer.transport.abort()


class FastAgiServer:
    """``async with FastAgiServer(router, settings) as srv:`` listens on settings.host:port
    (srv.port is the bound port)."""

    def __init__(self, router: Router, settings: AgiSettings):
        self.router = router
        self.settings = settings
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.sessions_done = 0
        """Sessions finished, whatever their outcome (tests and the benchmark read it)."""
        self.host = settings.host
        self.port = settings.port
        self.refused = 0
        """Connections closed at once because max_connections were being served."""
        # A flood of connections (or of peers that never speak) is one line a minute, not one each.
        self._log_refused = RateLimitedLog(log)
        self._log_idle = RateLimitedLog(log)

    async def start(self) -> None:
        # asyncio logs every failed accept() with a traceback, each second while out of descriptors.
        quiet_accept_errors(asyncio.get_running_loop(), log, "lower CALLGATE_AGI_MAX_CONNECTIONS or raise LimitNOFILE")
        self._server = await asyncio.start_server(
            self._accept, self.settings.host, self.settings.port, limit=MAX_LINE_BYTES, backlog=1024,
        )
        sock = self._server.sockets[0].getsockname()
        self.host, self.port = sock[0], sock[1]
        log.info("FastAGI server listening on %s:%d", self.host, self.port)
        if not _is_loopback(self.host):
            # FastAGI has no authentication: whoever connects can hold money or settle sessions.
            log.warning("FastAGI server listens on %s, not loopback: firewall it to the Asterisk hosts only", self.host)

    async def close(self, grace_seconds: float = 0.0) -> None:
        """Stop accepting; requests in progress get up to ``grace_seconds`` to finish (a settle
        being answered is not cut off by a SIGTERM), then the rest are cancelled."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._tasks and grace_seconds > 0:
            log.info("FastAGI server draining: %d request(s) in progress", len(self._tasks))
            await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.router.drain(self.settings.decision_timeout)  # late grants still get released

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> "FastAgiServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._tasks) >= self.settings.max_connections:
            # Closed at once, before a task or a read: idle or hostile peers cannot hold more.
            self.refused += 1
            writer.transport.abort()
            self._log_refused("FastAGI connection limit reached: %d connections at once "
                              "(CALLGATE_AGI_MAX_CONNECTIONS); new connections are closed", self.settings.max_connections)
            return
        task = asyncio.ensure_future(self._session(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conv = FastAgiConversation(reader, writer, self.settings.read_timeout)
        req: AgiRequest | None = None
        try:
            async with asyncio.timeout(self.settings.session_timeout):
                try:
                    req = await conv.read_request()
                except ProtocolError as exc:
                    log.error("bad AGI environment from %s: %s: call refused", conv.peer, exc)
                    await self.router.refuse(conv)
                    return
                await self.router.dispatch(req, conv)
        except TimeoutError as exc:
            if isinstance(exc, PeerSilent) and req is None:  # connected, never sent a request: maybe many
                self._log_idle("AGI connection from %s sent no request: %s: closed", conv.peer, exc)
            elif isinstance(exc, PeerSilent):
                log.warning("AGI session %s: %s: closed", _what(req), exc, extra={"peer": conv.peer})
            else:
                log.warning("AGI session %s took longer than %gs: closed", _what(req), self.settings.session_timeout,
                            extra={"peer": conv.peer})
        except PeerGone as exc:
            if req is None:
                self._log_idle("AGI connection from %s sent no request: %s", conv.peer, exc)
            else:
                log.warning("AGI session %s: %s", _what(req), exc, extra={"peer": conv.peer})
        except ProtocolError as exc:
            log.error("AGI session %s: %s: closed", _what(req), exc, extra={"peer": conv.peer})
        except asyncio.CancelledError:
            raise
        except Exception:  # never let one session take the server down
            log.exception("AGI session %s failed", _what(req), extra={"peer": conv.peer})
        finally:
            await conv.close()
            self.sessions_done += 1


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _what(req: AgiRequest | None) -> str:
    if req is None:
        return "(no environment yet)"
    return f"{req.route} {req.channel} {','.join(req.args)}"


async def serve(core: BillingCorePort, settings: AgiSettings, *, stop: asyncio.Event | None = None,
                keepalive: KeepaliveSettings | None = None, grace_seconds: float = 0.0) -> None:
    """Run the FastAGI server on ``core`` until ``stop`` is set (or forever), reporting its live
    calls to the core so the sidecar does not settle them as stale (agi.keepalive). Once ``stop``
    is set it stops accepting and gives requests in progress up to ``grace_seconds``."""
    router = Router(core, pbx_id=settings.pbx_id, decision_timeout=settings.decision_timeout)
    server = FastAgiServer(router, settings)
    await server.start()
    reporter = asyncio.ensure_future(keepalive_loop(core, settings.pbx_id, keepalive or KeepaliveSettings()))
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        try:
            await server.close(grace_seconds)
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
