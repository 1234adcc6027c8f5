"""The simulated dialplan: asterisk-conf's routes and handlers as Asterisk 22 runs them (see :class:`Dialplan`).

Its names (contexts, handler, CALLGATE_WARN_MS) are the simulator's own copy of asterisk-conf's;
tests/conf checks that they agree.
"""
from __future__ import annotations

import uuid

import callgate_dialplan
from callgate_fakes.ari_simulator import causes
from callgate_fakes.ari_simulator.routing import RestError
from callgate_fakes.ari_simulator.state import Bridge, Channel


#: asterisk-conf's [callgate-deny]: CALLGATE_REASON -> the Hangup() cause (anything else: 34).
DENY_CAUSES = {r.value: c for r, c in callgate_dialplan.HANGUP_CAUSES.items()
               if c != callgate_dialplan.CAUSE_NO_CIRCUIT}
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


class Dialplan:
    """The bits of asterisk-conf's dialplan that run around the gate: the hangup handlers
    ([callgate-ended] writing AstDB, [callgate-continue-settle] re-entering Stasis), the continue
    routes' Dial() with L() (warning, limit, the result variables), and the dialplan functions a
    variable write or read may call. A mixin of
    :class:`~callgate_fakes.ari_simulator.server.AriSimulator`, on its state."""

    # ------------------------------------------------------------------ hangup handlers and AstDB
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

    # ------------------------------------------------------------------ dialplan functions (through ARI variables)
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

