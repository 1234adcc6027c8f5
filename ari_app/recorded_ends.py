"""The real end of a call that ended while no gate listened, as Asterisk recorded it.

asterisk-conf's bridge-mode contexts push the hangup handler ``callgate-ended`` before ``Stasis()``,
and the gate pushes it on the carrier leg it creates (``POST /channels/create`` variables: no extra
request). When a leg hangs up, the handler writes one AstDB entry per call, under the caller's
channel id, if none exists yet (the first leg to end is where talk ended)::

    callgate_ended/<caller channel id>/<end, epoch ms> = <name of the leg that ended>

Not in continue mode: after ARI sets a variable on a channel (the gate's CALLGATE_* there),
Asterisk 22 inhibits dangerous functions on that channel's thread for good (res/stasis/control.c
``app_control_set_channel_var`` swaps the inhibition on and never back), and the handler's
``Set(DB(...))`` is refused ("Dangerous function DB write blocked", seen on the lab). The gate itself
cannot write AstDB either (main/tcptls.c inhibits ARI's HTTP threads too). Continue-mode calls that end
while no gate runs keep the bounded fallback (``bounded_at_restart``).

Why the end is in the KEY, and why a channel is needed to read it (all checked on Asterisk 22):

* ``GET /asterisk/variable`` reads global variables only: ``DB(...)`` there answers ``""``.
* ``GET /channels/{id}/variable`` evaluates a function on that channel, but ``DB()`` and
  ``DB_DELETE()`` are "dangerous" functions ARI may not read (500 "Unable to read provided
  function") unless asterisk.conf says ``live_dangerously=yes``; ``DB_EXISTS()`` may be read but
  its buffer is 2 bytes, so it cannot hand over the value. ``DB_KEYS()`` may be read in full.
* So the gate creates one channel ``Local/read@callgate-ended`` (never dialled), reads
  ``DB_KEYS(callgate_ended/<caller id>)`` through it for each call it reconciles, and deletes it.
  ``POST /asterisk/variable`` may write ``DB_DELETE(...)`` (only its read is dangerous): that
  removes an entry once its call is settled (it also leaves a global ``DB_RESULT``, unused).
* ``DBdeltree`` has no function form: the periodic clean-up originates
  ``Local/clear@callgate-ended``, whose dialplan runs ``DBdeltree(callgate_ended)`` and hangs up.

Every request here happens only when the gate reconciles (restart, reconnect) or cleans up (every
few minutes): nothing per call.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Callable

from ari_app.errors import AriError

log = logging.getLogger("ari_app.recorded_ends")

#: CHANNEL(hangup_handler_push) value: asterisk-conf's [callgate-ended] (tests/conf checks the name).
ENDED_HANDLER = "callgate-ended,s,1"
#: The AstDB family [callgate-ended] writes.
ENDED_FAMILY = "callgate_ended"
#: On a carrier leg: whose call it is (the handler's key).
CALL_VARIABLE = "CALLGATE_CALL"
READ_ENDPOINT = "Local/read@callgate-ended"
CLEAR_ENDPOINT = "Local/clear@callgate-ended"


@dataclass(frozen=True)
class RecordedEnd:
    """One call's end as Asterisk's hangup handler recorded it."""

    caller_id: str
    end_ms: int
    """When the first leg hung up (epoch ms, Asterisk's clock)."""

    @property
    def subkey(self) -> str:
        return str(self.end_ms)

    def talk_ms(self, answered_at: int | None, granted_ms: int) -> int:
        """Talk from the stored answer up to the recorded end (0 if never answered), never beyond
        the grant (the core bounds it again)."""
        if answered_at is None:
            return 0
        return min(max(0, self.end_ms - answered_at), granted_ms)


def parse_subkey(caller_id: str, subkey: str) -> RecordedEnd | None:
    """``<end ms>``; None when it is not that."""
    return RecordedEnd(caller_id, int(subkey)) if subkey.isdigit() else None


def call_variables(caller_id: str) -> dict[str, str]:
    """Channel variables for a carrier leg: its hangup also records the call's end."""
    return {"CHANNEL(hangup_handler_push)": ENDED_HANDLER, CALL_VARIABLE: caller_id}


class RecordedEnds:
    """``async with RecordedEnds(client, ignore) as ends: await ends.take(caller_id)``.

    The read channel is created on the first ``take`` and hung up when the block ends. ``ignore``
    is told each helper channel's id before it exists, so its events are dropped unread. A failure
    to read is logged once and answered with None: the caller falls back to its bound."""

    def __init__(self, client, ignore: Callable[[str], None]) -> None:
        self.client = client
        self.ignore = ignore
        self._channel: str | None = None
        self._failed = False

    async def __aenter__(self) -> "RecordedEnds":
        return self

    async def __aexit__(self, *exc) -> None:
        if self._channel is not None:
            try:
                await self.client.hangup(self._channel)
            except AriError:
                pass
            self._channel = None

    async def take(self, caller_id: str) -> RecordedEnd | None:
        """The recorded end of ``caller_id``'s call (the earliest, if several), or None."""
        if self._failed:
            return None
        try:
            if self._channel is None:
                helper = f"callgate-read-{uuid.uuid4().hex}"
                self.ignore(helper)
                await self.client.create_channel(READ_ENDPOINT, channel_id=helper)
                self._channel = helper
            keys = await self.client.get_variable(self._channel, f"DB_KEYS({ENDED_FAMILY}/{caller_id})")
        except AriError as exc:
            self._failed = True
            log.warning("cannot read the recorded ends of calls from Asterisk (%s): calls that ended while no "
                        "gate ran are billed up to now, capped at their grant", exc)
            return None
        ends = [e for e in (parse_subkey(caller_id, k) for k in (keys or "").split(",") if k) if e is not None]
        return min(ends, key=lambda e: e.end_ms) if ends else None

    async def forget(self, end: RecordedEnd) -> None:
        """Delete a settled call's entry (the periodic clean-up would, later)."""
        try:
            await self.client.set_global_variable(f"DB_DELETE({ENDED_FAMILY}/{end.caller_id}/{end.subkey})", "")
        except AriError as exc:
            log.info("recorded end of %s not deleted (%s): the periodic clean-up will", end.caller_id, exc)


async def clear_all(client, ignore: Callable[[str], None]) -> None:
    """``DBdeltree(callgate_ended)`` through a Local channel that is never answered."""
    helper = f"callgate-clear-{uuid.uuid4().hex}"
    ignore(helper)
    ignore(helper + "b")
    await client.originate(CLEAR_ENDPOINT, channel_id=helper, other_channel_id=helper + "b")
