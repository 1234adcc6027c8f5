"""A keep-alive HTTP/1.1 client for ARI's REST requests: one server, small JSON bodies.

The events WebSocket stays on aiohttp (``AriClient.run``); the REST requests use this instead.

Why: a bridged call is 8 REST requests, and aiohttp's ``ClientSession.request`` machinery
(request/response objects, tracing hooks, cookie jar, header multidicts, timer contexts) cost
~175 µs of CPU per request on the bench machine against ~80 µs for this client on the same
socket (a micro-benchmark of 3,000 sequential ``GET /ari/channels`` against the simulator),
which made REST the largest part of the gate's CPU per call (docs/BENCHMARKS.md, session 5). Asterisk's HTTP server
needs very little of HTTP: requests with a Content-Length body, responses with a Content-Length
(this client also reads chunked and close-delimited bodies), persistent connections closed by the
server after ``session_keep_alive`` ms of idleness (http.conf; 15 s by default, 30 s in
asterisk-conf/http.conf).

Connections:

* Kept open and reused, most recently used first; at most ``limit`` at once (Asterisk's
  ``sessionlimit`` is 100 by default, and the events WebSocket needs one), callers beyond that wait.
* An idle connection is dropped after ``idle_timeout`` s (10 s), before Asterisk's own timer can
  close it under a request in flight; one that the server closed meanwhile (EOF seen while idle)
  is never reused.
* If a reused connection still turns out closed before any byte of the response (the server's
  close crossed our request), an idempotent request (GET, PUT, DELETE, HEAD, OPTIONS) is sent
  again once on a new connection; a POST is not (it may have been carried out: ``/channels/create``
  twice is two calls) and fails as the connection error it is.
* A request that times out or whose caller is cancelled closes its connection: its response
  may still arrive, and must not be read as the next request's.
"""
from __future__ import annotations

import asyncio
import collections
import re
import ssl as _ssl
from dataclasses import dataclass

#: Methods that may be sent twice (RFC 9110 §9.2.2) when a reused connection was already closed.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) (\d{3})(?: ([^\r\n]*))?\Z")
MAX_HEAD = 64 * 1024
"""The most bytes a response's status line and headers may take."""


class HttpProtocolError(Exception):
    """The server's bytes are not an HTTP/1.x response this client can read."""


