"""The ARI simulator: an aiohttp HTTP + WebSocket server behaving like the traced Asterisk 22.

All state changes and event emissions are synchronous (one asyncio loop, no awaits inside a
transition), so each transition is atomic and the event order is deterministic. Events go to
per-socket writer queues; an app whose socket is down loses them (Asterisk does not queue).
"""
from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import json
import logging
import re
import struct
import time
import uuid
from typing import Any, Callable, Iterable

from aiohttp import WSMsgType, web

import callgate_dialplan as dialplan
from callgate_fakes.ari_simulator import causes, swagger_table
from callgate_fakes.ari_simulator.model import CallOutcome, Party, RecordedRequest, RestFault, SimCall

log = logging.getLogger("callgate_fakes.ari_simulator")

SERVER_HEADER = "Asterisk/GIT-22-69535d4837"
BRIDGE_TYPES = {"mixing", "holding", "dtmf_events", "proxy_media", "video_sfu", "video_single", "sdp_label"}
KNOWN_TECHS = {"PJSIP", "SIP", "IAX2", "Local", "DAHDI"}

#: sound name -> playback length in simulated seconds (beep and cannot-complete-as-dialed as traced).
DEFAULT_SOUNDS: dict[str, float] = {
    "beep": 0.425,
    "cannot-complete-as-dialed": 2.64,
    "cannot-complete-temp-error": 2.5,
    "all-circuits-busy-now": 2.2,
    "ss-noservice": 4.0,
    "number-not-in-service": 2.0,
    "invalid": 1.0,
    "vm-goodbye": 0.8,
    "goodbye": 0.8,
    "silence/1": 1.0,
    "privacy-incorrect": 2.0,
    "cannot-complete-network-error": 2.8,
    "an-error-has-occurred": 1.5,
    "im-sorry": 0.8,
    "tt-allbusy": 2.0,
    "please-try-again-later": 1.5,
    "conf-noempty": 2.0,
    "tt-weasels": 3.0,
}

_QOS_VALUES = [
    ("RTPAUDIOQOS", "ssrc={ssrc};themssrc=0;lp=0;rxjitter=0.000000;rxcount=0;txjitter=0.000000;txcount=0;"
                    "rlp=0;rtt=0.000000;rxmes=0.000000;txmes=0.000000"),
    ("RTPAUDIOQOSJITTER", "minrxjitter=000.000000;maxrxjitter=000.000000;avgrxjitter=000.000000;"
                          "stdevrxjitter=000.000000;mintxjitter=000.000000;maxtxjitter=000.000000;"
                          "avgtxjitter=000.000000;stdevtxjitter=000.000000;"),
    ("RTPAUDIOQOSLOSS", "  minrxlost=000.000000;  maxrxlost=000.000000;  avgrxlost=000.000000;  "
                        "stdevrxlost=000.000000;  mintxlost=000.000000;  maxtxlost=000.000000;  "
                        "avgtxlost=000.000000;  stdevtxlost=000.000000;"),
    ("RTPAUDIOQOSRTT", "     minrtt=000.000000;     maxrtt=000.000000;     avgrtt=000.000000;     "
                       "stdevrtt=000.000000;"),
    ("RTPAUDIOQOSMES", "   minrxmes=000.000000;   maxrxmes=000.000000;   avgrxmes=000.000000;   "
                       "stdevrxmes=000.000000;   mintxmes=000.000000;   maxtxmes=000.000000;   "
                       "avgtxmes=000.000000;   stdevtxmes=000.000000;"),
]

#: asterisk-conf's [callgate-deny]: CALLGATE_REASON -> the Hangup() cause (anything else: 34).
DENY_CAUSES = {r.value: c for r, c in dialplan.HANGUP_CAUSES.items() if c != dialplan.CAUSE_NO_CIRCUIT}
#: asterisk-conf/extensions.conf [globals] CALLGATE_WARN_MS: how long before the L() limit the warning plays.
CONTINUE_WARN_MS = 60_000


def limit_warning_ms(max_ms: int, warn_ms: int = CONTINUE_WARN_MS) -> int:
    """The warning argument the product dialplan gives L(): at most ``max_ms - 1`` (see below)."""
    return max_ms - 1 if max_ms <= warn_ms else warn_ms


#: asterisk-conf's [callgate-ended] hangup handler (pushed by its ARI contexts before Stasis(), and by
#: the gate on the carrier legs it creates) and the AstDB family it writes (ari_app/recorded_ends.py).
ENDED_HANDLER = "callgate-ended,s,1"
ENDED_FAMILY = "callgate_ended"
#: place_call's default hangup handler: what asterisk-conf's context for those args pushes.
AS_ASTERISK_CONF = "as asterisk-conf"
#: Functions Asterisk refuses to evaluate for ARI unless asterisk.conf has live_dangerously=yes
#: (registered "escalating" for reads in func_db.c): GET …/variable answers 500.
DANGEROUS_READS = {"DB", "DB_DELETE"}
#: asterisk-conf's continue contexts: Set(CHANNEL(hangup_handler_push)=callgate-continue-settle,s,1) before
#: Stasis(callgate,<direction>,continue,hangup-handler)
CONTINUE_CONTEXTS = ("callgate-outbound-continue", "callgate-inbound-continue")
HANDLER_ARG = "hangup-handler"
SETTLE_HANDLER = "callgate-continue-settle"
DIAL_RESET_VARS = ["DIALSTATUS", "DIALEDPEERNUMBER", "DIALEDPEERNAME", "ANSWEREDTIME", "ANSWEREDTIME_MS",
                   "DIALEDTIME", "DIALEDTIME_MS", "RINGTIME", "RINGTIME_MS", "PROGRESSTIME", "PROGRESSTIME_MS"]


class RestError(Exception):
    """Raised inside a handler: becomes the Asterisk error response."""

    def __init__(self, status: int, message: str, reason: str | None = None, key: str = "message") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.key = key


# --------------------------------------------------------------------------- state objects
class Channel:
    def __init__(self, sim: "AriSimulator", *, cid: str, name: str, state: str, protocol_id: str,
                 caller: tuple[str, str], context: str, exten: str, priority: int,
                 app_name: str, app_data: str, kind: str) -> None:
        self.sim = sim
        self.id = cid
        self.name = name
        self.state = state
        self.protocol_id = protocol_id
        self.caller_name, self.caller_number = caller
        self.connected_name = self.connected_number = ""
        self.context, self.exten, self.priority = context, exten, priority
        self.app_name, self.app_data = app_name, app_data
        self.creationtime = sim.timestamp()
        self.kind = kind            # "caller" (entered Stasis from the dialplan), "created", "dialed"
        self.vars: dict[str, str] = {}
        self.subs: dict[str, set[str]] = {}   # app -> reasons (stasis, create, originator, explicit)
        self.stasis_app: str | None = None
        self.stasis_args: list[str] = []
        self.pending_stasis: str | None = None
        self.bridge_id: str | None = None
        self.party: Party | None = None
        self.endpoint = ""
        self.dialled = False
        self.dial_started: float | None = None
        self.answered_at: float | None = None
        self.qos_done = False
        self.timers: list[asyncio.TimerHandle] = []
        self.gone = False
        self.call: SimCall | None = None
        self.dial_caller: "Channel | None" = None     # continue mode: the caller this leg was dialled for
        self.hangup_handlers: list[str] = []          # CHANNEL(hangup_handler_push), run at the hangup
        self.escalations_inhibited = False            # ARI set a variable on it: DB() writes blocked
        self.dial_peer: "Channel | None" = None       # continue mode: the callee of the caller's Dial()
        self.limit_ms: int | None = None
        self.limit_warning_ms: int = 0
        self.media = False          # RTP flowed (early media): RTPAUDIOQOS varsets at hangup
        self.dial_bridge: Bridge | None = None   # continue mode: Dial()'s basic bridge

    def json(self) -> dict:
        return {
            "id": self.id, "name": self.name, "state": self.state, "protocol_id": self.protocol_id,
            "caller": {"name": self.caller_name, "number": self.caller_number},
            "connected": {"name": self.connected_name, "number": self.connected_number},
            "accountcode": "",
            "dialplan": {"context": self.context, "exten": self.exten, "priority": self.priority,
                         "app_name": self.app_name, "app_data": self.app_data},
            "creationtime": self.creationtime, "language": "en",
        }

    def subscribed(self, app: str) -> bool:
        return bool(self.subs.get(app))


class Bridge:
    def __init__(self, sim: "AriSimulator", bid: str, name: str, bridge_type: str,
                 bridge_class: str = "stasis", creator: str = "Stasis", video_mode: str = "talker") -> None:
        self.id = bid
        self.bridge_class = bridge_class
        self.creator = creator
        self.video_mode = video_mode
        self.name = name
        self.bridge_type = bridge_type
        self.technology = "simple_bridge"
        self.channels: list[str] = []
        self.creationtime = sim.timestamp()
        self.subs: set[str] = set()

    def json(self) -> dict:
        return {"id": self.id, "technology": self.technology, "bridge_type": self.bridge_type,
                "bridge_class": self.bridge_class, "creator": self.creator, "name": self.name,
                "channels": list(self.channels), "creationtime": self.creationtime, "video_mode": self.video_mode}


class Playback:
    def __init__(self, pid: str, media: list[str], target_uri: str) -> None:
        self.id = pid
        self.media = media
        self.target_uri = target_uri
        self.state = "queued"
        self.timer: asyncio.TimerHandle | None = None

    def json(self) -> dict:
        return {"id": self.id, "media_uri": self.media[0], "target_uri": self.target_uri,
                "language": "en", "state": self.state}


WS_HIGH_WATER = 1 << 20
"""Bytes buffered for a websocket before the event writer waits for the reader."""
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def separate_args(text: str, delim: str = ",") -> list[str]:
    """Asterisk's AST_STANDARD_APP_ARGS split (main/app.c, __ast_app_separate_args with
    remove_chars): the delimiter splits only outside (), [] and quotes; quotes and backslashes
    are removed, a backslash keeps the next character literally."""
    args: list[str] = []
    cur: list[str] = []
    paren = bracket = 0
    quote = escaped = False
    for c in text:
        if escaped:
            cur.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            quote = not quote
        elif c == delim and not quote and paren == 0 and bracket == 0:
            args.append("".join(cur))
            cur = []
        else:
            if not quote:
                if c == "(":
                    paren += 1
                elif c == ")" and paren:
                    paren -= 1
                elif c == "[":
                    bracket += 1
                elif c == "]" and bracket:
                    bracket -= 1
            cur.append(c)
    args.append("".join(cur))
    return args


