"""Continue mode: ``Stasis(callgate,outbound|inbound,continue)`` for admins who keep ``Dial()`` in the dialplan.

The gate decides, sets CALLGATE_STATUS / CALLGATE_REASON / CALLGATE_MAX_MS / CALLGATE_SESSION on
the channel and continues it to the next priority, where the dialplan runs
``Dial(…,L(${CALLGATE_MAX_MS}:…))``. L() cannot be extended, so the whole grant is held up front
(``full_hold=True``). CALLGATE_MAX_MS is always set — ``0`` on a refusal — because an empty value
makes ``L()`` fail ("Bridge does not accept L()", see the traces README). Inbound
(``Stasis(callgate,inbound,continue)``, context ``callgate-inbound-continue``): an ALLOW also sets
CALLGATE_ENDPOINT, the endpoint the DID rings (``Dial(PJSIP/${CALLGATE_ENDPOINT},…)``), as FastAGI does.

How the gate learns the end of the call, two ways:

* asterisk-conf's dialplan (``Stasis(callgate,<direction>,continue,hangup-handler)``) pushed the
  hangup handler [callgate-continue-settle] before Stasis(); when the caller hangs up it re-enters
  ``Stasis(callgate,settle,<session>,<ANSWEREDTIME_MS>)`` on the hung-up channel (Asterisk 22 sends
  StasisStart and at once StasisEnd; recorded, see test_simulator). That one event carries Dial's
  own talk time and the end, so the gate needs no channel subscription: after continue Asterisk
  builds no event of the call for it. (A subscription made it build ~48 events, ~30 KB of JSON per
  call — channel varsets, Dial, dialplan steps; an eventFilter only saves the sending, not the
  building: stasis_app_event_allowed runs on the finished JSON. That was +45 % Asterisk CPU per
  call over a do-nothing app; docs/BENCHMARKS.md "Real Asterisk".)
* a dialplan without the handler (``Stasis(callgate,<direction>,continue)``): before continuing the
  gate subscribes to ``channel:{id}``: after StasisEnd the plain websocket then still delivers the
  channel's Dial events (ANSWER, with the event timestamp), the ANSWEREDTIME_MS varset and
  ChannelDestroyed, from which the real talk time is settled
  (continue_mode_channel_subscription*.jsonl). Asterisk drops the subscription itself when the
  channel is destroyed, so the gate unsubscribes only when it stops following a channel that may
  still exist (a fault, or the caller leaving before continue), never after ChannelDestroyed.
  A call re-adopted after a restart is followed this way too (its dialplan is not known).
"""
from __future__ import annotations

import logging
from typing import Any

from ari_app.calls import GONE_ERRORS, CallActor, parse_ts
from ari_app.errors import AriError, AriNotFound
from billing_core.domain.errors import DenyReason
from callgate_dialplan import (STATUS_ALLOW, STATUS_DENY, VAR_ENDPOINT, VAR_MAX_MS, VAR_REASON, VAR_SESSION,
                               VAR_STATUS)

log = logging.getLogger("ari_app.gate")

#: Third Stasis() argument of a continue route whose dialplan pushed [callgate-continue-settle].
HANDLER_ARG = "hangup-handler"
#: First Stasis() argument of that handler: Stasis(callgate,settle,<session>,<ANSWEREDTIME_MS>).
SETTLE_ARG = "settle"
#: How long a handler-settled call whose channel GET says gone waits for the handler's report
#: (Asterisk answers 404 while the handler still runs on the hung-up channel).
HANDLER_REPORT_WAIT_SECONDS = 2.0


def settle_report(event: dict) -> tuple[str, int | None] | None:
    """(session, ANSWEREDTIME_MS or None when unanswered) of a settle StasisStart, else None."""
    args = [str(a) for a in (event.get("args") or [])]
    if len(args) < 2 or args[0] != SETTLE_ARG or not args[1]:
        return None
    answered = args[2] if len(args) > 2 else ""
    return args[1], (int(answered) if answered.isdigit() else None)


def deny_variables(reason: str) -> list[tuple[str, str]]:
    """What a refusal sets when the gate cannot decide normally (a fault, shutting down)."""
    return [(VAR_MAX_MS, "0"), (VAR_STATUS, STATUS_DENY), (VAR_REASON, reason), (VAR_SESSION, "")]


#: Margin past the longest possible call before the gate asks Asterisk whether the channel lives.
FOLLOW_MARGIN_SECONDS = 60.0


