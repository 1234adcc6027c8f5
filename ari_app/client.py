"""A thin asyncio ARI client on aiohttp: REST with typed errors, and the events WebSocket.

REST: ``await client.request("POST", "/channels/{id}/ring")`` (path without the ``/ari`` prefix)
returns the parsed JSON body (or None for 204) and raises :mod:`ari_app.errors` exceptions. Thin
helpers (``ring``, ``answer``, ``create_channel``, ``dial``, ...) only build the query string.
The requests travel on :mod:`ari_app.http11`'s keep-alive connections (see there why not on
aiohttp's ClientSession, which carries the events WebSocket).

Events: ``client.on_event(handler)`` registers ``async handler(event: dict)``. ``await client.run()``
connects ``/ari/events?app=..&api_key=user:pass`` and reconnects with jittered exponential backoff
until ``await client.stop()``. Dispatch guarantees:

* Events with the same *key* are handled one after the other, in arrival order. The key is the
  channel the event is about (``event["channel"]["id"]``; for ``Dial`` the ``caller`` channel, else
  the ``peer``; for playbacks/recordings the channel of ``target_uri``); bridge-only events are keyed
  ``bridge:<id>``; everything else (ApplicationReplaced, DeviceStateChanged, ...) uses one global key.
* Different keys run concurrently, each in its own worker task; the socket reader only appends to
  in-memory queues, so a slow handler never blocks reading the socket.
* ``client.on_event_now(handler)`` registers a plain ``handler(event) -> None`` called straight from
  the socket reader, in arrival order across all keys, with no task per event: for a router that
  only hands events on (the gate) and must never block. Its exceptions are logged and swallowed.
* ``client.ignore_events(types, varsets_except=...)`` drops events no handler wants before they are
  even parsed: Asterisk sends ~60 events per bridged call and most are ``ChannelVarset`` (RTP QoS,
  BRIDGEPEER, ...). Asterisk writes ``"type"`` first, except for ``ChannelVarset`` which starts with
  ``"variable"`` (see the traces); only those two leading shapes are judged unparsed, any other
  frame is parsed and delivered as usual, so nothing wanted is ever lost.
* ``client.on_connected(async handler())`` runs after every (re)connect, BEFORE any event received on
  that new connection is dispatched (events read meanwhile are buffered). Asterisk does not replay
  events lost while the socket was down, so this is where an app resyncs (GET /channels, /bridges,
  /applications/{app}).
* ``ApplicationReplaced`` (another client took the app name): logged at ERROR, dispatched to the
  handlers like any event, ``client.replaced`` becomes True, reconnecting stops, and ``run()``
  RETURNS normally (it does not raise). Callers check ``client.replaced`` after ``run()``.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import json as _json
import logging
import random
import re
from typing import Any, Awaitable, Callable, Iterable, Mapping
import ssl
from urllib.parse import quote, urlsplit

import aiohttp

from ari_app.errors import AriError, AriNotFound, AriUnavailable, error_for_status
from ari_app.http11 import Http11Pool, HttpProtocolError

log = logging.getLogger("ari_app.client")

EventHandler = Callable[[dict], Awaitable[None]]
ConnectedHandler = Callable[[], Awaitable[None]]

GLOBAL_KEY = "*"
#: The frame's first key when it is "type" (most events) or "variable" (ChannelVarset), with its value,
#: in Asterisk's compact or pretty JSON.
_LEADING_KEY = re.compile(r'\s*\{\s*"(type|variable)"\s*:\s*"([A-Za-z0-9_]+)"')
_VARSET_TYPE = re.compile(r'"type"\s*:\s*"ChannelVarset"')
#: Names and values that Asterisk's ARRAY() passes through unchanged. Its argument parser
#: (AST_STANDARD_APP_ARGS) splits on commas, strips quotes and backslashes and nests on brackets,
#: so anything beyond these characters is set one variable per request instead.
_ARRAY_SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ARRAY_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.:@+\-]*\Z")


def event_key(event: Mapping[str, Any]) -> str:
    """The ordering key of an event: the channel it is about, else its bridge, else global."""
    channel = event.get("channel")
    if isinstance(channel, dict) and channel.get("id"):
        return str(channel["id"])
    if event.get("type") == "Dial":
        for field in ("caller", "peer"):
            ch = event.get(field)
            if isinstance(ch, dict) and ch.get("id"):
                return str(ch["id"])
    for field in ("playback", "recording"):
        obj = event.get(field)
        if isinstance(obj, dict):
            target = str(obj.get("target_uri", ""))
            scheme, _, ident = target.partition(":")
            if scheme == "channel" and ident:
                return ident
            if scheme == "bridge" and ident:
                return f"bridge:{ident}"
    bridge = event.get("bridge")
    if isinstance(bridge, dict) and bridge.get("id"):
        return f"bridge:{bridge['id']}"
    return GLOBAL_KEY


def backoff_delay(attempt: int, initial: float, maximum: float,
                  rand: Callable[[float, float], float] = random.uniform) -> float:
    """Reconnect delay after ``attempt`` failures: exponential, capped, with jitter in [50 %, 100 %]
    so that several gates (or a restarted Asterisk's many clients) do not reconnect in lockstep."""
    return min(maximum, initial * (2 ** min(attempt, 32))) * rand(0.5, 1.0)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_query_value(v) for v in value)
    return str(value)


