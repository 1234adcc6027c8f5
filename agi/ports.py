"""What the FastAGI server needs from the billing core: just the methods it calls, typed.

``billing_core.api.BillingCore`` satisfies it (tests/agi/test_ports.py checks the names and
signatures). Declared here, not shared with ari_app: each adapter names only what it uses.
"""
from __future__ import annotations

from typing import Iterable, Protocol, runtime_checkable

from billing_core.domain.records import Authorization, CallSession, Settlement


class ClockPort(Protocol):
    def now_ms(self) -> int: ...


@runtime_checkable
class BillingCorePort(Protocol):
    """The core as the AGI routes and the keepalive use it."""

    clock: ClockPort

    async def authorize_call(self, *, direction: str, number: str, endpoint: str | None = None,
                             did: str | None = None, caller_id: str | None = None, pbx_id: str = "local",
                             channel_id: str | None = None, full_hold: bool = False) -> Authorization: ...

    async def answer(self, session_id: str, at_ms: int | None = None) -> CallSession: ...

    async def settle(self, session_id: str, talk_ms: int, *, stale: bool = False, note: str | None = None,
                     path: str = "api", basis: str = "measured",
                     answered_at_ms: int | None = None) -> Settlement: ...

    async def heartbeat(self, session_ids: Iterable[str], now_ms: int | None = None) -> int: ...

    async def live_sessions(self, pbx_id: str | None = None) -> list[CallSession]: ...
