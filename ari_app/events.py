"""The ARI events WebSocket: connect, reconnect, hand each event to the router in arrival order.

``events.on_event_now(handler)`` registers a plain ``handler(event) -> None`` called straight from the
socket reader, in arrival order, with no task per event: the gate routes each event into its call's
inbox (ari_app.calls), which is where per-call ordering lives — this module keeps no queues and
starts no workers. A handler must never block; its exceptions are logged and swallowed.
``await events.run()`` connects ``/ari/events?app=..&api_key=user:pass`` and reconnects with
jittered exponential backoff until ``await events.stop()``. Guarantees:

* ``ignore_events(types, varsets_except=...)`` drops events no handler wants before they are even
  parsed: Asterisk sends ~60 events per bridged call and most are ``ChannelVarset`` (RTP QoS,
  BRIDGEPEER, ...). Asterisk writes ``"type"`` first, except for ``ChannelVarset`` which starts with
  ``"variable"`` (see the traces); only those two leading shapes are judged unparsed, any other
  frame is parsed and delivered as usual, so nothing wanted is ever lost.
* ``on_connected(async handler())`` runs after every (re)connect, BEFORE any event received on that
  new connection is delivered (events read meanwhile are buffered). Asterisk does not replay events
  lost while the socket was down, so this is where an app resyncs (GET /channels, /bridges,
  /applications/{app}).
* ``on_disconnected(handler())`` is called the moment a connection is lost (not on ``stop()``).
* ``ApplicationReplaced`` (another client took the app name): logged at ERROR, delivered to the
  handlers like any event, ``replaced`` becomes True, reconnecting stops, and ``run()`` RETURNS
  normally (it does not raise). Callers check ``replaced`` after ``run()``.
"""
from __future__ import annotations

import asyncio
import json as _json
import logging
import random
import re
from typing import Awaitable, Callable, Iterable
from urllib.parse import quote

import aiohttp

log = logging.getLogger("ari_app.client")

ConnectedHandler = Callable[[], Awaitable[None]]

#: The frame's first key when it is "type" (most events) or "variable" (ChannelVarset), with its value,
#: in Asterisk's compact or pretty JSON.
_LEADING_KEY = re.compile(r'\s*\{\s*"(type|variable)"\s*:\s*"([A-Za-z0-9_]+)"')
_VARSET_TYPE = re.compile(r'"type"\s*:\s*"ChannelVarset"')


def backoff_delay(attempt: int, initial: float, maximum: float,
                  rand: Callable[[float, float], float] = random.uniform) -> float:
    """Reconnect delay after ``attempt`` failures: exponential, capped, with jitter in [50 %, 100 %]
    so that several gates (or a restarted Asterisk's many clients) do not reconnect in lockstep."""
    return min(maximum, initial * (2 ** min(attempt, 32))) * rand(0.5, 1.0)