def _seg(value: str) -> str:
    """One path segment, percent-encoded (channel ids are safe, bridge names may not be)."""
    return quote(str(value), safe="")


class AriClient:
    """ARI REST + events client. See the module docstring for the dispatch guarantees."""

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
        self.user = user
        self.password = password
        self.app = app
        self.subscribe_all = subscribe_all
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.request_timeout = request_timeout
        self._session = http_session
        self._own_session = http_session is None
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._auth_headers = f"Authorization: Basic {token}\r\n"
        self._json_headers = f"{self._auth_headers}Content-Type: application/json\r\n"
        self._url = urlsplit(self.base_url)
        self._rest_prefix = self._url.path.rstrip("/") + "/ari"  # http.conf's prefix, if any, then /ari
        self._rest: Http11Pool | None = None
        self._event_handlers: list[EventHandler] = []
        self._now_handlers: list[Callable[[dict], None]] = []
        self._ignored_types: frozenset[str] = frozenset()
        self._kept_varsets: re.Pattern | None = None
        self._kept_names: frozenset[str] = frozenset()
        self._connected_handlers: list[ConnectedHandler] = []
        self._disconnected_handlers: list[Callable[[], None]] = []
        # key -> pending events; a key is present exactly while its worker task runs
        self._queues: dict[str, collections.deque] = {}
        self._workers: dict[str, asyncio.Task] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stopping = False
        self._ready: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None
        #: True while the socket is open and the on_connected handlers have run.
        self.connected = False
        #: Successful connections after the first one.
        self.reconnects = 0
        #: Set when Asterisk sent ApplicationReplaced; the client then stops.
        self.replaced = False
        self._connections = 0
        #: Whether this Asterisk has the ARRAY() dialplan function (func_strings): None until the
        #: first ``set_variables`` on a connection checks it; every (re)connect asks again (an
        #: Asterisk restarted with other modules).
        self.array_function: bool | None = None

    # ------------------------------------------------------------------ lifecycle
    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    def _rest_pool(self) -> Http11Pool:
        if self._rest is None:
            tls = self._url.scheme == "https"
            self._rest = Http11Pool(self._url.hostname or "127.0.0.1", self._url.port or (443 if tls else 80),
                                    ssl=ssl.create_default_context() if tls else None)
        return self._rest

    async def close(self) -> None:
        """Stop the event loop (if running), close the REST connections, and the HTTP session if
        this client owns it."""
        await self.stop()
        if self._rest is not None:
            await self._rest.close()
            self._rest = None
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def __aenter__(self) -> "AriClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def on_event(self, handler: EventHandler) -> EventHandler:
        """Register ``async handler(event)``; usable as a decorator."""
        self._event_handlers.append(handler)
        return handler

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

    async def stop(self, drain_timeout: float = 1.0) -> None:
        """Stop reconnecting, close the socket, let running handlers finish for ``drain_timeout`` s."""
        self._stopping = True
        self._stop_evt().set()
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close()
        await self.drain(drain_timeout)
        for task in list(self._workers.values()):
            task.cancel()
        for task in list(self._workers.values()):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued event has been handled. False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._workers:
            tasks = list(self._workers.values())
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait(tasks, timeout=remaining)
            if deadline is not None and loop.time() >= deadline and self._workers:
                return False
        return True

    # ------------------------------------------------------------------ events
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
        self.array_function = None
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
        if not self._event_handlers:
            return
        key = event_key(event)
        queue = self._queues.get(key)
        if queue is None:
            queue = collections.deque()
            self._queues[key] = queue
            queue.append(event)
            self._workers[key] = asyncio.create_task(self._work(key, queue), name=f"ari-events-{key}")
        else:
            queue.append(event)

    async def _work(self, key: str, queue: collections.deque) -> None:
        try:
            while queue:
                event = queue[0]
                for handler in list(self._event_handlers):
                    try:
                        await handler(event)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("ARI event handler failed on %s (key %s)", event.get("type"), key)
                queue.popleft()
        finally:
            # no await between the last emptiness check and removal: _route sees a consistent state
            self._queues.pop(key, None)
            self._workers.pop(key, None)

    # ------------------------------------------------------------------ REST
    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """One ARI REST call. ``path`` without ``/ari``. Returns parsed JSON or None; raises AriError."""
        target = self._rest_prefix + path
        if params:
            query = "&".join(f"{quote(k, safe='')}={quote(_query_value(v), safe=',:')}"
                             for k, v in params.items() if v is not None)
            if query:
                target = f"{target}?{query}"
        data = None
        headers = self._auth_headers
        if json is not None:
            data = _json.dumps(json, separators=(",", ":")).encode()
            headers = self._json_headers
        try:
            async with asyncio.timeout(self.request_timeout):
                resp = await self._rest_pool().request(method, target, headers=headers, body=data)
        except TimeoutError as exc:
            raise AriUnavailable(f"timeout after {self.request_timeout}s", method, path) from exc
        except (OSError, HttpProtocolError) as exc:
            raise AriUnavailable(str(exc) or type(exc).__name__, method, path) from exc
        raw, status, reason = resp.body, resp.status, resp.reason
        body: Any = None
        if raw:
            try:
                body = _json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        if 200 <= status < 300:
            return body
        message = reason
        if isinstance(body, dict):
            message = str(body.get("message") or body.get("error") or reason)
        elif isinstance(body, str) and body:
            message = body
        raise error_for_status(status, message, method, path)

    # channels
    async def list_channels(self) -> list[dict]:
        return await self.request("GET", "/channels")

    async def get_channel(self, channel_id: str) -> dict:
        return await self.request("GET", f"/channels/{_seg(channel_id)}")

    async def ring(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{_seg(channel_id)}/ring")

    async def progress(self, channel_id: str) -> None:
        """183 Session Progress with SDP (early media); ARI 22.6.0+."""
        await self.request("POST", f"/channels/{_seg(channel_id)}/progress")

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{_seg(channel_id)}/answer")

    async def play(self, channel_id: str, media: str | Iterable[str], playback_id: str | None = None,
                   lang: str | None = None) -> dict:
        params = {"media": media if isinstance(media, str) else list(media),
                  "playbackId": playback_id, "lang": lang}
        return await self.request("POST", f"/channels/{_seg(channel_id)}/play", params)

    async def hangup(self, channel_id: str, reason: str | None = None, reason_code: int | None = None) -> None:
        await self.request("DELETE", f"/channels/{_seg(channel_id)}",
                           {"reason": reason, "reason_code": reason_code})

    async def create_channel(self, endpoint: str, app_args: str | Iterable[str] | None = None,
                             originator: str | None = None, channel_id: str | None = None,
                             variables: Mapping[str, str] | None = None) -> dict:
        params = {"endpoint": endpoint, "app": self.app,
                  "appArgs": app_args if (app_args is None or isinstance(app_args, str)) else list(app_args),
                  "originator": originator, "channelId": channel_id}
        body = {"variables": dict(variables)} if variables else None
        return await self.request("POST", "/channels/create", params, json=body)

    async def originate(self, endpoint: str, *, channel_id: str | None = None,
                        other_channel_id: str | None = None, app_args: str | None = None) -> dict:
        """``POST /channels``: a channel that dials ``endpoint`` at once (into our application if
        it answers)."""
        return await self.request("POST", "/channels", {"endpoint": endpoint, "app": self.app, "appArgs": app_args,
                                                        "channelId": channel_id,
                                                        "otherChannelId": other_channel_id})

    async def dial(self, channel_id: str, caller: str | None = None, timeout: int | None = None) -> None:
        await self.request("POST", f"/channels/{_seg(channel_id)}/dial",
                           {"caller": caller, "timeout": timeout})

    async def continue_in_dialplan(self, channel_id: str, context: str | None = None,
                                   extension: str | None = None, priority: int | None = None,
                                   label: str | None = None) -> None:
        await self.request("POST", f"/channels/{_seg(channel_id)}/continue",
                           {"context": context, "extension": extension, "priority": priority,
                            "label": label})

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self.request("POST", f"/channels/{_seg(channel_id)}/variable",
                           {"variable": name, "value": value})

    async def set_variables(self, channel_id: str, items: Iterable[tuple[str, str]]) -> None:
        """Set several channel variables, in order, in ONE request where Asterisk allows it.

        ARI sets one variable per request, but a name ending in ``)`` is a dialplan function
        (pbx_builtin_setvar_helper → ast_func_write), and ``ARRAY(A,B,C)=a,b,c`` sets A, B, C
        one after the other, each with its own ChannelVarset (func_strings.c). Continue mode sets
        4–5 variables per call: one request instead of five is most of its REST cost.

        ARRAY() lives in func_strings.so, which a minimal modules.conf may leave out; Asterisk
        then logs "Function ARRAY not registered" and still answers 204. So the first use on
        each connection reads the first variable back; if it is not there, ARRAY() is marked
        missing (logged once, at ERROR) and the variables are set one per request from then on.
        Values ARRAY() would mangle (commas, quotes, brackets, spaces...) always go one by one.
        """
        items = list(items)
        # the read-back needs a non-empty value: an unset variable and an empty one look alike
        check = next(((n, v) for n, v in items if v), None)
        if len(items) > 1 and check and self.array_function is not False and all(
                _ARRAY_SAFE_NAME.match(n) and _ARRAY_SAFE_VALUE.match(v) for n, v in items):
            names = ",".join(n for n, _ in items)
            await self.set_variable(channel_id, f"ARRAY({names})", ",".join(v for _, v in items))
            if self.array_function:
                return
            if await self.get_variable(channel_id, check[0]) == check[1]:
                self.array_function = True
                return
            self.array_function = False
            log.error("Asterisk has no ARRAY() function (func_strings.so not loaded?): channel variables "
                      "are set one request each from now on; load func_strings.so to save those requests")
        for name, value in items:
            await self.set_variable(channel_id, name, value)

    async def get_variable(self, channel_id: str, name: str) -> str | None:
        """The variable's value, or None when Asterisk says "Provided variable was not found"."""
        try:
            body = await self.request("GET", f"/channels/{_seg(channel_id)}/variable", {"variable": name})
        except AriNotFound as exc:
            if "variable" in exc.message.lower():
                return None
            raise
        return None if body is None else body.get("value")

    # applications
    async def get_application(self) -> dict:
        return await self.request("GET", f"/applications/{_seg(self.app)}")

    async def subscribe(self, event_source: str | Iterable[str]) -> dict:
        """e.g. ``subscribe(f"channel:{id}")``: events of that channel keep coming after StasisEnd."""
        src = event_source if isinstance(event_source, str) else list(event_source)
        return await self.request("POST", f"/applications/{_seg(self.app)}/subscription", {"eventSource": src})

    async def set_event_filter(self, *, allowed: Iterable[str] | None = None,
                               disallowed: Iterable[str] | None = None) -> dict:
        """``PUT /applications/{app}/eventFilter``: Asterisk stops sending these event types to the
        app (disallowed wins over allowed; a list left out keeps its current value)."""
        body: dict[str, list[dict]] = {}
        if allowed is not None:
            body["allowed"] = [{"type": t} for t in allowed]
        if disallowed is not None:
            body["disallowed"] = [{"type": t} for t in disallowed]
        return await self.request("PUT", f"/applications/{_seg(self.app)}/eventFilter", json=body)

    async def unsubscribe(self, event_source: str | Iterable[str]) -> dict:
        src = event_source if isinstance(event_source, str) else list(event_source)
        return await self.request("DELETE", f"/applications/{_seg(self.app)}/subscription", {"eventSource": src})

    # bridges
    async def list_bridges(self) -> list[dict]:
        return await self.request("GET", "/bridges")

    async def create_bridge(self, bridge_type: str = "mixing", name: str | None = None,
                            bridge_id: str | None = None) -> dict:
        return await self.request("POST", "/bridges", {"type": bridge_type, "name": name, "bridgeId": bridge_id})

    async def add_channels(self, bridge_id: str, channel_ids: str | Iterable[str]) -> None:
        chans = channel_ids if isinstance(channel_ids, str) else list(channel_ids)
        await self.request("POST", f"/bridges/{_seg(bridge_id)}/addChannel", {"channel": chans})

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self.request("DELETE", f"/bridges/{_seg(bridge_id)}")

    # misc
    async def set_global_variable(self, name: str, value: str = "") -> None:
        """``POST /asterisk/variable``: a global variable, or a function write such as
        ``DB_DELETE(family/key)`` (Asterisk runs it without a channel)."""
        await self.request("POST", "/asterisk/variable", {"variable": name, "value": value})

    async def get_playback(self, playback_id: str) -> dict:
        return await self.request("GET", f"/playbacks/{_seg(playback_id)}")

    async def get_asterisk_info(self) -> dict:
        return await self.request("GET", "/asterisk/info")


__all__ = ["AriClient", "AriError", "backoff_delay", "event_key", "GLOBAL_KEY"]
