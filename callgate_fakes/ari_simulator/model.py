"""Value types of the ARI simulator: scripted parties, call outcomes, recorded requests."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Party:
    """How a dialled SIP destination behaves. Times are simulated seconds from the dial
    (``hangup_after`` from the answer); the simulator's ``time_scale`` turns them into real time."""

    ring_after: float = 0.0
    """180 Ringing this long after the INVITE."""
    answer_after: float | None = 1.0
    """200 OK this long after the INVITE; None = never answers (rings until timeout/CANCEL)."""
    hangup_after: float | None = None
    """The party sends BYE this long after answering; None = stays until hung up."""
    busy: bool = False
    """Answers 486 Busy Here (cause 17) ``reject_after`` s after the INVITE."""
    no_answer: bool = False
    """Rings forever; the dial ``timeout`` (or the app) ends it (cause 19 on timeout)."""
    fail_cause: int | None = None
    """Rejects with the SIP status of this Q.850 cause (34 -> 503) ``reject_after`` s after the INVITE."""
    reject_after: float = 0.5
    """When a busy/failing party sends its final response."""


@dataclass(frozen=True)
class CallOutcome:
    """What the calling SIP phone experienced, once its channel is gone."""

    sip_final: int
    """Final response to the INVITE: 200 when answered, else 403/404/480/486/487/503/603..."""
    q850_cause: int
    """The caller channel's hangup cause (its ChannelDestroyed ``cause``)."""
    answered: bool
    talk_ms: int | None
    """Caller answered (200 OK) -> end, simulated ms; None when never answered."""
    heard: list[str]
    """Media played to the caller (``sound:beep``, ...), in order, including L() warnings."""
    progress: bool
    """A 183 Session Progress (early media) was sent."""
    ended_by: str
    """"caller" (BYE/CANCEL), "app" (DELETE or a DENY in the dialplan), "callee" (the dialled
    party ended or failed in continue mode), "limit" (Dial L() limit), "pbx" (Stasis app not
    connected: the caller got 603)."""
    sip_reason: str | None = None
    """The Reason header sent with the final response / BYE (e.g. ``Q.850;cause=21``)."""
    ringing: bool = False
    """A 180 Ringing was sent."""
    callee_talk_ms: int | None = None
    """Talk time seen by the dialled party of a continue-mode Dial(), simulated ms."""


@dataclass(frozen=True)
class RecordedRequest:
    """One REST request the app made (path with the /ari prefix, as on the wire)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    at: float = 0.0
    """Simulated epoch seconds when the request arrived (``sim.now()``)."""


class SimCall:
    """A call placed by a simulated phone (the caller leg). ``await call.ended()`` -> CallOutcome."""

    def __init__(self, sim, channel_id: str) -> None:
        self._sim = sim
        self.channel_id = channel_id
        #: set when the app did POST /continue: {"context","extension","priority","label","variables"}
        self.continued: dict | None = None
        self.callee_ids: list[str] = []
        #: simulated epoch seconds when the phone dialled (its StasisStart)
        self.placed_at: float = 0.0
        self.answered_at: float | None = None
        self.ringing = False
        self.progress = False
        self.heard: list[str] = []
        self.hangup_after: float | None = None
        self.callee_talk_ms: int | None = None
        self._final_vars: dict[str, str] = {}
        self._outcome: asyncio.Future = asyncio.get_running_loop().create_future()

    @property
    def channel(self) -> dict | None:
        """The live channel JSON (as GET /channels/{id}), None once destroyed."""
        ch = self._sim._channels.get(self.channel_id)
        return ch.json() if ch else None

    @property
    def variables(self) -> dict[str, str]:
        """The channel variables set on the caller (kept after it is destroyed)."""
        ch = self._sim._channels.get(self.channel_id)
        return dict(ch.vars) if ch else dict(self._final_vars)

    @property
    def done(self) -> bool:
        return self._outcome.done()

    async def ended(self, timeout: float | None = None) -> CallOutcome:
        return await asyncio.wait_for(asyncio.shield(self._outcome), timeout)

    def _finish(self, outcome: CallOutcome, final_vars: dict[str, str]) -> None:
        self._final_vars = final_vars
        if not self._outcome.done():
            self._outcome.set_result(outcome)


@dataclass
class RestFault:
    method: str
    path_regex: Any
    status: int
    message: str
    times: int = 1
    hits: int = field(default=0)
