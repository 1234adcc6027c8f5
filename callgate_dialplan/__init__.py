"""The dialplan contract both adapters speak: channel names → endpoints, the CALLGATE_* channel
variables, and what a refusal sounds like on the wire (deny reason → Q.850 cause / ARI hangup reason).

Why a top-level package of its own: ari_app and agi both need these names and must never import each
other (import-linter, setup.cfg); they may not import ``callgate`` (the composition root), and
``billing_core`` knows nothing of Asterisk (its decisions are deny reasons, not causes or dialplan
variables). This module imports only the core's ``DenyReason`` value type, so importing it pulls in no
store, no SQLAlchemy and no I/O. tests/conf/test_consistency.py checks asterisk-conf against these
constants.
"""
from __future__ import annotations

import re
from typing import Mapping

from billing_core.domain.errors import DenyReason

# ------------------------------------------------------------------------- channel variables
#: The gate's answer: ``ALLOW`` or ``DENY``; written last, it is the commit point the dialplan reads.
VAR_STATUS = "CALLGATE_STATUS"
#: A refusal's DenyReason value (``[callgate-deny]`` maps it to a cause when no cause is set).
VAR_REASON = "CALLGATE_REASON"
#: Dial's ``L()`` limit in ms; ``0`` on a refusal (an empty value makes ``L()`` fail).
VAR_MAX_MS = "CALLGATE_MAX_MS"
#: The call session id, for ``answered``/``settle`` (empty when there is none).
VAR_SESSION = "CALLGATE_SESSION"
#: FastAGI refusals: the Q.850 cause for ``Hangup(${CALLGATE_HANGUPCAUSE})``.
VAR_HANGUPCAUSE = "CALLGATE_HANGUPCAUSE"
#: Inbound ALLOW only: the SIP endpoint the DID rings (``Dial(PJSIP/${CALLGATE_ENDPOINT},…)``).
VAR_ENDPOINT = "CALLGATE_ENDPOINT"
#: Every variable the authorize answer may set (FastAGI sets all of them, ARI continue mode all but
#: CALLGATE_HANGUPCAUSE: ``[callgate-deny]`` maps its CALLGATE_REASON).
VARIABLES = (VAR_STATUS, VAR_REASON, VAR_MAX_MS, VAR_SESSION, VAR_HANGUPCAUSE, VAR_ENDPOINT)

STATUS_ALLOW = "ALLOW"
STATUS_DENY = "DENY"
DIRECTIONS = ("outbound", "inbound")

# ------------------------------------------------------------------------- refusals on the wire
# Q.850 causes; on Asterisk 22 chan_pjsip: 21 → 403 Forbidden, 1 → 404 Not Found, 17 → 486 Busy Here,
# 34 → 503 Service Unavailable (the recorded hangup sweep, ../shared/ari/traces/README.md).
CAUSE_UNALLOCATED = 1
CAUSE_USER_BUSY = 17
CAUSE_CALL_REJECTED = 21
CAUSE_NO_CIRCUIT = 34

#: ARI ``DELETE /channels/{id}?reason=`` value → the Q.850 cause Asterisk gives it (ast_str_to_cause).
ARI_REASON_CAUSE: Mapping[str, int] = {
    "rejected": CAUSE_CALL_REJECTED,
    "unallocated": CAUSE_UNALLOCATED,
    "busy": CAUSE_USER_BUSY,
    "congestion": CAUSE_NO_CIRCUIT,
}

#: Deny reason → Q.850 cause the dialplan hangs up with: FastAGI's CALLGATE_HANGUPCAUSE and
#: ``[callgate-deny]``'s mapping of CALLGATE_REASON (ARI continue mode). Unknown reasons: 34.
HANGUP_CAUSES: Mapping[DenyReason, int] = {
    DenyReason.INSUFFICIENT_FUNDS: CAUSE_CALL_REJECTED,
    DenyReason.DEPLETED: CAUSE_CALL_REJECTED,
    DenyReason.SUSPENDED: CAUSE_CALL_REJECTED,
    DenyReason.UNKNOWN_ENDPOINT: CAUSE_UNALLOCATED,
    DenyReason.UNKNOWN_DID: CAUSE_UNALLOCATED,
    DenyReason.NO_RATE: CAUSE_UNALLOCATED,
    DenyReason.INVALID_NUMBER: CAUSE_UNALLOCATED,
    DenyReason.TOO_MANY_CALLS: CAUSE_USER_BUSY,
    DenyReason.BILLING_UNAVAILABLE: CAUSE_NO_CIRCUIT,
    # toll-fraud protection (issue 18): a refused destination is Forbidden (21 → SIP 403) with the
    # refusal announcement, as the other "you may not call this" refusals
    DenyReason.DESTINATION_BLOCKED: CAUSE_CALL_REJECTED,
    # too many attempts a minute: 34 (503 Service Unavailable), "try again later"
    DenyReason.RATE_LIMITED: CAUSE_NO_CIRCUIT,
    DenyReason.SPEND_LIMIT: CAUSE_CALL_REJECTED,
}

