"""Settings of the AGI adapter, read from the environment (the config layer exports the TOML file's
``[agi]`` section under these names, see callgate/config.py).

| variable | default | meaning |
|---|---|---|
| CALLGATE_AGI_LISTEN | 127.0.0.1:4573 | FastAGI host:port |
| CALLGATE_AGI_READ_TIMEOUT | 10 | seconds to wait for one line from Asterisk |
| CALLGATE_AGI_SESSION_TIMEOUT | 30 | seconds a whole FastAGI session may take |
| CALLGATE_AGI_DECISION_TIMEOUT | 5 | seconds the billing core may take to answer; then DENY billing_unavailable |
| CALLGATE_AGI_PBX_ID | agi@<hostname> | pbx id of the sessions this server creates |
| CALLGATE_AGI_MAX_CONNECTIONS | 512 | connections served at once; more are closed at once (one warning a minute) |
"""
from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import Mapping

_LISTEN = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class AgiSettings:
    host: str = "127.0.0.1"
    """Address the FastAGI server binds (loopback: Asterisk runs on the same machine)."""
    port: int = 4573
    """FastAGI's registered port; 0 picks a free one (tests)."""
    read_timeout: float = 10.0
    """Seconds to wait for one line (environment line or reply) before giving up on the peer."""
    session_timeout: float = 30.0
    """Seconds one whole session may take, whatever the peer does."""
    decision_timeout: float = 5.0
    """Seconds the core may take to authorize; past it the call is refused (billing_unavailable)
    and a late grant is released at once."""
    pbx_id: str = ""
    """Session key namespace. Distinct from the ARI gate's id on purpose: the gate's resync
    settles its own pbx's sessions that are not in Stasis, and AGI calls never are."""

    max_connections: int = 512
    """Connections served at once. Beyond it a new connection is closed at once, so idle or hostile
    peers can never use up the process's file descriptors (1,024 by default; the database, the
    ARI and web sockets need some too)."""

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"


def parse_listen(text: str, name: str = "CALLGATE_AGI_LISTEN") -> tuple[str, int]:
    m = _LISTEN.match(text.strip())
    if not m or not 0 <= int(m.group(2)) <= 65535:
        raise SettingsError(f"{name}: must be host:port (got {text!r})")
    return m.group(1).strip("[]"), int(m.group(2))


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}: must be a number of seconds (got {raw!r})") from None
    if not value > 0:
        raise SettingsError(f"{name}: must be > 0 (got {raw!r})")
    return value


def default_pbx_id() -> str:
    return f"agi@{socket.gethostname()}"


def from_env(env: Mapping[str, str] | None = None) -> AgiSettings:
    """AgiSettings from the environment; SettingsError names the first bad variable."""
    env = os.environ if env is None else env
    host, port = parse_listen(env.get("CALLGATE_AGI_LISTEN", "") or "127.0.0.1:4573")
    return AgiSettings(
        host=host,
        port=port,
        read_timeout=_seconds(env, "CALLGATE_AGI_READ_TIMEOUT", AgiSettings.read_timeout),
        session_timeout=_seconds(env, "CALLGATE_AGI_SESSION_TIMEOUT", AgiSettings.session_timeout),
        decision_timeout=_seconds(env, "CALLGATE_AGI_DECISION_TIMEOUT", AgiSettings.decision_timeout),
        pbx_id=env.get("CALLGATE_AGI_PBX_ID", "").strip() or default_pbx_id(),
        max_connections=_count(env, "CALLGATE_AGI_MAX_CONNECTIONS", AgiSettings.max_connections),
    )


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 1_000_000:
        raise SettingsError(f"{name}: must be a whole number from 1 to 1000000 (got {raw!r})")
    return int(raw)