def _text_frame(payload: bytes) -> bytes:
    """An unmasked, final RFC 6455 text frame (server to client)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class AppState:
    def __init__(self, name: str) -> None:
        self.name = name
        self.ws: web.WebSocketResponse | None = None
        self.queue: asyncio.Queue | None = None
        self.subscribe_all = False
        self.bridge_subs: set[str] = set()
        #: PUT /applications/{app}/eventFilter: [{"type": ...}, ...]; empty = no restriction
        self.events_allowed: list[dict] = []
        self.events_disallowed: list[dict] = []
        self._allowed_types: frozenset[str] = frozenset()
        self._disallowed_types: frozenset[str] = frozenset()

    def set_filter(self, allowed: list[dict] | None, disallowed: list[dict] | None) -> None:
        if allowed is not None:
            self.events_allowed = allowed
            self._allowed_types = frozenset(f["type"] for f in allowed)
        if disallowed is not None:
            self.events_disallowed = disallowed
            self._disallowed_types = frozenset(f["type"] for f in disallowed)

    def allows(self, event_type: str | None) -> bool:
        """Asterisk's stasis_app_event_allowed: not disallowed, and allowed when a list is set."""
        if event_type in self._disallowed_types:
            return False
        return not self._allowed_types or event_type in self._allowed_types


# --------------------------------------------------------------------------- routing table
def _compile_routes() -> list[tuple[list[str], str, dict]]:
    routes = []
    for op in swagger_table.OPERATIONS:
        segs = [s for s in op["path"].split("/") if s]
        routes.append((segs, op["method"], op))
    return routes


_ROUTES = _compile_routes()
#: routes by (segment count, first segment): a request is matched against a handful, not all ~100
_ROUTE_INDEX: dict[tuple[int, str], list[tuple[list[str], str, dict]]] = {}
for _route in _ROUTES:
    _ROUTE_INDEX.setdefault((len(_route[0]), _route[0][0] if _route[0] else ""), []).append(_route)


def _match_path(path: str) -> tuple[list[dict], dict[str, str]] | None:
    """Operations of the best-matching path template (literal segments beat {params})."""
    segs = [s for s in path.split("/") if s]
    best: tuple[int, list[dict], dict[str, str]] | None = None
    for tsegs, _method, op in _ROUTE_INDEX.get((len(segs), segs[0] if segs else ""), ()):
        values: dict[str, str] = {}
        score = 0
        for t, s in zip(tsegs, segs):
            if t.startswith("{") and t.endswith("}"):
                values[t[1:-1]] = s
            elif t == s:
                score += 1
            else:
                break
        else:
            if best is None or score > best[0]:
                best = (score, [op], values)
            elif score == best[0] and best[1][0]["path"] == op["path"]:
                best[1].append(op)
    if best is None:
        return None
    return best[1], best[2]


#: Asterisk's own wording for missing/invalid parameters (rest_errors.jsonl); else generic.
_MISSING_MESSAGES = {
    ("create", "endpoint"): "Endpoint must be specified",
    ("originate", "endpoint"): "Endpoint must be specified",
    ("originateWithId", "endpoint"): "Endpoint must be specified",
    ("setChannelVar", "variable"): "Variable name is required",
    ("getChannelVar", "variable"): "Variable name is required",
    ("sendDTMF", "dtmf"): "DTMF is required",
}


