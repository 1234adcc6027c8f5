"""Fixtures of the real-Asterisk suite (marker ``asterisk``, `make test-asterisk`).

One Asterisk 22 per session in a short /tmp folder, a SIPp UAS for the carrier and one for the
phones, one SQLite database seeded with the callgate CLI, and callgate running as the product runs:
`callgate gate` (ARI bridge and continue mode) and `callgate agi` (FastAGI) as real subprocesses.
Each test gets its own account and phone endpoint, so tests never share money.

Without an Asterisk 22 or SIPp (or with port 8088/4573 taken) the folder's tests are replaced at
collection by ONE item that skips with the reason (one "s", one SKIPPED line with -rs, and one line
in the terminal summary).
With CALLGATE_ASTERISK_REQUIRED=1 (`make test-asterisk`) a missing tool or a taken port fails.
"""
from __future__ import annotations

import itertools
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.asterisk.harness import (AGI_PORT, ARI_PORT, PHONES, AsteriskInstall, CallgateProcess, Cli, Pbx,
                                    SippCall, SippUas, callgate_env, find_asterisk, missing_tools, short_tmpdir,
                                    tcp_port_free)

HERE = Path(__file__).resolve().parent
_skip_reason: list[str] = []

#: The suite's plan: NANP at 0.60/min billed per second (1 s initial, 1 s increment), i.e. 0.01 per
#: second of talk, so a few cents buy a few seconds. Inbound DID calls cost 0.30/min.
PLAN_CSV = "prefix,description,rate_per_min,connect_fee,initial_increment,increment\n1,NANP,0.60,0,1,1\n"
RATE_PER_MIN = "0.60"
INBOUND_RATE = "0.30"
#: Seconds before the cut-off the gate plays its warning (bridge mode).
WARNING_SECONDS = 2


class SuiteUnavailable(pytest.Item):
    """Stands for the whole folder when it cannot run: one skip (or, required, one failure) and one line."""

    reason = ""

    def runtest(self) -> None:
        _unavailable(self.reason)

    def reportinfo(self):
        return self.path, None, "tests/asterisk"


def _unavailable_reason() -> str | None:
    missing = missing_tools()
    if missing:
        return missing
    taken = [f"{p} ({what})" for p, what in ((ARI_PORT, "asterisk-conf/http.conf bindport"),
                                             (AGI_PORT, "asterisk-conf/extensions.conf CALLGATE_AGI"))
             if not tcp_port_free(p)]
    if taken:
        return f"TCP port {', '.join(taken)} is taken on 127.0.0.1 (another Asterisk or callgate running?)"
    return None


def pytest_collection_modifyitems(config, items):
    suite = [item for item in items if HERE in Path(str(item.fspath)).resolve().parents]
    if not suite:
        return
    reason = _unavailable_reason()
    if reason:
        placeholder = SuiteUnavailable.from_parent(suite[0].parent, name="asterisk-suite")
        placeholder.reason = reason
        items[:] = [item for item in items if item not in suite] + [placeholder]
        suite = [placeholder]
    for item in suite:
        item.add_marker(pytest.mark.asterisk)


def pytest_terminal_summary(terminalreporter):
    if _skip_reason:
        terminalreporter.write_line(f"tests/asterisk skipped: {_skip_reason[0]}")


def _unavailable(reason: str):
    if os.environ.get("CALLGATE_ASTERISK_REQUIRED") == "1":
        pytest.fail(f"tests/asterisk: {reason}", pytrace=False)
    if not _skip_reason:
        _skip_reason.append(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def asterisk_install() -> AsteriskInstall:
    reason = _unavailable_reason()  # changed since collection (a port taken meanwhile)
    if reason:
        _unavailable(reason)
    found = find_asterisk()
    assert isinstance(found, AsteriskInstall)
    return found


@pytest.fixture(autouse=True)
def _needs_asterisk(asterisk_install):
    """Every test of this folder needs the tools; no SIPp caller outlives its test."""
    yield
    SippCall.kill_all()


@pytest.fixture(scope="session")
def workdir(request, asterisk_install):
    root = short_tmpdir()
    yield root
    if request.session.testsfailed or os.environ.get("CALLGATE_ASTERISK_KEEP"):
        print(f"\ntests/asterisk: kept {root} (Asterisk logs in log/, SIPp traces in sipp/, callgate logs)")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pbx(asterisk_install, workdir):
    p = Pbx(asterisk_install, workdir)
    try:
        p.start()
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="session")
def trunk(pbx, workdir):
    """The carrier's far end: answers every INVITE Asterisk sends to the trunk."""
    uas = SippUas(workdir, "trunk", pbx.trunk_port)
    uas.start()
    yield uas
    uas.stop()


@pytest.fixture(scope="session")
def phones(pbx, workdir):
    """The phones' far end: every phoneNN's static contact; answers the DID calls that ring them."""
    uas = SippUas(workdir, "phones", pbx.owner_port)
    uas.start()
    yield uas
    uas.stop()


