"""ARI REST: one request per call on keep-alive HTTP/1.1 connections, with typed errors.

``await rest.request("POST", "/channels/{id}/ring")`` (path without the ``/ari`` prefix) returns the
parsed JSON body (or None for 204) and raises :mod:`ari_app.errors` exceptions. Thin helpers
(``ring``, ``answer``, ``create_channel``, ``dial``, ...) only build the query string. The requests
travel on :mod:`ari_app.http11`'s keep-alive connections, not on aiohttp's ClientSession (which carries
the events WebSocket, ari_app.events): see http11 for why.
"""
from __future__ import annotations

import asyncio
import base64
import json as _json
import logging
import re
import ssl
from typing import Any, Iterable, Mapping
from urllib.parse import quote, urlsplit

from ari_app.errors import AriNotFound, AriUnavailable, error_for_status
from ari_app.http11 import Http11Pool, HttpProtocolError

log = logging.getLogger("ari_app.client")

#: Names and values that Asterisk's ARRAY() passes through unchanged. Its argument parser
#: (AST_STANDARD_APP_ARGS) splits on commas, strips quotes and backslashes and nests on brackets,
#: so anything beyond these characters is set one variable per request instead.
_ARRAY_SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ARRAY_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.:@+\-]*\Z")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_query_value(v) for v in value)
    return str(value)


def _seg(value: str) -> str:
    """One path segment, percent-encoded (channel ids are safe, bridge names may not be)."""
    return quote(str(value), safe="")


class AriRest:
    """The REST side of one Stasis application's ARI connection."""

    def __init__(self, base_url: str, user: str, password: str, app: str, *, request_timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.app = app
        self.request_timeout = request_timeout
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._auth_headers = f"Authorization: Basic {token}\r\n"
        self._json_headers = f"{self._auth_headers}Content-Type: application/json\r\n"
        self._url = urlsplit(self.base_url)
        self._rest_prefix = self._url.path.rstrip("/") + "/ari"  # http.conf's prefix, if any, then /ari
        self._rest: Http11Pool | None = None
        #: Whether this Asterisk has the ARRAY() dialplan function (func_strings): None until the
        #: first ``set_variables`` on a connection checks it; every (re)connect of the events stream
        #: asks again (``forget_asterisk``: an Asterisk restarted with other modules).
        self.array_function: bool | None = None

    def forget_asterisk(self) -> None:
        """A new events connection: what was learnt of the previous Asterisk may no longer hold."""
        self.array_function = None

    def _rest_pool(self) -> Http11Pool:
        if self._rest is None:
            tls = self._url.scheme == "https"
            self._rest = Http11Pool(self._url.hostname or "127.0.0.1", self._url.port or (443 if tls else 80),
                                    ssl=ssl.create_default_context() if tls else None)
        return self._rest

    async def close(self) -> None:
        """Close the keep-alive connections."""
        if self._rest is not None:
            await self._rest.close()
            self._rest = None

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


__all__ = ["AriRest"]