#: Deny reason → ARI hangup reason of a bridge-mode refusal (``DELETE /channels/{id}?reason=``).
#: The same cause as HANGUP_CAUSES for every reason but one, kept as it was released:
#: ``unknown_endpoint`` is ``rejected`` (21, 403) here — an endpoint with no account is not allowed to
#: call — while the dialplan path (FastAGI, ``[callgate-deny]``) answers 1 (404). Unifying it changes
#: what phones see in one of the modes; tests/conf names this as the only difference.
ARI_HANGUP_REASONS: Mapping[str, str] = {
    DenyReason.INSUFFICIENT_FUNDS.value: "rejected",
    DenyReason.DEPLETED.value: "rejected",
    DenyReason.SUSPENDED.value: "rejected",
    DenyReason.UNKNOWN_ENDPOINT.value: "rejected",
    DenyReason.UNKNOWN_DID.value: "unallocated",
    DenyReason.NO_RATE.value: "unallocated",
    DenyReason.INVALID_NUMBER.value: "unallocated",
    DenyReason.TOO_MANY_CALLS.value: "busy",
    DenyReason.BILLING_UNAVAILABLE.value: "congestion",
    DenyReason.DESTINATION_BLOCKED.value: "rejected",
    DenyReason.RATE_LIMITED.value: "congestion",
    DenyReason.SPEND_LIMIT.value: "rejected",
}


def hangup_cause(reason: DenyReason | str | None) -> int:
    """The Q.850 cause the dialplan hangs up a refusal with (unknown reasons fail closed: 34/503)."""
    try:
        return HANGUP_CAUSES.get(DenyReason(getattr(reason, "value", reason)), CAUSE_NO_CIRCUIT)
    except ValueError:
        return CAUSE_NO_CIRCUIT


# ------------------------------------------------------------------------- channel names
#: An Asterisk channel name: ``<technology>/<resource>-<sequence>``, the sequence a hex counter
#: (``PJSIP/alice-0000002a``, ``SIP/1001-0000a1b2``). The resource of a SIP channel is its endpoint
#: and may itself contain ``-`` (``PJSIP/my-phone-00000004``).
_CHANNEL_NAME = re.compile(r"(?P<tech>[A-Za-z0-9_]+)/(?P<resource>[^/@;]+)-(?P<seq>[0-9A-Fa-f]+)")


def endpoint_of_channel(channel: str | None) -> str | None:
    """The SIP endpoint a channel belongs to, or None when the name has no endpoint in it.

    ``PJSIP/alice-0000002a`` → ``alice``; ``PJSIP/my-phone-00000004`` → ``my-phone``;
    ``SIP/alice-1`` → ``alice``. None for: ``PJSIP/alice`` (no sequence: a dial string, not a
    channel), ``Local/100@ctx-00000001;2`` (a Local channel is no SIP endpoint),
    ``PJSIP/trunk/sip:…`` (a dial string with a URI), a bare name, an empty or missing name.
    None means "no endpoint": the call is refused as ``unknown_endpoint``, never guessed.
    """
    if not channel:
        return None
    m = _CHANNEL_NAME.fullmatch(channel)
    return m.group("resource") if m else None


__all__ = [
    "ARI_HANGUP_REASONS", "ARI_REASON_CAUSE", "CAUSE_CALL_REJECTED", "CAUSE_NO_CIRCUIT", "CAUSE_UNALLOCATED",
    "CAUSE_USER_BUSY", "DIRECTIONS", "HANGUP_CAUSES", "STATUS_ALLOW", "STATUS_DENY", "VARIABLES", "VAR_ENDPOINT",
    "VAR_HANGUPCAUSE", "VAR_MAX_MS", "VAR_REASON", "VAR_SESSION", "VAR_STATUS", "endpoint_of_channel", "hangup_cause",
]
