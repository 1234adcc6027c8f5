"""What each AGI route does: ``authorize``, ``answered``, ``settle``. Translation only — every money
decision is the core's (billing_core.api.BillingCore); this module maps AGI arguments to core calls
and core answers to channel variables.

The dialplan contract (asterisk-conf/extensions.conf reads exactly these names):

* ``AGI(agi://127.0.0.1:4573/authorize,<outbound|inbound>,<number>)`` sets, in this order,
  CALLGATE_MAX_MS, CALLGATE_SESSION, [CALLGATE_ENDPOINT (inbound allow) | CALLGATE_REASON,
  CALLGATE_HANGUPCAUSE (deny)], CALLGATE_STATUS.
  CALLGATE_STATUS is written last: it is the commit point, so a session cut half-way never reads
  as ALLOW. An ALLOW sets exactly the three variables the recorded conversations show.
* ``AGI(agi://…/answered,${CALLGATE_SESSION})`` from Dial's ``U()``: records the answer time.
* ``AGI(agi://…/settle,${CALLGATE_SESSION},${ANSWEREDTIME},${ANSWEREDTIME_MS})`` from the
  hangup handler: settles once; a repeated settle is a no-op.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import callgate_dialplan as dialplan
from billing_core.domain.errors import DenyReason, NotFound
from callgate_dialplan import endpoint_of_channel

from .ports import BillingCorePort
from .protocol import AgiRequest, Reply

log = logging.getLogger("callgate.agi")

# Route names: the script part of agi://host:port/<route>.
ROUTE_AUTHORIZE = "authorize"
ROUTE_ANSWERED = "answered"
ROUTE_SETTLE = "settle"
ROUTES = (ROUTE_AUTHORIZE, ROUTE_ANSWERED, ROUTE_SETTLE)

# The dialplan contract (variables, statuses, directions, refusal causes) is callgate_dialplan's,
# shared with ari_app; re-exported here under the names the AGI server has always used.
VARIABLES = dialplan.VARIABLES
VAR_STATUS, VAR_REASON, VAR_MAX_MS = dialplan.VAR_STATUS, dialplan.VAR_REASON, dialplan.VAR_MAX_MS
VAR_SESSION, VAR_HANGUPCAUSE, VAR_ENDPOINT = dialplan.VAR_SESSION, dialplan.VAR_HANGUPCAUSE, dialplan.VAR_ENDPOINT
STATUS_ALLOW, STATUS_DENY, DIRECTIONS = dialplan.STATUS_ALLOW, dialplan.STATUS_DENY, dialplan.DIRECTIONS
CAUSE_CALL_REJECTED, CAUSE_UNALLOCATED = dialplan.CAUSE_CALL_REJECTED, dialplan.CAUSE_UNALLOCATED
CAUSE_USER_BUSY, CAUSE_NO_CIRCUIT = dialplan.CAUSE_USER_BUSY, dialplan.CAUSE_NO_CIRCUIT
HANGUP_CAUSES = dialplan.HANGUP_CAUSES


class Conversation(Protocol):
    """The one thing a route needs from the transport (FastAGI socket or stdio)."""

    @property
    def hung_up(self) -> bool:
        """Asterisk said the channel hung up (``HANGUP`` line, SIGHUP or a 511 reply)."""

    async def set_variable(self, name: str, value: str) -> Reply:
        """SET VARIABLE and wait for the reply; raises on a dead or silent peer."""


@dataclass(frozen=True)
class Decision:
    """The authorize answer as channel variables."""

    allowed: bool
    reason: str
    """A DenyReason value ("" when allowed)."""
    max_ms: int
    """Dial's L() limit; 0 when refused."""
    session_id: str
    """"" when no session exists (refused, or an emergency call the store could not record)."""
    hangupcause: int
    """Q.850 cause for Hangup() on deny; 0 when allowed."""
    ring_endpoint: str = ""
    """Inbound ALLOW: the endpoint to ring."""
    rule: str = ""
    """``destination_blocked``: the toll-fraud rule that refused the number (logged only)."""

    @classmethod
    def deny(cls, reason: DenyReason | str, session_id: str = "", rule: str | None = None) -> "Decision":
        reason = DenyReason(reason)
        return cls(False, reason.value, 0, session_id, dialplan.hangup_cause(reason), rule=rule or "")

    def variables(self) -> list[tuple[str, str]]:
        """In wire order; CALLGATE_STATUS last (the commit point)."""
        if self.allowed:
            ring = [(VAR_ENDPOINT, self.ring_endpoint)] if self.ring_endpoint else []
            return [(VAR_MAX_MS, str(self.max_ms)), (VAR_SESSION, self.session_id), *ring, (VAR_STATUS, STATUS_ALLOW)]
        return [
            (VAR_MAX_MS, "0"),
            (VAR_SESSION, self.session_id),
            (VAR_REASON, self.reason),
            (VAR_HANGUPCAUSE, str(self.hangupcause)),
            (VAR_STATUS, STATUS_DENY),
        ]


