"""The gate's settings: one frozen dataclass, filled from the environment by :func:`from_env`.

The variable names and defaults match callgate's configuration schema (``[ari]`` and
``[announcements]``), so a TOML file exported by ``callgate --config`` reaches the gate unchanged.
ari_app never imports callgate: it reads its own variables here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Mapping

from ari_app.announcements import DEFAULT_ANNOUNCEMENTS


class SettingsError(ValueError):
    """A bad setting; the message names the environment variable."""


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


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0,
           maximum: float | None = None) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}: must be a number of seconds (got {raw!r})") from None
    if value < minimum:
        raise SettingsError(f"{name}: must be ≥ {minimum:g} (got {raw!r})")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}: must be ≤ {maximum:g} (got {raw!r})")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: must be a whole number (got {raw!r})") from None
    if value < minimum:
        raise SettingsError(f"{name}: must be ≥ {minimum} (got {raw!r})")
    return value


#: callgate's configuration schema also accepts CALLGATE_<SECTION>_<KEY>; the short names win.
LONG_NAMES = {
    "CALLGATE_WARNING_SECONDS": "CALLGATE_ARI_WARNING_SECONDS",
    "CALLGATE_TRUNK_TEMPLATE": "CALLGATE_ARI_TRUNK_TEMPLATE",
    "CALLGATE_DIAL_TIMEOUT": "CALLGATE_ARI_DIAL_TIMEOUT",
    "CALLGATE_PBX_ID": "CALLGATE_ARI_PBX_ID",
    **{f"CALLGATE_ANNOUNCE_{r.upper()}": f"CALLGATE_ANNOUNCEMENTS_{r.upper()}" for r in DEFAULT_ANNOUNCEMENTS},
}


class _Env(dict):
    """The environment seen under the short names; remembers which variable a value came from so
    an error names what the operator actually set."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        self.source: dict[str, str] = {}
        for short, long in LONG_NAMES.items():
            if short not in env and long in env:
                self[short] = env[long]
                self.source[short] = long


def _named(env: Mapping[str, str], message: str) -> str:
    """Rewrite ``CALLGATE_X: ...`` to the variable the value came from."""
    name, sep, rest = message.partition(":")
    source = getattr(env, "source", {}).get(name)
    return f"{source}{sep}{rest}" if source else message


def from_env(env: Mapping[str, str] | None = None) -> GateSettings:
    """GateSettings from environment variables; raises SettingsError naming the variable."""
    env = _Env(os.environ if env is None else env)
    try:
        return _from_env(env)
    except SettingsError as exc:
        raise SettingsError(_named(env, str(exc))) from None


def _from_env(env: Mapping[str, str]) -> GateSettings:
    base = GateSettings()
    trunk = env.get("CALLGATE_TRUNK_TEMPLATE") or base.trunk_template
    if "{number}" not in trunk:
        raise SettingsError(f"CALLGATE_TRUNK_TEMPLATE: must contain {{number}} (got {trunk!r})")
    inbound = env.get("CALLGATE_INBOUND_TEMPLATE") or base.inbound_template
    if "{endpoint}" not in inbound:
        raise SettingsError(f"CALLGATE_INBOUND_TEMPLATE: must contain {{endpoint}} (got {inbound!r})")
    announcements = dict(base.announcements)
    for reason in list(announcements):
        name = f"CALLGATE_ANNOUNCE_{reason.upper()}"
        if name in env:
            value = env[name].strip()
            if value and ":" not in value:
                raise SettingsError(f"{name}: must be an ARI media URI such as sound:cannot-complete-as-dialed "
                                    f"(got {value!r}); empty = no announcement")
            announcements[reason] = value
    extend_raw = env.get("CALLGATE_GATE_EXTEND_BELOW_SECONDS")
    return GateSettings(
        app=env.get("CALLGATE_ARI_APP") or base.app,
        trunk_template=trunk,
        inbound_template=inbound,
        dial_timeout=_int(env, "CALLGATE_DIAL_TIMEOUT", base.dial_timeout),
        warning_seconds=_float(env, "CALLGATE_WARNING_SECONDS", base.warning_seconds),
        warning_media=env.get("CALLGATE_WARNING_MEDIA") or base.warning_media,
        announcements=announcements,
        announcement_timeout=_float(env, "CALLGATE_ANNOUNCEMENT_TIMEOUT", base.announcement_timeout, minimum=0.1),
        refresh_interval=_float(env, "CALLGATE_GATE_REFRESH_SECONDS", base.refresh_interval, minimum=0.05,
                                maximum=1.0),  # the cut-off follows the money within a second
        heartbeat_interval=_float(env, "CALLGATE_GATE_HEARTBEAT_SECONDS", base.heartbeat_interval, minimum=0.1),
        extend_below_seconds=None if not extend_raw else _float(env, "CALLGATE_GATE_EXTEND_BELOW_SECONDS", 0.0),
        pbx_id=env.get("CALLGATE_PBX_ID", "").strip(),
    )
