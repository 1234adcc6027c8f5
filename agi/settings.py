"""Settings of the AGI adapter. callgate's configuration layer (callgate/config.py, section
``[agi]``: file + environment) fills them and passes them to the server; agi never reads the
environment itself.

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

import socket
from dataclasses import dataclass


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


def default_pbx_id() -> str:
    return f"agi@{socket.gethostname()}"
