"""The ARI simulator: an aiohttp HTTP + WebSocket server behaving like the traced Asterisk 22.

All state changes and event emissions are synchronous (one asyncio loop, no awaits inside a
transition), so each transition is atomic and the event order is deterministic. Events go to
per-socket writer queues; an app whose socket is down loses them (Asterisk does not queue).

:class:`AriSimulator` is one object over one state; its sections live in modules of their own, the
four behaviours as mixins that never import one another and are composed only here (import-linter's
fakes-acyclic contract keeps the modules free of circles):

- ``state``     — channels, bridges, playbacks, the apps' sockets (plain objects);
- ``routing``   — the swagger table's routes and parameter validation;
- ``channels``  — channel and bridge transitions, the scripted parties, teardown, playbacks;
- ``dialplan``  — asterisk-conf's routes and hangup handlers, the continue routes' Dial() with L();
- ``transport`` — HTTP, the event sockets, the fan-out of events;
- ``rest``      — the REST handlers.

This module holds what a test or the demo drives: construction, start/stop, simulated time,
scripting (parties, faults, sockets), inspection, placing calls.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import re
import time
import uuid
from typing import Callable, Iterable

from aiohttp import web

from callgate_fakes.ari_simulator.channels import ChannelFlows
from callgate_fakes.ari_simulator.dialplan import (AS_ASTERISK_CONF, CONTINUE_CONTEXTS, CONTINUE_WARN_MS,
                                                   ENDED_HANDLER, HANDLER_ARG, SETTLE_HANDLER, Dialplan)
from callgate_fakes.ari_simulator.model import Party, RecordedRequest, RestFault, SimCall
from callgate_fakes.ari_simulator.rest import RestHandlers
from callgate_fakes.ari_simulator.state import DEFAULT_SOUNDS, AppState, Bridge, Channel, Playback
from callgate_fakes.ari_simulator.transport import Transport

log = logging.getLogger("callgate_fakes.ari_simulator")


class AriSimulator(Transport, RestHandlers, Dialplan, ChannelFlows):
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
