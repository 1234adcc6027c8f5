"""What a refused caller hears and which hangup reason (hence SIP final response) they get.

The SIP responses come from the recorded hangup sweep (../shared/ari/traces/README.md):
``rejected`` → 403, ``unallocated`` → 404, ``busy`` → 486, ``congestion`` → 503, ``no_answer`` → 480.
Asterisk 22 cannot send 402 Payment Required (no cause maps to it), so money refusals are 403.
"""
from __future__ import annotations

from typing import Mapping

from billing_core.domain.errors import DenyReason
from callgate_dialplan import ARI_HANGUP_REASONS

#: Deny reason → ARI ``DELETE /channels/{id}?reason=`` value (callgate_dialplan owns it, with the
#: dialplan's Q.850 causes beside it).
HANGUP_REASON: Mapping[str, str] = ARI_HANGUP_REASONS

#: Deny reason → default announcement (Asterisk core sounds). The same defaults as
#: ``[announcements]`` in callgate's configuration schema.
DEFAULT_ANNOUNCEMENTS: Mapping[str, str] = {
    DenyReason.INSUFFICIENT_FUNDS.value: "sound:cannot-complete-as-dialed",
    DenyReason.DEPLETED.value: "sound:cannot-complete-as-dialed",
    DenyReason.SUSPENDED.value: "sound:cannot-complete-as-dialed",
    DenyReason.UNKNOWN_ENDPOINT.value: "sound:cannot-complete-as-dialed",
    DenyReason.UNKNOWN_DID.value: "sound:ss-noservice",
    DenyReason.NO_RATE.value: "sound:ss-noservice",
    DenyReason.INVALID_NUMBER.value: "sound:ss-noservice",
    DenyReason.TOO_MANY_CALLS.value: "sound:all-circuits-busy-now",
    DenyReason.BILLING_UNAVAILABLE.value: "sound:all-circuits-busy-now",
    DenyReason.DESTINATION_BLOCKED.value: "sound:cannot-complete-as-dialed",
    DenyReason.RATE_LIMITED.value: "sound:all-circuits-busy-now",
    DenyReason.SPEND_LIMIT.value: "sound:cannot-complete-as-dialed",
}

#: Q.850 cause of the callee's ChannelDestroyed → reason the caller is hung up with
#: (there is no Dial BUSY/NOANSWER event for an ARI dial; the cause is the only signal).
FAILED_DIAL_REASON: Mapping[int, str] = {
    17: "busy",        # User busy → 486
    19: "no_answer",   # User alerting, no answer (dial timeout) → 480
    18: "no_answer",   # No user responding → 480 (as Asterisk maps 18 on the trunk side)
    20: "no_answer",   # Subscriber absent
    1: "unallocated",  # Unallocated number → 404
}


def hangup_reason(reason: DenyReason | str | None) -> str:
    """The ARI hangup reason for a refusal (unknown reasons fail closed as congestion/503)."""
    key = getattr(reason, "value", reason)
    return HANGUP_REASON.get(str(key), "congestion")


def failed_dial_reason(cause: int | None) -> str:
    """The caller's hangup reason after the callee leg died unanswered with Q.850 ``cause``."""
    if cause is None:
        return "congestion"
    return FAILED_DIAL_REASON.get(int(cause), "congestion")
