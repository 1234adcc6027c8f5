"""Typed ARI errors: one exception class per HTTP status Asterisk's ARI returns.

Asterisk answers REST errors with ``{"message": "..."}`` (and, for a create with an unknown
technology, ``500 {"error": "Allocation failed"}``). ``AriError.message`` carries that text so the
caller can tell "Channel not found" (gone) from "Channel not in Stasis application" (race) without
parsing strings elsewhere.
"""
from __future__ import annotations


class AriError(Exception):
    """A REST call answered with a non-2xx status.

    Attributes: ``status`` (HTTP status), ``message`` (Asterisk's ``message``/``error`` field, or the
    reason phrase), ``method`` and ``path`` (the request, path without the ``/ari`` prefix).
    """

    status: int = 0

    def __init__(self, status: int, message: str, method: str = "", path: str = "") -> None:
        self.status = status
        self.message = message
        self.method = method
        self.path = path
        super().__init__(f"{method} {path} -> {status} {message}".strip())


class AriBadRequest(AriError):
    """400: a missing or invalid parameter (e.g. "Invalid reason for hangup reason provided")."""


class AriUnauthorized(AriError):
    """401: "Authentication required" (wrong user/password)."""


class AriNotFound(AriError):
    """404: the channel/bridge/playback is gone, or the path is unknown ("Resource not found")."""


class AriMethodNotAllowed(AriError):
    """405: "Invalid method"."""


class AriConflict(AriError):
    """409: e.g. "Channel not in Stasis application" (created channel before its StasisStart,
    or after continue), "Channel is not in the 'Down' state"."""


class AriInvalidState(AriError):
    """412: "Channel in invalid state" (answer/ring a created channel before it is dialled)."""


class AriUnprocessable(AriError):
    """422: e.g. "Channel not in this bridge", "Event source was not subscribed to"."""


class AriServerError(AriError):
    """500 and above."""


class AriUnavailable(AriError):
    """Asterisk could not be reached: connection refused, reset, or timeout (status 0)."""

    def __init__(self, message: str, method: str = "", path: str = "") -> None:
        super().__init__(0, message, method, path)


class ApplicationReplacedError(Exception):
    """Another client connected with the same Stasis application name and took it over."""


_BY_STATUS: dict[int, type[AriError]] = {
    400: AriBadRequest,
    401: AriUnauthorized,
    404: AriNotFound,
    405: AriMethodNotAllowed,
    409: AriConflict,
    412: AriInvalidState,
    422: AriUnprocessable,
}


def error_for_status(status: int, message: str, method: str = "", path: str = "") -> AriError:
    """The typed exception for an HTTP error status."""
    if status >= 500:
        cls: type[AriError] = AriServerError
    else:
        cls = _BY_STATUS.get(status, AriError)
    return cls(status, message, method, path)
