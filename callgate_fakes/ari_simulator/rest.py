"""The simulator's ARI REST handlers: channels, bridges, applications, playbacks, asterisk (see :class:`RestHandlers`)."""
from __future__ import annotations

import asyncio
import uuid

from callgate_fakes.ari_simulator import causes
from callgate_fakes.ari_simulator.dialplan import ENDED_FAMILY
from callgate_fakes.ari_simulator.routing import RestError
from callgate_fakes.ari_simulator.state import BRIDGE_TYPES, KNOWN_TECHS, Bridge, Channel, Playback


class RestHandlers:
    """One method per swagger operation the simulator models, named ``_rest_<resource>_<nickname>``
    (``transport`` finds it by that name; an operation without one answers 501). Each takes the
    validated parameters and the body and returns (status, JSON) or raises
    :class:`~callgate_fakes.ari_simulator.routing.RestError`. A mixin of
    :class:`~callgate_fakes.ari_simulator.server.AriSimulator`, on its state."""

    # ------------------------------------------------------------------ channels
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

    def _rest_channels_getChannelVar(self, params, body):
        ch = self._channel(params)
        name = params["variable"]
        if name.endswith(")"):   # a dialplan function, evaluated on this channel (ast_func_read2)
            return 200, {"value": self._function_read(ch, name)}
        if name not in ch.vars:
            raise RestError(404, "Provided variable was not found", "Variable Not Found")
        return 200, {"value": ch.vars[name]}

    def _rest_channels_sendDTMF(self, params, body):
        self._stasis_channel(params)
        if not params.get("dtmf"):
            raise RestError(400, "DTMF is required", "Bad Request")
        return 204, None

    # ------------------------------------------------------------------ bridges
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

    # ------------------------------------------------------------------ applications
    def _app_json(self, name: str) -> dict:
        app = self._apps.get(name)
        return {"name": name,
                "channel_ids": [c.id for c in self._channels.values() if c.subscribed(name)],
                "bridge_ids": [b.id for b in self._bridges.values() if name in b.subs],
                "endpoint_ids": [], "device_names": [],
                "events_allowed": list(app.events_allowed) if app else [],
                "events_disallowed": list(app.events_disallowed) if app else []}

    def _rest_applications_list(self, params, body):
        return 200, [self._app_json(n) for n in self._apps]

    def _rest_applications_get(self, params, body):
        return 200, self._app_json(self._app_name(params))

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

    # ------------------------------------------------------------------ playbacks
    def _playback(self, params) -> Playback:
        pb = self._playbacks.get(params["playbackId"])
        if pb is None:
            raise RestError(404, "Playback not found", "Not Found")
        return pb

    def _rest_playbacks_get(self, params, body):
        return 200, self._playback(params).json()

    def _rest_playbacks_stop(self, params, body):
        pb = self._playback(params)
        self._finish_playback(pb, "done")
        return 204, None

    def _rest_playbacks_control(self, params, body):
        self._playback(params)
        return 204, None

    # ------------------------------------------------------------------ asterisk
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