@pytest.fixture(scope="session")
def cli(workdir, asterisk_install) -> Cli:
    """The callgate CLI on the suite's database, seeded: schema, plan, package."""
    c = Cli(f"sqlite:///{workdir / 'callgate.db'}")
    c.run("db", "upgrade")
    (workdir / "plan.csv").write_text(PLAN_CSV)
    c.run("plan", "import", "suite", str(workdir / "plan.csv"))
    # every region: the refusal test dials a UK number to get no_rate (404), not a toll-fraud refusal
    c.run("package", "add", "suite", "--plan", "suite", "--low-balance", "0", "--max-calls", "4",
          "--inbound-rate", INBOUND_RATE, "--allow-regions", "*")
    return c


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.1)


class Service:
    """A callgate process the tests may kill and start again. Ready when its log shows ``ready_line``
    once more than before the start (the gate: its events websocket is connected), or when its TCP
    port accepts (the FastAGI server)."""

    def __init__(self, proc: CallgateProcess, *, ready_line: str | None = None, port: int | None = None) -> None:
        self.proc, self.ready_line, self.port = proc, ready_line, port

    def _log_count(self) -> int:
        return self.proc.log.read_text(errors="replace").count(self.ready_line) if self.proc.log.exists() else 0

    def _ready(self, baseline: int) -> bool:
        if self.ready_line:
            return self._log_count() > baseline
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def start(self) -> None:
        baseline = self._log_count() if self.ready_line else 0
        self.proc.start()
        _wait(lambda: self._ready(baseline) or not self.proc.running, 30, f"callgate {self.proc.args[0]} ready")
        assert self.proc.running, f"callgate {self.proc.args[0]} exited; see {self.proc.log}"

    def ensure_running(self) -> None:
        if not self.proc.running:
            self.start()

    def connections(self) -> int:
        """How often it logged ``ready_line`` (the gate: events websocket (re)connections)."""
        return self._log_count()

    def kill9(self) -> None:
        self.proc.kill9()

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture(scope="session")
def env(pbx, cli) -> dict[str, str]:
    return callgate_env(cli.db_url, pbx.ari_user, pbx.ari_password,
                        CALLGATE_WARNING_SECONDS=str(WARNING_SECONDS), CALLGATE_DIAL_TIMEOUT="10")


@pytest.fixture(scope="session")
def gate_service(pbx, env, workdir):
    svc = Service(CallgateProcess(["gate"], env, workdir / "gate.log"), ready_line="ARI events connected")
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def agi_service(pbx, env, workdir):
    svc = Service(CallgateProcess(["agi"], env, workdir / "agi.log"), port=AGI_PORT)
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def gate(gate_service):
    gate_service.ensure_running()
    yield gate_service
    gate_service.ensure_running()  # a test that stopped it leaves it running for the next


@pytest.fixture
def agi(agi_service):
    agi_service.ensure_running()
    yield agi_service
    agi_service.ensure_running()


@dataclass
class Account:
    ref: str
    phone: str
    did: str | None = None


_phone_numbers = itertools.count()
_dids = itertools.count(1000)


@pytest.fixture
def new_account(cli):
    """``await new_account("0.05", did=True)``: a fresh account with its own phone endpoint (and DID)."""

    async def make(balance: str, *, did: bool = False) -> Account:
        n = next(_phone_numbers)
        assert n < len(PHONES), "more accounts than phone endpoints in the test pjsip.conf"
        ref, phone = f"t{n:02d}", PHONES[n]
        await cli.arun("account", "add", ref, "--name", f"Test {n}", "--email", f"{ref}@suite.test",
                       "--package", "suite")
        await cli.arun("endpoint", "add", ref, phone)
        if balance not in ("0", "0.00"):
            await cli.arun("credit", ref, balance, "--reason", "suite opening balance")
        number = None
        if did:
            number = f"1514555{next(_dids):04d}"
            await cli.arun("did", "add", number)
            await cli.arun("did", "assign", number, ref, "--endpoint", phone)
        return Account(ref, phone, number)

    return make


_numbers = itertools.count(1)


@pytest.fixture
def fresh_number():
    """A dialled NANP number no other test uses (the trunk UAS counts INVITEs per number)."""
    return lambda: f"1438555{next(_numbers):04d}"


def use_mode(pbx: Pbx, mode: str, request) -> None:
    """Dialplan mode + the callgate process that mode needs, ready (the gate registered as the
    Stasis app: after an Asterisk restart it takes a moment to reconnect)."""
    pbx.use_mode(mode)
    request.getfixturevalue("agi" if mode == "agi" else "gate")
    if mode != "agi":
        _wait(lambda: "callgate" in pbx.cli("ari show apps"), 30, "the gate registered as Stasis app callgate")


@pytest.fixture
def mode(request, pbx, trunk, phones):
    use_mode(pbx, request.param, request)
    return request.param
