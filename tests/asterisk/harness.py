"""The integration suite's harness: a private Asterisk 22 in a temporary folder, SIPp phones and
carriers, and callgate run as the product runs (real `callgate gate` / `callgate agi` processes).

Nothing here touches anything outside its temporary folder: every Asterisk directory (etc, run,
log, spool, lib, cache) lives under it, and the only fixed ports are the ones the unchanged
asterisk-conf/ files name (http.conf's 8088, extensions.conf's FastAGI 4573), which are checked free
before anything starts. SIP, RTP and SIPp ports are chosen free.
"""
from __future__ import annotations

import asyncio
import configparser
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.asterisk.reaper import reap_on_exit

SUITE_DIR = Path(__file__).resolve().parent
REPO = SUITE_DIR.parent.parent
ETC_DIR = SUITE_DIR / "etc"
SIPP_DIR = SUITE_DIR / "sipp"
CONF_DIR = REPO / "asterisk-conf"

#: Ports the unchanged asterisk-conf/ files fix: http.conf's bindport and extensions.conf's CALLGATE_AGI.
ARI_PORT = 8088
AGI_PORT = 4573
#: Longest UNIX socket path (sun_path is 108 bytes with its NUL).
UNIX_PATH_MAX = 107
#: Phone endpoints of the test pjsip.conf (identified by their From user; one per test account).
PHONES = [f"phone{i:02d}" for i in range(1, 61)]

# Which way in each mode line of extensions.conf selects (asterisk-conf/README.md, "Choosing a way in").
MODE_TARGETS = {
    "bridge": {"from-internal": "callgate-outbound", "from-trunk": "callgate-inbound"},
    "continue": {"from-internal": "callgate-outbound-continue", "from-trunk": "callgate-inbound-continue"},
    "agi": {"from-internal": "callgate-agi-outbound", "from-trunk": "callgate-agi-inbound"},
}
_MODE_LINE = re.compile(r"^;?(exten => _X\.,1,Goto\((callgate-[a-z-]+),\$\{EXTEN\},1\))\s*$")


# ----------------------------------------------------------------------------- finding the tools
@dataclass(frozen=True)
class AsteriskInstall:
    binary: Path
    prefix: Path
    moddir: Path
    datadir: Path
    version: str


