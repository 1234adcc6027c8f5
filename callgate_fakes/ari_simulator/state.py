"""The simulated Asterisk's state: channels, bridges, playbacks and the apps' event sockets.

Plain objects, no behaviour beyond their ARI JSON: every transition is a method of the simulator
(``channels``, ``dialplan``, ``rest``), run synchronously on one asyncio loop so it is atomic.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from callgate_fakes.ari_simulator.model import Party, SimCall

if TYPE_CHECKING:
    from aiohttp import web


class Clock(Protocol):
    """What a state object needs of the simulator: its simulated time as ARI prints it."""

    def timestamp(self, at: float | None = None) -> str: ...


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


class Channel:
    def __init__(self, sim: Clock, *, cid: str, name: str, state: str, protocol_id: str,
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
    def __init__(self, sim: Clock, bid: str, name: str, bridge_type: str,
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
