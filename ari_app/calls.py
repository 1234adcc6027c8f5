"""One call = one actor: a task that owns the call's state and reads the call's events from a queue.

The ARI client dispatches events per channel, concurrently; a call has two channels (caller and
callee), so the gate forwards both channels' events (and its own timer/refresh notes, whose
``type`` starts with ``_``) into one queue per call. Only the call's task changes the call's state,
so no locks are needed and the flow reads top to bottom (:meth:`BridgeCall.flow`).

Never stuck: whatever goes wrong inside a flow, :meth:`CallActor.run` ends the call — every leg
still there is hung up, the bridge deleted, the session settled (talk measured so far, bounded by
the grant) — and the next call is unaffected.

Times: ``*_ts`` are epoch ms on Asterisk's clock (event ``timestamp``); timers run on the event
loop's monotonic clock, anchored at the moment the answer was seen, so a skew between Asterisk's
clock and ours never shortens or lengthens a call.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ari_app.announcements import failed_dial_reason, hangup_reason
from callgate_dialplan import endpoint_of_channel as endpoint_of
from billing_core.api import StorageError
from billing_core.domain.errors import InvalidInput, NotFound
from billing_core.domain.records import ENDED_HOLD

from ari_app.errors import AriBadRequest, AriConflict, AriError, AriNotFound, AriUnprocessable
from ari_app.ports import BillingCorePort

if TYPE_CHECKING:  # pragma: no cover
    from ari_app.client import AriClient
    from ari_app.settings import GateSettings

log = logging.getLogger("ari_app.gate")

#: Leg-level errors that mean "that channel is gone or no longer ours": not a fault of the call.
GONE_ERRORS = (AriNotFound, AriConflict)

#: The gate names its bridges ``callgate-<caller channel id>``.
BRIDGE_NAME_PREFIX = "callgate-"


def gate_bridge_caller(bridge: dict) -> str | None:
    """The caller channel id of a bridge this gate created, else None: GET /bridges lists every
    bridge Asterisk has, a continued call's Dial() bridge (class basic, no name) included."""
    name = str(bridge.get("name") or "")
    return name[len(BRIDGE_NAME_PREFIX):] if name.startswith(BRIDGE_NAME_PREFIX) else None


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)


def parse_ts(value: Any) -> int | None:
    """ARI timestamp ``2026-11-27T18:06:20.047+0000`` → epoch ms (None when absent or malformed).

    Python 3.11's ``datetime.fromisoformat`` reads Asterisk's ``+0000`` offset as it is (and ``Z``),
    in C, faster than the hand parser it replaced. The ms come from integer timedelta arithmetic, not
    ``timestamp() * 1000``, so no float rounding moves a timestamp by one ms. A value without an
    offset is local time, as ``timestamp()`` reads it.
    """
    if not value or not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return (moment - _EPOCH) // _ONE_MS


def event_channel_ids(event: dict) -> list[str]:
    """Every channel id an event is about (channel, Dial caller/peer, playback target)."""
    out: list[str] = []
    for fld in ("channel", "caller", "peer"):
        ch = event.get(fld)
        if isinstance(ch, dict) and ch.get("id"):
            out.append(str(ch["id"]))
    pb = event.get("playback")
    if isinstance(pb, dict):
        scheme, _, ident = str(pb.get("target_uri", "")).partition(":")
        if scheme == "channel" and ident:
            out.append(ident)
    return out


#: Events whose timestamp the call uses (answer, hangup); the others skip the parse.
TIMED_EVENTS = frozenset({"StasisEnd", "ChannelHangupRequest", "ChannelDestroyed", "ChannelStateChange", "Dial"})


class CallCounters(Protocol):
    """The counters a call bumps (the gate's GateStats)."""

    failures: int
    extended: int