class AriSimulator:
    """A fake Asterisk 22 ARI (REST + events) on 127.0.0.1. See the package docstring."""

    def __init__(self, user: str = "callgate", password: str = "secret", apps: Iterable[str] = ("callgate",),
                 asterisk_id: str = "02:fc:00:00:00:01", time_scale: float = 1.0,
                 stasis_entry_delay: float = 0.002, playback_start_delay: float = 0.005,
                 history: int | None = None, continue_warn_ms: int = CONTINUE_WARN_MS) -> None:
        self.user = user
        self.continue_warn_ms = continue_warn_ms
        """CALLGATE_WARN_MS of the dialplan the continue routes run (the traces' lab used 2000)."""
        self.password = password
        self.default_app = tuple(apps)[0] if apps else "callgate"
        self.asterisk_id = asterisk_id
        self.time_scale = time_scale
        self.stasis_entry_delay = stasis_entry_delay
        self.playback_start_delay = playback_start_delay
        self.sounds: dict[str, float] = dict(DEFAULT_SOUNDS)
        # history=None keeps every request and event (tests inspect them); a long run (the
        # benchmark) keeps the last ``history`` only: hundreds of thousands of kept event dicts
        # made the garbage collector's full passes the simulator's largest cost at 300 calls/s.
        def kept() -> list | collections.deque:
            return [] if history is None else collections.deque(maxlen=history)

        self.requests: list[RecordedRequest] | collections.deque = kept()
        #: Every event generated for an app, in order, as (app, event, fate): fate is "sent",
        #: "dropped" (socket down) or "filtered" (the app's eventFilter). What Asterisk produced,
        #: whatever the app asked to receive: the trace contract tests compare this;
        #: ``events_sent`` / ``events_dropped`` are views of it.
        self.events_generated: list[tuple[str, dict, str]] | collections.deque = kept()
        self.calls: dict[str, SimCall] = {}
        self._call_by_callee: dict[str, SimCall] = {}
        self._ts_ms = self._ts_sec = -1
        self._ts_prefix = self._ts_text = ""
        self._channels: dict[str, Channel] = {}
        self._bridges: dict[str, Bridge] = {}
        self._dial_bridges: dict[str, Bridge] = {}
        """Dialplan Dial()'s basic bridges: listed by GET /bridges, not the application's."""
        self._playbacks: dict[str, Playback] = {}
        self._apps: dict[str, AppState] = {}
        self._all_ws: set[web.WebSocketResponse] = set()
        self._writers: set[asyncio.Task] = set()
        self._destinations: dict[str, Party] = {}
        self._default_party = Party()
        #: Dialplan functions a variable name may call through setChannelVar; drop "ARRAY" to
        #: play an Asterisk without func_strings.so.
        self.dialplan_functions: set[str] = {"ARRAY", "VOLUME", "TALK_DETECT", "CALLERID", "CONNECTEDLINE", "CHANNEL"}
        #: Asterisk's AstDB ("family/key/…" → value), as `database show` lists it without the
        #: leading "/". Only asterisk-conf's [callgate-ended] handler writes it here.
        self.astdb: dict[str, str] = {}
        #: Global variables (POST/GET /asterisk/variable).
        self.globals: dict[str, str] = {}
        #: What Asterisk would log for a function it does not have ("Function X not registered").
        self.function_errors: list[str] = []
        self._faults: list[RestFault] = []
        self._refuse_ws = False
        self._seq = itertools.count()
        self._name_seq = itertools.count(1)
        self._sip_call_seq = itertools.count(1)
        self._epoch = int(time.time())
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0_wall = time.time()
        self._t0_loop = 0.0
        self.url = ""
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self, port: int = 0) -> None:
        self._loop = asyncio.get_running_loop()
        self._t0_wall = time.time()
        self._t0_loop = self._loop.time()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        for ch in list(self._channels.values()):
            for t in ch.timers:
                t.cancel()
        for pb in self._playbacks.values():
            if pb.timer:
                pb.timer.cancel()
        for ws in list(self._all_ws):
            await ws.close()
        for task in list(self._writers):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "AriSimulator":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ------------------------------------------------------------------ time
    def now(self) -> float:
        """Simulated epoch seconds (wall clock at start + real elapsed / time_scale)."""
        loop = self._loop or asyncio.get_running_loop()
        return self._t0_wall + (loop.time() - self._t0_loop) / self.time_scale

    def timestamp(self, at: float | None = None) -> str:
        t = self.now() if at is None else at
        ms = int(t * 1000)
        if ms == self._ts_ms:  # one call emits a dozen events in the same millisecond
            return self._ts_text
        secs, milli = divmod(ms, 1000)
        if secs != self._ts_sec:
            self._ts_sec = secs
            self._ts_prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(secs))
        self._ts_ms = ms
        self._ts_text = f"{self._ts_prefix}{milli:03d}+0000"
        return self._ts_text

    def _later(self, seconds: float, fn: Callable, *args, owner: Channel | None = None) -> asyncio.TimerHandle:
        loop = self._loop or asyncio.get_running_loop()

        def run() -> None:
            if owner is not None and owner.gone:
                return
            try:
                fn(*args)
            except Exception:  # a simulator bug must be loud in tests
                log.exception("simulator timer %s failed", getattr(fn, "__name__", fn))
                raise

        handle = loop.call_later(max(0.0, seconds) * self.time_scale, run)
        if owner is not None:
            owner.timers.append(handle)
        return handle

    # ------------------------------------------------------------------ scripting API
    def script_destination(self, endpoint: str, party: Party) -> None:
        """Behaviour of the party reached by dialling exactly ``endpoint`` (e.g. PJSIP/1514...@trunk)."""
        self._destinations[endpoint] = party

    def script_destination_default(self, party: Party) -> None:
        self._default_party = party

    def party_for(self, endpoint: str) -> Party:
        return self._destinations.get(endpoint, self._default_party)

    def inject_rest_fault(self, method: str, path_regex: str, status: int, message: str, times: int = 1) -> None:
        """The next ``times`` requests matching (method, regex on the path without /ari) fail."""
        self._faults.append(RestFault(method.upper(), re.compile(path_regex), status, message, times))

    def drop_websockets(self) -> None:
        """Close every event socket (as a network drop would); events meanwhile are lost."""
        for ws in list(self._all_ws):
            asyncio.ensure_future(ws.close(code=1001))
        for app in self._apps.values():
            app.ws = None
            app.queue = None

    def refuse_websockets(self, refuse: bool = True) -> None:
        """While True, event socket handshakes get HTTP 503 (Asterisk unreachable for events)."""
        self._refuse_ws = refuse

    @property
    def channels(self) -> dict[str, dict]:
        return {cid: ch.json() for cid, ch in self._channels.items()}

    def channel_variables(self, channel_id: str) -> dict[str, str]:
        """A live channel's variables (what ``GET …/variable`` would read)."""
        return dict(self._channels[channel_id].vars)

    @property
    def bridges(self) -> dict[str, dict]:
        return {bid: b.json() for bid, b in self._bridges.items()}

    def app_connected(self, app: str | None = None) -> bool:
        st = self._apps.get(app or self.default_app)
        return bool(st and st.ws is not None and not st.ws.closed)

    async def wait_app_connected(self, app: str | None = None, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.app_connected(app):
            if loop.time() > deadline:
                raise asyncio.TimeoutError(f"app {app or self.default_app!r} never connected")
            await asyncio.sleep(0.005)

    @property
    def events_sent(self) -> list[tuple[str, dict]]:
        """(app, event) sent on the apps' sockets, in send order."""
        return [(a, ev) for a, ev, fate in self.events_generated if fate == "sent"]

    @property
    def events_dropped(self) -> list[tuple[str, dict]]:
        """(app, event) lost because the app's socket was down (never replayed, as Asterisk)."""
        return [(a, ev) for a, ev, fate in self.events_generated if fate == "dropped"]

    def events_of(self, channel_id: str | None = None, app: str | None = None, *,
                  generated: bool = False) -> list[dict]:
        """Events sent (to ``app``) about a channel (as ``channel``, ``peer``, ``caller`` or playback
        target); ``generated=True``: also those the app's eventFilter held back or a socket drop lost
        (what Asterisk produced, in order)."""
        out = []
        for a, ev, fate in self.events_generated:
            if (app is not None and a != app) or (fate != "sent" and not generated):
                continue
            if channel_id is None or channel_id in _event_channel_ids(ev):
                out.append(ev)
        return out

    # ------------------------------------------------------------------ placing calls
    async def place_call(self, endpoint: str = "alice", exten: str = "15145550100",
                         context: str = "from-internal", app: str | None = None,
                         app_args: Iterable[str] = ("outbound",), caller_hangup_after: float | None = None,
                         caller_cancel_after: float | None = None, caller_id: str | None = None,
                         hangup_handler: str | None = AS_ASTERISK_CONF) -> SimCall:
        """A SIP phone (``endpoint``) dials ``exten``; the dialplan runs Stasis(app, args).

        ``hangup_handler``: what the dialplan pushed with CHANNEL(hangup_handler_push) before
        Stasis() — asterisk-conf's bridge-mode contexts push [callgate-ended] (the default, unless
        the args say ``continue``: its continue contexts do not); None plays a dialplan without it."""
        app = app or self.default_app
        args = list(app_args)
        cid_name = caller_id if caller_id is not None else endpoint
        ch = self._new_channel(kind="caller", name=f"PJSIP/{endpoint}-{next(self._name_seq):08x}",
                               state="Ring", protocol_id=f"{next(self._sip_call_seq)}-{uuid.uuid4().int % 99999}@127.0.0.1",
                               caller=(cid_name, cid_name), context=context, exten=exten, priority=1,
                               app_name="", app_data="")
        ch.endpoint = f"PJSIP/{endpoint}"
        if hangup_handler == AS_ASTERISK_CONF:
            hangup_handler = None if "continue" in args else ENDED_HANDLER
        if hangup_handler:
            ch.hangup_handlers.append(hangup_handler)
        call = SimCall(self, ch.id)
        call.placed_at = self.now()
        call.hangup_after = caller_hangup_after
        ch.call = call
        self.calls[ch.id] = call
        self._emit_created(ch)
        # the dialplan up to Stasis(): only subscribeAll apps see these (no subscription yet)
        self._varset(ch, "SIPDOMAIN", "127.0.0.1")
        self._dialplan(ch, "NoOp", f'{context}: "{cid_name}" <{cid_name}> -> {exten}', 1)
        if HANDLER_ARG in args[2:] and context in CONTINUE_CONTEXTS:
            # asterisk-conf's continue route pushes its settle handler before Stasis() and says so
            # with this argument
            ch.hangup_handlers.append(SETTLE_HANDLER)
            self._dialplan(ch, "Set", f"CHANNEL(hangup_handler_push)={SETTLE_HANDLER},s,1")
        self._dialplan(ch, "Stasis", ",".join([app] + args), 2)
        self._varset(ch, "STASISSTATUS", "")
        if not self.app_connected(app):
            # "Stasis app 'callgate' not active": the caller gets 603 Decline, cause 16
            log.info("simulator: Stasis app %r not active, call %s fails", app, ch.id)
            self._destroy(ch, cause=16, ended_by="pbx", sip=(603, "Q.850;cause=16"), emit=False)
            return call
        self._enter_stasis(ch, app, args)
        if caller_cancel_after is not None:
            self._later(caller_cancel_after, self._caller_cancel, ch, owner=ch)
        return call

    async def hangup_channel(self, channel_id: str, cause: int = 16) -> None:
        """A party hangs up: BYE when answered, CANCEL (caller) or a rejection (callee) when not."""
        ch = self._channels.get(channel_id)
        if ch is None or ch.gone:
            return
        if ch.state == "Up":
            self._party_bye(ch)
        elif ch.kind == "caller":
            self._caller_cancel(ch)
        else:
            self._party_reject(ch, cause)

    # ------------------------------------------------------------------ channel helpers
    def _new_channel(self, **kw) -> Channel:
        cid = kw.pop("cid", None) or f"{self._epoch}.{next(self._seq)}"
        ch = Channel(self, cid=cid, **kw)
        self._channels[cid] = ch
        return ch

    def _emit_created(self, ch: Channel) -> None:
        self._emit({"type": "ChannelCreated", "timestamp": self.timestamp(), "channel": ch.json()},
                   channels=(), all_only=True)

    def _enter_stasis(self, ch: Channel, app: str, args: list[str]) -> None:
        ch.stasis_app = app
        ch.stasis_args = args
        ch.subs.setdefault(app, set()).add("stasis")
        self._emit({"type": "StasisStart", "timestamp": self.timestamp(), "args": list(args),
                    "channel": ch.json()}, channels=(ch,))

    def _leave_stasis(self, ch: Channel) -> None:
        if ch.stasis_app is None:
            return
        app = ch.stasis_app
        self._emit({"type": "StasisEnd", "timestamp": self.timestamp(), "channel": ch.json()}, channels=(ch,))
        ch.stasis_app = None
        reasons = ch.subs.get(app)
        if reasons:
            reasons.discard("stasis")
        self._varset(ch, "STASISSTATUS", "SUCCESS")

    def _varset(self, ch: Channel, name: str, value: str, snapshot: dict | None = None) -> None:
        """``snapshot``: the channel's JSON when the caller emits several varsets in a row with
        nothing changing in between (the events then share it; nobody mutates an event)."""
        ch.vars[name] = value
        self._emit({"variable": name, "value": value, "type": "ChannelVarset", "timestamp": self.timestamp(),
                    "channel": snapshot or ch.json()}, channels=(ch,))

    def _state(self, ch: Channel, state: str) -> None:
        ch.state = state
        self._emit({"type": "ChannelStateChange", "timestamp": self.timestamp(), "channel": ch.json()},
                   channels=(ch,))

    def _hangup_request(self, ch: Channel, cause: int | None = None, soft: bool = False,
                        tech_cause: int | None = None) -> None:
        ev: dict[str, Any] = {}
        if cause is not None:
            ev["cause"] = cause
        if soft:
            ev["soft"] = True
        if tech_cause is not None:
            ev["tech_cause"] = tech_cause
        ev.update({"type": "ChannelHangupRequest", "timestamp": self.timestamp(), "channel": ch.json()})
        self._emit(ev, channels=(ch,))

    def _dialplan(self, ch: Channel, app_name: str, app_data: str, priority: int | None = None) -> None:
        if priority is not None:
            ch.priority = priority
        ch.app_name, ch.app_data = app_name, app_data
        self._emit({"type": "ChannelDialplan", "timestamp": self.timestamp(), "dialplan_app": app_name,
                    "dialplan_app_data": app_data, "channel": ch.json()}, channels=(ch,))

    def _dial_event(self, peer: Channel, dialstatus: str, dialstring: str = "",
                    caller: Channel | None = None) -> None:
        ev: dict[str, Any] = {"type": "Dial", "timestamp": self.timestamp(), "dialstatus": dialstatus,
                              "forward": "", "dialstring": dialstring}
        if caller is not None:
            ev["caller"] = caller.json()
        ev["peer"] = peer.json()
        self._emit(ev, channels=(peer,) + ((caller,) if caller is not None else ()))

    def _rtp_qos(self, ch: Channel) -> None:
        """RTPAUDIOQOS* varsets at the hangup of an answered channel (the bridged peer gets *BRIDGED)."""
        if ch.qos_done or (ch.answered_at is None and not ch.media):
            return
        ch.qos_done = True
        peer = self._bridge_peer(ch)
        ssrc = str(uuid.UUID(int=hash(ch.id) & ((1 << 128) - 1)).int % 2_000_000_000)
        # one snapshot per channel for the whole burst (a third of a bridged call's events)
        snap = ch.json()
        peer_snap = peer.json() if peer is not None and not peer.qos_done else None
        for name, template in _QOS_VALUES:
            value = template.format(ssrc=ssrc)
            self._varset(ch, name, value, snap)
            if peer_snap is not None:
                self._varset(peer, name + "BRIDGED", value, peer_snap)

    def _bridge_peer(self, ch: Channel) -> Channel | None:
        if ch.bridge_id is None or ch.bridge_id not in self._bridges:
            return None
        for other in self._bridges[ch.bridge_id].channels:
            if other != ch.id and other in self._channels:
                return self._channels[other]
        return None

    def _bridge_varsets(self, a: Channel, b: Channel, rounds: int = 4) -> None:
        for _ in range(rounds):
            self._varset(b, "BRIDGEPEER", a.name)
            self._varset(b, "BRIDGEPVTCALLID", a.protocol_id)
            self._varset(a, "BRIDGEPEER", b.name)
            self._varset(a, "BRIDGEPVTCALLID", b.protocol_id)

    def _leave_bridge(self, ch: Channel) -> None:
        if ch.bridge_id is None:
            return
        bridge = self._bridges.get(ch.bridge_id)
        ch.bridge_id = None
        if bridge is None or ch.id not in bridge.channels:
            return
        had_peer = len(bridge.channels) > 1
        if had_peer or ch.vars.get("BRIDGEPEER"):
            self._varset(ch, "BRIDGEPEER", "")
            self._varset(ch, "BRIDGEPVTCALLID", "")
        bridge.channels.remove(ch.id)
        # the event shows the technology before the bridge re-evaluates it (traced: native_rtp)
        self._emit({"type": "ChannelLeftBridge", "timestamp": self.timestamp(), "bridge": bridge.json(),
                    "channel": ch.json()}, channels=(ch,), bridge=bridge)
        self._retech(bridge)

    def _retech(self, bridge: Bridge) -> None:
        chans = [self._channels[c] for c in bridge.channels if c in self._channels]
        if len(chans) == 2 and all(c.state == "Up" for c in chans):
            bridge.technology = "native_rtp"
        else:
            bridge.technology = "simple_bridge"

    def _stop_playbacks(self, ch: Channel) -> None:
        for pb in list(self._playbacks.values()):
            if pb.target_uri == f"channel:{ch.id}" and pb.state in ("queued", "playing"):
                if pb.timer:
                    pb.timer.cancel()
                was_started = pb.state == "playing"
                pb.state = "done"
                if was_started:
                    self._emit_playback("PlaybackFinished", pb)
                self._playbacks.pop(pb.id, None)

    def _destroy(self, ch: Channel, cause: int, *, ended_by: str, sip: tuple[int, str] | None = None,
                 tech_cause: int | None = None, emit: bool = True) -> None:
        """Final ChannelDestroyed; resolves the caller's outcome."""
        if ch.gone:
            return
        ch.gone = True
        for t in ch.timers:
            t.cancel()
        ch.timers.clear()
        self._leave_bridge_silently(ch)
        self._run_hangup_handlers(ch, emit)
        if ch.kind != "dialed":   # a Dial() callee is destroyed still "in" AppDial (traced)
            ch.app_name = ch.app_data = ""
        if emit:
            ev: dict[str, Any] = {"type": "ChannelDestroyed", "timestamp": self.timestamp(), "cause": cause,
                                  "cause_txt": causes.cause_text(cause)}
            if tech_cause is not None:
                ev["tech_cause"] = tech_cause
            ev["channel"] = ch.json()
            self._emit(ev, channels=(ch,))
        self._channels.pop(ch.id, None)
        ch.subs.clear()
        if ch.call is not None:
            call = ch.call
            answered = ch.answered_at is not None
            end = self.now()
            talk_ms = int(round((end - ch.answered_at) * 1000)) if answered else None
            if sip is None:
                sip = (200, f"Q.850;cause={cause}") if answered else causes.final_response_for_cause(cause)
            if answered:
                sip = (200, sip[1])
            call._finish(CallOutcome(sip_final=sip[0], q850_cause=cause, answered=answered, talk_ms=talk_ms,
                                     heard=list(call.heard), progress=call.progress, ended_by=ended_by,
                                     sip_reason=sip[1], ringing=call.ringing,
                                     callee_talk_ms=call.callee_talk_ms), dict(ch.vars))

    def _run_hangup_handlers(self, ch: Channel, emit: bool = True) -> None:
        """Run the hangup handlers the channel pushed, last pushed first (as Asterisk runs the stack).
        Two are modelled, both as seen on Asterisk 22: asterisk-conf's [callgate-ended] (bridge mode:
        records the end in AstDB, see _record_end) and [callgate-continue-settle] (continue mode:
        reports the end to the gate, see _run_settle_handler; it emits events, so not on a silent
        teardown)."""
        while ch.hangup_handlers:
            context = ch.hangup_handlers.pop().split(",", 1)[0]
            if context == ENDED_HANDLER.split(",", 1)[0]:
                self._record_end(ch)
            elif context == SETTLE_HANDLER and emit:
                self._run_settle_handler(ch)

    def _record_end(self, ch: Channel) -> None:
        """asterisk-conf's [callgate-ended] on a hung-up channel. As on Asterisk 22 (checked on the
        lab): it runs whether or not any app is connected, after the hangup and before ChannelDestroyed, and writes
        ``callgate_ended/<CALLGATE_CALL or its own id>/<STRFTIME(,,%s%3q)>`` = the channel's name
        unless that call already has an entry (the first leg to end wins) — except on a channel
        ARI has set a variable on while it was in Stasis: Asterisk then blocks DB() on its thread
        ("Dangerous function DB write blocked", res/stasis/control.c), so nothing is written.
        Not modelled: the ChannelVarset events of its Set() lines (no app reads them)."""
        key = ch.vars.get("CALLGATE_CALL") or ch.id
        prefix = f"{ENDED_FAMILY}/{key}/"
        if any(k.startswith(prefix) for k in self.astdb):
            return
        if ch.escalations_inhibited:
            self.function_errors.append("Dangerous function DB write blocked")
            return
        self.astdb[f"{prefix}{int(self.now() * 1000)}"] = ch.name

    def _run_settle_handler(self, ch: Channel) -> None:
        """asterisk-conf's [callgate-continue-settle] on the hung-up caller, as recorded on Asterisk 22:
        with a CALLGATE_SESSION it re-enters Stasis(callgate,settle,<session>,<ANSWEREDTIME_MS>) —
        StasisStart and at once StasisEnd (the channel is hung up) — before ChannelDestroyed; with no
        app connected Stasis() fails (STASISSTATUS=FAILED, the Gosub ends abnormally: both seen on
        Asterisk 22) and nobody is told."""
        ch.context, ch.exten = SETTLE_HANDLER, "s"
        session = ch.vars.get("CALLGATE_SESSION", "")
        self._dialplan(ch, "GotoIf", f'{0 if session else 1}?done', 1)
        if session:
            args = ["settle", session, ch.vars.get("ANSWEREDTIME_MS", "")]
            self._dialplan(ch, "Stasis", ",".join([self.default_app] + args), 2)
            self._varset(ch, "STASISSTATUS", "")
            if self.app_connected(self.default_app):
                self._enter_stasis(ch, self.default_app, args)
                self._leave_stasis(ch)
            else:
                # Stasis() returns -1 on the hung-up channel: "Abnormal 'Gosub(…)' exit", the
                # handler's remaining priorities do not run
                self._varset(ch, "STASISSTATUS", "FAILED")
                return
        self._dialplan(ch, "NoOp", f"callgate settle: STASISSTATUS={ch.vars.get('STASISSTATUS', '')}", 3)
        self._dialplan(ch, "Return", "", 4)

    def _astdb_keys(self, path: str) -> str:
        """DB_KEYS(path): the next key component under ``path``, comma-separated (func_db.c)."""
        prefix = path.strip("/") + "/"
        out: list[str] = []
        for k in sorted(self.astdb):
            if k.startswith(prefix):
                part = k[len(prefix):].split("/", 1)[0]
                if part not in out:
                    out.append(part)
        return ",".join(out)

    def _leave_bridge_silently(self, ch: Channel) -> None:
        if ch.bridge_id and ch.bridge_id in self._bridges:
            b = self._bridges[ch.bridge_id]
            if ch.id in b.channels:
                b.channels.remove(ch.id)
                self._retech(b)
        ch.bridge_id = None

    # ------------------------------------------------------------------ teardown flows
    def _app_hangup(self, ch: Channel, cause: int, raw_code: int) -> None:
        """DELETE /channels/{id} (the traced sequences per channel kind and state)."""
        if ch.gone:
            return
        if ch.kind == "dialed":
            self._dialed_leg_gone(ch, cause, by_app=True)
            return
        up = ch.state == "Up"
        self._stop_playbacks(ch)
        self._rtp_qos(ch)
        self._hangup_request(ch, 32, soft=True)
        if ch.dial_peer is not None and not ch.dial_peer.gone:
            # caller in a dialplan Dial(): the callee is hung up (answered) or CANCELled with it
            if up:
                self._finish_dialplan_dial(ch, ended_by="app", cause=cause)
                return
            peer = ch.dial_peer
            self._dial_event(peer, "CANCEL", caller=ch)
            self._dialed_leg_gone(peer, cause, by_app=True, notify_caller=False)
            ch.dial_peer = None
            self._varset(ch, "DIALSTATUS", "CANCEL")
            self._hangup_request(ch, 16, soft=True)
            status, reason = causes.final_response_for_cause(raw_code)
            self._destroy(ch, cause, ended_by="app", sip=(status, reason), tech_cause=status)
            return
        self._leave_bridge(ch)
        was_in_stasis = ch.stasis_app is not None
        self._leave_stasis(ch)
        if ch.kind == "caller":
            if was_in_stasis:
                self._hangup_request(ch, 16, soft=True)
            if up:
                self._destroy(ch, cause, ended_by="app", sip=(200, f"Q.850;cause={cause}"))
            else:
                status, reason = causes.final_response_for_cause(raw_code)
                self._destroy(ch, cause, ended_by="app", sip=(status, reason), tech_cause=status)
            return
        # created channel
        if not ch.dialled:
            self._hangup_request(ch, 16, tech_cause=603)
            self._destroy(ch, 16, ended_by="app", tech_cause=603)
        else:
            self._party_gone(ch)
            self._destroy(ch, cause, ended_by="app")

    def _party_gone(self, ch: Channel) -> None:
        """A created leg ends: account its talk time to the call that originated it."""
        call = self._call_of(ch)
        if call is not None and ch.answered_at is not None and call.callee_talk_ms is None:
            call.callee_talk_ms = int(round((self.now() - ch.answered_at) * 1000))

    def _call_of(self, ch: Channel) -> SimCall | None:
        return self._call_by_callee.get(ch.id)

    def _add_callee(self, call: SimCall, callee_id: str) -> None:
        call.callee_ids.append(callee_id)
        self._call_by_callee[callee_id] = call

    def _caller_cancel(self, ch: Channel) -> None:
        """The calling phone CANCELs before being answered (cause 127, 487 Request Terminated)."""
        if ch.gone or ch.answered_at is not None:
            return
        if ch.dial_peer is not None and not ch.dial_peer.gone:
            peer = ch.dial_peer
            self._dial_event(peer, "CANCEL", caller=ch)
            self._varset(ch, "DIALSTATUS", "CANCEL")
            self._dialed_leg_gone(peer, 16, by_app=True, notify_caller=False)
        self._stop_playbacks(ch)
        self._hangup_request(ch, 127, tech_cause=487)
        self._leave_bridge(ch)
        was_in_stasis = ch.stasis_app is not None
        self._leave_stasis(ch)
        self._hangup_request(ch, 16, soft=True, tech_cause=487) if was_in_stasis or ch.dial_peer else None
        self._destroy(ch, 127, ended_by="caller", sip=(487, "Q.850;cause=0"), tech_cause=487)

    def _party_bye(self, ch: Channel) -> None:
        """An answered party sends BYE."""
        if ch.gone:
            return
        if ch.kind == "dialed":
            self._dialed_leg_gone(ch, 16, by_app=False)
            return
        if ch.kind == "caller" and ch.dial_peer is not None and not ch.dial_peer.gone:
            self._rtp_qos(ch)
            self._hangup_request(ch, 16)
            self._finish_dialplan_dial(ch, ended_by="caller", cause=16)
            return
        self._stop_playbacks(ch)
        self._rtp_qos(ch)
        if ch.kind == "caller":
            self._hangup_request(ch)          # BYE on an inbound channel: no cause field
        else:
            self._hangup_request(ch, 16)
        self._leave_bridge(ch)
        was_in_stasis = ch.stasis_app is not None
        self._leave_stasis(ch)
        if ch.kind == "caller":
            if was_in_stasis:
                self._hangup_request(ch, 16, soft=True)
            self._destroy(ch, 16, ended_by="caller", sip=(200, "Q.850;cause=16"))
        else:
            self._party_gone(ch)
            self._destroy(ch, 16, ended_by="callee")

    def _party_reject(self, ch: Channel, cause: int) -> None:
        """A dialled (created) party answers the INVITE with a failure (486 busy, 503, ...)."""
        if ch.gone or ch.state == "Up":
            return
        if ch.kind == "dialed":
            self._dialed_leg_gone(ch, cause, by_app=False)
            return
        status = causes.CAUSE_TO_SIP.get(cause, 603)
        self._hangup_request(ch, cause, tech_cause=status)
        self._leave_bridge(ch)
        self._leave_stasis(ch)
        self._destroy(ch, cause, ended_by="callee", tech_cause=status)

    def _dial_timeout(self, ch: Channel) -> None:
        """ARI dial ``timeout`` expired: Asterisk CANCELs the leg (cause 19, 480)."""
        if ch.gone or ch.state == "Up":
            return
        if ch.kind == "dialed":
            self._dialed_leg_gone(ch, 19, by_app=False, noanswer=True)
            return
        self._hangup_request(ch, 32, soft=True)
        self._leave_bridge(ch)
        self._leave_stasis(ch)
        self._destroy(ch, 19, ended_by="callee", tech_cause=480)

    # ------------------------------------------------------------------ party scripting on dial
    def _start_party(self, ch: Channel, timeout: float | None) -> None:
        party = ch.party or Party()
        ch.dial_started = self.now()
        if party.busy or party.fail_cause is not None:
            cause = 17 if party.busy else int(party.fail_cause)  # type: ignore[arg-type]
            if party.ring_after < party.reject_after:
                self._later(party.ring_after, self._party_ringing, ch, owner=ch)
            self._later(party.reject_after, self._party_reject, ch, cause, owner=ch)
        else:
            answer = None if (party.no_answer or party.answer_after is None) else party.answer_after
            ring_at = party.ring_after if answer is None else min(party.ring_after, answer)
            self._later(ring_at, self._party_ringing, ch, owner=ch)
            if answer is not None:
                self._later(answer, self._party_answer, ch, owner=ch)
        if timeout:
            self._later(timeout, self._dial_timeout, ch, owner=ch)

    def _party_ringing(self, ch: Channel) -> None:
        if ch.gone or ch.state != "Down":
            return
        if ch.kind == "dialed":
            ch.state = "Ringing"
            self._emit_state_all_only(ch)
            caller = ch.dial_caller
            if caller is not None and not caller.gone:
                self._dial_event(ch, "RINGING", caller=caller)
                if caller.call:
                    caller.call.ringing = True
            return
        self._state(ch, "Ringing")
        self._dial_event(ch, "RINGING")

    def _emit_state_all_only(self, ch: Channel) -> None:
        self._emit({"type": "ChannelStateChange", "timestamp": self.timestamp(), "channel": ch.json()},
                   channels=(ch,))

    def _party_answer(self, ch: Channel) -> None:
        if ch.gone or ch.state == "Up":
            return
        ch.answered_at = self.now()
        party = ch.party or Party()
        if ch.kind == "dialed":
            self._dialed_answer(ch)
        else:
            self._state(ch, "Up")
            self._dial_event(ch, "ANSWER")
        if party.hangup_after is not None:
            self._later(party.hangup_after, self._party_bye, ch, owner=ch)

    # ------------------------------------------------------------------ continue mode: tiny dialplan
    def _continue(self, ch: Channel, context: str | None, extension: str | None, priority: int | None,
                  label: str | None) -> None:
        call = ch.call
        if call is not None:
            call.continued = {"context": context, "extension": extension, "priority": priority,
                              "label": label, "variables": dict(ch.vars)}
        self._leave_bridge(ch)
        self._leave_stasis(ch)
        target_ctx = context or ch.context
        if extension:
            ch.exten = extension
        ch.context = target_ctx
        if target_ctx == "callgate-continue":
            # the lab's first continue route: Dial at once, no status check
            self._dialplan(ch, "NoOp", f"callgate continue-mode: {ch.caller_number} -> {ch.exten} "
                                       f"CALLGATE_MAX_MS={ch.vars.get('CALLGATE_MAX_MS', '')}", priority or 1)
            self._dialplan(ch, "Set", "LIMIT_WARNING_FILE=beep", ch.priority + 1)
            self._varset(ch, "LIMIT_WARNING_FILE", "beep")
            self._dialplan_dial(ch)
            return
        # callgate-outbound-continue / callgate-inbound-continue after Stasis(): GotoIf failed /
        # denied, then Dial (the trunk for outbound, PJSIP/${CALLGATE_ENDPOINT} for a DID)
        inbound = target_ctx == "callgate-inbound-continue"
        status = ch.vars.get("CALLGATE_STATUS", "")
        max_ms = ch.vars.get("CALLGATE_MAX_MS", "")
        ring = ch.vars.get("CALLGATE_ENDPOINT", "")
        denied = status == "DENY" or max_ms == "" or status != "ALLOW" or (inbound and not ring)
        p = priority or (ch.priority + 1)
        self._dialplan(ch, "GotoIf", "0?failed", p)
        self._dialplan(ch, "GotoIf", f"{1 if denied else 0}?denied", p + 1)
        if denied:
            reason = ch.vars.get("CALLGATE_REASON", "")
            cause = DENY_CAUSES.get(reason, 34)  # asterisk-conf's [callgate-deny]
            self._dialplan(ch, "NoOp", f"callgate DENY: reason={reason} cause={cause} "
                                       f"session={ch.vars.get('CALLGATE_SESSION', '')}", p + 6)
            self._dialplan(ch, "Hangup", str(cause), p + 7)
            up = ch.state == "Up"
            status_code, sip_reason = causes.final_response_for_cause(cause)
            self._hangup_request(ch, 16, soft=True, tech_cause=None if up else status_code)
            self._destroy(ch, cause, ended_by="app", sip=(status_code, sip_reason),
                          tech_cause=None if up else status_code)
            return
        self._dialplan(ch, "Set", "LIMIT_WARNING_FILE=beep", p + 2)
        self._varset(ch, "LIMIT_WARNING_FILE", "beep")
        self._dialplan_dial(ch, endpoint=f"PJSIP/{ring}" if inbound else None)

    def _dialplan_dial(self, ch: Channel, endpoint: str | None = None) -> None:
        max_ms = ch.vars.get("CALLGATE_MAX_MS", "")
        endpoint = endpoint or f"PJSIP/{ch.exten}@trunk"
        dialstring = endpoint.split("/", 1)[1]
        warn = limit_warning_ms(int(max_ms), self.continue_warn_ms) if max_ms.strip().isdigit() else ""
        self._dialplan(ch, "Dial", f"{endpoint},30,L({max_ms}:{warn})", ch.priority + 1)
        if not max_ms.strip().isdigit():
            # "Bridge does not accept L()": Dial fails, the caller gets 603 with cause 0
            self._hangup_request(ch, 16, soft=True)
            self._destroy(ch, 16, ended_by="app", sip=(603, "Q.850;cause=0"))
            return
        for name in DIAL_RESET_VARS:
            self._varset(ch, name, "")
        party = self.party_for(endpoint)
        peer = self._new_channel(kind="dialed", name=f"PJSIP/{dialstring.rsplit('@', 1)[-1]}-{next(self._name_seq):08x}", state="Down",
                                 protocol_id=str(uuid.uuid4()), caller=("", ch.exten), context="from-trunk",
                                 exten=ch.exten, priority=1, app_name="AppDial", app_data="(Outgoing Line)")
        peer.connected_name, peer.connected_number = ch.caller_name, ch.caller_number
        peer.party = party
        peer.endpoint = endpoint
        peer.dialled = True
        peer.dial_caller = ch
        peer.limit_ms = int(max_ms)
        peer.limit_warning_ms = int(warn)
        ch.dial_peer = peer
        ch.dial_started = self.now()
        if ch.call:
            self._add_callee(ch.call, peer.id)
        peer.app_name = peer.app_data = ""
        self._emit_created(peer)
        self._varset(peer, "DIALEDPEERNUMBER", dialstring)
        self._dialplan(peer, "AppDial", "(Outgoing Line)")
        self._emit({"type": "ChannelCallerId", "timestamp": self.timestamp(), "caller_presentation": 0,
                    "caller_presentation_txt": "Presentation Allowed, Not Screened", "channel": peer.json()},
                   channels=(peer,))
        self._emit({"type": "ChannelConnectedLine", "timestamp": self.timestamp(), "channel": peer.json()},
                   channels=(peer,))
        self._dial_event(peer, "", dialstring=dialstring, caller=ch)
        self._emit({"type": "ChannelConnectedLine", "timestamp": self.timestamp(), "channel": ch.json()},
                   channels=(ch,))
        self._varset(ch, "RINGTIME", "0")
        self._varset(ch, "RINGTIME_MS", "0")
        self._start_party(peer, timeout=30.0)

    def _dialed_answer(self, peer: Channel) -> None:
        caller = peer.dial_caller
        peer.state = "Up"
        self._emit_state_all_only(peer)
        if caller is None or caller.gone:
            return
        self._varset(caller, "DIALSTATUS", "ANSWER")
        self._varset(caller, "DIALEDPEERNAME", peer.name)
        self._varset(caller, "DIALEDPEERNUMBER", peer.endpoint.split("/", 1)[1])
        self._dial_event(peer, "ANSWER", caller=caller)
        caller.answered_at = self.now()
        self._state(caller, "Up")
        # Dial()'s basic bridge: its events reach subscribeAll apps only (no bridge subscription)
        bridge = Bridge(self, str(uuid.uuid4()), "", "mixing", bridge_class="basic", creator="", video_mode="none")
        caller.dial_bridge = bridge
        self._dial_bridges[bridge.id] = bridge
        self._emit({"type": "BridgeCreated", "timestamp": self.timestamp(), "bridge": bridge.json()}, all_only=True)
        self._dialplan(peer, "AppDial", "(Outgoing Line)")
        for leg in (peer, caller):
            bridge.channels.append(leg.id)
            self._emit({"type": "ChannelEnteredBridge", "timestamp": self.timestamp(), "bridge": bridge.json(),
                        "channel": leg.json()}, all_only=True)
        for _ in range(3):
            self._bridge_varsets_one(caller, peer, rounds=1)
            self._bridge_varsets_one(peer, caller, rounds=1)
        if caller.call and caller.call.hangup_after is not None:
            self._later(caller.call.hangup_after, self._party_bye, caller, owner=caller)
        limit = peer.limit_ms or 0
        if limit > 0:
            # Asterisk schedules L()'s warning only when it lies strictly inside the limit
            # (bridge_builtin_interval_features.c: warning < duration); the product dialplan asks
            # for at most limit - 1 ms, so a short grant is warned right at the answer
            # (tests/asterisk: test_call_is_cut_at_the_money_after_the_warning)
            warning = peer.limit_warning_ms
            warn_at = (limit - warning) / 1000.0
            if 0 < warning < limit:
                self._later(warn_at, self._limit_warning, caller, owner=caller)
            self._later(limit / 1000.0, self._limit_reached, caller, owner=caller)

    def _bridge_varsets_one(self, ch: Channel, peer: Channel, rounds: int = 3) -> None:
        for _ in range(rounds):
            self._varset(ch, "BRIDGEPEER", peer.name)
            self._varset(ch, "BRIDGEPVTCALLID", peer.protocol_id)

    def _limit_warning(self, caller: Channel) -> None:
        if caller.call:
            caller.call.heard.append("sound:beep")
        peer = caller.dial_peer
        if peer is not None and not peer.gone:
            self._bridge_varsets_one(caller, peer, rounds=1)
            self._bridge_varsets_one(peer, caller, rounds=1)

    def _limit_reached(self, caller: Channel) -> None:
        if caller.gone or caller.dial_peer is None:
            return
        self._finish_dialplan_dial(caller, ended_by="limit", cause=16)

    def _finish_dialplan_dial(self, caller: Channel, *, ended_by: str, cause: int) -> None:
        """Dial() returns after an answered call: the legs leave its bridge, the callee is hung up,
        the result varsets are set, then the caller is hung up (traced order)."""
        peer = caller.dial_peer
        caller.dial_peer = None
        answered = caller.answered_at is not None
        if answered and ended_by == "caller" and peer is not None:
            self._bridge_varsets_one(caller, peer, rounds=1)
        if answered:
            self._varset(caller, "BRIDGEPEER", "")
            self._varset(caller, "BRIDGEPVTCALLID", "")
        if peer is not None and not peer.gone:
            if caller.call and peer.answered_at is not None:
                caller.call.callee_talk_ms = int(round((self.now() - peer.answered_at) * 1000))
            self._close_dial_bridge(caller, peer)
            self._rtp_qos(peer)
            self._destroy(peer, 16, ended_by="app")
        self._destroy_dial_bridge(caller)
        if answered:
            talk = self.now() - caller.answered_at  # type: ignore[operator]
            if ended_by == "limit" and peer is not None and peer.limit_ms:
                # Asterisk's L() is a bridge interval hook that fires at the limit; this timer can
                # fire late on a loaded machine (in simulated time, a 0.2 s stall is 10 s at scale
                # 0.02), which real Dial() would not report
                talk = min(talk, peer.limit_ms / 1000.0)
            dialed = self.now() - (caller.dial_started or caller.answered_at)  # type: ignore[operator]
            self._varset(caller, "ANSWEREDTIME", str(int(talk)))
            self._varset(caller, "ANSWEREDTIME_MS", str(int(talk * 1000)))
            self._varset(caller, "DIALEDTIME", str(int(dialed)))
            self._varset(caller, "DIALEDTIME_MS", str(int(dialed * 1000)))
            self._varset(caller, "DIALSTATUS", "ANSWER")
        self._hangup_request(caller, 16, soft=True)
        self._rtp_qos(caller)
        self._destroy(caller, cause, ended_by=ended_by, sip=(200, f"Q.850;cause={cause}"))

    def _close_dial_bridge(self, caller: Channel, peer: Channel) -> None:
        bridge = caller.dial_bridge
        if bridge is None:
            return
        self._varset(peer, "BRIDGEPEER", "")
        self._varset(peer, "BRIDGEPVTCALLID", "")
        for leg in (caller, peer):
            if leg.id in bridge.channels:
                bridge.channels.remove(leg.id)
                bridge.technology = "native_rtp"
                self._emit({"type": "ChannelLeftBridge", "timestamp": self.timestamp(), "bridge": bridge.json(),
                            "channel": leg.json()}, all_only=True)

    def _destroy_dial_bridge(self, caller: Channel) -> None:
        bridge = caller.dial_bridge
        caller.dial_bridge = None
        if bridge is not None:
            self._dial_bridges.pop(bridge.id, None)
            self._emit({"type": "BridgeDestroyed", "timestamp": self.timestamp(), "bridge": bridge.json()},
                       all_only=True)

    def _dialed_leg_gone(self, peer: Channel, cause: int, *, by_app: bool, noanswer: bool = False,
                         notify_caller: bool = True) -> None:
        """The callee leg of a dialplan Dial() ends (its own events reach subscribeAll apps only)."""
        if peer.gone:
            return
        caller = peer.dial_caller
        answered = peer.answered_at is not None
        if answered and not by_app and notify_caller and caller is not None and not caller.gone:
            # the callee BYEs a bridged Dial(): Dial() returns ANSWER and the caller is hung up
            self._hangup_request(peer, 16)
            caller.dial_peer = peer
            self._finish_dialplan_dial(caller, ended_by="callee", cause=16)
            return
        if by_app:
            self._hangup_request(peer, 32, soft=True)
            self._destroy(peer, cause, ended_by="app")
        else:
            status = causes.CAUSE_TO_SIP.get(cause, 603)
            self._hangup_request(peer, cause, tech_cause=status)
            self._destroy(peer, cause, ended_by="callee", tech_cause=status)
        if not notify_caller or caller is None or caller.gone or answered:
            return
        # unanswered: Dial() returns BUSY / NOANSWER / CONGESTION, then Hangup() with that cause
        dialstatus = {17: "BUSY", 19: "NOANSWER"}.get(cause, "CONGESTION" if cause == 34 else "CHANUNAVAIL")
        self._dial_event(peer, dialstatus, caller=caller)
        self._varset(caller, "DIALSTATUS", dialstatus)
        caller.dial_peer = None
        self._dialplan(caller, "NoOp", f"after Dial: DIALSTATUS={dialstatus}", caller.priority + 1)
        self._dialplan(caller, "Hangup", "", caller.priority + 1)
        status, reason = causes.final_response_for_cause(cause)
        self._hangup_request(caller, 16, soft=True, tech_cause=status)
        self._destroy(caller, cause, ended_by="callee", sip=(status, reason), tech_cause=status)

    # ------------------------------------------------------------------ playbacks
    def _start_playback(self, pb: Playback) -> None:
        if pb.id not in self._playbacks:
            return
        pb.state = "playing"
        self._emit_playback("PlaybackStarted", pb)
        duration = 0.0
        for media in pb.media:
            scheme, _, name = media.partition(":")
            if scheme == "sound":
                if name not in self.sounds:
                    pb.timer = self._later(0.01, self._finish_playback, pb, "failed")
                    return
                duration += self.sounds[name]
            elif scheme in ("tone", "digits", "number", "characters", "silence", "recording"):
                duration += 1.0
            else:
                return  # unknown scheme: PlaybackStarted and nothing more (traced)
        pb.timer = self._later(duration, self._finish_playback, pb, "done")

    def _finish_playback(self, pb: Playback, state: str) -> None:
        if pb.id not in self._playbacks:
            return
        pb.state = state
        self._emit_playback("PlaybackFinished", pb)
        self._playbacks.pop(pb.id, None)
        scheme, _, target = pb.target_uri.partition(":")
        ch = self._channels.get(target) if scheme == "channel" else None
        peer = self._bridge_peer(ch) if ch is not None else None
        if ch is not None and peer is not None:
            # the channel goes back into the bridge after the playback: one more BRIDGEPEER round
            self._bridge_varsets(ch, peer, rounds=1)

    def _emit_playback(self, etype: str, pb: Playback) -> None:
        scheme, _, target = pb.target_uri.partition(":")
        chans: tuple[Channel, ...] = ()
        bridge = None
        if scheme == "channel" and target in self._channels:
            chans = (self._channels[target],)
        elif scheme == "bridge":
            bridge = self._bridges.get(target)
        self._emit({"type": etype, "timestamp": self.timestamp(), "playback": pb.json()},
                   channels=chans, bridge=bridge)

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
        matched = _match_path(rel)
        if matched is None:
            return self._json_response(404, {"message": "Resource not found"}, "Not Found")
        ops, path_params = matched
        op = next((o for o in ops if o["method"] == method), None)
        if op is None:
            return self._json_response(405, {"message": "Invalid method"}, "Method Not Allowed")
        try:
            params = self._validate(op, query, body)
            params.update(path_params)
            handler = getattr(self, f"_rest_{op['resource']}_{op['nickname']}", None)
            if handler is None:
                raise RestError(501, f"{op['nickname']} is not implemented by the simulator", "Not Implemented")
            status, result = handler(params, body)
        except RestError as exc:
            return self._json_response(exc.status, {exc.key: exc.message}, exc.reason)
        reason = {200: "OK", 201: "Created", 204: "No Content"}.get(status)
        return self._json_response(status, result, reason)

    def _validate(self, op: dict, query: dict[str, str], body: Any) -> dict[str, Any]:
        """Required and typed parameters per the swagger table (400 with Asterisk's message)."""
        out: dict[str, Any] = {}
        nick = op["nickname"]
        for p in op["params"]:
            name = p["name"]
            if p["param_type"] == "path":
                continue
            if p["param_type"] == "body":
                value = body.get(name) if isinstance(body, dict) else None
                if value is not None:
                    out[name] = value
                elif p["required"] and body is None:
                    raise RestError(400, f"Missing parameter {name}", "Bad Request")
                continue
            raw = query.get(name)
            if raw is None and isinstance(body, dict) and name in body:
                raw = str(body[name])   # ARI also accepts parameters in a JSON body
            if raw is None or raw == "":
                if p["required"]:
                    if name == "media" and nick in ("play", "playWithId"):
                        raise RestError(500, "Failed to queue media for playback", "Internal Server Error")
                    msg = _MISSING_MESSAGES.get((nick, name), f"Missing parameter {name}")
                    raise RestError(400, msg, "Bad Request")
                continue
            values = raw.split(",") if p["allow_multiple"] else [raw]
            converted: list[Any] = []
            for v in values:
                dtype = p["data_type"]
                if dtype in ("int", "long"):
                    try:
                        iv = int(v)
                    except ValueError:
                        raise RestError(400, f"Invalid value for parameter {name}", "Bad Request") from None
                    if p["min_value"] is not None and iv < p["min_value"]:
                        raise RestError(400, f"Invalid value for parameter {name}", "Bad Request")
                    converted.append(iv)
                elif dtype == "boolean":
                    if v.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise RestError(400, f"Invalid value for parameter {name}", "Bad Request")
                    converted.append(v.lower() in ("true", "1", "yes"))
                else:
                    if p["allowed_values"] is not None and v not in p["allowed_values"]:
                        if nick == "hangup" and name == "reason":
                            raise RestError(400, "Invalid reason for hangup reason provided", "Invalid Reason")
                        raise RestError(400, f"Invalid value for parameter {name}", "Bad Request")
                    converted.append(v)
            out[name] = converted if p["allow_multiple"] else converted[0]
        return out

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

    # ------------------------------------------------------------------ REST handlers
    def _channel(self, params: dict, key: str = "channelId") -> Channel:
        ch = self._channels.get(params[key])
        if ch is None or ch.gone:
            raise RestError(404, "Channel not found", "Not Found")
        return ch

    def _stasis_channel(self, params: dict, *, needs_up_if_created: bool = True) -> Channel:
        ch = self._channel(params)
        if ch.stasis_app is None:
            raise RestError(409, "Channel not in Stasis application", "Conflict")
        if needs_up_if_created and ch.kind == "created" and ch.state != "Up":
            raise RestError(412, "Channel in invalid state", "Precondition Failed")
        return ch

    def _rest_channels_list(self, params, body):
        return 200, [ch.json() for ch in self._channels.values()]

    def _rest_channels_get(self, params, body):
        return 200, self._channel(params).json()

    def _rest_channels_ring(self, params, body):
        ch = self._stasis_channel(params)
        if ch.call:
            ch.call.ringing = True
        return 204, None

    def _rest_channels_ringStop(self, params, body):
        self._stasis_channel(params)
        return 204, None

    def _rest_channels_progress(self, params, body):
        ch = self._stasis_channel(params)
        if ch.call and ch.answered_at is None:
            ch.call.progress = True
        ch.media = True
        return 204, None

    def _rest_channels_answer(self, params, body):
        ch = self._stasis_channel(params)
        if ch.state != "Up":
            ch.answered_at = self.now()
            self._state(ch, "Up")
            if ch.call and ch.call.hangup_after is not None:
                self._later(ch.call.hangup_after, self._party_bye, ch, owner=ch)
            if ch.bridge_id and ch.bridge_id in self._bridges:
                self._retech(self._bridges[ch.bridge_id])
        return 204, None

    def _rest_channels_play(self, params, body):
        ch = self._channel(params)
        media = params.get("media") or []
        if ch.stasis_app is None:
            raise RestError(409, "Channel not in Stasis application", "Conflict")
        if ch.kind == "created" and ch.state != "Up":
            raise RestError(412, "Channel in invalid state", "Precondition Failed")
        if not media:
            raise RestError(500, "Failed to queue media for playback", "Internal Server Error")
        return self._queue_playback(media, f"channel:{ch.id}", params.get("playbackId"), [ch])

    def _rest_channels_playWithId(self, params, body):
        return self._rest_channels_play(params, body)

    def _queue_playback(self, media: list[str], target: str, pid: str | None, listeners: list[Channel]):
        pid = pid or str(uuid.uuid4())
        pb = Playback(pid, list(media), target)
        for ch in listeners:
            if ch.call is not None:
                ch.call.heard.extend(media)
                if ch.answered_at is None:
                    ch.call.progress = True   # play on an unanswered channel sends 183 first (traced)
            ch.media = True
        self._playbacks[pid] = pb
        result = pb.json()
        self._later(self.playback_start_delay, self._start_playback, pb)
        return 201, result

    def _rest_channels_hangup(self, params, body):
        ch = self._channel(params)
        reason = params.get("reason")
        code_raw = params.get("reason_code")
        if reason is not None and code_raw is not None:
            raise RestError(400, "The reason and reason_code can't both be specified", "Bad Request")
        raw_code: int
        if code_raw is not None:
            try:
                raw_code = int(code_raw)
            except ValueError:
                raise RestError(400, "Invalid reason for hangup reason code provided", "Invalid Reason Code") from None
        else:
            raw_code = causes.REASON_TO_CAUSE[reason or "normal"]
        cause = raw_code & 0x7f
        loop = self._loop or asyncio.get_running_loop()
        loop.call_soon(self._app_hangup, ch, cause, raw_code)
        return 204, None

    def _rest_channels_create(self, params, body):
        endpoint = params["endpoint"]
        app = params["app"]
        tech, _, resource = endpoint.partition("/")
        if tech not in KNOWN_TECHS or not resource:
            raise RestError(500, "Allocation failed", "Internal Server Error", key="error")
        cid = params.get("channelId")
        if cid and cid in self._channels:
            raise RestError(409, "Channel with given unique ID already exists", "Conflict")
        originator = self._channels.get(params.get("originator") or "")
        user, _, host = resource.partition("@")
        dev = host or user
        args = [a for a in (params.get("appArgs") or "").split(",")] if params.get("appArgs") else []
        if tech == "Local":  # Local/<exten>@<context>: the ;1 half, placed at that extension (traced)
            name, context, exten = f"Local/{resource}-{next(self._name_seq):08x};1", host or "default", user
        else:
            name, context, exten = (f"{tech}/{dev}-{next(self._name_seq):08x}",
                                    "from-trunk" if host == "trunk" else "from-internal", "s")
        ch = self._new_channel(cid=cid, kind="created", name=name, state="Down", protocol_id=str(uuid.uuid4()),
                               caller=("", ""), context=context, exten=exten, priority=1, app_name="", app_data="")
        ch.endpoint = endpoint
        ch.party = self.party_for(endpoint)
        ch.subs.setdefault(app, set()).add("create")
        if originator is not None:
            originator.subs.setdefault(app, set()).add("originator")
            if originator.call is not None:
                self._add_callee(originator.call, ch.id)
        variables = params.get("variables")
        if isinstance(variables, dict):
            for k, v in variables.items():
                if str(k) == "CHANNEL(hangup_handler_push)":  # a function write, not a variable
                    ch.hangup_handlers.append(str(v))
                else:
                    ch.vars[str(k)] = str(v)
        snapshot = ch.json()
        ch.pending_stasis = app
        self._emit_created(ch)
        self._later(self.stasis_entry_delay, self._created_enters_stasis, ch, app, args, owner=ch)
        return 200, snapshot

    def _created_enters_stasis(self, ch: Channel, app: str, args: list[str]) -> None:
        ch.pending_stasis = None
        self._dialplan(ch, "Stasis", ",".join([app] + args))
        self._varset(ch, "STASISSTATUS", "")
        if not self.app_connected(app):
            return
        self._enter_stasis(ch, app, args)

    def _rest_channels_originate(self, params, body):
        if not params.get("app") and not params.get("extension"):
            raise RestError(400, "Application or extension must be specified", "Bad Request")
        if params.get("endpoint") == "Local/clear@callgate-ended":
            return self._originate_ended_clear(params)
        raise RestError(501, "originate is not implemented by the simulator (use /channels/create)",
                        "Not Implemented")

    def _originate_ended_clear(self, params) -> tuple[int, dict]:
        """The gate's clean-up: the Local ;2 half runs asterisk-conf's clear@callgate-ended
        (DBdeltree(callgate_ended), Hangup()) and is never answered, so the ;1 half ends at once
        (traced on the lab: its app sees Dial, ChannelHangupRequest and ChannelDestroyed)."""
        cid = params.get("channelId")
        if cid and cid in self._channels:
            raise RestError(409, "Channel with given unique ID already exists", "Conflict")
        ch = self._new_channel(cid=cid, kind="created", name=f"Local/clear@callgate-ended-{next(self._name_seq):08x};1",
                               state="Down", protocol_id="", caller=("", ""), context="callgate-ended",
                               exten="clear", priority=1, app_name="AppDial2", app_data="(Outgoing Line)")
        ch.subs.setdefault(params["app"], set()).add("create")
        snapshot = ch.json()
        for k in [k for k in self.astdb if k.startswith(ENDED_FAMILY + "/")]:
            del self.astdb[k]

        def end() -> None:
            self._hangup_request(ch, 16)
            self._destroy(ch, 16, ended_by="pbx")
        loop = self._loop or asyncio.get_running_loop()
        loop.call_soon(end)
        return 200, snapshot

    def _rest_channels_originateWithId(self, params, body):
        return self._rest_channels_originate(params, body)

    def _rest_channels_dial(self, params, body):
        ch = self._channel(params)
        if ch.stasis_app is None:
            raise RestError(409, "Channel not in Stasis application", "Conflict")
        if ch.kind != "created" or (ch.state != "Down" and not ch.dialled):
            raise RestError(409, "Channel is not in the 'Down' state", "Conflict")
        if ch.dialled:
            # a second dial tears the leg down (CANCEL to the UAS, StasisEnd, ChannelDestroyed 16)
            # a few ms later, as traced (an answer right after it still gets 412)
            loop = self._loop or asyncio.get_running_loop()
            ch.timers.append(loop.call_later(0.02, self._second_dial, ch))
            return 204, None
        ch.dialled = True
        caller = self._channels.get(params.get("caller") or "")
        if caller is not None:
            ch.connected_name, ch.connected_number = caller.caller_name, caller.caller_number
        timeout = params.get("timeout")
        loop = self._loop or asyncio.get_running_loop()
        loop.call_soon(self._dial_started, ch, timeout)
        return 204, None

    def _dial_started(self, ch: Channel, timeout: int | None) -> None:
        if ch.gone:
            return
        self._emit({"type": "ChannelConnectedLine", "timestamp": self.timestamp(), "channel": ch.json()},
                   channels=(ch,))
        dialstring = ch.endpoint.partition("/")[2]
        self._dial_event(ch, "", dialstring=dialstring)
        self._start_party(ch, float(timeout) if timeout else None)

    def _second_dial(self, ch: Channel) -> None:
        if ch.gone:
            return
        self._hangup_request(ch)
        self._leave_bridge(ch)
        self._leave_stasis(ch)
        self._party_gone(ch)
        self._destroy(ch, 16, ended_by="app")

    def _rest_channels_continueInDialplan(self, params, body):
        ch = self._stasis_channel(params)
        loop = self._loop or asyncio.get_running_loop()
        loop.call_soon(self._continue, ch, params.get("context"), params.get("extension"),
                       params.get("priority"), params.get("label"))
        return 204, None

    def _rest_channels_setChannelVar(self, params, body):
        ch = self._channel(params)
        if ch.stasis_app is None:
            raise RestError(409, "Channel not in Stasis application", "Conflict")
        name, value = params["variable"], params.get("value") or ""
        # runs on the channel's thread with dangerous functions inhibited, and leaves them so
        ch.escalations_inhibited = True
        if name.endswith(")"):   # a dialplan function (pbx_builtin_setvar_helper → ast_func_write)
            self._function_write(ch, name, value)
        else:
            self._varset(ch, name, value)
        return 204, None

    def _function_write(self, ch: Channel, name: str, value: str) -> None:
        """``FUNC(args)=value`` as Asterisk runs it: ARRAY(A,B)=a,b sets A then B (missing values
        set ""), each with its ChannelVarset (func_strings.c). A function Asterisk does not have
        (not in ``dialplan_functions``) changes nothing; ARI still answers 204, as Asterisk does.
        Other functions are accepted and have no simulated effect."""
        func, _, args = name[:-1].partition("(")
        if func not in self.dialplan_functions:
            self.function_errors.append(f"Function {func} not registered")
            return
        if func == "ARRAY":
            names, values = separate_args(args), separate_args(value)
            for i, var in enumerate(names):
                self._varset(ch, var, values[i] if i < len(values) else "")
        elif func == "CHANNEL" and args == "hangup_handler_push":
            ch.hangup_handlers.append(value)

    def _rest_channels_getChannelVar(self, params, body):
        ch = self._channel(params)
        name = params["variable"]
        if name.endswith(")"):   # a dialplan function, evaluated on this channel (ast_func_read2)
            return 200, {"value": self._function_read(ch, name)}
        if name not in ch.vars:
            raise RestError(404, "Provided variable was not found", "Variable Not Found")
        return 200, {"value": ch.vars[name]}

    def _function_read(self, ch: Channel, name: str) -> str:
        """The AstDB functions as Asterisk 22 answers them to ARI (checked on the lab): DB() and
        DB_DELETE() are refused (500); DB_EXISTS() says 1/0 but its 2-byte buffer leaves DB_RESULT
        empty; DB_KEYS() lists keys. Other functions: only those in ``dialplan_functions`` exist."""
        func, _, args = name[:-1].partition("(")
        if func in DANGEROUS_READS:
            raise RestError(500, "Unable to read provided function", "Error With Function")
        if func == "DB_KEYS":
            return self._astdb_keys(args)
        if func == "DB_EXISTS":
            found = any(k == args.strip("/") for k in self.astdb)
            if found:
                self._varset(ch, "DB_RESULT", "")
            return "1" if found else "0"
        if func not in self.dialplan_functions:
            self.function_errors.append(f"Function {func} not registered")
            raise RestError(500, "Unable to read provided function", "Error With Function")
        return ""

    def _rest_channels_sendDTMF(self, params, body):
        self._stasis_channel(params)
        if not params.get("dtmf"):
            raise RestError(400, "DTMF is required", "Bad Request")
        return 204, None

    # bridges
    def _bridge(self, params, reason: str = "Not found") -> Bridge:
        b = self._bridges.get(params["bridgeId"])
        if b is None and params["bridgeId"] in self._dial_bridges:
            # Asterisk's find_bridge() (res/ari/resource_bridges.c): a bridge outside Stasis
            raise RestError(409, "Bridge not in Stasis application", "Conflict")
        if b is None:   # traced: GET says "Not Found", DELETE and addChannel "Not found"
            raise RestError(404, "Bridge not found", reason)
        return b

    def _rest_bridges_list(self, params, body):
        # every bridge Asterisk has, Dial()'s basic bridges included (seen by tests/asterisk: a
        # continued call's Dial bridge is in GET /bridges)
        return 200, [b.json() for b in (*self._bridges.values(), *self._dial_bridges.values())]

    def _rest_bridges_get(self, params, body):
        dial = self._dial_bridges.get(params["bridgeId"])
        return 200, (dial.json() if dial is not None else self._bridge(params, "Not Found").json())

    def _rest_bridges_create(self, params, body):
        return self._create_bridge(params, params.get("bridgeId"))

    def _rest_bridges_createWithId(self, params, body):
        return self._create_bridge(params, params["bridgeId"])

    def _create_bridge(self, params, bid: str | None):
        types = params.get("type") or "mixing"
        type_list = [t for t in types.split(",") if t]
        if any(t not in BRIDGE_TYPES for t in type_list):
            raise RestError(500, "Unable to create bridge. Possible duplicate bridge id '(null)'", "Internal Error")
        bid = bid or str(uuid.uuid4())
        if bid in self._bridges:
            raise RestError(409, f"Bridge with id '{bid}' already exists", "Conflict")
        b = Bridge(self, bid, params.get("name") or "", type_list[0] if type_list else "mixing")
        self._bridges[bid] = b
        self._emit({"type": "BridgeCreated", "timestamp": self.timestamp(), "bridge": b.json()}, all_only=True)
        return 200, b.json()

    def _rest_bridges_play(self, params, body):
        b = self._bridge(params)
        media = params.get("media") or []
        if not media:
            raise RestError(500, "Failed to queue media for playback", "Internal Server Error")
        listeners = [self._channels[c] for c in b.channels if c in self._channels]
        return self._queue_playback(media, f"bridge:{b.id}", params.get("playbackId"), listeners)

    def _rest_bridges_playWithId(self, params, body):
        return self._rest_bridges_play(params, body)

    def _rest_playbacks_get(self, params, body):
        return 200, self._playback(params).json()

    def _rest_applications_list(self, params, body):
        return 200, [self._app_json(n) for n in self._apps]

    def _rest_applications_get(self, params, body):
        return 200, self._app_json(self._app_name(params))

    def _rest_bridges_addChannel(self, params, body):
        b = self._bridge(params)
        ids = params.get("channel") or []
        chans = []
        for cid in ids:
            ch = self._channels.get(cid)
            if ch is None:
                raise RestError(400, "Channel not found", "Bad Request")
            chans.append(ch)
        for ch in chans:
            if ch.stasis_app is None:
                raise RestError(422, "Channel not in Stasis application", "Unprocessable Entity")
        for ch in chans:
            if ch.bridge_id == b.id:
                continue
            if ch.bridge_id is not None:
                self._leave_bridge(ch)
            ch.bridge_id = b.id
            b.channels.append(ch.id)
            for app in ch.subs:
                if ch.subs[app]:
                    b.subs.add(app)
            self._emit({"type": "ChannelEnteredBridge", "timestamp": self.timestamp(), "bridge": b.json(),
                        "channel": ch.json()}, channels=(ch,), bridge=b)
        members = [self._channels[c] for c in b.channels if c in self._channels]
        if len(members) == 2 and any(c in chans for c in members):
            self._bridge_varsets(members[0], members[1])
        self._retech(b)
        return 204, None

    def _rest_bridges_removeChannel(self, params, body):
        b = self._bridge(params)
        for cid in params.get("channel") or []:
            ch = self._channels.get(cid)
            if ch is None:
                raise RestError(400, "Channel not found", "Bad Request")
            if ch.id not in b.channels:
                raise RestError(422, "Channel not in this bridge", "Unprocessable Entity")
            self._leave_bridge(ch)
        return 204, None

    def _rest_bridges_destroy(self, params, body):
        b = self._bridge(params)
        for cid in list(b.channels):
            ch = self._channels.get(cid)
            if ch is not None:
                self._leave_bridge(ch)
        self._bridges.pop(b.id, None)
        if b.subs:
            self._emit({"type": "BridgeDestroyed", "timestamp": self.timestamp(), "bridge": b.json()}, bridge=b)
        return 204, None

    # applications
    def _app_json(self, name: str) -> dict:
        app = self._apps.get(name)
        return {"name": name,
                "channel_ids": [c.id for c in self._channels.values() if c.subscribed(name)],
                "bridge_ids": [b.id for b in self._bridges.values() if name in b.subs],
                "endpoint_ids": [], "device_names": [],
                "events_allowed": list(app.events_allowed) if app else [],
                "events_disallowed": list(app.events_disallowed) if app else []}

    def _rest_applications_filter(self, params, body):
        """PUT /applications/{app}/eventFilter: {"allowed": [{"type": T}, ...], "disallowed": [...]}.
        Matching is by event type, disallowed first (res/stasis/app.c). An empty or absent body
        clears both lists; a body naming one list leaves the other as it was."""
        name = self._app_name(params)
        app = self._apps[name]
        if isinstance(body, dict) and set(body) == {"filter"} and isinstance(body["filter"], dict):
            body = body["filter"]  # the filter wrapped in its parameter name: accepted too
        if body is None or body == {}:
            app.set_filter([], [])
            return 200, self._app_json(name)
        # The wording is ours (no trace shows Asterisk's): it names what is wrong.
        if not isinstance(body, dict):
            raise RestError(400, "Invalid format definition: the filter must be a JSON object", "Bad Request")
        lists: dict[str, list[dict]] = {}
        for key in ("allowed", "disallowed"):
            if key not in body:
                continue
            value = body[key]
            if not isinstance(value, list) or not all(isinstance(f, dict) and isinstance(f.get("type"), str)
                                                      for f in value):
                raise RestError(400, f'Invalid format definition: {key} must be a list of {{"type": "<event type>"}} '
                                     "objects", "Bad Request")
            lists[key] = [dict(f) for f in value]
        app.set_filter(lists.get("allowed"), lists.get("disallowed"))
        return 200, self._app_json(name)

    def _app_name(self, params) -> str:
        name = params["applicationName"]
        if name not in self._apps:
            raise RestError(404, "Application not found", "Not Found")
        return name

    def _rest_applications_subscribe(self, params, body):
        name = self._app_name(params)
        sources = params.get("eventSource") or []
        resolved = []
        for src in sources:
            scheme, _, ident = src.partition(":")
            if scheme not in ("channel", "bridge", "endpoint", "deviceState"):
                raise RestError(400, "Invalid event source URI scheme", "Bad Request")
            if scheme == "channel":
                ch = self._channels.get(ident)
                if ch is None:
                    raise RestError(422, "Event source does not exist", "Unprocessable Entity")
                resolved.append(ch)
            elif scheme == "bridge":
                b = self._bridges.get(ident)
                if b is None:
                    raise RestError(422, "Event source does not exist", "Unprocessable Entity")
                resolved.append(b)
        for obj in resolved:
            if isinstance(obj, Channel):
                obj.subs.setdefault(name, set()).add("explicit")
            else:
                obj.subs.add(name)
        return 200, self._app_json(name)

    def _rest_applications_unsubscribe(self, params, body):
        name = self._app_name(params)
        for src in params.get("eventSource") or []:
            scheme, _, ident = src.partition(":")
            if scheme not in ("channel", "bridge", "endpoint", "deviceState"):
                raise RestError(400, "Invalid event source URI scheme", "Bad Request")
            if scheme == "channel":
                ch = self._channels.get(ident)
                if ch is None or "explicit" not in ch.subs.get(name, set()):
                    raise RestError(422, "Event source was not subscribed to", "Unprocessable Entity")
                ch.subs[name].discard("explicit")
            elif scheme == "bridge":
                b = self._bridges.get(ident)
                if b is None or name not in b.subs:
                    raise RestError(422, "Event source was not subscribed to", "Unprocessable Entity")
                b.subs.discard(name)
            else:
                raise RestError(422, "Event source was not subscribed to", "Unprocessable Entity")
        return 200, self._app_json(name)

    # playbacks
    def _playback(self, params) -> Playback:
        pb = self._playbacks.get(params["playbackId"])
        if pb is None:
            raise RestError(404, "Playback not found", "Not Found")
        return pb

    def _rest_playbacks_stop(self, params, body):
        pb = self._playback(params)
        self._finish_playback(pb, "done")
        return 204, None

    def _rest_playbacks_control(self, params, body):
        self._playback(params)
        return 204, None

    # asterisk
    def _rest_asterisk_getInfo(self, params, body):
        return 200, {"build": {"os": "Linux", "kernel": "", "options": "", "machine": "x86_64", "date": "",
                               "user": "sim"},
                     "system": {"version": "GIT-22-69535d4837", "entity_id": self.asterisk_id},
                     "config": {"name": "", "default_language": "en", "setid": {"user": "", "group": ""}},
                     "status": {"startup_time": self.timestamp(self._t0_wall),
                                "last_reload_time": self.timestamp(self._t0_wall)}}

    def _rest_asterisk_ping(self, params, body):
        return 200, {"asterisk_id": self.asterisk_id, "ping": "pong", "timestamp": self.timestamp()}

    def _rest_asterisk_getGlobalVar(self, params, body):
        """Global variables only: Asterisk 22 does not evaluate a function here (``DB(…)`` is "")."""
        name = params["variable"]
        if name == "EPOCH":
            return 200, {"value": str(int(self.now()))}
        return 200, {"value": "" if name.endswith(")") else self.globals.get(name, "")}

    def _rest_asterisk_setGlobalVar(self, params, body):
        """A global variable, or a function write without a channel: DB_DELETE(path) deletes the
        entry and sets the global DB_RESULT to its value (func_db.c)."""
        name, value = params["variable"], params.get("value") or ""
        if name.endswith(")"):
            func, _, args = name[:-1].partition("(")
            if func == "DB_DELETE":
                self.globals["DB_RESULT"] = self.astdb.pop(args.strip("/"), "")
            elif func not in self.dialplan_functions:
                self.function_errors.append(f"Function {func} not registered")
            return 204, None
        self.globals[name] = value
        return 204, None


def _event_channel_ids(ev: dict) -> set[str]:
    ids = set()
    for k in ("channel", "peer", "caller"):
        v = ev.get(k)
        if isinstance(v, dict) and "id" in v:
            ids.add(v["id"])
    pb = ev.get("playback")
    if isinstance(pb, dict):
        scheme, _, ident = str(pb.get("target_uri", "")).partition(":")
        if scheme == "channel":
            ids.add(ident)
    return ids
