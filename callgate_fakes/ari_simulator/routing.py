"""Routing and validation: every REST request against the ARI swagger table, as Asterisk does it.

Unknown path -> 404 "Resource not found", wrong method -> 405 "Invalid method", missing or invalid
parameters -> 400 with Asterisk's wording where the traces show it (``MISSING_MESSAGES``). A handler
raises :class:`RestError` to answer with an Asterisk error.
"""
from __future__ import annotations

from typing import Any

from callgate_fakes.ari_simulator import swagger_table


class RestError(Exception):
    """Raised inside a handler: becomes the Asterisk error response."""

    def __init__(self, status: int, message: str, reason: str | None = None, key: str = "message") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.key = key


def _compile_routes() -> list[tuple[list[str], str, dict]]:
    routes = []
    for op in swagger_table.OPERATIONS:
        segs = [s for s in op["path"].split("/") if s]
        routes.append((segs, op["method"], op))
    return routes


_ROUTES = _compile_routes()
#: routes by (segment count, first segment): a request is matched against a handful, not all ~100
_ROUTE_INDEX: dict[tuple[int, str], list[tuple[list[str], str, dict]]] = {}
for _route in _ROUTES:
    _ROUTE_INDEX.setdefault((len(_route[0]), _route[0][0] if _route[0] else ""), []).append(_route)


def match_path(path: str) -> tuple[list[dict], dict[str, str]] | None:
    """Operations of the best-matching path template (literal segments beat {params})."""
    segs = [s for s in path.split("/") if s]
    best: tuple[int, list[dict], dict[str, str]] | None = None
    for tsegs, _method, op in _ROUTE_INDEX.get((len(segs), segs[0] if segs else ""), ()):
        values: dict[str, str] = {}
        score = 0
        for t, s in zip(tsegs, segs):
            if t.startswith("{") and t.endswith("}"):
                values[t[1:-1]] = s
            elif t == s:
                score += 1
            else:
                break
        else:
            if best is None or score > best[0]:
                best = (score, [op], values)
            elif score == best[0] and best[1][0]["path"] == op["path"]:
                best[1].append(op)
    if best is None:
        return None
    return best[1], best[2]


#: Asterisk's own wording for missing/invalid parameters (rest_errors.jsonl); else generic.
MISSING_MESSAGES = {
    ("create", "endpoint"): "Endpoint must be specified",
    ("originate", "endpoint"): "Endpoint must be specified",
    ("originateWithId", "endpoint"): "Endpoint must be specified",
    ("setChannelVar", "variable"): "Variable name is required",
    ("getChannelVar", "variable"): "Variable name is required",
    ("sendDTMF", "dtmf"): "DTMF is required",
}


def validate(op: dict, query: dict[str, str], body: Any) -> dict[str, Any]:
    """Required and typed parameters per the swagger table (400 with Asterisk's message)."""
    out: dict[str, Any] = {}
    nick = op["nickname"]
    for p in op["params"]:
        name = p["name"]
        if p["param_type"] == "path":
            continue
        if p["param_type"] == "body":
            value = body.get(name) if isinstance(body, dict) else None
            if value is not None:
                out[name] = value
            elif p["required"] and body is None:
                raise RestError(400, f"Missing parameter {name}", "Bad Request")
            continue
        raw = query.get(name)
        if raw is None and isinstance(body, dict) and name in body:
            raw = str(body[name])   # ARI also accepts parameters in a JSON body
        if raw is None or raw == "":
            if p["required"]:
                if name == "media" and nick in ("play", "playWithId"):
                    raise RestError(500, "Failed to queue media for playback", "Internal Server Error")
                msg = MISSING_MESSAGES.get((nick, name), f"Missing parameter {name}")
                raise RestError(400, msg, "Bad Request")
            continue
        values = raw.split(",") if p["allow_multiple"] else [raw]
        converted: list[Any] = []
        for v in values:
            dtype = p["data_type"]
            if dtype in ("int", "long"):
                try:
                    iv = int(v)
                except ValueError:
                    raise RestError(400, f"Invalid value for parameter {name}", "Bad Request") from None
                if p["min_value"] is not None and iv < p["min_value"]:
                    raise RestError(400, f"Invalid value for parameter {name}", "Bad Request")
                converted.append(iv)
            elif dtype == "boolean":
                if v.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise RestError(400, f"Invalid value for parameter {name}", "Bad Request")
                converted.append(v.lower() in ("true", "1", "yes"))
            else:
                if p["allowed_values"] is not None and v not in p["allowed_values"]:
                    if nick == "hangup" and name == "reason":
                        raise RestError(400, "Invalid reason for hangup reason provided", "Invalid Reason")
                    raise RestError(400, f"Invalid value for parameter {name}", "Bad Request")
                converted.append(v)
        out[name] = converted if p["allow_multiple"] else converted[0]
    return out