class CallHost(Protocol):
    """What a call uses of the gate that runs it, and nothing more: the gate (ari_app.gate.Gate)
    satisfies it (tests/ari/test_call_host.py), and calls never import the gate."""

    client: "AriClient"
    core: BillingCorePort
    settings: "GateSettings"
    stats: CallCounters

    def now_ms(self) -> int:
        """Wall-clock epoch ms (what a call stamps when an event carries no timestamp)."""

    async def create_callee(self, call: "CallActor", endpoint: str) -> dict:
        """POST /channels/create for the call's callee; its events are the call's from then on."""

    def call_finished(self, call: "CallActor") -> None:
        """The call's task ended: forget its channels."""

    def record_decision(self, auth: Any, latency_ms: float) -> None:
        """Count a decision and its latency."""

    def record_settle(self, call: "CallActor", result: Any) -> None:
        """Count a settlement."""

    async def update_event_filter(self) -> None:
        """Ask Asterisk for the event types the live calls need (continue mode's varsets)."""

    def fallback_extension_enabled(self) -> bool:
        """Whether a call extends its own hold when the refresh pass has not (see BridgeCall)."""


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class CallActor:
    """State and helpers shared by bridge-mode and continue-mode calls."""

    mode = "bridge"
    #: The gate holds this call's legs in a bridge of its own: its timer follows the stored cut-off
    #: (the gate's refresh pass) and a leg lost in an events gap is read from the recorded end.
    bridged = False
    #: The call reads channel varsets after leaving Stasis (ANSWEREDTIME_MS): the gate's event
    #: filter lets them through while any such call lives.
    needs_channel_varsets = False
    #: An operator ended the call from the console: cut at the cut-off without the warning tone
    #: (only a bridged call's timer is the gate's; BridgeCall sets it from the refresh pass).
    ended_by_operator = False

    def __init__(self, gate: CallHost, caller: dict, *, args: list[str] | None = None,
                 pbx_id: str = "local") -> None:
        self.gate = gate
        self.pbx_id = pbx_id
        self.client = gate.client
        self.core: BillingCorePort = gate.core
        self.s = gate.settings
        self.caller = caller
        self.caller_id: str = str(caller["id"])
        self.args = list(args or [])
        self.direction = self.args[0] if self.args else "outbound"
        self.received_mono = asyncio.get_running_loop().time()
        self.session_id: str | None = None
        self.auth = None
        self.settled = False
        self.talk_ms: int | None = None
        self._inbox: collections.deque = collections.deque()
        self._waiter: asyncio.Future | None = None
        self.done = asyncio.Event()
        self.task: asyncio.Task | None = None
        # what the events told us
        self.in_stasis: set[str] = {self.caller_id}
        self.gone_ts: dict[str, int] = {}
        """channel id → epoch ms of the first sign it is ending (hangup request, StasisEnd, destroyed)."""
        self.destroyed: dict[str, int | None] = {}
        """channel id → Q.850 cause of its ChannelDestroyed."""
        self.hangup_cause: dict[str, int] = {}
        """channel id → cause of a far-end (not soft) ChannelHangupRequest."""
        self.finished_playbacks: set[str] = set()
        self.answered_ts: int | None = None
        self.answered_mono: float | None = None
        self._wake = False
        self._entry: Callable[[], Any] | None = None
        """What :meth:`run` runs: :meth:`flow`, or the resume flow of an adopted call."""

    # ------------------------------------------------------------------ plumbing
    def post(self, event: dict) -> None:
        self._inbox.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def start(self) -> asyncio.Task:
        self.task = asyncio.create_task(self.run(), name=f"call-{self.caller_id}")
        return self.task

    def legs(self) -> list[str]:
        return [self.caller_id]

    async def run(self) -> None:
        try:
            await (self._entry or self.flow)()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.gate.stats.failures += 1
            if isinstance(exc, StorageError):  # an outage, not a bug: its text says it all
                log.error("call %s failed: %s; ending it cleanly", self.caller_id, exc,
                          extra={"channel": self.caller_id, "session": self.session_id})
            else:
                log.exception("call %s failed; ending it cleanly", self.caller_id,
                              extra={"channel": self.caller_id, "session": self.session_id})
            try:
                await self.abort()
            except Exception:
                log.exception("call %s: clean-up after failure also failed", self.caller_id)
        finally:
            self.gate.call_finished(self)
            self.done.set()

    async def flow(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def abort(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def now_ms(self) -> int:
        return self.gate.now_ms()

    def loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def drain(self) -> None:
        """Apply every event already queued (no waiting)."""
        inbox = self._inbox
        while inbox:
            self.observe(inbox.popleft())

    async def until(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Apply events until ``done()`` holds or ``timeout`` seconds pass. Returns ``done()``.

        (A plain future + call_later instead of ``wait_for(queue.get())``: no task per event.)
        """
        self.drain()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + max(0.0, timeout)
        while not done():
            if deadline is not None and loop.time() >= deadline:
                return done()
            waiter = self._waiter = loop.create_future()
            timer = None if deadline is None else loop.call_at(deadline, _wake, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
            self.drain()
        return True

    # ------------------------------------------------------------------ what events mean
    def observe(self, ev: dict) -> None:
        kind = ev.get("type")
        ts = parse_ts(ev.get("timestamp")) if kind in TIMED_EVENTS else None
        ch = ev.get("channel") if isinstance(ev.get("channel"), dict) else None
        cid = str(ch["id"]) if ch and ch.get("id") else None
        if kind == "StasisStart" and cid:
            self.in_stasis.add(cid)
        elif kind == "StasisEnd" and cid:
            self.in_stasis.discard(cid)
            self.on_stasis_end(cid, ts)
        elif kind == "ChannelHangupRequest" and cid:
            if not ev.get("soft"):
                if ev.get("cause") is not None:
                    self.hangup_cause.setdefault(cid, int(ev["cause"]))
                self.mark_gone(cid, ts)
        elif kind == "ChannelDestroyed" and cid:
            self.destroyed[cid] = ev.get("cause")
            self.in_stasis.discard(cid)
            self.mark_gone(cid, ts)
        elif kind == "PlaybackFinished":
            pb = ev.get("playback") or {}
            if pb.get("id"):
                self.finished_playbacks.add(str(pb["id"]))
        elif kind == "_resync":
            self.on_resync(ev)
        elif kind == "_gone":  # a REST call or a resync says the channel no longer exists
            self.mark_gone(ev["channel_id"], ev.get("ts"))
        elif kind and kind.startswith("_"):
            self._wake = True
        self.on_event(kind, ev, cid, ts)

    def on_event(self, kind: str | None, ev: dict, cid: str | None, ts: int | None) -> None:
        """Mode-specific event meaning (answer detection…)."""

    def on_stasis_end(self, cid: str, ts: int | None) -> None:
        self.mark_gone(cid, ts)

    def on_resync(self, ev: dict) -> None:
        channels: dict = ev["channels"]
        # a leg that left during the gap: at the end Asterisk recorded for the call (the first
        # leg's hangup, ari_app/recorded_ends.py) where there is one, else at the gap's end
        now = self.now_ms()
        recorded = ev.get("recorded_end_ms")
        at = now if recorded is None else min(now, int(recorded))
        for leg in self.legs():
            if leg not in channels:
                self.mark_gone(leg, at)

    def mark_gone(self, cid: str, ts: int | None) -> None:
        if cid not in self.gone_ts:
            self.gone_ts[cid] = ts if ts is not None else self.now_ms()

    def is_gone(self, cid: str | None) -> bool:
        return cid is not None and cid in self.gone_ts

    # ------------------------------------------------------------------ decisions and money
    def authorize_kwargs(self) -> dict:
        """The translation: channel → who is calling what (no money here)."""
        ch = self.caller
        exten = str((ch.get("dialplan") or {}).get("exten") or "")
        caller_num = (ch.get("caller") or {}).get("number") or None
        kw: dict[str, Any] = dict(direction=self.direction, number=exten, caller_id=caller_num,
                                  pbx_id=self.pbx_id, channel_id=self.caller_id)
        if self.direction == "outbound":
            kw["endpoint"] = endpoint_of(str(ch.get("name") or ""))
        else:
            kw["did"] = exten
        return kw

    async def decide(self, *, full_hold: bool):
        kw = self.authorize_kwargs()
        self.auth = auth = await self.core.authorize_call(full_hold=full_hold, **kw)
        self.session_id = auth.session_id
        latency_ms = (self.loop_time() - self.received_mono) * 1000
        self.gate.record_decision(auth, latency_ms)
        extra = {"account": auth.account_ref or kw.get("endpoint") or "-", "number": kw["number"],
                 "direction": self.direction, "mode": self.mode, "channel": self.caller_id,
                 "session": auth.session_id or "-"}
        if auth.allowed:
            extra["granted_seconds"] = auth.granted_seconds
            if auth.emergency:
                extra["emergency"] = True
            log.info("call allowed", extra=extra)
        else:
            extra["reason"] = str(auth.reason)
            if auth.rule is not None:  # destination_blocked: which toll-fraud rule refused it
                extra["rule"] = auth.rule
            log.info("call refused", extra=extra)
        return auth

    async def settle(self, talk_ms: int, note: str | None = None, *, answered_at_ms: int | None = None) -> None:
        """Settle once (the core also makes a replay harmless); ``answered_at_ms``: an answer the
        core has not been told yet, recorded in the settle's own transaction."""
        if self.settled or self.session_id is None:
            self.settled = True
            return
        talk_ms = max(0, int(talk_ms))
        self.talk_ms = talk_ms
        delays = list(self.s.settle_retry_delays)
        while True:
            try:
                result = await self.core.settle(self.session_id, talk_ms, note=note, path=self.mode,
                                                answered_at_ms=answered_at_ms)
                break
            except (InvalidInput, NotFound):
                raise  # not transient: retrying changes nothing
            except Exception as exc:
                if not delays:
                    raise
                # the store is briefly unavailable: the call stays ours (and heartbeated) meanwhile,
                # so the sidecar does not settle it as stale with a guessed talk time
                delay = delays.pop(0)
                log.warning("settle of %s failed (%s); retrying in %.1fs", self.session_id, exc, delay,
                            extra={"session": self.session_id, "channel": self.caller_id})
                await asyncio.sleep(delay)
        self.settled = True
        self.gate.record_settle(self, result)
        log.info("call settled", extra={"session": self.session_id, "channel": self.caller_id,
                                        "talk_ms": talk_ms, "cost": getattr(result, "cost", None)})

    # ------------------------------------------------------------------ REST helpers
    async def hangup_quiet(self, cid: str | None, reason: str | None = None) -> None:
        """Hang up a leg if it is still there; a leg already gone is not an error."""
        if cid is None:
            return
        try:
            await self.client.hangup(cid, reason=reason)
        except GONE_ERRORS:
            pass
        except AriError as exc:
            log.warning("hangup of %s failed: %s", cid, exc)

    async def leg_call(self, cid: str, coro) -> bool:
        """Run a REST call on leg ``cid``; False (and the leg marked gone) if it no longer exists."""
        try:
            await coro
            return True
        except GONE_ERRORS:
            self.mark_gone(cid, self.now_ms())
            return False


class BridgeCall(CallActor):
    """Bridge mode: the gate rings the callee itself, bridges, times and cuts the call."""

    mode = "bridge"
    bridged = True

    def __init__(self, gate: "Gate", caller: dict, **kw: Any) -> None:
        super().__init__(gate, caller, **kw)
        self.callee_id: str | None = None
        self.bridge_id: str | None = None
        self.cutoff_at: int | None = None
        """Stored cut-off, epoch ms (None: no timer — emergency, or not answered yet)."""
        self.answered_at: int | None = None
        """The session's answered_at (= answered_ts, or the stored value after a restart)."""
        self._anchor: tuple[float, int] | None = None
        """(loop time, epoch ms) pair the timers are computed from."""
        self.warned_for: int | None = None
        self.cut = False
        self.dialled_ms: int | None = None
        """When the callee was dialled (epoch ms): the earliest it can have answered."""

    def legs(self) -> list[str]:
        return [c for c in (self.caller_id, self.callee_id) if c]

    # ---------------------------------------------------------------- events
    def on_event(self, kind, ev, cid, ts) -> None:
        if self.answered_ts is not None or self.callee_id is None:
            return
        answered = False
        if kind == "ChannelStateChange" and cid == self.callee_id and (ev["channel"].get("state") == "Up"):
            answered = True
        elif kind == "Dial" and ev.get("dialstatus") == "ANSWER":
            peer = ev.get("peer") or {}
            answered = str(peer.get("id")) == self.callee_id
        if answered:
            self.answered_ts = ts if ts is not None else self.now_ms()
            self.answered_mono = self.loop_time()

    def on_resync(self, ev: dict) -> None:
        super().on_resync(ev)
        channels: dict = ev["channels"]
        callee = channels.get(self.callee_id) if self.callee_id else None
        if callee is not None:
            if self.callee_id in ev.get("app_channel_ids", ()):
                self.in_stasis.add(self.callee_id)  # its StasisStart may have been lost in the drop
            if callee.get("state") == "Up" and self.answered_ts is None:
                # The answer event was lost in the gap: stamp it at the gap's START (never before the
                # dial), so the cut-off is never late and the account cannot talk past its money;
                # the customer pays at most the gap (seconds) too much. A hangup lost in a gap is
                # stamped at its END (on_resync above), so neither lost event shortens what is billed.
                now = self.now_ms()
                gap_from = ev.get("gap_from_ms")
                at = now if gap_from is None else min(now, max(int(gap_from), self.dialled_ms or 0))
                self.answered_ts = at
                self.answered_mono = self.loop_time() - (now - at) / 1000.0 * self.s.time_scale
        self._wake = True

    def any_leg_gone(self) -> bool:
        return any(leg in self.gone_ts for leg in self.legs())

    # ---------------------------------------------------------------- the flow
    async def flow(self) -> None:
        auth = await self.decide(full_hold=False)
        if not auth.allowed:
            await self.refuse(str(auth.reason))
            return
        self.drain()
        if self.is_gone(self.caller_id):  # hung up while we were deciding
            await self.settle(0, note="caller left before dialling")
            return
        endpoint = self.dial_endpoint(auth)
        if endpoint is None:
            log.error("inbound call to %s has no endpoint to ring", auth.number, extra={"session": self.session_id})
            await self.hangup_quiet(self.caller_id, "unallocated")
            await self.settle(0, note="no ring endpoint")
            return
        if not await self.leg_call(self.caller_id, self.client.ring(self.caller_id)):
            await self.settle(0, note="caller left before dialling")
            return
        created = await self.gate.create_callee(self, endpoint)
        self.callee_id = str(created["id"])
        await self.until(lambda: self.callee_id in self.in_stasis or self.any_leg_gone(), self.s.stasis_timeout)
        if self.is_gone(self.caller_id):
            await self.end_unanswered()
            return
        if self.callee_id not in self.in_stasis:
            log.error("callee %s did not enter Stasis within %ss", self.callee_id, self.s.stasis_timeout,
                      extra={"session": self.session_id})
            await self.end_unanswered(caller_reason="congestion")
            return
        self.dialled_ms = self.now_ms()
        if not await self.leg_call(self.callee_id, self.client.dial(self.callee_id, caller=self.caller_id,
                                                                     timeout=self.s.dial_timeout)):
            await self.end_unanswered()
            return
        bridge = await self.client.create_bridge("mixing", name=f"{BRIDGE_NAME_PREFIX}{self.caller_id}")
        self.bridge_id = str(bridge["id"])
        await self.until(lambda: self.answered_ts is not None or self.any_leg_gone(),
                         self.s.dial_timeout * self.s.time_scale + self.s.answer_grace)
        if self.answered_ts is None or self.any_leg_gone():
            await self.end_unanswered()
            return
        await self.connect()
        await self.talk()

    def dial_endpoint(self, auth) -> str | None:
        if self.direction == "inbound":
            if not auth.ring_endpoint:
                return None
            return self.s.inbound_template.format(endpoint=auth.ring_endpoint)
        number = (self.caller.get("dialplan") or {}).get("exten") or auth.number
        return self.s.trunk_template.format(number=number)

    async def refuse(self, reason: str) -> None:
        """Early media, the announcement for ``reason``, then a hangup whose reason gives the SIP code."""
        cid = self.caller_id
        if not await self.leg_call(cid, self.client.progress(cid)):
            return
        media = self.s.announcement_for(reason)
        if media:
            try:
                pb = await self.client.play(cid, media)
            except GONE_ERRORS:
                return
            except AriError as exc:  # a missing announcement must not keep the caller waiting
                log.warning("announcement %s failed on %s: %s", media, cid, exc)
                pb = None
            if pb and pb.get("id"):
                pb_id = str(pb["id"])
                await self.until(lambda: pb_id in self.finished_playbacks or self.is_gone(cid),
                                 self.s.announcement_timeout)
        if not self.is_gone(cid):
            await self.hangup_quiet(cid, hangup_reason(reason))

    async def end_unanswered(self, caller_reason: str | None = None) -> None:
        """The call ends before anyone talked: the other side hung up, the bridge goes, settle 0."""
        if caller_reason is not None:  # our own decision to give up: both legs go
            if not self.is_gone(self.callee_id):
                await self.hangup_quiet(self.callee_id)
            if not self.is_gone(self.caller_id):
                await self.hangup_quiet(self.caller_id, caller_reason)
        elif self.is_gone(self.caller_id):
            # caller cancelled while ringing: cancel the callee (a CANCEL goes to the trunk)
            await self.hangup_quiet(self.callee_id)
        else:
            if self.callee_id and self.is_gone(self.callee_id):
                # the cause is only in the callee's ChannelDestroyed (no Dial BUSY event)
                await self.until(lambda: self.callee_id in self.destroyed, self.s.hangup_cause_wait)
                cause = self.destroyed.get(self.callee_id)
                if cause is None:
                    cause = self.hangup_cause.get(self.callee_id)
                caller_reason = failed_dial_reason(cause)
            else:  # no answer within the dial timeout and no event said why
                caller_reason = "no_answer"
                await self.hangup_quiet(self.callee_id)
            await self.hangup_quiet(self.caller_id, caller_reason)
        await self.delete_bridge()
        await self.settle(0, note="not answered")

    async def delete_bridge(self) -> None:
        if self.bridge_id is None:
            return
        try:
            await self.client.destroy_bridge(self.bridge_id)
        except (AriNotFound, AriUnprocessable):
            pass
        except AriError as exc:
            log.warning("bridge %s delete failed: %s", self.bridge_id, exc)
        self.bridge_id = None

    async def connect(self) -> None:
        """The callee answered: answer the caller, bridge both, start the money clock."""
        assert self.answered_ts is not None
        if not await self.leg_call(self.caller_id, self.client.answer(self.caller_id)):
            return
        try:
            await self.client.add_channels(self.bridge_id, [self.caller_id, self.callee_id])
        except AriError as exc:
            # a leg that hung up meanwhile: 400 "Channel not found", 404, 409, 422 "not in Stasis"
            if not isinstance(exc, GONE_ERRORS + (AriUnprocessable, AriBadRequest)):
                raise
            self.drain()
            if not self.any_leg_gone():
                for leg in self.legs():
                    try:
                        await self.client.get_channel(leg)
                    except AriNotFound:
                        self.mark_gone(leg, self.now_ms())
            if not self.any_leg_gone():  # both legs there but cannot be bridged: a real fault
                raise
        if self.session_id is not None and not (self.auth and self.auth.emergency):
            session = await self.core.answer(self.session_id, at_ms=self.answered_ts)
            self.answered_at = session.answered_at
            self.set_cutoff(session.cutoff_at)
        elif self.session_id is not None:
            await self.core.answer(self.session_id, at_ms=self.answered_ts)
            self.answered_at = self.answered_ts
        else:
            self.answered_at = self.answered_ts
        self._anchor = (self.answered_mono or self.loop_time(), self.answered_ts)

    def set_cutoff(self, cutoff_at: int | None) -> None:
        if cutoff_at != self.cutoff_at:
            if self.cutoff_at is not None and cutoff_at is not None:
                log.info("cut-off moved by %+d ms", cutoff_at - self.cutoff_at,
                         extra={"session": self.session_id, "channel": self.caller_id})
            self.cutoff_at = cutoff_at

    def mono_at(self, epoch_ms: int) -> float:
        """Loop time at which Asterisk's clock reads ``epoch_ms`` (from the answer anchor)."""
        mono, epoch = self._anchor or (self.loop_time(), self.now_ms())
        return mono + (epoch_ms - epoch) / 1000.0 * self.s.time_scale

    def observe(self, ev: dict) -> None:
        if ev.get("type") == "_cutoff":  # the refresh pass read a new cut-off from the store
            if ev.get("ended"):
                self.ended_by_operator = True
            self.set_cutoff(ev.get("cutoff_at"))
        super().observe(ev)

    async def talk(self) -> None:
        """Bridged: wait for a hangup, play the warning, cut at the (moving) cut-off."""
        while not self.any_leg_gone():
            now = self.loop_time()
            wake_at: float | None = None
            if self.cutoff_at is not None:
                cut_mono = self.mono_at(self.cutoff_at)
                if now >= cut_mono:
                    self.cut = True
                    break
                wake_at = cut_mono
                if self.s.warning_seconds > 0 and self.warned_for != self.cutoff_at and not self.ended_by_operator:
                    # once per cut-off value: a moved cut-off (extension or partial grant) warns again
                    warn_mono = cut_mono - self.s.warning_seconds * self.s.time_scale
                    if now >= warn_mono:
                        # the warning means "the money ends": first see whether it really does
                        if await self.try_extend():
                            continue
                        await self.warn()
                        continue
                    wake_at = min(wake_at, warn_mono)
            self._wake = False
            timeout = None if wake_at is None else max(0.0, wake_at - now)
            await self.until(lambda: self._wake or self.any_leg_gone(), timeout)
        await self.end_answered()

    async def try_extend(self) -> bool:
        """Fallback extension before warning (see :mod:`ari_app.gate`): True if the cut-off moved later."""
        if self.session_id is None or not self.gate.fallback_extension_enabled() or self.cutoff_at is None:
            return False
        try:
            session = await self.core.extend(self.session_id)
        except StorageError as exc:
            # The database is down: the call keeps what it has paid for (the current cut-off) and
            # is warned and cut there, rather than dropped at once.
            log.warning("cannot extend (%s): the call is cut at its current cut-off", exc,
                        extra={"session": self.session_id, "channel": self.caller_id})
            return False
        if session.cutoff_at is not None and session.cutoff_at > self.cutoff_at:
            self.gate.stats.extended += 1
            self.set_cutoff(session.cutoff_at)
            return True
        if session.cutoff_at is not None:
            self.set_cutoff(session.cutoff_at)
        return False

    async def warn(self) -> None:
        self.warned_for = self.cutoff_at
        log.info("warning tone before cut-off", extra={"session": self.session_id, "channel": self.caller_id})
        try:
            await self.client.play(self.caller_id, self.s.warning_media)
        except GONE_ERRORS:
            self.drain()
        except AriError as exc:  # a missing tone never stops the call
            log.warning("warning tone failed on %s: %s", self.caller_id, exc)

    def measured_talk_ms(self, end_ts: int | None = None) -> int:
        """Talk from the answer to the first hangup sign, never beyond the stored cut-off."""
        start = self.answered_at if self.answered_at is not None else self.answered_ts
        if start is None:
            return 0
        if end_ts is None:
            ends = [self.gone_ts[leg] for leg in self.legs() if leg in self.gone_ts]
            end_ts = min(ends) if ends else self.now_ms()
        talk = max(0, end_ts - start)
        if self.cutoff_at is not None:
            talk = min(talk, max(0, self.cutoff_at - start))
        return talk

    async def end_answered(self) -> None:
        if self.cut:
            talk = self.measured_talk_ms(self.cutoff_at)
            log.info("cut-off: hanging up both legs", extra={"session": self.session_id, "channel": self.caller_id})
            for leg in self.legs():
                await self.hangup_quiet(leg, "normal")
        else:
            talk = self.measured_talk_ms()
            for leg in self.legs():
                if leg not in self.gone_ts:
                    await self.hangup_quiet(leg)
        await self.delete_bridge()
        await self.settle(talk, note="ended by an operator" if self.cut and self.ended_by_operator else None)

    async def abort(self) -> None:
        """Clean end after a fault: legs hung up, bridge deleted, session settled."""
        self.drain()
        answered = self.answered_at is not None
        for leg in self.legs():
            if leg not in self.gone_ts:
                await self.hangup_quiet(leg, "normal" if answered else "congestion")
        await self.delete_bridge()
        if not self.settled and self.session_id is not None:
            talk = self.measured_talk_ms() if answered else 0
            await self.settle(talk, note="ended after a gate error")

    # ---------------------------------------------------------------- restart
    async def adopt(self, session, *, callee_id: str | None, bridge_id: str | None) -> None:
        """Resume an answered call found after a restart: timers from the stored cut-off."""
        self.session_id = session.session_id
        self.callee_id = callee_id
        self.bridge_id = bridge_id
        self.answered_at = self.answered_ts = session.answered_at
        self.cutoff_at = session.cutoff_at
        self.ended_by_operator = session.hold_mode == ENDED_HOLD
        self._anchor = (self.loop_time(), self.now_ms())
        self.in_stasis = {leg for leg in self.legs()}
        self._entry = self.adopted_flow

    async def adopted_flow(self) -> None:
        if self.any_leg_gone():
            await self.end_answered()
        else:
            await self.talk()
