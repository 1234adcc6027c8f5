"""Classic (stdio) AGI script on pyst2, for PBXs that cannot run the FastAGI service:

    exten => _X.,n,AGI(callgate-agi,outbound,${EXTEN})                       ; = authorize
    exten => s,1,AGI(callgate-agi,answered,${ARG1})                          ; Dial U() subroutine
    exten => s,1,AGI(callgate-agi,settle,${CALLGATE_SESSION},${ANSWEREDTIME},${ANSWEREDTIME_MS})

It sets the same variables as ``agi://…/authorize`` (agi.routes). The database comes from
CALLGATE_DB (Asterisk's environment, or ``Set(ENV(CALLGATE_DB)=…)``); when it is missing or cannot
be reached the call is refused: DENY billing_unavailable, CALLGATE_HANGUPCAUSE 34.

pyst2 reads the environment block and writes the commands; replies are read here because pyst2
turns a ``HANGUP`` line or a 511 into exceptions, and SET VARIABLE must still work on a channel
that has just hung up (Asterisk allows it: the hangup handler reads CALLGATE_SESSION).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any, Mapping

from asterisk.agi import AGI

from .keepalive import KeepaliveSettings, keepalive_pass
from .protocol import HANGUP_LINE, AgiRequest, ProtocolError, Reply, parse_reply, quote_arg, route_of
from .routes import DIRECTIONS, ROUTE_AUTHORIZE, ROUTES, Router
from .settings import AgiSettings, default_pbx_id

log = logging.getLogger("callgate.agi")


class StdioConversation:
    """Commands on stdout, replies on stdin (one process per call: blocking reads are fine; a
    SIGALRM watchdog bounds the whole run)."""

    def __init__(self, agi: AGI):
        self.agi = agi
        self._hung_up = False

    @property
    def hung_up(self) -> bool:
        return self._hung_up or self.agi._got_sighup  # pyst2's SIGHUP flag

    async def set_variable(self, name: str, value: str) -> Reply:
        self.agi.send_command("SET VARIABLE", quote_arg(name), quote_arg(value))
        while True:
            line = self.agi.stdin.readline()
            if not line:
                raise ConnectionError("Asterisk closed stdin")
            line = line.rstrip("\r\n")
            if line == HANGUP_LINE:
                self._hung_up = True
                continue
            reply = parse_reply(line)
            if reply.dead_channel:
                self._hung_up = True
            return reply


def request_from(env: dict[str, str], argv: list[str]) -> AgiRequest:
    """Route and arguments: ``outbound|inbound,<number>`` means authorize; else the first argument
    names the route. Arguments come from argv (Asterisk passes them there and as agi_arg_N)."""
    args = list(argv)
    if not args:
        n = 1
        while f"agi_arg_{n}" in env:
            args.append(env[f"agi_arg_{n}"])
            n += 1
    if args and args[0] in ROUTES:
        return AgiRequest(env, args[0], tuple(args[1:]))
    if args and args[0] in DIRECTIONS:
        return AgiRequest(env, ROUTE_AUTHORIZE, tuple(args))
    raise ProtocolError(f"arguments: expected outbound|inbound,<number> or one of {', '.join(ROUTES)} first "
                        f"(got {','.join(args) or 'nothing'}; script {route_of(env) or '?'})")


async def run(req: AgiRequest | None, conv: StdioConversation, settings: AgiSettings, db_url: str) -> None:
    core: Any = None
    try:
        if db_url:
            from billing_core.api import BillingCore

            core = await BillingCore.open(db_url)
        else:
            log.error("CALLGATE_DB is not set: the call is refused (billing_unavailable)")
        router = Router(core or _Unavailable(), pbx_id=settings.pbx_id, decision_timeout=settings.decision_timeout)
        if req is None:
            await router.refuse(conv)
        else:
            await router.dispatch(req, conv)
        await router.drain(settings.decision_timeout)
    finally:
        if core is not None:
            await core.close()


class _Unavailable:
    """Stands in for a core that could not be configured: every call is refused."""

    async def authorize_call(self, **kw: Any):
        raise ConnectionError("no database configured")

    async def answer(self, *a: Any, **kw: Any):
        raise ConnectionError("no database configured")

    async def settle(self, *a: Any, **kw: Any):
        raise ConnectionError("no database configured")

    class clock:
        @staticmethod
        def now_ms() -> int:
            import time

            return time.time_ns() // 1_000_000


async def keepalive_once(db_url: str, pbx_id: str) -> int:
    from billing_core.api import BillingCore

    core = await BillingCore.open(db_url)
    try:
        return await keepalive_pass(core, pbx_id, KeepaliveSettings())
    finally:
        await core.close()


def script_settings(environ: Mapping[str, str]) -> AgiSettings:
    """The few settings of the stdio script, from the variables Asterisk gives it.

    The one exception to "only callgate/config.py reads the configuration": this process is started
    by Asterisk per call, not by callgate, and agi must not import callgate (setup.cfg). Here a bad
    value is logged and its default used rather than refused: the script must always answer, and
    the dialplan refuses the call when billing cannot."""
    timeouts = {}
    for name, field in (("CALLGATE_AGI_SESSION_TIMEOUT", "session_timeout"),
                        ("CALLGATE_AGI_DECISION_TIMEOUT", "decision_timeout")):
        text = environ.get(name, "").strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            value = 0.0
        if 0 < value < float("inf"):
            timeouts[field] = value
        else:
            log.error("%s: must be a number of seconds > 0 (got %r): using the default", name, text)
    return AgiSettings(pbx_id=environ.get("CALLGATE_AGI_PBX_ID", "").strip() or default_pbx_id(), **timeouts)


def main(argv: list[str] | None = None) -> int:
    """Entry point (``callgate-agi`` / ``python -m agi.stdio``). Always exits 0 under Asterisk:
    it would otherwise log the script as failed, and the dialplan reads CALLGATE_STATUS anyway.

    ``callgate-agi --keepalive`` (from cron, every minute) is not an AGI: one agi.keepalive pass
    that reports this PBX's live AGI calls, so the sidecar does not settle them as stale while
    they may still be talking. Installs that run ``callgate agi`` do not need it."""
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("CALLGATE_LOG_LEVEL", "WARNING").upper(),
                        format="callgate-agi: %(levelname)s %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--keepalive"]:
        db_url = os.environ.get("CALLGATE_DB", "").strip()
        if not db_url:
            print("error: CALLGATE_DB is not set", file=sys.stderr)
            return 1
        try:
            pbx_id = script_settings(os.environ).pbx_id
            n = asyncio.run(keepalive_once(db_url, pbx_id))
        except Exception as exc:
            print(f"error: keepalive failed: {exc}", file=sys.stderr)
            return 1
        print(f"{n} live AGI call(s) of {pbx_id} reported")
        return 0
    settings = script_settings(os.environ)

    def watchdog(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no result within {settings.session_timeout:g}s (CALLGATE_AGI_SESSION_TIMEOUT)")

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(max(1, round(settings.session_timeout)))
    try:
        quiet = open(os.devnull, "w")  # pyst2 echoes every line on stderr (Asterisk's console); kept open
        agi = AGI(stdin=sys.stdin, stdout=sys.stdout, stderr=quiet)
        conv = StdioConversation(agi)
        req: AgiRequest | None
        try:
            req = request_from(agi.env, argv)
        except ProtocolError as exc:
            log.error("%s: call refused", exc)
            req = None
        asyncio.run(run(req, conv, settings, os.environ.get("CALLGATE_DB", "").strip()))
    except (TimeoutError, ConnectionError, ProtocolError, OSError) as exc:
        log.error("AGI script ended early: %s", exc)
    except Exception:  # never a traceback instead of an answer; the dialplan refuses the call
        log.exception("AGI script failed")
    finally:
        signal.alarm(0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
