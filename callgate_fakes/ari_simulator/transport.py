"""The simulator's transport: HTTP + WebSocket on 127.0.0.1 and the event fan-out (see :class:`Transport`)."""
from __future__ import annotations

import asyncio
import base64
import json
import struct
from typing import Any, Iterable

from aiohttp import WSMsgType, web

from callgate_fakes.ari_simulator.model import RecordedRequest
from callgate_fakes.ari_simulator.routing import RestError, match_path, validate
from callgate_fakes.ari_simulator.state import AppState, Bridge, Channel


SERVER_HEADER = "Asterisk/GIT-22-69535d4837"
WS_HIGH_WATER = 1 << 20
"""Bytes buffered for a websocket before the event writer waits for the reader."""
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _text_frame(payload: bytes) -> bytes:
    """An unmasked, final RFC 6455 text frame (server to client)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class Transport:
    """HTTP and WebSocket: Basic auth or ``api_key`` (401), REST requests routed and validated
    (``routing``) to the ``_rest_<resource>_<nickname>`` handlers (``rest``), injected faults, the
    event sockets (``/ari/events``, ApplicationReplaced, refusal) and the fan-out of events to the
    apps that want them (subscriptions, eventFilter, dropped while a socket is down). A mixin of
    :class:`~callgate_fakes.ari_simulator.server.AriSimulator`, on its state."""

    # ------------------------------------------------------------------ event fan-out
    def _emit(self, ev: dict, channels: Iterable[Channel] = (), bridge: Bridge | None = None,
              all_only: bool = False) -> None:
        chans = list(channels)
        for name, app in self._apps.items():
            wanted = app.subscribe_all
            if not wanted and not all_only:
                wanted = any(ch.subscribed(name) for ch in chans) or (bridge is not None and name in bridge.subs)
            if not wanted:
                continue
            out = dict(ev)
            out["asterisk_id"] = self.asterisk_id
            out["application"] = name
            if not app.allows(ev.get("type")):
                self.events_generated.append((name, out, "filtered"))
                continue
            if app.ws is None or app.queue is None or app.ws.closed:
                self.events_generated.append((name, out, "dropped"))
                continue
            self.events_generated.append((name, out, "sent"))
            app.queue.put_nowait(out)

    # ------------------------------------------------------------------ HTTP
    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
            except Exception:
                return False
            return user == self.user and pw == self.password
        api_key = request.query.get("api_key")
        if api_key is not None:
            user, _, pw = api_key.partition(":")
            return user == self.user and pw == self.password
        return False

    def _json_response(self, status: int, body: Any, reason: str | None = None,
                       headers: dict | None = None) -> web.Response:
        hdrs = {"Server": SERVER_HEADER, "Cache-Control": "no-cache, no-store"}
        if headers:
            hdrs.update(headers)
        if body is None:
            return web.Response(status=status, reason=reason, headers=hdrs)
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        return web.Response(status=status, reason=reason, text=text, content_type="application/json",
                            headers=hdrs)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        query = {k: v for k, v in request.query.items()}
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
        if path.rstrip("/") == "/ari/events" and request.method == "GET":
            return await self._handle_ws(request)
        at = self.now()
        resp = self._dispatch(request.method, path, query, body, request)
        self.requests.append(RecordedRequest(request.method, path, {k: v for k, v in query.items()
                                                                     if k != "api_key"}, body, resp.status, at))
        return resp

    def _dispatch(self, method: str, path: str, query: dict[str, str], body: Any,
                  request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._json_response(401, {"message": "Authentication required"}, "Unauthorized",
                                       {"WWW-Authenticate": 'Basic realm="Asterisk REST Interface"'})
        if not path.startswith("/ari/"):
            return self._json_response(404, {"message": "Resource not found"}, "Not Found")
        rel = path[len("/ari"):]
        for fault in self._faults:
            if fault.method == method and fault.times > fault.hits and fault.path_regex.search(rel):
                fault.hits += 1
                return self._json_response(fault.status, {"message": fault.message})
        matched = match_path(rel)
        if matched is None:
            return self._json_response(404, {"message": "Resource not found"}, "Not Found")
        ops, path_params = matched
        op = next((o for o in ops if o["method"] == method), None)
        if op is None:
            return self._json_response(405, {"message": "Invalid method"}, "Method Not Allowed")
        try:
            params = validate(op, query, body)
            params.update(path_params)
            handler = getattr(self, f"_rest_{op['resource']}_{op['nickname']}", None)
            if handler is None:
                raise RestError(501, f"{op['nickname']} is not implemented by the simulator", "Not Implemented")
            status, result = handler(params, body)
        except RestError as exc:
            return self._json_response(exc.status, {exc.key: exc.message}, exc.reason)
        reason = {200: "OK", 201: "Created", 204: "No Content"}.get(status)
        return self._json_response(status, result, reason)

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._json_response(401, {"message": "Authentication required"}, "Unauthorized",
                                       {"WWW-Authenticate": 'Basic realm="Asterisk REST Interface"'})
        if self._refuse_ws:
            return self._json_response(503, {"message": "Service Unavailable"}, "Service Unavailable")
        app_names = [a for a in request.query.get("app", "").split(",") if a]
        if not app_names:
            return self._json_response(400, {"message": "Missing parameter app"}, "Bad Request")
        subscribe_all = request.query.get("subscribeAll", "false").lower() in ("true", "1", "yes")
        # no permessage-deflate: the writer below frames events itself
        ws = web.WebSocketResponse(autoping=True, compress=False)
        await ws.prepare(request)
        queue: asyncio.Queue = asyncio.Queue()
        self._all_ws.add(ws)
        for name in app_names:
            st = self._apps.get(name)
            if st is None:
                st = self._apps[name] = AppState(name)
            elif st.ws is not None and not st.ws.closed and st.queue is not None:
                # "Replacing Stasis app": the old socket gets ApplicationReplaced and stays open, silent
                replaced = {"type": "ApplicationReplaced", "timestamp": self.timestamp(), "application": name,
                            "asterisk_id": self.asterisk_id}
                self.events_generated.append((name, replaced, "sent"))
                st.queue.put_nowait(replaced)
            st.ws = ws
            st.queue = queue
            st.subscribe_all = subscribe_all
        writer = asyncio.create_task(self._ws_writer(ws, request.transport, queue))
        self._writers.add(writer)
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            writer.cancel()
            self._writers.discard(writer)
            self._all_ws.discard(ws)
            for name in app_names:
                st = self._apps.get(name)
                if st is not None and st.ws is ws:
                    st.ws = None
                    st.queue = None
                    # "Deactivating Stasis app": kept while it still has channels
                    if not any(ch.subscribed(name) for ch in self._channels.values()):
                        self._apps.pop(name, None)
        return ws

    async def _ws_writer(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None,
                         queue: asyncio.Queue) -> None:
        """One text frame per event, like Asterisk; the events queued by one step of the simulation
        go out in one socket write (a send() per frame was a large part of the simulator's CPU under load)."""
        try:
            while True:
                events = [await queue.get()]
                while not queue.empty():
                    events.append(queue.get_nowait())
                if ws.closed or transport is None or transport.is_closing():
                    return
                transport.write(b"".join(_text_frame(_dumps(ev).encode()) for ev in events))
                while transport.get_write_buffer_size() > WS_HIGH_WATER:  # a slow reader: back off
                    await asyncio.sleep(0.005)
                    if transport.is_closing():
                        return
        except (ConnectionResetError, asyncio.CancelledError, RuntimeError):
            return

