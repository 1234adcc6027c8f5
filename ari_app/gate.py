"""The gate: the Stasis application that decides every call. A translation layer only.

``Gate(client, core, settings)`` turns ARI events into core calls (authorize / answer / extend /
settle / heartbeat) and core answers into ARI requests. No money is computed here: the cut-off is
read from the store, talk time is measured from event timestamps and handed to ``core.settle``.

Routing: a StasisStart with args ``outbound`` / ``inbound`` (optionally ``,continue``) starts a
call actor (:mod:`ari_app.calls`, :mod:`ari_app.continue_mode`); every later event is forwarded to
the actor owning one of the channels it names. A created callee's events can arrive before the
``POST /channels/create`` response (its Stasis entry is asynchronous, created_channel_stasis_race),
so while a create is in flight, events of unknown channels are held briefly and handed over when
the call binds the new channel id.

Background duties (one task each, one query per pass for all calls):

* refresh (every ``refresh_interval`` ≤ 1 s): re-read the cut-offs of answered calls from the store
  and move their timers — the sidecar extends holds (later cut-off) or grants a partial chunk
  (earlier cut-off).

Who extends holds: the sidecar (it extends when less than a chunk + 10 s of granted talk remains,
and debits the chunks). The gate must still work alone (tests, single-process setups, a sidecar
that is down or late), so it has a fallback: when an answered call's remaining granted time drops
below ``extend_below_seconds`` (default: half a chunk), and again just before it would play the
warning tone, it calls ``core.extend`` itself — the tone then only plays when the money really
ends. With a working sidecar the remaining time never gets that low, so holds are not extended
twice; if both ever race, the only effect is one extra chunk held until the call settles.
* heartbeat (every ``heartbeat_interval``): ``core.heartbeat(ids of live calls)``.
* recorded ends (every ``ended_clear_interval``, a few minutes): clear what Asterisk's hangup
  handler recorded (:mod:`ari_app.recorded_ends`), once this connection's reconciliation is done.

Resync after every (re)connect: GET /channels, /bridges, /applications/{app}; each live call
compares its legs with what Asterisk has (events during a drop are lost, never replayed). What
changed in the gap is stamped at the end that keeps the account within its money: a lost answer at
the gap's start (the cut-off is never late), a lost hangup at its end. On the first connection the
gate re-adopts this PBX's live sessions (restart safety). A session whose call ended while no gate
ran is settled on the end Asterisk recorded (billing_basis ``asterisk_hangup``), or, where none was
recorded, up to the restart, capped at its grant (``bounded_at_restart``).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ari_app.calls import BridgeCall, CallActor, event_channel_ids, gate_bridge_caller, parse_ts
from ari_app.continue_mode import SETTLE_ARG, ContinueCall, deny_variables, settle_report
from ari_app.errors import AriError
from ari_app.ports import BillingCorePort
from ari_app.recorded_ends import RecordedEnd, RecordedEnds, call_variables, clear_all
from ari_app.settings import GateSettings
from billing_core.api import StorageError
from billing_core.domain.records import ENDED_HOLD
from billing_core.log_limits import OutageLog

log = logging.getLogger("ari_app.gate")

CALL_ARGS = ("outbound", "inbound")
#: Event types no call decision depends on (dropped at the door: with a channel subscription in
#: continue mode they are most of the traffic).
IGNORED_EVENTS = frozenset({"ChannelDialplan", "ChannelConnectedLine", "ChannelCallerId", "ChannelEnteredBridge",
                            "ChannelLeftBridge", "BridgeCreated", "BridgeDestroyed", "BridgeBlindTransfer",
                            "BridgeAttendedTransfer", "PlaybackStarted", "DeviceStateChanged",
                            "ChannelTalkingStarted", "ChannelTalkingFinished", "ChannelDtmfReceived",
                            "ChannelHold", "ChannelUnhold", "ChannelToneDetected"})
#: The only channel variable a call reads (Dial's own talk time, continue mode).
USED_VARIABLES = frozenset({"ANSWEREDTIME_MS"})
#: Also kept out by the eventFilter while no continue-mode call is live: a bridged call brings ~38
#: ChannelVarset events (RTP QoS, BRIDGEPEER, …) and none is read. The filter matches types only,
#: so ANSWEREDTIME_MS cannot be let through alone: continue-mode calls switch them back on.
UNREAD_VARSETS = frozenset({"ChannelVarset"})
#: How long events of an unknown channel are held while a create is in flight.
EARLY_TTL_SECONDS = 10.0
#: How long events of a finished call's channels are silently dropped.
FINISHED_TTL_SECONDS = 60.0


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class GateStats:
    """Counters for logs, tests and the benchmark (not money: that lives in the store)."""

    decisions: int = 0
    allowed: int = 0
    refused: int = 0
    settled: int = 0
    failures: int = 0
    """Calls ended by the never-stuck path after an exception."""
    resyncs: int = 0
    adopted: int = 0
    settled_on_restart: int = 0
    extended: int = 0
    decision_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=200_000))
    """Event received → core decision, per call (ms)."""


class Gate:
    """The Stasis application. ``await gate.run()`` serves until ``stop()`` or ApplicationReplaced."""

    def __init__(self, client, core: BillingCorePort, settings: GateSettings | None = None, *,
                 now_ms: Callable[[], int] | None = None) -> None:
        self.client = client
        self.core = core
        self.settings = settings or GateSettings(app=getattr(client, "app", "callgate"))
        self.now_ms: Callable[[], int] = now_ms or wall_ms
        self.pbx_id: str | None = self.settings.pbx_id or None
        self.stats = GateStats()
        self.calls: dict[str, CallActor] = {}
        """caller channel id → call."""
        self._by_channel: dict[str, CallActor] = {}
        self._early: dict[str, tuple[float, list[dict]]] = {}
        self._finished: dict[str, float] = {}
        self._creating = 0
        self._adopted = False
        self._adopting: asyncio.Task | None = None
        self._loops: list[asyncio.Task] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False
        """Set by a graceful shutdown: new calls are refused (503 / DENY), live calls go on."""
        client.on_event_now(self.on_event)
        # most of what Asterisk sends about a call is never read: skip it before parsing
        client.ignore_events(IGNORED_EVENTS, varsets_except=USED_VARIABLES)
        client.on_connected(self.on_connected)
        client.on_disconnected(self.on_disconnected)
        self._gap_from_ms: int | None = None
        """When the events socket was lost (None: no gap since the last resync)."""
        self._continue_calls = 0
        """Live continue-mode calls followed through a channel subscription (not those the dialplan's
        hangup handler reports): while there are any, the eventFilter lets ChannelVarset through."""
        self._filter_sent: frozenset[str] | None = None
        """The disallowed list Asterisk has (None: unknown, e.g. after a refusal or a reconnect)."""
        self._filter_lock = asyncio.Lock()
        self._filter_refused = False
        """Asterisk refused an eventFilter on this connection: not asked again until a reconnect."""
        self._reconciled_mono: float | None = None
        """When this connection's reconciliation (re-adoption, resync) was done; None while
        disconnected or before it is done: the recorded ends are not cleared then."""

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Serve: the event loop of the client plus the refresh and heartbeat loops."""
        self._loops = [asyncio.create_task(self._every(self.settings.refresh_interval, self.refresh_once), name="gate-refresh"),
                       asyncio.create_task(self._every(self.settings.heartbeat_interval, self.heartbeat_once), name="gate-heartbeat"),
                       asyncio.create_task(self._every(self.settings.ended_clear_interval, self.clear_recorded_ends_once),
                                           name="gate-recorded-ends")]
        try:
            await self.client.run()
        finally:
            for task in self._loops:
                task.cancel()
            for task in self._loops:
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
            self._loops = []
        # Calls still in progress are left as they are (no hangup, no settle): the next gate to
        # start — or the one that replaced us — re-adopts them from the store and GET /channels.
        # Acting on them without their events would fight that gate.
        await self._abandon_calls()
        if getattr(self.client, "replaced", False):
            log.error("gate stopped: Stasis application %r was taken over by another connection", self.settings.app)

    async def _abandon_calls(self) -> None:
        tasks = [c.task for c in list(self.calls.values()) if c.task is not None and not c.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if tasks:
            log.warning("gate stopped with %d call(s) in progress; they are re-adopted on the next start", len(tasks))

    async def stop(self) -> None:
        await self.client.stop()

    async def drain(self, grace_seconds: float) -> bool:
        """The graceful stop (SIGTERM) of every process that runs a gate (`callgate run`,
        `callgate gate`): new calls are refused (503, or DENY in continue mode), live calls keep
        their timers until they end or ``grace_seconds`` pass, then the gate stops. False when
        calls were still up at the end of the grace: they stay in Asterisk and the next start
        re-adopts them from the stored cut-offs."""
        self.draining = True
        live = len(self.calls)
        if live:
            log.info("draining: no new calls; %d live call(s) keep their timers", live,
                     extra={"grace_seconds": grace_seconds})
        idle = await self.wait_idle(grace_seconds)
        if not idle:
            log.warning("grace time over with calls still up: they stay in Asterisk; the next start re-adopts them")
        await self.stop()
        return idle

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no call is being handled. False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    @property
    def replaced(self) -> bool:
        return bool(getattr(self.client, "replaced", False))

    async def _every(self, interval: float, fn) -> None:
        # A database outage is expected and seen by every pass (each second): one line when it
        # starts, one a minute while it lasts, one when it ends — no traceback.
        outage = OutageLog(log, f"gate {getattr(fn, '__name__', fn)}")
        while True:
            await asyncio.sleep(interval)
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except StorageError as exc:
                outage.failed(exc)
                continue
            except Exception:
                log.exception("gate background pass %s failed", getattr(fn, "__name__", fn))
                continue
            outage.ok()

    # ------------------------------------------------------------------ events
    def pbx_id_for(self, event: dict) -> str:
        if self.settings.pbx_id:
            return self.settings.pbx_id
        aid = event.get("asterisk_id")
        if aid and self.pbx_id is None:
            self.pbx_id = str(aid)
            if not self._adopted and self._adopting is None:
                self._adopting = asyncio.create_task(self._adopt_from_rest())
        return str(aid or self.pbx_id or "local")

    def on_event(self, event: dict) -> None:
        """Route one event, straight from the socket reader (it never awaits: the calls do the work)."""
        kind = event.get("type")
        if kind in IGNORED_EVENTS or (kind == "ChannelVarset" and event.get("variable") not in USED_VARIABLES):
            return  # most of what a subscribed channel sends; no call decision depends on it
        if kind == "StasisStart":
            args = [str(a) for a in (event.get("args") or [])]
            channel = event.get("channel") or {}
            cid = str(channel.get("id") or "")
            if args and args[0] in CALL_ARGS and cid and cid not in self._by_channel and cid not in self._finished:
                self._start_call(event, channel, args)
                return
            if args[:1] == [SETTLE_ARG] and cid not in self._by_channel:
                # the continue route's hangup handler reports a call no live call object follows
                # (a restart in between); a finished call's report is a late duplicate
                if cid and cid not in self._finished:
                    self._finished[cid] = time.monotonic() + FINISHED_TTL_SECONDS
                    asyncio.create_task(self._settle_reported(cid, event))
                return  # never an orphan to hang up: the channel is already hung up
        channel = event.get("channel")
        if channel.__class__ is dict:  # the common case: one channel, already owned by a call
            call = self._by_channel.get(channel.get("id"))
            if call is not None:
                call.post(event)
                return
        ids = event_channel_ids(event)
        for cid in ids:
            call = self._by_channel.get(cid)
            if call is not None:
                call.post(event)
                return
        if any(cid in self._finished for cid in ids):
            return  # late events of a call already settled
        if ids and self._creating > 0:
            entry = self._early.get(ids[0])
            if entry is None:
                self._early[ids[0]] = (time.monotonic(), [event])
            else:
                entry[1].append(event)
            return
        if kind == "StasisStart" and ids:
            self._orphan(ids[0], event)

    def _start_call(self, event: dict, channel: dict, args: list[str]) -> None:
        if self.draining:
            self._finished[str(channel["id"])] = time.monotonic() + FINISHED_TTL_SECONDS
            asyncio.create_task(self._refuse_while_draining(str(channel["id"]), "continue" in args[1:]))
            return
        # inbound continue works the same way as outbound: the dialplan dials
        cls = ContinueCall if "continue" in args[1:] else BridgeCall
        call = cls(self, channel, args=args, pbx_id=self.pbx_id_for(event))
        self._register(call)
        call.start()

    async def _refuse_while_draining(self, channel_id: str, continue_mode: bool) -> None:
        """Shutting down: no new calls (503, or DENY in continue mode); live calls keep going."""
        log.info("call refused: gate shutting down", extra={"channel": channel_id, "reason": "shutting_down"})
        try:
            if continue_mode:
                await self.client.set_variables(channel_id, deny_variables("shutting_down"))
                await self.client.continue_in_dialplan(channel_id)
            else:
                await self.client.hangup(channel_id, reason="congestion")
        except AriError as exc:
            log.warning("refusing %s while shutting down failed: %s", channel_id, exc)
            await self._hangup_quietly(channel_id, "congestion")

    def _register(self, call: CallActor) -> None:
        replaced = self.calls.get(call.caller_id)
        if replaced is not None and replaced.needs_channel_varsets:
            self._continue_calls -= 1
        self.calls[call.caller_id] = call
        if call.needs_channel_varsets:
            self._continue_calls += 1
        self._by_channel[call.caller_id] = call
        self._idle.clear()

    def bind(self, channel_id: str, call: CallActor) -> None:
        """``channel_id`` belongs to ``call`` from now on; events held for it are handed over."""
        self._by_channel[channel_id] = call
        held = self._early.pop(channel_id, None)
        if held:
            for ev in held[1]:
                call.post(ev)

    async def create_callee(self, call: CallActor, endpoint: str) -> dict:
        """POST /channels/create for ``call``'s callee (appArgs ``dialed``, originator = caller)."""
        self._creating += 1
        try:
            # its hangup records the call's end too (asterisk-conf [callgate-ended]), for a gate that
            # is not running then: in the same request, no extra one
            created = await self.client.create_channel(endpoint, app_args="dialed", originator=call.caller_id,
                                                       variables=call_variables(call.caller_id))
            self.bind(str(created["id"]), call)
            return created
        finally:
            self._creating -= 1

    def call_finished(self, call: CallActor) -> None:
        expiry = time.monotonic() + FINISHED_TTL_SECONDS
        for leg in call.legs():
            if self._by_channel.get(leg) is call:
                del self._by_channel[leg]
            self._finished[leg] = expiry
        if self.calls.get(call.caller_id) is call:
            del self.calls[call.caller_id]
            if call.needs_channel_varsets:
                self._continue_calls -= 1
        if not self.calls:
            self._idle.set()

    def record_decision(self, auth, latency_ms: float) -> None:
        self.stats.decisions += 1
        if auth.allowed:
            self.stats.allowed += 1
        else:
            self.stats.refused += 1
        self.stats.decision_ms.append(latency_ms)

    def record_settle(self, call: CallActor, result: Any) -> None:
        self.stats.settled += 1

    async def _settle_reported(self, channel_id: str, event: dict) -> None:
        """Settle what a continue route's hangup handler reports for a call no live call object
        follows: the session must be this channel's, on this PBX. Exactly once in the core."""
        report = settle_report(event)
        if report is None:
            return
        session_id, answered_time_ms = report
        try:
            session = await self.core.find_session(self.pbx_id_for(event), channel_id)
            if session is None or session.session_id != session_id or session.state == "settled":
                return
            talk = min(answered_time_ms or 0, session.granted_seconds * 1000)
            answered_at = None
            if talk and session.answered_at is None:
                end = parse_ts(event.get("timestamp")) or self.now_ms()
                answered_at = end - talk
            await self.core.settle(session_id, talk, note="reported by the dialplan's hangup handler",
                                   answered_at_ms=answered_at)
            self.stats.settled_on_restart += 1
            log.info("call settled from its hangup handler", extra={"session": session_id, "channel": channel_id,
                                                                     "talk_ms": talk})
        except Exception:
            log.exception("settling session %s from its hangup handler failed", session_id)

    def _orphan(self, channel_id: str, event: dict) -> None:
        """A channel entered our application and no call owns it: never leave it sitting there."""
        log.warning("channel %s entered Stasis with args %s and no call owns it; hanging up",
                    channel_id, event.get("args"))
        asyncio.create_task(self._hangup_quietly(channel_id, "normal"))

    def ignore_channel(self, channel_id: str) -> None:
        """A helper channel of ours (reading or clearing recorded ends): its events are dropped."""
        self._finished[channel_id] = time.monotonic() + FINISHED_TTL_SECONDS

    async def _hangup_quietly(self, channel_id: str, reason: str | None = None) -> None:
        try:
            await self.client.hangup(channel_id, reason=reason)
        except AriError:
            pass

    def _sweep(self) -> None:
        now = time.monotonic()
        for cid, (since, events) in list(self._early.items()):
            if now - since > EARLY_TTL_SECONDS:
                del self._early[cid]
                if any(ev.get("type") == "StasisStart" for ev in events):
                    self._orphan(cid, events[0])
        for cid, expiry in list(self._finished.items()):
            if now > expiry:
                del self._finished[cid]

    # ------------------------------------------------------------------ resync and restart
    def on_disconnected(self) -> None:
        self._reconciled_mono = None
        if self._gap_from_ms is None:  # a failed resync keeps the first gap's start
            self._gap_from_ms = self.now_ms()

    async def on_connected(self) -> None:
        """After every (re)connect: what does Asterisk have now? Calls reconcile themselves.

        Events of the gap are lost, so calls learn when it began (``gap_from_ms``): what they find
        changed happened somewhere inside it (see BridgeCall.on_resync for which end is used)."""
        self._filter_sent = None  # whatever Asterisk kept for the application, set it again
        self._filter_refused = False
        await self.update_event_filter()
        try:
            channels = await self.client.list_channels()
            bridges = await self.client.list_bridges()
            app = await self.client.get_application()
        except AriError as exc:
            log.warning("resync after connect failed: %s", exc)
            return
        self.stats.resyncs += 1
        chan_map = {str(c["id"]): c for c in channels}
        app_ids = set(str(x) for x in (app or {}).get("channel_ids", []))
        if not self._adopted:
            if self.pbx_id is None:
                try:
                    info = await self.client.get_asterisk_info()
                    self.pbx_id = str(((info or {}).get("system") or {}).get("entity_id") or "") or None
                except AriError:
                    pass
            if self.pbx_id is not None:
                await self._adopt(chan_map, bridges, app_ids)
        await self.update_event_filter()  # adopted continue-mode calls read ANSWEREDTIME_MS
        note = {"type": "_resync", "channels": chan_map, "app_channel_ids": app_ids, "gap_from_ms": self._gap_from_ms}
        self._gap_from_ms = None
        ended_in_gap = await self._recorded_ends_of_gone_calls(chan_map)
        for call in list(self.calls.values()):
            call.post(dict(note, recorded_end_ms=ended_in_gap.get(call.caller_id)))
        if self._adopted:
            self._reconciled_mono = time.monotonic()

    async def _recorded_ends_of_gone_calls(self, chan_map: dict) -> dict[str, int]:
        """Bridged calls with a leg gone after a gap: the end Asterisk recorded (caller id → epoch
        ms), so the lost hangup is not stamped at the gap's end (CallActor.on_resync). Read here,
        before the resync notes go out, and left for the periodic clean-up: the call still hangs
        up its other leg, whose handler would otherwise record that later end."""
        gone = [call.caller_id for call in self.calls.values()
                if call.bridged and not call.settled and any(leg not in chan_map for leg in call.legs())]
        out: dict[str, int] = {}
        if not gone:
            return out
        async with RecordedEnds(self.client, self.ignore_channel) as ends:
            for caller_id in gone:
                recorded = await ends.take(caller_id)
                if recorded is not None:
                    out[caller_id] = recorded.end_ms
        return out

    def wanted_event_filter(self) -> frozenset[str]:
        """The event types Asterisk need not send now: never-read types, and ChannelVarset while
        no continue-mode call is live (only those read a variable: Dial's ANSWEREDTIME_MS)."""
        return IGNORED_EVENTS if self._continue_calls else IGNORED_EVENTS | UNREAD_VARSETS

    async def update_event_filter(self) -> None:
        """Ask Asterisk not to send the event types no call reads (most of a bridged call's
        events): less work for Asterisk, the socket and the gate. Sent on every connect (the filter
        lives with the application in Asterisk), when the first continue-mode call starts (before it
        continues, so Dial's varsets reach it) and, from the refresh loop, once the last one ended.
        Only a disallowed list: an allowed list would silently starve the gate of any type added
        later. If Asterisk refuses (an older version without eventFilter), the client drops the same
        types itself; continue-mode calls then still get their varsets."""
        async with self._filter_lock:
            wanted = self.wanted_event_filter()
            if wanted == self._filter_sent or self._filter_refused:
                return
            try:
                await self.client.set_event_filter(disallowed=sorted(wanted))
                self._filter_sent = wanted
            except AriError as exc:
                self._filter_refused = True
                if self._filter_sent is None:
                    log.info("ARI eventFilter not set (%s); unwanted events are dropped on arrival instead", exc)
                else:  # Asterisk keeps the last filter it accepted
                    log.warning("ARI eventFilter update refused (%s); keeping %s disallowed until the next "
                                "connect", exc, "ChannelVarset" if "ChannelVarset" in self._filter_sent else "no varsets")

    async def _adopt_from_rest(self) -> None:
        try:
            channels = await self.client.list_channels()
            bridges = await self.client.list_bridges()
            app = await self.client.get_application()
            await self._adopt({str(c["id"]): c for c in channels}, bridges,
                              set(str(x) for x in (app or {}).get("channel_ids", [])))
        except Exception:
            log.exception("re-adopting live calls failed")

    async def _adopt(self, chan_map: dict, bridges: list[dict], app_ids: set[str]) -> None:
        """Restart safety: live sessions of this PBX get their timers back or are settled."""
        if self._adopted:
            return
        self._adopted = True
        try:
            sessions = await self.core.live_sessions(self.pbx_id)
        except Exception:
            self._adopted = False
            log.exception("cannot read live sessions to re-adopt; will retry on the next connect")
            return
        bridge_of: dict[str, dict] = {}
        for b in bridges or []:
            if gate_bridge_caller(b) is None:
                continue  # not ours: e.g. the Dial() bridge of a continued call (tests/asterisk)
            for ch in b.get("channels", []):
                bridge_of[str(ch)] = b
        now = self.now_ms()
        async with RecordedEnds(self.client, self.ignore_channel) as ends:
            for s in sessions:
                await self._adopt_session(s, chan_map, bridge_of, bridges, ends, now)
        orphans = {c for c in app_ids if c not in self._by_channel and c not in self._finished}
        our_bridges = {str(b["id"]): caller for b in bridges or [] if (caller := gate_bridge_caller(b)) is not None}
        if orphans or our_bridges:
            asyncio.create_task(self._sweep_orphans(orphans, our_bridges))

    async def _settle_missed_end(self, s, ends: RecordedEnds, recorded: RecordedEnd | None, now: int,
                                 note: str) -> None:
        """Settle a session whose call ended while no gate saw it: on the end Asterisk recorded
        (``asterisk_hangup``) or, without one, up to ``now`` capped at the grant
        (``bounded_at_restart``; docs/OPERATIONS.md, "How a call is billed")."""
        granted_ms = s.granted_seconds * 1000
        if recorded is not None:
            talk = recorded.talk_ms(s.answered_at, granted_ms)
            basis = "asterisk_hangup" if s.answered_at is not None else "measured"  # never answered: 0
            note = f"{note}; Asterisk recorded its end at {recorded.end_ms}"
        elif s.answered_at is None and s.hold_mode == "full" and not s.emergency:
            # a continue route whose dialplan reports the answer only at the end (its settle handler,
            # which no gate heard): answered or not is unknown, so the bound runs from the authorize.
            # Never a silent 0: those would be carrier minutes nobody pays (refundable, and recorded)
            talk = min(max(0, now - s.created_at), granted_ms)
            basis = "bounded_at_restart" if talk else "measured"
            note = f"{note}; answer unknown (reported only at the end): billed from the authorize"
        else:
            talk = 0 if s.answered_at is None else min(max(0, now - s.answered_at), granted_ms)
            basis = "bounded_at_restart" if talk else "measured"
        try:
            await self.core.settle(s.session_id, talk, note=note, path="restart", basis=basis)
        except Exception:
            log.exception("settling session %s after restart failed", s.session_id)
            return
        self.stats.settled_on_restart += 1
        log.info("call settled after restart", extra={"session": s.session_id, "channel": s.channel_id,
                                                      "talk_ms": talk, "basis": basis})
        if recorded is not None:
            await ends.forget(recorded)

    async def _adopt_session(self, s, chan_map: dict, bridge_of: dict, bridges: list[dict], ends: RecordedEnds,
                             now: int) -> None:
        cid = s.channel_id
        if cid is None or cid in self._by_channel or cid in self._finished:
            return
        channel = chan_map.get(cid)
        if channel is None:
            # the caller left while no gate ran; its carrier leg may still sit in our bridge,
            # charging: hang it up now, not after the orphan sweep's grace. Read its recorded end
            # first: that hangup runs the carrier leg's handler, which records "now" if nothing is
            # there yet (a dialplan without the caller's handler)
            recorded = await ends.take(cid)
            await self._end_bridge_of_gone_caller(cid, bridges)
            await self._settle_missed_end(s, ends, recorded, now,
                                          f"ended while the gate was down; last seen alive at {s.last_seen_at}")
            return
        bridge = bridge_of.get(cid)
        others = [str(c) for c in (bridge or {}).get("channels", []) if str(c) != cid]
        # continue mode: the channel left Stasis for the dialplan's Dial() (a channel
        # subscription keeps it in the application's channel_ids, so look at where it runs)
        in_stasis = ((channel.get("dialplan") or {}).get("app_name") == "Stasis")
        if bridge is None and ((s.hold_mode == "full" and not s.emergency) or not in_stasis):
            call: CallActor = ContinueCall(self, channel, args=[s.direction, "continue"], pbx_id=self.pbx_id)
            call.adopt(s)
        elif s.answered_at is not None and others:
            call = BridgeCall(self, channel, args=[s.direction], pbx_id=self.pbx_id)
            await call.adopt(s, callee_id=others[0], bridge_id=str(bridge["id"]))
        else:
            # answered but the callee left while we were down, or not answered yet (the dial's
            # state is lost). Read first: the callee's hangup handler recorded when it left (under
            # the caller's id); the caller's own handler runs at the hangup below.
            recorded = await ends.take(cid)
            self._finished[cid] = time.monotonic() + FINISHED_TTL_SECONDS
            await self._hangup_quietly(cid, "normal" if s.answered_at is not None else "congestion")
            if bridge is not None:
                try:
                    await self.client.destroy_bridge(str(bridge["id"]))
                except AriError:
                    pass
            await self._settle_missed_end(s, ends, recorded, now, "gate restart: call could not be resumed")
            return
        self._register(call)
        for leg in call.legs():
            self._by_channel[leg] = call
        self.stats.adopted += 1
        log.info("call re-adopted after restart", extra={"session": s.session_id, "channel": cid, "mode": call.mode})
        call.start()

    async def _end_bridge_of_gone_caller(self, caller_id: str, bridges: list[dict]) -> None:
        """At restart, the bridge ``callgate-<caller>`` of a caller that is gone: its other legs are
        hung up and the bridge deleted at once (nobody can claim them)."""
        for b in bridges or []:
            if str(b.get("name") or "") != f"callgate-{caller_id}":
                continue
            for leg in (str(c) for c in b.get("channels", [])):
                self._finished[leg] = time.monotonic() + FINISHED_TTL_SECONDS
                log.info("carrier leg %s of a call that ended while no gate ran: hanging up", leg,
                         extra={"channel": caller_id})
                await self._hangup_quietly(leg, "normal")
            try:
                await self.client.destroy_bridge(str(b["id"]))
            except AriError:
                pass

    async def _sweep_orphans(self, candidates: set[str], bridges: dict[str, str]) -> None:
        """What a previous gate left behind and no call claims: channels hung up, bridges deleted."""
        await asyncio.sleep(self.settings.orphan_grace)
        for cid in candidates:
            if cid not in self._by_channel and cid not in self._finished:
                log.warning("channel %s sits in Stasis with no call (left by a previous gate); hanging up", cid)
                await self._hangup_quietly(cid, "normal")
        for bid, caller in bridges.items():
            call = self.calls.get(caller)
            if call is None or getattr(call, "bridge_id", None) != bid:
                try:
                    await self.client.destroy_bridge(bid)
                    log.warning("bridge %s left by a previous gate deleted", bid)
                except AriError:
                    pass

    # ------------------------------------------------------------------ background passes
    def _extend_below_ms(self) -> int:
        if self.settings.extend_below_seconds is not None:
            return int(self.settings.extend_below_seconds * 1000)
        chunk = getattr(getattr(self.core, "settings", None), "chunk_seconds", 60)
        return int(chunk * 1000 // 2)

    def fallback_extension_enabled(self) -> bool:
        return self._extend_below_ms() > 0

    async def refresh_once(self) -> None:
        """Move every answered call's timer to its stored cut-off (extending as a fallback)."""
        self._sweep()
        # e.g. the last continue-mode call ended: varsets off again. Only once a filter is in place
        # on this connection (None: not connected yet, or the connect's own PUT still running).
        if self._filter_sent is not None and not self._filter_refused and self._filter_sent != self.wanted_event_filter():
            await self.update_event_filter()
        answered = [c for c in self.calls.values()
                    if c.bridged and c.session_id and c.cutoff_at is not None and not c.settled]
        if not answered:
            return
        # the lean read (four columns of the answered calls), not live_sessions(): this runs every
        # second, and on SQLite it shares the one writer with every authorize
        cutoffs = {c.session_id: c for c in await self.core.live_cutoffs(self.pbx_id)}
        below = self._extend_below_ms()
        now = self.now_ms()
        for call in answered:
            c = cutoffs.get(call.session_id)
            if c is None or c.cutoff_at is None:
                continue
            cutoff = c.cutoff_at
            if below > 0 and c.hold_mode == "chunked" and not c.emergency and cutoff - now < below:
                s = await self.core.extend(c.session_id)
                if s.cutoff_at != cutoff:
                    self.stats.extended += 1
                cutoff = s.cutoff_at
            ended = c.hold_mode == ENDED_HOLD  # an operator ended it from the console: no warning tone
            if cutoff is not None and (cutoff != call.cutoff_at or (ended and not call.ended_by_operator)):
                call.post({"type": "_cutoff", "cutoff_at": cutoff, "ended": ended})

    async def clear_recorded_ends_once(self) -> None:
        """Delete every end Asterisk's hangup handler recorded (``DBdeltree(callgate_ended)``), so
        entries do not pile up: one is written for every ARI call, also while we run.

        Why it is safe: an entry matters only for a call whose end no gate saw, and only until a
        gate reconciles that call (re-adoption at start, resync after a reconnect), which reads it
        first. So we clear only while connected, once this connection's reconciliation finished
        at least a whole interval ago: every entry there is of a call we saw end ourselves (our
        socket was up), read already, or of no session of ours. A disconnect resets the wait.
        If re-adoption failed (store unreadable) nothing is cleared until a later connect
        re-adopts."""
        since = self._reconciled_mono
        if since is None or not self._adopted or not getattr(self.client, "connected", False):
            return
        if time.monotonic() - since < self.settings.ended_clear_interval:
            return
        try:
            await clear_all(self.client, self.ignore_channel)
        except AriError as exc:
            log.info("clearing the recorded ends of calls failed (%s); tried again in %ss", exc,
                     self.settings.ended_clear_interval)

    async def heartbeat_once(self) -> None:
        ids = [c.session_id for c in self.calls.values() if c.session_id and not c.settled]
        if ids:
            await self.core.heartbeat(ids)
