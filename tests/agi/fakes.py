"""Asterisk's side of FastAGI for tests: the recorded traces, a model of res_agi's replies learned
from them (test_asterisk_model.py checks it reproduces every recorded reply), and a client that
plays Asterisk over a real socket against our server."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

from agi.protocol import unquote_args

TRACES = Path(__file__).parent / "traces"
DEAD_CHANNEL = "511 Command Not Permitted on a dead channel or intercept routine"
# res_agi's command table: these run on a dead channel; everything else gets 511.
DEAD_SAFE = ("GET VARIABLE", "GET FULL VARIABLE", "SET VARIABLE", "VERBOSE", "EXEC", "DATABASE", "NOOP")


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (TRACES / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def agi_records(records: list[dict], connection: str | None = None) -> list[dict]:
    return [r for r in records if r["kind"] == "agi" and (connection is None or r.get("connection") == connection)]


def env_block(records: list[dict], connection: str | None = None) -> list[str]:
    """The raw environment lines Asterisk sent (each with its \\n), up to and including the blank line."""
    out: list[str] = []
    for r in agi_records(records, connection):
        assert r["direction"] == "asterisk->agi"
        out.append(r["raw"])
        if r["raw"] == "\n":
            return out
    raise AssertionError("no end of environment in the trace")


def after_env(records: list[dict], connection: str | None = None) -> list[dict]:
    recs = agi_records(records, connection)
    n = len(env_block(records, connection))
    return recs[n:]


@dataclass
class AsteriskModel:
    """res_agi's replies for one channel, as the traces show them."""

    variables: dict[str, str] = field(default_factory=dict)
    up: bool = False
    dead: bool = False
    dial_outcome: str = "caller_hangup"
    """What happens inside EXEC Dial: caller_hangup (channel dies) or callee_hangup (channel stays)."""
    hangup_pending: bool = False
    """HANGUP is owed: Asterisk writes it when it next services the socket (before the next reply)."""

    def hangup_now(self) -> list[str]:
        """The caller hangs up while the AGI is idle: HANGUP is pushed at once."""
        self.dead = True
        return ["HANGUP"]

    def reply(self, command: str) -> list[str]:
        out = ["HANGUP"] if self.hangup_pending else []
        self.hangup_pending = False
        return out + [self._reply(command)]

    def _reply(self, command: str) -> str:
        verb = next((v for v in (*DEAD_SAFE, "CHANNEL STATUS", "ANSWER", "STREAM FILE") if command.startswith(v)), None)
        if verb is None:
            return "510 Invalid or unknown command"
        if self.dead and verb not in DEAD_SAFE:
            return DEAD_CHANNEL
        rest = command[len(verb):].strip()
        if verb == "SET VARIABLE":
            args = unquote_args(rest)
            if len(args) != 2:
                return "520 Invalid command syntax.  Proper usage not available."
            self.variables[args[0]] = args[1]
            return "200 result=1"
        if verb in ("GET VARIABLE", "GET FULL VARIABLE"):
            name = unquote_args(rest)[0]
            if verb == "GET FULL VARIABLE" and name.startswith("${") and name.endswith("}"):
                name = name[2:-1]
            value = self.variables.get(name)
            return "200 result=0" if value is None else f"200 result=1 ({value})"
        if verb in ("VERBOSE", "NOOP", "DATABASE"):
            return "200 result=1"
        if verb == "CHANNEL STATUS":
            return "200 result=6" if self.up else "200 result=4"
        if verb == "ANSWER":
            self.up = True
            return "200 result=0"
        if verb == "STREAM FILE":
            return "200 result=0 endpos=0"
        app = rest.split(" ", 1)[0]
        if app == "Dial":
            if self.dead:
                return "200 result=-1"
            self.variables["DIALSTATUS"] = "ANSWER"
            self.variables.setdefault("ANSWEREDTIME", "3")
            if self.dial_outcome == "caller_hangup":
                self.dead = self.hangup_pending = True
            else:
                self.up = True
            return "200 result=-1"
        if app == "Hangup":
            self.dead = self.hangup_pending = True
            return "200 result=-1"
        return "200 result=0"


class DelayedCore:
    """The real core whose authorize_call answers ``delay`` seconds late (a slow database)."""

    def __init__(self, core, delay: float):
        self._core = core
        self.delay = delay
        self.clock = core.clock

    async def authorize_call(self, **kw):
        await asyncio.sleep(self.delay)
        return await self._core.authorize_call(**kw)

    def __getattr__(self, name):
        return getattr(self._core, name)


@dataclass
class Played:
    """What our server did in one session, as Asterisk saw it."""

    received: bytes
    """Every byte our server sent, in order."""
    commands: list[str]
    variables: dict[str, str]
    closed_by_server: bool
    """Our server closed (EOF) rather than the fake giving up."""


async def play(
    host: str,
    port: int,
    env: list[str],
    *,
    model: AsteriskModel | None = None,
    hangup_after_env: float | None = None,
    hangup_before_command: int | None = None,
    give_up_after: float = 10.0,
) -> Played:
    """Connect like res_agi: send the environment block, then answer every command with the
    model's reply until our server closes. ``hangup_after_env``: push HANGUP while idle after that
    many seconds; ``hangup_before_command`` (0-based): the channel dies just before that command's
    reply (HANGUP precedes the reply, as after EXEC Dial in the caller-hangup trace)."""
    model = model or AsteriskModel()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write("".join(env).encode())
    await writer.drain()
    received = bytearray()
    commands: list[str] = []
    lock = asyncio.Lock()
    pusher: asyncio.Task | None = None

    async def push_hangup() -> None:
        await asyncio.sleep(hangup_after_env)
        async with lock:
            if not model.dead:
                writer.write("".join(f"{line}\n" for line in model.hangup_now()).encode())
                await writer.drain()

    if hangup_after_env is not None:
        pusher = asyncio.ensure_future(push_hangup())
    closed = False
    try:
        async with asyncio.timeout(give_up_after):
            while True:
                raw = await reader.readline()
                if not raw:
                    closed = True
                    break
                received += raw
                command = raw.decode().rstrip("\n")
                async with lock:
                    if hangup_before_command is not None and len(commands) == hangup_before_command and not model.dead:
                        model.dead = model.hangup_pending = True
                    commands.append(command)
                    writer.write("".join(f"{line}\n" for line in model.reply(command)).encode())
                    await writer.drain()
    except TimeoutError:
        pass
    finally:
        if pusher is not None:
            pusher.cancel()
        writer.close()
    return Played(bytes(received), commands, dict(model.variables), closed)
