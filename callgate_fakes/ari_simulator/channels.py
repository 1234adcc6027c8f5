"""Channel and bridge state transitions of the simulated Asterisk (see :class:`ChannelFlows`)."""
from __future__ import annotations

import uuid
from typing import Any

from callgate_fakes.ari_simulator import causes
from callgate_fakes.ari_simulator.model import CallOutcome, Party, SimCall
from callgate_fakes.ari_simulator.state import Bridge, Channel, Playback


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


class ChannelFlows:
    """The life of channels and bridges as the traces show it: Stasis entry and exit, variable sets,
    hangup requests, the parties' scripted ringing/answer/BYE/rejection, teardown per channel kind
    and state, playbacks. A mixin of :class:`~callgate_fakes.ari_simulator.server.AriSimulator`,
    whose state (``_channels``, ``_bridges``, ``_playbacks``, ``calls``) it works on; the events go
    out through ``_emit`` (``transport``)."""

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

