"""The gate's settings: one frozen dataclass.

callgate's configuration layer (callgate/config.py: ``[ari]`` and ``[announcements]``, file +
environment) fills it and passes it to the Gate; ari_app never reads the environment itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

from ari_app.announcements import DEFAULT_ANNOUNCEMENTS


@dataclass(frozen=True)
class GateSettings:
    """Everything the gate can be told. Every delay is configurable so tests run on short timers."""

    app: str = "callgate"
    """Stasis application name (CALLGATE_ARI_APP)."""
    trunk_template: str = "PJSIP/{number}@trunk"
    """Outbound dial string; ``{number}`` is the dialled number (CALLGATE_TRUNK_TEMPLATE)."""
    inbound_template: str = "PJSIP/{endpoint}"
    """Inbound dial string; ``{endpoint}`` is the DID's ring endpoint (CALLGATE_INBOUND_TEMPLATE)."""
    dial_timeout: int = 30
    """Seconds the callee may ring (ARI dial ``timeout``, CALLGATE_DIAL_TIMEOUT)."""
    warning_seconds: float = 60.0
    """The warning tone plays this long before the cut-off; 0 = no tone (CALLGATE_WARNING_SECONDS)."""
    warning_media: str = "sound:beep"
    """What the caller hears as the warning (CALLGATE_WARNING_MEDIA)."""
    announcements: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ANNOUNCEMENTS))
    """Deny reason → media played before a refusal; empty string = none (CALLGATE_ANNOUNCE_<REASON>)."""
    announcement_timeout: float = 20.0
    """Longest wait for PlaybackFinished of a refusal announcement (events can be lost)."""
    stasis_timeout: float = 5.0
    """Longest wait for a created callee channel's StasisStart."""
    answer_grace: float = 5.0
    """After dial_timeout + this, a still-unanswered dial is given up (lost events)."""
    hangup_cause_wait: float = 2.0
    """After the callee left unanswered, how long to wait for its ChannelDestroyed cause."""
    refresh_interval: float = 1.0
    """How often the cut-off of live calls is re-read from the store (≤ 1 s: it follows the money)."""
    heartbeat_interval: float = 10.0
    """How often the gate tells the core which calls are alive."""
    extend_below_seconds: float | None = None
    """Fallback hold extension: when an answered call's remaining granted talk drops below this, the
    gate itself calls ``core.extend``. None = half the core's chunk; 0 = never (sidecar only)."""
    continue_poll_seconds: float = 30.0
    """Continue mode: if no event came for this long, ask Asterisk whether the channel still exists."""
    ended_clear_interval: float = 300.0
    """How often, while connected, the gate clears the ends Asterisk recorded for calls (AstDB
    family ``callgate_ended``: the calls it saw end itself); see ari_app/recorded_ends.py."""
    orphan_grace: float = 5.0
    """At start-up, channels in our application that no call claims after this long are hung up."""
    time_scale: float = 1.0
    """Real seconds per second of Asterisk's clock: 1 in production; tests that run the simulator
    sped up set the simulator's ``time_scale`` so timers follow simulated time."""
    settle_retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0)
    """Waits between attempts when the store cannot settle a finished call (then the sidecar's
    stale-session rule is the last resort)."""
    pbx_id: str = ""
    """Overrides Asterisk's id (the events' asterisk_id) in session keys (CALLGATE_PBX_ID)."""

    def announcement_for(self, reason: str) -> str:
        return self.announcements.get(str(getattr(reason, "value", reason)), "")

    def with_(self, **changes) -> "GateSettings":
        return replace(self, **changes)
