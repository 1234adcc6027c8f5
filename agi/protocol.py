"""The AGI wire format, as Asterisk 22 speaks it (see /work/shared/agi/traces/README.md).

Pure parsing and formatting shared by the FastAGI server and the stdio script: the ``agi_*``
environment block, the reply lines (``200 result=…``, ``511 …``, multi-line ``520-…``), and the
quoting of command arguments. No I/O here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

# The one channel-name parser (shared with ari_app); re-exported under the AGI server's old name.
from callgate_dialplan import endpoint_of_channel

HANGUP_LINE = "HANGUP"
"""Asterisk writes this line, unprompted, when the channel hangs up (FastAGI)."""

MAX_LINE_BYTES = 8192
"""Longest line accepted from Asterisk; longer means the peer is not Asterisk."""
MAX_ENV_LINES = 256
"""An environment block has ~25 lines plus one per AGI() argument (res_agi allows 127)."""

_ENV_LINE = re.compile(r"^(agi_[A-Za-z0-9_]+): ?(.*)$", re.DOTALL)
_REPLY = re.compile(r"^(\d{3})(?: result=(-?\d+))?(?: \((.*)\))?(?: .*)?$", re.DOTALL)
_NEEDS_QUOTES = re.compile(r'[\s"\\]')


class ProtocolError(ValueError):
    """Bytes that are not AGI; the message says what was wrong and where."""


@dataclass(frozen=True)
class AgiRequest:
    """One AGI invocation: the environment Asterisk sent before any command."""

    env: Mapping[str, str]
    """Every ``agi_*`` key with its value (an empty value stays ``""``)."""
    route: str
    """The script name: ``authorize`` for ``agi://host:port/authorize``."""
    args: tuple[str, ...] = field(default=())
    """``agi_arg_1`` … ``agi_arg_N`` in order (the AGI() arguments after the URL)."""

    @property
    def channel(self) -> str:
        """e.g. ``PJSIP/alice-000000df``."""
        return self.env.get("agi_channel", "")

    @property
    def uniqueid(self) -> str:
        """The channel's unique id, e.g. ``1795802916.223``."""
        return self.env.get("agi_uniqueid", "")

    def arg(self, n: int) -> str:
        """The n-th AGI() argument (1-based), ``""`` when absent."""
        return self.args[n - 1] if 0 < n <= len(self.args) else ""


@dataclass(frozen=True)
class Reply:
    """Asterisk's answer to one command."""

    code: int
    """200 success, 510 unknown command, 511 dead channel, 520 usage."""
    result: int | None
    """The ``result=`` number (200 replies)."""
    data: str | None
    """The text in parentheses: ``(alice)`` → ``alice``."""
    text: str
    """The whole reply as received (lines joined with ``\\n`` for 520)."""

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def dead_channel(self) -> bool:
        """511: the command is not permitted because the channel has hung up."""
        return self.code == 511


def parse_env_line(line: str, lineno: int) -> tuple[str, str]:
    """``agi_key: value`` → (key, value). Raises ProtocolError naming the line."""
    m = _ENV_LINE.match(line)
    if not m:
        raise ProtocolError(f"environment line {lineno}: not 'agi_<name>: <value>': {line[:80]!r}")
    return m.group(1), m.group(2)


def route_of(env: Mapping[str, str]) -> str:
    """The script name of ``agi://host:port/<route>``: ``agi_network_script``, else the path of
    ``agi_request`` (query strings and slashes stripped)."""
    script = env.get("agi_network_script", "")
    if not script:
        request = env.get("agi_request", "")
        script = request.split("://", 1)[1].split("/", 1)[1] if "://" in request and "/" in request.split("://", 1)[1] else ""
    return script.split("?", 1)[0].strip("/")


def build_request(pairs: list[tuple[str, str]]) -> AgiRequest:
    """An AgiRequest from the parsed lines of one block; ProtocolError if it cannot be routed."""
    env = dict(pairs)
    route = route_of(env)
    if not route:
        raise ProtocolError("environment: no agi_network_script and no script in agi_request")
    args: list[str] = []
    n = 1
    while f"agi_arg_{n}" in env:
        args.append(env[f"agi_arg_{n}"])
        n += 1
    return AgiRequest(env, route, tuple(args))


def parse_reply(line: str) -> Reply:
    """One reply line (520 multi-line replies are joined by the reader before)."""
    m = _REPLY.match(line)
    if not m:
        raise ProtocolError(f"reply: not '<code> result=<n>': {line[:80]!r}")
    code = int(m.group(1))
    result = int(m.group(2)) if m.group(2) is not None else None
    return Reply(code, result, m.group(3), line)


def quote_arg(value: str) -> str:
    """An AGI command argument: bare when it has no blank, quote or backslash (so the bytes match
    what Asterisk's own examples send: ``SET VARIABLE CALLGATE_MAX_MS 5000``), else double-quoted
    with ``\\`` escapes, which res_agi's parser undoes. The empty string is ``""``. A line end
    would split the command in two (a second, injected command): refused."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"AGI argument with a line end or NUL: {value[:40]!r}")
    if value and not _NEEDS_QUOTES.search(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_variable_command(name: str, value: str) -> str:
    """``SET VARIABLE <name> <value>`` (no line end)."""
    return f"SET VARIABLE {quote_arg(name)} {quote_arg(value)}"


def unquote_args(text: str) -> list[str]:
    """Split a command's arguments the way res_agi's parse_args does (blanks separate, ``"`` groups,
    ``\\`` escapes the next character). Used by tests and the fake Asterisk."""
    out: list[str] = []
    cur: list[str] = []
    in_quotes = escaped = started = False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
            started = True
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
            started = True
        elif ch in " \t" and not in_quotes:
            if started:
                out.append("".join(cur))
                cur, started = [], False
        else:
            cur.append(ch)
            started = True
    if started:
        out.append("".join(cur))
    return out
