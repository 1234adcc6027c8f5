"""What the ARI gate needs from the billing core: just the methods it calls, typed.

``billing_core.api.BillingCore`` satisfies it (tests/ari/test_ports.py checks the names and
signatures); tests may hand the gate anything else that does. The gate holds a port, not ``Any``, so a
renamed or re-shaped core method is a type error here rather than a failure at call time.
"""
from __future__ import annotations

from typing import Iterable, Protocol, runtime_checkable

from billing_core.domain.records import Authorization, CallSession, LiveCutoff, Settlement


@runtime_checkable
class BillingCorePort(Protocol):
    """The core as the gate uses it: decide, answer, extend, settle, report alive, and read live calls."""

    async def authorize_call(self, *, direction: str, number: str, endpoint: str | None = None,
                             did: str | None = None, caller_id: str | None = None, pbx_id: str = "local",
                             channel_id: str | None = None, full_hold: bool = False) -> Authorization: ...

    async def answer(self, session_id: str, at_ms: int | None = None) -> CallSession: ...

    async def extend(self, session_id: str, now_ms: int | None = None) -> CallSession: ...

    async def settle(self, session_id: str, talk_ms: int, *, stale: bool = False, note: str | None = None,
                     path: str = "api", basis: str = "measured",
                     answered_at_ms: int | None = None) -> Settlement: ...

    async def heartbeat(self, session_ids: Iterable[str], now_ms: int | None = None) -> int: ...

    async def live_cutoffs(self, pbx_id: str) -> list[LiveCutoff]: ...

    async def live_sessions(self, pbx_id: str | None = None) -> list[CallSession]: ...