class ConnectionDropped(ConnectionError):
    """The connection closed before the response was complete."""

    def __init__(self, message: str, *, response_started: bool) -> None:
        super().__init__(message)
        self.response_started = response_started


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    """The HTTP status code."""
    reason: str
    """The status line's reason phrase."""
    headers: dict[str, str]
    """Header names lowercased; a repeated header keeps its last value."""
    body: bytes
    """The body, de-chunked."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: one request at a time, the response parsed as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.last_used = loop.time()
        self._buf = bytearray()
        self._waiter: asyncio.Future | None = None
        self._head_only = False
        self._head: tuple[int, str, dict[str, str], bool] | None = None  # status, reason, headers, keep-alive

    # ---------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes while idle: nothing may come unasked; never reuse this one
            self.abort()
            return
        self._buf += data
        try:
            self._parse()
        except HttpProtocolError as exc:
            self._fail(exc)
            self.abort()

    def eof_received(self) -> bool:
        if self._waiter is not None and self._head is not None and self._close_delimited():
            self._finish(bytes(self._buf), keep_alive=False)
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None:
            started = bool(self._buf) or self._head is not None
            self._fail(ConnectionDropped(f"connection closed by the server before the response ended"
                                         f"{f' ({exc})' if exc else ''}", response_started=started))

    # ---------------------------------------------------------------- requests
    def exchange(self, request: bytes, *, head_only: bool) -> asyncio.Future:
        """Send one request; the future resolves to its Response."""
        assert self._waiter is None and not self.closed
        self._waiter = self._loop.create_future()
        self._head_only = head_only
        self._head = None
        self._buf.clear()
        self.transport.write(request)
        return self._waiter

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _finish(self, body: bytes, *, keep_alive: bool) -> None:
        status, reason, headers, _ = self._head
        waiter, self._waiter = self._waiter, None
        self._head = None
        self._buf.clear()
        self.last_used = self._loop.time()
        if not keep_alive:
            self.closed = True
            self.transport.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(status, reason, headers, body))

    # ---------------------------------------------------------------- parsing
    def _close_delimited(self) -> bool:
        headers = self._head[2]
        return "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "").lower()

    def _parse(self) -> None:
        while self._head is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD:
                    raise HttpProtocolError(f"response headers longer than {MAX_HEAD} bytes")
                return
            lines = bytes(self._buf[:end]).split(b"\r\n")
            m = _STATUS_LINE.match(lines[0])
            if m is None:
                raise HttpProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
            minor, status, reason = int(m.group(1)), int(m.group(2)), (m.group(3) or b"").decode("latin-1")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep or not name.strip():
                    raise HttpProtocolError(f"malformed header line: {line[:80]!r}")
                headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
            del self._buf[:end + 4]
            if 100 <= status < 200:  # 100 Continue and friends: the real response follows
                continue
            conn = headers.get("connection", "").lower()
            keep_alive = ("close" not in conn) if minor == 1 else ("keep-alive" in conn)
            self._head = (status, reason, headers, keep_alive)
        status, _, headers, keep_alive = self._head
        if self._head_only or status in (204, 304):
            self._finish(b"", keep_alive=keep_alive)
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._dechunk()
            if body is not None:
                self._finish(body, keep_alive=keep_alive)
            return
        length = headers.get("content-length")
        if length is None:  # close-delimited: eof_received completes it
            return
        if not length.isdigit():
            raise HttpProtocolError(f"bad Content-Length {length!r}")
        n = int(length)
        if len(self._buf) > n:
            raise HttpProtocolError("more bytes than the response's Content-Length")
        if len(self._buf) == n:
            self._finish(bytes(self._buf), keep_alive=keep_alive)

    def _dechunk(self) -> bytes | None:
        """The whole de-chunked body once every chunk (and the trailer) is in, else None."""
        buf, pos, parts = self._buf, 0, []
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size_field = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise HttpProtocolError(f"bad chunk size {size_field[:20]!r}") from None
            pos = eol + 2
            if size == 0:
                end = buf.find(b"\r\n\r\n", pos - 2)  # no trailer: the CRLF right after "0\r\n"
                if end < 0:
                    return None
                if end + 4 != len(buf):
                    raise HttpProtocolError("bytes after the last chunk")
                return b"".join(parts)
            if len(buf) < pos + size + 2:
                return None
            parts.append(bytes(buf[pos:pos + size]))
            if buf[pos + size:pos + size + 2] != b"\r\n":
                raise HttpProtocolError("chunk not followed by CRLF")
            pos += size + 2


class Http11Pool:
    """Keep-alive connections to one HTTP server (see the module docstring)."""

    def __init__(self, host: str, port: int, *, ssl: _ssl.SSLContext | None = None, limit: int = 64,
                 idle_timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl
        self.idle_timeout = idle_timeout
        self._host_header = host if ":" not in host else f"[{host}]"
        default_port = 443 if ssl is not None else 80
        if port != default_port:
            self._host_header += f":{port}"
        self._idle: collections.deque[_Connection] = collections.deque()
        self._slots = asyncio.Semaphore(limit)
        self._open: set[_Connection] = set()
        self._closed = False

    @property
    def connections(self) -> int:
        """Connections open now (idle or busy)."""
        return sum(1 for c in self._open if not c.closed)

    async def request(self, method: str, target: str, *, headers: str = "", body: bytes | None = None) -> Response:
        """Send ``method target`` (``target``: the path and query, already percent-encoded) with
        extra ``headers`` (``"Name: value\\r\\n"`` lines) and ``body``; the caller bounds the time
        (``asyncio.timeout``). Raises OSError (ConnectionDropped included) or HttpProtocolError."""
        if self._closed:
            raise ConnectionDropped("the HTTP client is closed", response_started=False)
        head = f"{method} {target} HTTP/1.1\r\nHost: {self._host_header}\r\n{headers}"
        if body is not None:
            request = f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body
        elif method in ("GET", "HEAD"):
            request = f"{head}\r\n".encode("latin-1")
        else:
            request = f"{head}Content-Length: 0\r\n\r\n".encode("latin-1")
        async with self._slots:
            for attempt in (1, 2):
                conn, reused = await self._acquire()
                try:
                    response = await conn.exchange(request, head_only=method == "HEAD")
                except ConnectionDropped as exc:
                    conn.abort()
                    if attempt == 1 and reused and not exc.response_started and method in IDEMPOTENT:
                        continue  # the server closed it as we sent: the request never reached it
                    raise
                except BaseException:  # a timeout, a cancelled caller, a bad response
                    conn.abort()
                    raise
                finally:
                    if conn.closed:
                        self._open.discard(conn)
                if not conn.closed:
                    self._idle.append(conn)
                return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acquire(self) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to be timed out
            if conn.closed or conn.transport.is_closing() or now - conn.last_used > self.idle_timeout:
                conn.abort()
                self._open.discard(conn)
                continue
            return conn, True
        _, conn = await loop.create_connection(lambda: _Connection(loop), self.host, self.port, ssl=self.ssl,
                                               server_hostname=self.host if self.ssl is not None else None)
        self._open.add(conn)
        return conn, False

    async def close(self) -> None:
        """Close every connection; later requests fail."""
        self._closed = True
        for conn in list(self._open):
            if conn.transport is not None and not conn.closed:
                conn.closed = True
                conn.transport.close()
        self._open.clear()
        self._idle.clear()
