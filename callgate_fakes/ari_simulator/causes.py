"""Q.850 causes and the hangup mappings Asterisk 22 chan_pjsip showed in the traces.

Sources: hangup_reason_sip_sweep.jsonl (its final ``note`` line's ``mapping``: DELETE
/channels/{id} parameter -> SIP final response + Reason header on an unanswered inbound PJSIP
channel) and the ``cause_txt`` values of the ChannelDestroyed events.
"""
from __future__ import annotations

#: ARI ``reason`` -> Q.850 cause (Asterisk's ast_str_to_cause for the hangup reasons).
REASON_TO_CAUSE: dict[str, int] = {
    "normal": 16,
    "busy": 17,
    "congestion": 34,
    "no_answer": 19,
    "timeout": 18,
    "rejected": 21,
    "unallocated": 1,
    "normal_unspecified": 31,
    "number_incomplete": 28,
    "codec_mismatch": 58,
    "interworking": 127,
    "failure": 38,
    "answered_elsewhere": 26,
}

#: Q.850 cause -> SIP final response sent to an unanswered caller (the sweep). Causes not
#: listed (0, 4-8, 14, 16, 30, 41, 43, 44, 50-57, 65, 69, 81-111, and raw values such as 402)
#: give 603 Decline.
CAUSE_TO_SIP: dict[int, int] = {
    1: 404, 2: 404, 3: 404,
    17: 486,
    18: 408,
    19: 480, 20: 480, 31: 480,
    21: 403,
    22: 410,
    23: 302,
    26: 603,
    27: 502,
    28: 484,
    29: 501,
    34: 503, 42: 503, 66: 503,
    38: 500, 127: 500,
    58: 488,
}

SIP_REASON_PHRASE: dict[int, str] = {
    180: "Ringing", 183: "Session Progress", 200: "OK",
    302: "Moved Temporarily", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
    410: "Gone", 480: "Temporarily Unavailable", 484: "Address Incomplete", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 603: "Decline",
}

#: SIP final response from a called party -> Q.850 cause Asterisk records (chan_pjsip
#: hangup_sip2cause); used when a scripted party rejects with a SIP status.
SIP_TO_CAUSE: dict[int, int] = {
    403: 21, 404: 1, 408: 18, 410: 22, 480: 19, 484: 28, 486: 17, 487: 127, 488: 58,
    500: 38, 501: 29, 502: 27, 503: 34, 600: 17, 603: 21, 604: 1,
}

#: Asterisk's ast_cause2str texts (ChannelDestroyed.cause_txt).
CAUSE_TEXT: dict[int, str] = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    2: "No route to specified transmit network",
    3: "No route to destination",
    5: "Misdialled Trunk Prefix",
    6: "Channel unacceptable",
    7: "Call awarded and being delivered in an established channel",
    8: "Pre-empted",
    14: "Number ported but not found",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    22: "Number changed",
    23: "Redirected to new destination",
    26: "Answered elsewhere",
    27: "Destination out of order",
    28: "Invalid number format",
    29: "Facility rejected",
    30: "Response to STATus ENQuiry",
    31: "Normal, unspecified",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    41: "Temporary failure",
    42: "Switching equipment congestion",
    43: "Access information discarded",
    44: "Requested channel not available",
    50: "Facility not subscribed",
    52: "Outgoing call barred",
    54: "Incoming call barred",
    57: "Bearer capability not authorized",
    58: "Bearer capability not available",
    65: "Bearer capability not implemented",
    66: "Channel not implemented",
    69: "Facility not implemented",
    81: "Invalid call reference value",
    88: "Incompatible destination",
    95: "Invalid message unspecified",
    96: "Mandatory information element is missing",
    97: "Message type nonexist.",
    98: "Wrong message",
    99: "Info. element nonexist or not implemented",
    100: "Invalid information element contents",
    101: "Message not compatible with call state",
    102: "Recover on timer expiry",
    103: "Mandatory IE length error",
    111: "Protocol error, unspecified",
    127: "Interworking, unspecified",
}


def cause_text(cause: int) -> str:
    return CAUSE_TEXT.get(cause, "Unknown")


def final_response_for_cause(code: int) -> tuple[int, str]:
    """(SIP status, Reason header) an unanswered caller gets when hung up with ``code``.

    ``code`` is the raw ``reason_code`` (or the cause of a ``reason``): the status comes from the
    raw value (402 is not in the table -> 603), the Reason header carries ``code & 0x7f``
    (402 -> cause 18), exactly as the sweep recorded.
    """
    status = CAUSE_TO_SIP.get(code, 603)
    if code == 26:
        return status, 'SIP;cause=200;text="Call completed elsewhere"'
    return status, f"Q.850;cause={code & 0x7f}"


def hangup_cause(reason: str | None, reason_code: int | None) -> int:
    """The channel's Q.850 hangup cause for a DELETE with ``reason`` / ``reason_code``."""
    if reason_code is not None:
        return reason_code & 0x7f
    return REASON_TO_CAUSE.get(reason or "normal", 16)