def find_asterisk() -> AsteriskInstall | str:
    """The Asterisk 22 to test against, or one line saying what is missing.

    `$ASTERISK_PREFIX/sbin/asterisk`, else `asterisk` on PATH (prefix two levels above the resolved
    binary), as the lab README describes.
    """
    prefix_env = os.environ.get("ASTERISK_PREFIX", "").strip()
    if prefix_env:
        binary = Path(prefix_env) / "sbin" / "asterisk"
        if not os.access(binary, os.X_OK):
            return f"ASTERISK_PREFIX={prefix_env} has no sbin/asterisk"
    else:
        found = shutil.which("asterisk")
        if not found:
            return "no Asterisk 22 found (set ASTERISK_PREFIX or put asterisk on PATH)"
        binary = Path(found).resolve()
    prefix = binary.parent.parent
    try:
        out = subprocess.run([str(binary), "-V"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{binary} -V failed: {exc}"
    m = re.search(r"Asterisk (?:GIT-|certified-)?(\d+)[.\-]", out)
    if not m or m.group(1) != "22":
        return f"{binary} is not Asterisk 22 ({out or 'no version'})"
    if os.environ.get("ASTERISK_MODDIR"):
        moddir = Path(os.environ["ASTERISK_MODDIR"])
    else:
        candidates = [prefix / "lib" / "asterisk" / "modules", prefix / "lib64" / "asterisk" / "modules"]
        moddir = next((c for c in candidates if c.is_dir()), candidates[0])
    if not (moddir / "res_ari.so").exists():
        return f"{binary}: no res_ari.so in {moddir} (set ASTERISK_MODDIR)"
    datadir = Path(os.environ.get("ASTERISK_DATADIR") or
                   ("/var/lib/asterisk" if str(prefix) == "/usr" else prefix / "var" / "lib" / "asterisk"))
    return AsteriskInstall(binary, prefix, moddir, datadir, out)


def missing_tools() -> str | None:
    """One line naming what is missing for the suite, or None when it can run."""
    found = find_asterisk()
    problems = [] if isinstance(found, AsteriskInstall) else [found]
    if not shutil.which("sipp"):
        problems.append("sipp is not on PATH (Debian package sip-tester)")
    return "; ".join(problems) or None


# ----------------------------------------------------------------------------- ports
def tcp_port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT is not "taken"
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_udp_ports(count: int, *, low: int = 20000, high: int = 60000) -> int:
    """The first of ``count`` consecutive free UDP ports (never handed out twice in this run)."""
    with _ports_lock:
        for _ in range(2000):
            start = random.randrange(low, high - count) & ~1
            span = range(start, start + count)
            if any(p in _handed_out for p in span):
                continue
            if all(udp_port_free(p) for p in span):
                _handed_out.update(span)
                return start
    raise RuntimeError(f"no {count} consecutive free UDP ports on 127.0.0.1")


# ----------------------------------------------------------------------------- extensions.conf
def switch_mode_lines(text: str, mode: str) -> str:
    """extensions.conf with the mode lines of [from-internal] and [from-trunk] switched to ``mode``,
    as asterisk-conf/README.md tells an admin to (uncomment exactly one per context). Nothing else
    changes: the result differs from ``text`` only in the leading ``;`` of those lines."""
    targets = MODE_TARGETS[mode]
    out, section, active = [], None, {}
    for line in text.splitlines(keepends=True):
        head = line.strip()
        if head.startswith("[") and "]" in head:
            section = head[1:head.index("]")]
        m = _MODE_LINE.match(line.rstrip("\n"))
        if m and section in targets:
            on = m.group(2) == targets[section]
            line = ("" if on else ";") + m.group(1) + "\n"
            active[section] = active.get(section, 0) + on
        out.append(line)
    if active != {s: 1 for s in targets}:
        raise AssertionError(f"extensions.conf: mode lines for {mode} not found exactly once per context: {active}")
    result = "".join(out)
    changed = [(a, b) for a, b in zip(text.splitlines(), result.splitlines()) if a != b]
    assert len(text.splitlines()) == len(result.splitlines())
    assert all(a.lstrip(";") == b.lstrip(";") for a, b in changed), "only mode lines may change"
    return result


def ari_credentials() -> tuple[str, str]:
    """The ARI user and password asterisk-conf/ari.conf defines (the gate uses them unchanged)."""
    cp = configparser.ConfigParser(comment_prefixes=(";",), inline_comment_prefixes=(";",), strict=False)
    cp.read_string((CONF_DIR / "ari.conf").read_text())
    users = [s for s in cp.sections() if cp.get(s, "type", fallback="") == "user"]
    assert len(users) == 1, f"asterisk-conf/ari.conf: expected one ARI user, found {users}"
    return users[0], cp.get(users[0], "password")


# ----------------------------------------------------------------------------- Asterisk
def _pjsip_conf(sip_port: int, trunk_port: int, trunk_in_ports: list[int], owner_port: int) -> str:
    common = """transport = transport-udp
disallow = all
allow = ulaw,alaw
direct_media = no
rtp_symmetric = yes
force_rport = yes
media_address = 127.0.0.1
bind_rtp_to_media_address = yes
send_pai = yes
trust_id_inbound = yes
"""
    parts = [f"""; The suite's pjsip.conf (rendered per run). Everything on 127.0.0.1, no authentication.
; Phones phone01..phone{len(PHONES):02d} (context from-internal) are identified by their From user; a
; SIPp UAS on {owner_port} answers for all of them (their static contacts). The carrier "trunk" is
; identified by the source ports of the SIPp UACs that play it; Asterisk dials it at {trunk_port}.
[global]
type = global
endpoint_identifier_order = ip,username
user_agent = callgate-suite

[transport-udp]
type = transport
protocol = udp
bind = 127.0.0.1:{sip_port}

[phone-endpoint](!)
type = endpoint
context = from-internal
rewrite_contact = yes
send_rpid = yes
{common}
[trunk]
type = endpoint
context = from-trunk
aors = trunk
trust_id_outbound = yes
from_domain = 127.0.0.1
{common}
[trunk]
type = aor
contact = sip:127.0.0.1:{trunk_port}

[trunk-identify]
type = identify
endpoint = trunk
""" + "".join(f"match = 127.0.0.1:{p}\n" for p in trunk_in_ports)]
    for name in PHONES:
        parts.append(f"""
[{name}](phone-endpoint)
aors = {name}

[{name}]
type = aor
contact = sip:{name}@127.0.0.1:{owner_port}
max_contacts = 1
""")
    return "".join(parts)


class Pbx:
    """One private Asterisk: configuration rendered into ``root``, started with ``-C`` on it."""

    def __init__(self, install: AsteriskInstall, root: Path) -> None:
        self.install = install
        self.root = root
        self.etc = root / "etc"
        self.conf = self.etc / "asterisk.conf"
        self.log_dir = root / "log"
        self.messages_log = self.log_dir / "messages.log"
        self.sip_port = free_udp_ports(1)
        self.rtp_start = free_udp_ports(200)
        self.trunk_port = free_udp_ports(1)
        self.trunk_in_ports = [free_udp_ports(1) for _ in range(4)]
        self.owner_port = free_udp_ports(1)
        self.proc: subprocess.Popen | None = None
        self.mode: str | None = None
        self.ari_user, self.ari_password = ari_credentials()

    @property
    def sip_address(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def render(self) -> None:
        rundir = self.root / "run"
        sock = rundir / "asterisk.ctl"
        if len(str(sock)) > UNIX_PATH_MAX:
            raise RuntimeError(f"{sock}: longer than {UNIX_PATH_MAX} bytes, too long for a UNIX socket")
        for d in ("etc", "run", "log", "spool", "lib", "cache"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        for f in ETC_DIR.glob("*.conf"):
            shutil.copy(f, self.etc / f.name)
        r, i = self.root, self.install
        (self.etc / "asterisk.conf").write_text(f"""; rendered by tests/asterisk/harness.py: every directory inside {r}
[directories]
astetcdir => {r}/etc
astmoddir => {i.moddir}
astvarlibdir => {r}/lib
astdbdir => {r}/lib
astkeydir => {r}/lib
astdatadir => {i.datadir}
astagidir => {r}/lib/agi-bin
astspooldir => {r}/spool
astrundir => {r}/run
astlogdir => {r}/log
astcachedir => {r}/cache
astsbindir => {i.binary.parent}

[options]
verbose = 3
debug = 0
timestamp = yes
documentation_language = en_US
defaultlanguage = en
""")
        (self.etc / "rtp.conf").write_text(
            f"[general]\nrtpstart = {self.rtp_start}\nrtpend = {self.rtp_start + 199}\nicesupport = no\nstrictrtp = no\n")
        (self.etc / "pjsip.conf").write_text(
            _pjsip_conf(self.sip_port, self.trunk_port, self.trunk_in_ports, self.owner_port))
        # asterisk-conf/ loaded unchanged (extensions.conf: only its mode lines, see use_mode)
        shutil.copy(CONF_DIR / "http.conf", self.etc / "http.conf")
        shutil.copy(CONF_DIR / "ari.conf", self.etc / "ari.conf")
        self._write_extensions(self.mode or "bridge")

    def _write_extensions(self, mode: str) -> None:
        text = (CONF_DIR / "extensions.conf").read_text()
        (self.etc / "extensions.conf").write_text(switch_mode_lines(text, mode))
        self.mode = mode

    def start(self, timeout: float = 60.0) -> None:
        if self.proc is None:
            self.render()
        out = open(self.log_dir / "stdout.log", "ab")
        self.proc = subprocess.Popen([str(self.install.binary), "-C", str(self.conf), "-f", "-n"],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=self.root)
        reap_on_exit(self.proc.pid)
        out.close()
        self.wait_booted(timeout)

    def wait_booted(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"Asterisk exited with {self.proc.returncode}; see {self.log_dir}/stdout.log")
            r = subprocess.run([str(self.install.binary), "-C", str(self.conf), "-rx", "core waitfullybooted"],
                               capture_output=True, text=True, timeout=timeout)
            if r.returncode == 0 and "fully booted" in r.stdout.lower():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Asterisk did not boot in {timeout:.0f} s: {r.stdout}{r.stderr}")
            time.sleep(0.2)

    def cli(self, command: str, timeout: float = 15.0) -> str:
        r = subprocess.run([str(self.install.binary), "-C", str(self.conf), "-rx", command],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"asterisk -rx {command!r} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r.stdout

    def use_mode(self, mode: str) -> None:
        """Switch the dialplan's mode lines and `dialplan reload` (no restart)."""
        if mode == self.mode:
            return
        self._write_extensions(mode)
        out = self.cli("dialplan reload")
        assert "Dialplan reloaded" in out, out
        shown = self.cli("dialplan show _X.@from-internal")
        assert MODE_TARGETS[mode]["from-internal"] + "," in shown, shown

    def restart_now(self, timeout: float = 60.0) -> None:
        """`core restart now`: every channel is hung up and Asterisk execs itself again (same pid).
        Done when the new instance logged "Asterisk Ready." and answers on its control socket."""
        since = self.log_size()
        subprocess.run([str(self.install.binary), "-C", str(self.conf), "-rx", "core restart now"],
                       capture_output=True, timeout=15)
        deadline = time.monotonic() + timeout
        while not any("Asterisk Ready." in line for _, line in self.log_lines(since)):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"Asterisk exited during its restart; see {self.log_dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Asterisk did not come back within {timeout:.0f} s of `core restart now`")
            time.sleep(0.1)
        self.wait_booted(timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            subprocess.run([str(self.install.binary), "-C", str(self.conf), "-rx", "core stop now"],
                           capture_output=True, timeout=10)
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_size(self) -> int:
        return self.messages_log.stat().st_size if self.messages_log.exists() else 0

    def log_lines(self, since: int = 0) -> list[tuple[float, str]]:
        """messages.log lines after byte offset ``since``, with their time (epoch seconds)."""
        with open(self.messages_log, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        out = []
        for line in text.splitlines():
            m = re.match(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\]\s*(.*)$", line)
            if m:
                out.append((dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp(), m.group(2)))
        return out


# ----------------------------------------------------------------------------- SIPp
@dataclass
class SipMessage:
    t: float
    sent: bool
    first_line: str
    headers: dict[str, str]

    @property
    def code(self) -> int | None:
        m = re.match(r"^SIP/2\.0 (\d{3})", self.first_line)
        return int(m.group(1)) if m else None

    @property
    def method(self) -> str | None:
        return None if self.first_line.startswith("SIP/2.0") else self.first_line.split(" ", 1)[0]

    @property
    def cseq_method(self) -> str:
        return self.headers.get("cseq", "").split()[-1] if self.headers.get("cseq") else ""

    @property
    def initial(self) -> bool:
        """A dialog-creating request (no To tag)."""
        return "tag=" not in self.headers.get("to", "")


_SEP = re.compile(r"^-{10,} (\d{4}-\d\d-\d\d)\s+(\d\d:\d\d:\d\d\.\d+)\s*$")
_DIR = re.compile(r"^(?:Unexpected )?(?:UDP|TCP) message (sent|received)")


def parse_sipp_messages(path: Path) -> list[SipMessage]:
    """SIPp's -trace_msg log as messages (time, direction, first line, headers)."""
    if not path.exists():
        return []
    msgs: list[SipMessage] = []
    t, sent, body = None, None, None

    def flush() -> None:
        if t is not None and sent is not None and body:
            lines = [ln for ln in body]
            while lines and not lines[0].strip():
                lines.pop(0)
            if lines:
                headers = {}
                for hl in lines[1:]:
                    if not hl.strip():
                        break
                    k, _, v = hl.partition(":")
                    headers.setdefault(k.strip().lower(), v.strip())
                msgs.append(SipMessage(t, sent, lines[0].strip(), headers))

    for raw in path.read_text(errors="replace").splitlines():
        line = raw.rstrip("\r")
        m = _SEP.match(line)
        if m:
            flush()
            t = dt.datetime.strptime(f"{m.group(1)} {m.group(2)}", "%Y-%m-%d %H:%M:%S.%f").timestamp()
            sent, body = None, None
            continue
        d = _DIR.match(line)
        if d and sent is None:
            sent, body = d.group(1) == "sent", []
        elif body is not None:
            body.append(line)
    flush()
    return msgs


@dataclass
class CallOutcome:
    """What the SIPp caller saw."""

    final: int | None
    """Final response to the INVITE (200 = answered), None if none came."""
    provisional: list[int]
    answered_at: float | None
    ended_at: float | None
    """When the BYE was sent or received."""
    far_end_hung_up: bool
    messages: list[SipMessage] = field(repr=False, default_factory=list)

    @property
    def talk_seconds(self) -> float | None:
        if self.answered_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.answered_at


def outcome_of(msgs: list[SipMessage]) -> CallOutcome:
    final = answered = ended = None
    far = False
    prov = []
    for m in msgs:
        if not m.sent and m.code and m.cseq_method == "INVITE" and m.headers.get("cseq", "").startswith("1 "):
            if m.code < 200:
                prov.append(m.code)
            elif final is None:
                final = m.code
                if m.code == 200:
                    answered = m.t
        if m.method == "BYE" and ended is None:
            ended, far = m.t, not m.sent
    return CallOutcome(final, prov, answered, ended, far, msgs)


class SippCall:
    """One SIPp UAC placing one call (a phone or the carrier)."""

    started: list["SippCall"] = []
    """Every call started in this process; the suite kills what a failed test left running."""

    def __init__(self, root: Path, pbx: Pbx, *, caller: str, number: str, scenario: str,
                 port: int | None = None, tag: str = "") -> None:
        self.caller, self.number = caller, number
        self.port = port or free_udp_ports(1)
        self.media = free_udp_ports(4)
        base = root / "sipp" / f"{tag or caller}-{number}-{self.port}"
        base.parent.mkdir(parents=True, exist_ok=True)
        self.msgfile = base.with_suffix(".msg.log")
        self.errfile = base.with_suffix(".err.log")
        self.cmd = ["sipp", "-sf", str(SIPP_DIR / scenario), "-i", "127.0.0.1", "-p", str(self.port),
                    "-m", "1", "-nostdin", "-key", "caller", caller, "-s", number,
                    "-trace_msg", "-message_file", str(self.msgfile), "-trace_err", "-error_file", str(self.errfile),
                    "-mp", str(self.media), "-timeout", "120s", "-timeout_error", pbx.sip_address]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> "SippCall":
        self.proc = await asyncio.create_subprocess_exec(*self.cmd, stdin=asyncio.subprocess.DEVNULL,
                                                         stdout=asyncio.subprocess.DEVNULL,
                                                         stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        reap_on_exit(self.proc.pid)
        SippCall.started.append(self)
        return self

    def outcome(self) -> CallOutcome:
        return outcome_of(parse_sipp_messages(self.msgfile))

    async def answered(self, timeout: float = 15.0) -> CallOutcome:
        """Wait until the call has its final response (200 or a refusal)."""
        deadline = time.monotonic() + timeout
        while True:
            o = self.outcome()
            if o.final is not None:
                return o
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.caller} -> {self.number}: no final response in {timeout} s")
            await asyncio.sleep(0.05)

    async def finished(self, timeout: float = 60.0) -> CallOutcome:
        assert self.proc is not None
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.kill()
            raise AssertionError(f"{self.caller} -> {self.number}: SIPp still running after {timeout} s: "
                                 f"{self.outcome()}") from None
        return self.outcome()

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass

    @classmethod
    def kill_all(cls) -> None:
        """Kill every call still running (by its own pid) and forget them all."""
        for call in cls.started:
            if call.proc is not None and call.proc.returncode is None:
                try:
                    os.kill(call.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        cls.started.clear()


class SippUas:
    """A SIPp UAS running for the whole session (the carrier's far end, or the phones' far end)."""

    def __init__(self, root: Path, name: str, port: int) -> None:
        self.port = port
        (root / "sipp").mkdir(parents=True, exist_ok=True)
        self.msgfile = root / "sipp" / f"uas-{name}.msg.log"
        self.cmd = ["sipp", "-sf", str(SIPP_DIR / "uas_answer.xml"), "-i", "127.0.0.1", "-p", str(port),
                    "-nostdin", "-trace_msg", "-message_file", str(self.msgfile), "-mp", str(free_udp_ports(4))]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        reap_on_exit(self.proc.pid)
        time.sleep(0.3)
        if self.proc.poll() is not None:
            raise RuntimeError(f"SIPp UAS on {self.port} exited at once: {' '.join(self.cmd)}")

    def invites(self, user: str) -> list[SipMessage]:
        """Initial INVITEs received for ``user`` (the Request-URI's user part)."""
        return [m for m in parse_sipp_messages(self.msgfile)
                if not m.sent and m.method == "INVITE" and m.initial
                and re.match(rf"^INVITE sip:{re.escape(user)}@", m.first_line)]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ----------------------------------------------------------------------------- callgate
def callgate_env(db_url: str, ari_user: str, ari_password: str, **extra: str) -> dict[str, str]:
    """The environment of the callgate processes: only our CALLGATE_* values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGATE_")}
    env.update({
        "CALLGATE_DB": db_url,
        "CALLGATE_ARI_URL": f"http://127.0.0.1:{ARI_PORT}",
        "CALLGATE_ARI_USER": ari_user,
        "CALLGATE_ARI_PASSWORD": ari_password,
        "CALLGATE_AGI_LISTEN": f"127.0.0.1:{AGI_PORT}",
        **extra,
    })
    return env


class CallgateProcess:
    """`callgate <command>` as a real subprocess (the venv's interpreter, `-m callgate`)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "callgate", *self.args], env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        reap_on_exit(self.proc.pid)
        out.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.running:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()


class Cli:
    """The callgate CLI (`callgate --db URL …`), invoked in this process through click, one at a time.

    Why in-process: each `callgate` process pays ~1 s of imports on a shared 2-core machine; the
    commands, their options and their JSON are the same."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self._lock = threading.Lock()

    def run(self, *args: str) -> str:
        from click.testing import CliRunner

        from callgate.cli import main

        with self._lock:
            r = CliRunner().invoke(main, ["--db", self.db_url, *args], catch_exceptions=False)
        if r.exit_code != 0:
            raise AssertionError(f"callgate {' '.join(args)} exited {r.exit_code}: {r.output}")
        return r.stdout

    def json(self, *args: str):
        return json.loads(self.run(*args, "--json"))

    async def arun(self, *args: str) -> str:
        return await asyncio.to_thread(self.run, *args)

    async def ajson(self, *args: str):
        return await asyncio.to_thread(self.json, *args)


def short_tmpdir() -> Path:
    """A short private folder under /tmp (astrundir's control socket must fit in 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="cgast-", dir="/tmp"))