class ContinueCall(CallActor):
    """One continue-mode call: decide, set variables, subscribe, continue, then follow and settle."""

    mode = "continue"
    needs_channel_varsets = True

    def __init__(self, gate, caller: dict, **kw: Any) -> None:
        super().__init__(gate, caller, **kw)
        self.continued = False
        self.subscribed = False
        self.answered_time_ms: int | None = None
        """ANSWEREDTIME_MS as Dial reported it at the end of the call (most precise talk time)."""
        self.end_ts: int | None = None
        self.answer_stored = False
        self.granted_ms: int | None = None
        self.settled_by_handler = HANDLER_ARG in self.args[2:]
        """The dialplan reports the end (Stasis(callgate,settle,…)): no channel subscription."""
        self.needs_channel_varsets = not self.settled_by_handler
        """Only a call followed through a channel subscription needs Dial's ANSWEREDTIME_MS varset
        (the class says what a continue call needs by default: a dialplan without the handler)."""
        self.handler_reported = False

    # ---------------------------------------------------------------- events
    def on_stasis_end(self, cid: str, ts: int | None) -> None:
        # leaving Stasis is the point of continue mode; before continue it is a hangup
        if not self.continued:
            self.mark_gone(cid, ts)

    def on_event(self, kind, ev, cid, ts) -> None:
        if kind == "StasisStart" and cid == self.caller_id:
            report = settle_report(ev)
            if report is not None and report[0] == self.session_id:
                self._handler_reported(report[1], parse_ts(ev.get("timestamp")))
        elif kind == "Dial" and ev.get("dialstatus") == "ANSWER":
            caller = ev.get("caller") or {}
            if str(caller.get("id")) == self.caller_id:
                self._answered(ts)
        elif kind == "ChannelStateChange" and cid == self.caller_id and ev["channel"].get("state") == "Up":
            if self.continued:
                self._answered(ts)
        elif kind == "ChannelVarset" and cid == self.caller_id and ev.get("variable") == "ANSWEREDTIME_MS":
            value = str(ev.get("value") or "")
            if value.isdigit():
                self.answered_time_ms = int(value)
        elif kind == "ChannelHangupRequest" and cid == self.caller_id and self.end_ts is None:
            self.end_ts = ts if ts is not None else self.now_ms()
        elif kind == "ChannelDestroyed" and cid == self.caller_id and self.end_ts is None:
            self.end_ts = ts if ts is not None else self.now_ms()

    def _handler_reported(self, answered_time_ms: int | None, ts: int | None) -> None:
        """The hangup handler ran: the call is over; Dial's talk time, if it was answered."""
        self.handler_reported = True
        if answered_time_ms is not None:
            self.answered_time_ms = answered_time_ms
        if self.end_ts is None:
            self.end_ts = ts if ts is not None else self.now_ms()

    def _answered(self, ts: int | None) -> None:
        if self.answered_ts is None:
            self.answered_ts = ts if ts is not None else self.now_ms()
            self.answered_mono = self.loop_time()

    def ended(self) -> bool:
        return self.caller_id in self.destroyed or self.handler_reported

    # ---------------------------------------------------------------- the flow
    async def flow(self) -> None:
        auth = await self.decide(full_hold=True)
        self.granted_ms = auth.granted_ms
        cid = self.caller_id
        allowed = auth.allowed
        variables = {
            VAR_STATUS: STATUS_ALLOW if allowed else STATUS_DENY,
            VAR_REASON: "" if allowed else str(auth.reason),
            VAR_MAX_MS: str(auth.granted_ms),
            VAR_SESSION: auth.session_id or "",
        }
        names = [VAR_MAX_MS, VAR_STATUS, VAR_REASON, VAR_SESSION]
        if self.direction == "inbound" and allowed:
            # the dialplan rings the DID's endpoint: Dial(PJSIP/${CALLGATE_ENDPOINT},…), as with FastAGI;
            # set before CALLGATE_STATUS, like every other value the dialplan reads behind an ALLOW
            names.insert(1, VAR_ENDPOINT)
            variables[VAR_ENDPOINT] = auth.ring_endpoint or ""
            if not auth.ring_endpoint:  # nobody to ring: refuse (404, as bridge mode), never guess
                log.error("inbound call to %s has no endpoint to ring", auth.number, extra={"session": self.session_id})
                allowed = False
                variables.update({VAR_STATUS: STATUS_DENY, VAR_REASON: DenyReason.UNKNOWN_DID.value, VAR_MAX_MS: "0",
                                  VAR_SESSION: ""})
        # One request where Asterisk has ARRAY() (AriClient.set_variables). MAX_MS comes first, so
        # even when they go one by one the dialplan never sees an empty L() value.
        if not await self.leg_call(cid, self.client.set_variables(cid, [(n, variables[n]) for n in names])):
            await self.settle(0, note="caller left before continue")
            return
        if allowed and auth.session_id is not None and not self.settled_by_handler:
            await self.gate.update_event_filter()  # Dial's ANSWEREDTIME_MS varset must reach us
            await self.client.subscribe(f"channel:{cid}")
            self.subscribed = True
        if not await self.leg_call(cid, self.client.continue_in_dialplan(cid)):
            await self.settle(0, note="caller left before continue")
            await self.unsubscribe()
            return
        self.continued = True
        if not allowed or auth.session_id is None:
            if auth.session_id is not None:  # allowed by the core, refused here: release the hold
                await self.settle(0, note="no ring endpoint")
            return
        await self.follow()

    async def follow(self) -> None:
        """Wait for the channel's end, recording the answer; then settle the real talk time."""
        limit = ((self.granted_ms or 0) / 1000 + self.s.dial_timeout) * self.s.time_scale + FOLLOW_MARGIN_SECONDS
        waited = 0.0
        while not self.ended():
            step = min(self.s.continue_poll_seconds, max(limit - waited, 1.0))
            await self.until(lambda: self.ended() or (self.answered_ts is not None and not self.answer_stored), step)
            if self.answered_ts is not None and not self.answer_stored:
                await self.core.answer(self.session_id, at_ms=self.answered_ts)
                self.answer_stored = True
                continue
            if self.ended():
                break
            waited += step
            if not await self.channel_exists():
                if self.settled_by_handler and await self.until(lambda: self.handler_reported,
                                                                HANDLER_REPORT_WAIT_SECONDS):
                    break
                self.destroyed.setdefault(self.caller_id, None)
                self.mark_gone(self.caller_id, self.now_ms())
                break
        if self.answered_ts is None and self.answered_time_ms:
            # the answer happened while we were not listening (a restart): Dial's own figure
            # says when — the end of the call minus ANSWEREDTIME_MS
            end = self.end_ts or self.gone_ts.get(self.caller_id) or self.now_ms()
            self.answered_ts = end - self.answered_time_ms
        # an answer not stored yet (the hangup handler reports it only at the end) goes in with the settle
        unstored_answer = self.answered_ts if not self.answer_stored else None
        await self.settle(self.measured_talk_ms(), answered_at_ms=unstored_answer)
        # No DELETE …/subscription here: the channel is destroyed (seen, or GET said 404), and
        # Asterisk drops a destroyed channel's subscription itself; the recording shows the DELETE
        # answered 422 "Event source was not subscribed to". One request per call saved.
        self.subscribed = False

    async def channel_exists(self) -> bool:
        try:
            await self.client.get_channel(self.caller_id)
            return True
        except AriNotFound:
            return False

    def measured_talk_ms(self) -> int:
        if self.answered_ts is None:
            return 0
        granted_ms = self.granted_ms
        if self.answered_time_ms is not None:
            talk = self.answered_time_ms
        else:
            end = self.end_ts or self.gone_ts.get(self.caller_id) or self.now_ms()
            talk = max(0, end - self.answered_ts)
        if granted_ms:
            talk = min(talk, granted_ms)  # L() cut the call at the grant; any excess is jitter
        return talk

    async def unsubscribe(self) -> None:
        if not self.subscribed:
            return
        self.subscribed = False
        try:
            await self.client.unsubscribe(f"channel:{self.caller_id}")
        except AriError:
            pass  # 422 "Event source was not subscribed to": Asterisk already dropped it

    async def abort(self) -> None:
        """A fault: before continue → DENY and continue (or hang up); after → settle what we know."""
        self.drain()
        cid = self.caller_id
        if not self.continued and not self.is_gone(cid):
            try:
                await self.client.set_variables(cid, deny_variables("billing_unavailable"))
                await self.client.continue_in_dialplan(cid)
                self.continued = True
            except GONE_ERRORS:
                pass
            except AriError as exc:
                log.warning("continue with DENY failed on %s (%s); hanging up", cid, exc)
                await self.hangup_quiet(cid, "congestion")
        if not self.settled and self.session_id is not None:
            await self.settle(self.measured_talk_ms() if self.continued else 0, note="ended after a gate error")
        await self.unsubscribe()

    # ---------------------------------------------------------------- restart
    def adopt(self, session) -> None:
        """Follow a continued call found alive after a restart (its answer may have been missed)."""
        self.session_id = session.session_id
        self.continued = True
        self.subscribed = True
        self.answered_ts = session.answered_at
        self.answer_stored = session.answered_at is not None
        self.granted_ms = session.granted_seconds * 1000
        self._entry = self._adopted

    async def _adopted(self) -> None:
        try:
            await self.client.subscribe(f"channel:{self.caller_id}")
        except AriError as exc:
            log.warning("re-subscribe to %s failed: %s", self.caller_id, exc)
        await self.follow()