REFUSED_UNAVAILABLE = Decision.deny(DenyReason.BILLING_UNAVAILABLE)


def talk_ms_of(seconds: str, millis: str) -> int | None:
    """Talk time from Dial's ${ANSWEREDTIME} / ${ANSWEREDTIME_MS}: the ms value when it is a whole
    number, else seconds × 1000; both empty → 0 (never answered); anything else → None."""
    millis, seconds = millis.strip(), seconds.strip()
    if millis.isdigit():
        return int(millis)
    if seconds.isdigit():
        return int(seconds) * 1000
    if not millis and not seconds:
        return 0
    return None


class Router:
    """Runs one AGI request against the core (a BillingCore, or anything satisfying agi.ports.BillingCorePort)."""

    def __init__(self, core: BillingCorePort, *, pbx_id: str, decision_timeout: float = 5.0):
        self.core = core
        self.pbx_id = pbx_id
        self.decision_timeout = decision_timeout
        self._background: set[asyncio.Task] = set()

    async def dispatch(self, req: AgiRequest, conv: Conversation) -> None:
        if req.route == ROUTE_AUTHORIZE:
            await self.authorize(req, conv)
        elif req.route == ROUTE_ANSWERED:
            await self.answered(req)
        elif req.route == ROUTE_SETTLE:
            await self.settle(req)
        else:
            log.error("unknown AGI route %r (known: %s): call refused", req.route, ", ".join(ROUTES),
                      extra={"channel": req.channel})
            await self.refuse(conv)

    # ------------------------------------------------------------------------------- authorize
    async def decide(self, req: AgiRequest) -> Decision:
        """The core's answer for ``authorize,<direction>,<number>``; never raises."""
        direction, number = req.arg(1).strip(), req.arg(2).strip()
        if direction not in DIRECTIONS:
            log.error("authorize: argument 1 must be outbound or inbound (got %r): call refused", direction,
                      extra={"channel": req.channel})
            return REFUSED_UNAVAILABLE
        if not number:
            log.warning("authorize: argument 2 (the number) is empty", extra={"channel": req.channel})
            return Decision.deny(DenyReason.INVALID_NUMBER)
        kwargs: dict[str, Any] = {}
        if direction == "outbound":
            endpoint = endpoint_of_channel(req.channel)
            if endpoint is None:
                log.warning("authorize: no endpoint in channel name %r", req.channel)
                return Decision.deny(DenyReason.UNKNOWN_ENDPOINT)
            kwargs["endpoint"] = endpoint
        else:
            kwargs["did"] = number
        call = self.core.authorize_call(
            direction=direction, number=number, caller_id=req.env.get("agi_callerid") or None,
            pbx_id=self.pbx_id, channel_id=req.uniqueid or None, full_hold=True, **kwargs,
        )
        task = asyncio.ensure_future(call)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.decision_timeout)
        except asyncio.CancelledError:  # the session ended first (session timeout): release a late grant
            task.add_done_callback(self._release_late_grant)
            self._background.add(task)
            raise
        if not done:
            log.error("authorize: the billing core did not answer within %ss: call refused", self.decision_timeout,
                      extra={"channel": req.channel, "number": number})
            task.add_done_callback(self._release_late_grant)
            self._background.add(task)
            return REFUSED_UNAVAILABLE
        try:
            a = task.result()
        except Exception as exc:  # authorize_call does not raise for storage trouble; bad input does
            log.error("authorize: %s: call refused", exc, extra={"channel": req.channel, "number": number})
            return REFUSED_UNAVAILABLE
        if a.allowed:
            return Decision(True, "", a.granted_ms, a.session_id or "", 0, a.ring_endpoint or "")
        return Decision.deny(a.reason or DenyReason.BILLING_UNAVAILABLE, a.session_id or "", a.rule)

    async def authorize(self, req: AgiRequest, conv: Conversation) -> None:
        decision = await self.decide(req)
        log.info("authorize %s %s: %s %s", req.arg(1), req.arg(2), STATUS_ALLOW if decision.allowed else STATUS_DENY,
                 decision.reason, extra={"session": decision.session_id, "channel": req.channel,
                                         "max_ms": decision.max_ms, **({"rule": decision.rule} if decision.rule else {})})
        status_sent = False
        try:
            for name, value in decision.variables():
                status_sent = name == VAR_STATUS
                await conv.set_variable(name, value)
        finally:
            # Release the grant when the call can no longer be dialled: the channel hung up
            # (Asterisk stops the dialplan), or the ALLOW never left this process. If the
            # ALLOW was sent but its reply was lost, Asterisk may dial: the hangup handler settles.
            if decision.allowed and decision.session_id and (conv.hung_up or not status_sent):
                await self.release(decision.session_id, "caller gone before the call was dialled")

    async def refuse(self, conv: Conversation) -> None:
        """Fail closed on a request that cannot be decided: DENY billing_unavailable."""
        for name, value in REFUSED_UNAVAILABLE.variables():
            await conv.set_variable(name, value)

    async def release(self, session_id: str, why: str) -> None:
        """Settle with zero talk: the hold goes back at once."""
        try:
            await self.core.settle(session_id, 0, note=why, path="agi")
            log.info("released the hold: %s", why, extra={"session": session_id})
        except Exception as exc:
            log.error("could not release the hold (%s): %s", why, exc, extra={"session": session_id})

    async def drain(self, timeout: float) -> None:
        """Wait for late grants to be released (one-shot processes call this before exiting)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._background and asyncio.get_running_loop().time() < deadline:
            await asyncio.wait(set(self._background), timeout=deadline - asyncio.get_running_loop().time())

    def _release_late_grant(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if task.cancelled() or task.exception() is not None:
            return
        a = task.result()
        if a.allowed and a.session_id:
            t = asyncio.ensure_future(self.release(a.session_id, "granted after the call was refused (timeout)"))
            self._background.add(t)
            t.add_done_callback(self._background.discard)

    # -------------------------------------------------------------------------- answered / settle
    async def answered(self, req: AgiRequest) -> None:
        session_id = req.arg(1).strip()
        if not session_id:
            log.info("answered: no session (emergency or ungated call)", extra={"channel": req.channel})
            return
        try:
            await asyncio.wait_for(self.core.answer(session_id, at_ms=self.core.clock.now_ms()), self.decision_timeout)
        except NotFound:
            log.warning("answered: unknown session", extra={"session": session_id})
        except Exception as exc:  # the hold covers the whole grant; settle back-dates the answer
            log.error("answered: could not record the answer: %r", exc, extra={"session": session_id})

    async def settle(self, req: AgiRequest) -> None:
        session_id = req.arg(1).strip()
        if not session_id:
            log.info("settle: no session (call refused or ungated)", extra={"channel": req.channel})
            return
        talk_ms = talk_ms_of(req.arg(2), req.arg(3))
        if talk_ms is None:
            log.error("settle: ANSWEREDTIME %r / ANSWEREDTIME_MS %r are not whole numbers: not settled (the hold stays)",
                      req.arg(2), req.arg(3), extra={"session": session_id})
            return
        try:
            # Asterisk's ANSWEREDTIME_MS is the authority on talk: if the `answered` session was
            # lost, the answer is recorded back-dated in the settle's transaction, so the talk is charged.
            answered_at = self.core.clock.now_ms() - talk_ms if talk_ms > 0 else None
            s = await asyncio.wait_for(self.core.settle(session_id, talk_ms, path="agi", answered_at_ms=answered_at),
                                       self.decision_timeout)
        except NotFound:
            log.warning("settle: unknown session", extra={"session": session_id})
            return
        except Exception as exc:
            log.error("settle failed (the hold stays until the sidecar settles it): %r", exc,
                      extra={"session": session_id, "talk_ms": talk_ms})
            return
        if s.replayed:
            log.info("settle: already settled (no-op)", extra={"session": session_id})
        else:
            log.info("settled", extra={"session": session_id, "talk_ms": talk_ms, "cost": s.cost})