class AriEvents:
    """The events WebSocket of one Stasis application. See the module docstring for the guarantees."""

    def __init__(self, base_url: str, user: str, password: str, app: str, *, subscribe_all: bool = False,
                 http_session: aiohttp.ClientSession | None = None, backoff_initial: float = 0.5,
                 backoff_max: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.user = user
        self.password = password
        self.app = app
        self.subscribe_all = subscribe_all
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._session = http_session
        self._own_session = http_session is None
        self._now_handlers: list[Callable[[dict], None]] = []
        self._ignored_types: frozenset[str] = frozenset()
        self._kept_varsets: re.Pattern | None = None
        self._kept_names: frozenset[str] = frozenset()
        self._connected_handlers: list[ConnectedHandler] = []
        self._disconnected_handlers: list[Callable[[], None]] = []
        self._new_connection_hooks: list[Callable[[], None]] = []
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stopping = False
        self._ready: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None
        #: True while the socket is open and the on_connected handlers have run.
        self.connected = False
        #: Successful connections after the first one.
        self.reconnects = 0
        #: Set when Asterisk sent ApplicationReplaced; the stream then stops.
        self.replaced = False
        self._connections = 0

    # ------------------------------------------------------------------ lifecycle
    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def close(self) -> None:
        """Stop (if running) and close the HTTP session if this stream owns it."""
        await self.stop()
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()

    # ------------------------------------------------------------------ registration
    def on_event_now(self, handler: Callable[[dict], None]) -> Callable[[dict], None]:
        """Register a plain ``handler(event)`` run from the socket reader in arrival order (it must
        not block: it routes, it does not work)."""
        self._now_handlers.append(handler)
        return handler

    def ignore_events(self, types: Iterable[str], varsets_except: Iterable[str] | None = None) -> None:
        """Drop these event types unparsed; with ``varsets_except``, also every ``ChannelVarset``
        whose variable is not one of those names."""
        types = set(types)
        self._kept_varsets = None
        self._kept_names = frozenset()
        if varsets_except is not None:
            types.add("ChannelVarset")
            self._kept_names = frozenset(varsets_except)
            names = "|".join(re.escape(n) for n in sorted(self._kept_names)) or "(?!)"
            self._kept_varsets = re.compile(rf'"variable"\s*:\s*"(?:{names})"')
        self._ignored_types = frozenset(types)

    def _unwanted(self, data: str) -> bool:
        m = _LEADING_KEY.match(data)
        if m is None:
            return False
        key, value = m.groups()
        if key == "variable":  # a ChannelVarset as Asterisk writes it: variable, value, type, ...
            if self._kept_varsets is None or _VARSET_TYPE.search(data) is None:
                return False
            return value not in self._kept_names
        if value not in self._ignored_types:
            return False
        if value == "ChannelVarset" and self._kept_varsets is not None:
            return self._kept_varsets.search(data) is None
        return True

    def on_connected(self, handler: ConnectedHandler) -> ConnectedHandler:
        """Register ``async handler()`` run after every (re)connect, before that connection's events."""
        self._connected_handlers.append(handler)
        return handler

    def on_disconnected(self, handler: Callable[[], None]) -> Callable[[], None]:
        """Register ``handler()`` called the moment an events connection is lost (not on ``stop()``):
        what Asterisk sends from then until the next connect is lost, and the handler can note when
        that gap began."""
        self._disconnected_handlers.append(handler)
        return handler

    def on_new_connection(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Register ``hook()`` called first thing on every new connection, before its handlers (the
        REST side forgets what it learnt of the previous Asterisk: a restart may change modules)."""
        self._new_connection_hooks.append(hook)
        return hook

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until connected (socket open, on_connected handlers done). False on timeout."""
        ready = self._ready_event()
        try:
            await asyncio.wait_for(ready.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _ready_event(self) -> asyncio.Event:
        if self._ready is None:
            self._ready = asyncio.Event()
        return self._ready

    def _stop_evt(self) -> asyncio.Event:
        if self._stop_event is None:
            self._stop_event = asyncio.Event()
        return self._stop_event

    async def stop(self) -> None:
        """Stop reconnecting and close the socket."""
        self._stopping = True
        self._stop_evt().set()
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close()

    # ------------------------------------------------------------------ the connection
    def events_url(self) -> str:
        ws_base = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        url = f"{ws_base}/ari/events?app={quote(self.app)}&api_key={quote(self.user)}:{quote(self.password)}"
        if self.subscribe_all:
            url += "&subscribeAll=true"
        return url

    async def run(self) -> None:
        """Connect and reconnect until ``stop()`` or ApplicationReplaced (then returns normally)."""
        self._stopping = False
        self._stop_evt().clear()
        attempt = 0
        while not self._stopping and not self.replaced:
            session = await self._http()
            try:
                ws = await session.ws_connect(self.events_url(), heartbeat=None, autoping=True)
            except aiohttp.WSServerHandshakeError as exc:
                level = logging.ERROR if exc.status in (401, 403) else logging.WARNING
                log.log(level, "ARI events handshake refused: HTTP %s %s", exc.status, exc.message)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                log.warning("ARI events connect to %s failed: %s", self.base_url, exc or type(exc).__name__)
            else:
                attempt = 0
                await self._serve_connection(ws)
            if self._stopping or self.replaced:
                break
            delay = backoff_delay(attempt, self.backoff_initial, self.backoff_max)
            attempt += 1
            log.info("ARI events reconnecting in %.2f s", delay)
            try:
                await asyncio.wait_for(self._stop_evt().wait(), delay)
            except asyncio.TimeoutError:
                pass
        if self.replaced:
            log.error("ARI application %r was replaced by another client; not reconnecting", self.app)

    async def _serve_connection(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._connections += 1
        for hook in list(self._new_connection_hooks):
            hook()
        if self._connections > 1:
            self.reconnects += 1
        log.info("ARI events connected (app=%s, connection #%d)", self.app, self._connections)
        buffered: list[dict] = []
        gate_open = False

        def deliver(event: dict) -> None:
            if gate_open:
                self._route(event)
            else:
                buffered.append(event)

        reader = asyncio.create_task(self._read(ws, deliver))
        try:
            for handler in list(self._connected_handlers):
                try:
                    await handler()
                except Exception:
                    log.exception("on_connected handler failed")
            gate_open = True
            for event in buffered:
                self._route(event)
            buffered.clear()
            if not ws.closed:
                self.connected = True
                self._ready_event().set()
            await reader
        finally:
            if not reader.done():
                reader.cancel()
            self.connected = False
            self._ready_event().clear()
            self._ws = None
            if not self._stopping and not self.replaced:
                log.warning("ARI events connection lost")
                for gap_handler in list(self._disconnected_handlers):  # before any await: the gap starts now
                    try:
                        gap_handler()
                    except Exception:
                        log.exception("on_disconnected handler failed")
            if not ws.closed:
                await ws.close()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, deliver: Callable[[dict], None]) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                if self._ignored_types and self._unwanted(msg.data):
                    continue
                try:
                    event = _json.loads(msg.data)
                except ValueError:
                    log.error("ARI event is not JSON: %.200s", msg.data)
                    continue
                if not isinstance(event, dict):
                    continue
                if event.get("type") == "ApplicationReplaced":
                    log.error("!!! ARI application %r REPLACED by another connection: this client stops "
                              "serving. Is a second gate running against the same Asterisk? !!!", self.app)
                    self.replaced = True
                    deliver(event)
                    await ws.close()
                    return
                deliver(event)
            elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return

    def _route(self, event: dict) -> None:
        for now in self._now_handlers:
            try:
                now(event)
            except Exception:
                log.exception("ARI event router failed on %s", event.get("type"))


__all__ = ["AriEvents", "backoff_delay"]
