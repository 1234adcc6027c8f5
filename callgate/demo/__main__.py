"""`make demo` / `python -m callgate.demo`: callgate end to end on one machine, nothing to install.

Starts the ARI simulator (a fake Asterisk with scripted SIP phones), an SMTP sink that writes every
email to ./var/mail/, the PayPal stand-in, and `callgate run` (a real subprocess, embedded SQLite at
./var/demo/callgate.db) against them. Seeds a scenario and plays it, checking every outcome:

  1. a funded outbound call, billed — which also crosses the low-balance threshold (email)
  2. a depleted account refused (403, announcement, nothing charged)
  3. a call cut off when its money runs out, with the warning tone before (depleted email)
  4. an inbound DID call, ringing the DID owner's phone
  5. 911 from a depleted account: connected, never charged
  6. a top-up through the client area and the PayPal stand-in re-activates the depleted account
     (receipt email), whose next call goes through
  7. the demo operator signs in to the console (/admin) and sees that account's balance

CALLGATE_DEMO_FAST=1 runs the same scenario on short timers and exits 0 only if every step behaved
as expected. Without it the timers are closer to real life and, at the end, the service keeps
running so you can sign in to the client area; Ctrl-C stops everything.
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from billing_core import operators
from billing_core.api import BillingCore
from billing_core.domain.money import format_amount, parse_amount
from billing_core.domain.rating import Rate
from billing_core.store import migrate
from callgate_fakes.ari_simulator import AriSimulator, Party
from callgate_fakes.paypal_standin import PayPalStandIn
from callgate_fakes.smtp_sink import SmtpSink

FAST = os.environ.get("CALLGATE_DEMO_FAST", "") not in ("", "0", "false", "no")
ROOT = Path.cwd()
VAR = ROOT / "var"
DEMO = VAR / "demo"
MAIL = VAR / "mail"
DB_URL = f"sqlite:///{DEMO / 'callgate.db'}"
DEMO_PASSWORD = "demo-password-1"
DEMO_OPERATOR = "ops@demo.example"
DEMO_OPERATOR_PASSWORD = "demo-operator-1"

# Timers: (fast, normal)
T = {
    "warning": (3, 10),
    "interval": (0.5, 2),
    "talk": (3, 8),              # funded call length
    "cutoff_money": ("0.08", "0.30"),  # at 0.60/min per second: 8 s / 30 s of talk
    "inbound_talk": (2, 5),
    "emergency_talk": (2, 4),
}


def t(name):
    return T[name][0 if FAST else 1]


@dataclass
class Step:
    name: str
    ok: bool | None = None
    detail: str = ""


@dataclass
class Demo:
    steps: list[Step] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)

    def step(self, name: str) -> Step:
        s = Step(name)
        self.steps.append(s)
        return s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


async def seed(core: BillingCore) -> None:
    admin = core.admin
    await admin.import_plan("demo", [
        Rate("1", parse_amount("0.0125", decimals=6), 0, 60, 6, "North America"),
        Rate("1900", parse_amount("0.60", decimals=6), 0, 1, 1, "Premium (demo cut-off)"),
        Rate("44", parse_amount("0.045", decimals=6), parse_amount("0.015", decimals=6), 30, 6, "United Kingdom"),
    ])
    # every destination allowed: the demo's cut-off call dials a +1 900 (premium-rate) number, which a
    # new package refuses by default (toll-fraud rules, docs/OPERATIONS.md)
    await admin.add_package("basic", plan="demo", low_balance=parse_amount("5.00"), max_calls=3, inbound_rate=0,
                            allow_regions="*", block_types="")
    for ref, name, ep, balance in (("acme", "Acme Inc", "alice", "5.01"), ("broke", "Broke Ltd", "bob", "1.00"),
                                   ("shorty", "Shorty & Co", "carol", t("cutoff_money"))):
        await admin.add_account(ref, name=name, email=f"billing@{ref}.example", package="basic")
        await admin.add_endpoint(ref, ep)
        await core.credit(ref, parse_amount(balance), "opening balance", kind="credit", idempotency_key=f"demo-open-{ref}")
    await core.credit("broke", -parse_amount("1.00"), "demo: spent everything", kind="debit", idempotency_key="demo-spent")
    await admin.add_did("15145551000")
    await admin.assign_did("15145551000", "acme", "alice")
    from callgate.web.auth import AuthSettings, Passwords, set_password

    for ref in ("acme", "broke"):
        await set_password(core, Passwords(AuthSettings()), ref, DEMO_PASSWORD)
    # an operator for the console (/admin); no TOTP so the demo needs no authenticator app
    # (`callgate operator totp enable ops@demo.example` adds one)
    demo_actor = operators.Actor("demo")
    await operators.add_operator(core, DEMO_OPERATOR, operators.ADMIN, actor=demo_actor)
    await operators.set_operator_password(core, DEMO_OPERATOR, await Passwords(AuthSettings()).hash(DEMO_OPERATOR_PASSWORD),
                                          actor=demo_actor)


class LiveView:
    """A terminal view of what is going on, refreshed every second."""

    def __init__(self, demo: Demo, sink: SmtpSink):
        self.demo = demo
        self.sink = sink
        self.tty = sys.stdout.isatty()
        self._last = ""

    async def run(self, stop: asyncio.Event) -> None:
        core = await BillingCore.open(DB_URL)
        try:
            while not stop.is_set():
                try:
                    await self.draw(core)
                except Exception:
                    pass
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
        finally:
            await core.close()

    async def draw(self, core: BillingCore) -> None:
        now = int(time.time() * 1000)
        live = await core.live_sessions()
        accounts = await core.admin.list_accounts()
        lines = ["callgate demo" + (" (fast)" if FAST else ""), "", "live calls:"]
        for s in live:
            left = "-" if s.cutoff_at is None else f"{max(0, (s.cutoff_at - now) / 1000):5.1f}s left"
            lines.append(f"  {s.account_ref or '-':<8} {s.direction:<8} {s.number_e164 or '911':<14} {s.state:<10} {left}")
        if not live:
            lines.append("  (none)")
        lines.append("balances:")
        for a in accounts:
            lines.append(f"  {a.ref:<8} {format_amount(a.balance):>10} {a.currency}  held {format_amount(a.held):>8}  {a.status}")
        lines.append("last decisions:")
        lines += [f"  {d}" for d in self.demo.decisions[-5:]] or ["  (none)"]
        lines.append(f"emails sent: {len(self.sink.messages)}")
        lines += [f"  → {m['to'][0]}: {m['subject']}" for m in self.sink.messages[-4:]]
        text = "\n".join(lines)
        if self.tty:
            sys.stdout.write("\x1b[H\x1b[2J" + text + "\n")
            sys.stdout.flush()
        elif text != self._last:
            print(text, flush=True)
        self._last = text


async def console_shows_account(web_url: str, ref: str) -> str:
    """Act as the demo operator: sign in to the console (/admin), open an account; its balance."""
    jar = aiohttp.CookieJar(unsafe=True)  # IP-address hosts
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(web_url + "/admin/signin") as r:
            m = re.search(r'name="csrf" value="([^"]+)"', await r.text())
            if not m:
                raise RuntimeError(f"no form token on /admin/signin ({r.status})")
        async with http.post(web_url + "/admin/signin", data={"csrf": m.group(1), "email": DEMO_OPERATOR,
                                                               "password": DEMO_OPERATOR_PASSWORD}) as r:
            if r.status != 200 or "/admin/signin" in str(r.url):
                raise RuntimeError(f"console sign-in failed ({r.status})")
        async with http.get(f"{web_url}/admin/accounts/{ref}") as r:
            m = re.search(r'id="balance">([^<]+)<', await r.text())
            if r.status != 200 or not m:
                raise RuntimeError(f"account page of {ref}: {r.status}")
            return m.group(1)


async def topup_through_client_area(web_url: str, email: str, amount: str) -> str:
    """Act as the customer: sign in, Add Funds, pay on the PayPal stand-in, come back."""
    jar = aiohttp.CookieJar(unsafe=True)  # IP-address hosts
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async def csrf(path: str) -> str:
            async with http.get(web_url + path) as r:
                m = re.search(r'name="csrf" value="([^"]+)"', await r.text())
                if not m:
                    raise RuntimeError(f"no form token on {path} ({r.status})")
                return m.group(1)

        async with http.post(web_url + "/signin", data={"csrf": await csrf("/signin"), "email": email,
                                                         "password": DEMO_PASSWORD}) as r:
            if "/signin" in str(r.url):
                raise RuntimeError("sign-in failed")
        async with http.post(web_url + "/funds", data={"csrf": await csrf("/funds"), "amount": amount}) as r:
            approval = str(r.url)
            page = await r.text()
        m = re.search(r'action="(/checkoutnow/[^"]+)"', page)
        if not m:
            raise RuntimeError(f"not on the PayPal approval page: {approval}")
        base = approval.split("/checkoutnow")[0]
        async with http.post(base + m.group(1), data={"action": "paypal"}) as r:
            return await r.text()


async def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir(parents=True, exist_ok=True)
    MAIL.mkdir(parents=True, exist_ok=True)
    demo = Demo()
    print(f"callgate demo{' (CALLGATE_DEMO_FAST)' if FAST else ''}: database {DB_URL}, emails in {MAIL}/", flush=True)

    await migrate.upgrade(DB_URL)
    core = await BillingCore.open(DB_URL)
    await seed(core)
    await core.close()

    sim = AriSimulator(user="callgate", password="demo", apps=("callgate",))
    await sim.start(port=0)
    sink = SmtpSink(MAIL)
    sink.start()
    web_port = 8080 if port_free(8080) else free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    ops_port = 9464 if port_free(9464) else free_port()
    standin = PayPalStandIn(webhook_url=f"{web_url}/paypal/webhook")
    await standin.start()

    env = {**os.environ, **standin.env(),
           "CALLGATE_DB": DB_URL, "CALLGATE_ARI_URL": sim.url, "CALLGATE_ARI_USER": "callgate",
           "CALLGATE_ARI_PASSWORD": "demo", "CALLGATE_WEB_LISTEN": f"127.0.0.1:{web_port}",
           "CALLGATE_WEB_PUBLIC_URL": web_url, "CALLGATE_AGI_LISTEN": f"127.0.0.1:{free_port()}",
           "CALLGATE_OPS_LISTEN": f"127.0.0.1:{ops_port}",
           "CALLGATE_SMTP_HOST": "127.0.0.1", "CALLGATE_SMTP_PORT": str(sink.port),
           "CALLGATE_MAIL_FROM": "billing@callgate.example", "CALLGATE_WARNING_SECONDS": str(t("warning")),
           "CALLGATE_DEBIT_INTERVAL": str(t("interval")), "CALLGATE_SHUTDOWN_GRACE": "5"}
    env.pop("CALLGATE_CONFIG", None)
    log_path = DEMO / "callgate.log"
    log_file = open(log_path, "wb")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "callgate", "run", env=env,
                                                stdout=log_file, stderr=asyncio.subprocess.STDOUT)
    stop_view = asyncio.Event()
    view_task = None
    try:
        await sim.wait_app_connected(timeout=30)
        view_task = asyncio.create_task(LiveView(demo, sink).run(stop_view))
        await play(demo, sim, web_url, sink)
    finally:
        stop_view.set()
        if view_task:
            await view_task
    ok = all(s.ok for s in demo.steps)
    print("\nsteps:")
    for s in demo.steps:
        print(f"  [{'ok' if s.ok else 'FAILED'}] {s.name}{' — ' + s.detail if s.detail else ''}")
    print(f"""
where to look:
  emails          {MAIL}/  ({len(sink.messages)} sent in this run)
  client area     {web_url}/  sign in as billing@acme.example / {DEMO_PASSWORD}
  operator console {web_url}/admin/signin  sign in as {DEMO_OPERATOR} / {DEMO_OPERATOR_PASSWORD}
  metrics, health http://127.0.0.1:{ops_port}/metrics  http://127.0.0.1:{ops_port}/healthz
  calls           .venv/bin/callgate --db {DB_URL} calls
  balances        .venv/bin/callgate --db {DB_URL} account list
  service log     {log_path}
""", flush=True)
    if not FAST and ok and sys.stdin.isatty():
        print("callgate keeps running for you to explore; Ctrl-C stops it.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 30)
    except asyncio.TimeoutError:
        proc.kill()
    log_file.close()
    await standin.stop()
    sink.stop()
    await sim.stop()
    check = await BillingCore.open(DB_URL)
    problems = await check.admin.verify()
    await check.close()
    if problems:
        print("verify FAILED:\n  " + "\n  ".join(problems))
        ok = False
    print("demo " + ("passed: every step behaved as expected" if ok else "FAILED"), flush=True)
    return 0 if ok else 1


async def play(demo: Demo, sim: AriSimulator, web_url: str, sink: SmtpSink) -> None:
    core = await BillingCore.open(DB_URL)

    async def balance(ref: str) -> int:
        return (await core.account(ref)).balance

    async def wait_mail(pattern: str, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(re.search(pattern, m["subject"], re.I) for m in sink.messages):
                return True
            await asyncio.sleep(0.2)
        return False

    try:
        sim.script_destination("PJSIP/15145550100@trunk", Party(answer_after=1.0, hangup_after=t("talk")))
        sim.script_destination("PJSIP/19005550100@trunk", Party(answer_after=1.0))  # talks until cut
        sim.script_destination("PJSIP/911@trunk", Party(answer_after=0.5, hangup_after=t("emergency_talk")))
        sim.script_destination("PJSIP/alice", Party(answer_after=1.0))
        sim.script_destination_default(Party(answer_after=1.0, hangup_after=2))

        before = {r: await balance(r) for r in ("acme", "broke", "shorty")}
        # 1, 2, 3, 5 run at the same time, as on a real PBX.
        s1 = demo.step("funded outbound call billed (alice → 15145550100)")
        s2 = demo.step("depleted account refused (bob → 15145550100)")
        s3 = demo.step("call cut off when the money runs out, warning tone first (carol → 19005550100)")
        s5 = demo.step("911 from a depleted account connected and free (bob → 911)")
        c1 = await sim.place_call(endpoint="alice", exten="15145550100", app_args=["outbound"])
        c2 = await sim.place_call(endpoint="bob", exten="15145550100", app_args=["outbound"])
        c3 = await sim.place_call(endpoint="carol", exten="19005550100", app_args=["outbound"])
        c5 = await sim.place_call(endpoint="bob", exten="911", app_args=["outbound"])
        o2 = await c2.ended(timeout=30)
        demo.decisions.append(f"bob → 15145550100: refused ({o2.sip_final})")
        s2.ok = o2.sip_final == 403 and not o2.answered and o2.progress and await balance("broke") == before["broke"]
        s2.detail = f"SIP {o2.sip_final}, heard {', '.join(o2.heard) or 'nothing'}"
        o5 = await c5.ended(timeout=60)
        demo.decisions.append(f"bob → 911: emergency, connected ({o5.talk_ms} ms)")
        s5.ok = o5.answered and await balance("broke") == before["broke"]
        s5.detail = f"talked {o5.talk_ms / 1000:.1f} s, charged 0.00" if o5.talk_ms else "not answered"
        o1 = await c1.ended(timeout=60)
        demo.decisions.append(f"alice → 15145550100: allowed, talked {o1.talk_ms} ms")
        await asyncio.sleep(0.5)
        charged = before["acme"] - await balance("acme")
        s1.ok = o1.answered and charged > 0
        s1.detail = f"talked {(o1.talk_ms or 0) / 1000:.1f} s, charged {format_amount(charged)}"
        s1b = demo.step("low-balance email (acme fell below 5.00)")
        s1b.ok = await wait_mail("low balance")
        o3 = await c3.ended(timeout=120)
        demo.decisions.append(f"carol → 19005550100: cut off after {o3.talk_ms} ms")
        await asyncio.sleep(0.5)
        s3.ok = bool(o3.answered and o3.ended_by == "app" and any("beep" in h for h in o3.heard)
                     and await balance("shorty") <= 0)
        s3.detail = (f"cut after {(o3.talk_ms or 0) / 1000:.1f} s, heard {', '.join(o3.heard) or 'nothing'}, "
                     f"balance {format_amount(await balance('shorty'))}")
        s3b = demo.step("balance-depleted email (shorty)")
        s3b.ok = await wait_mail("depleted")

        s4 = demo.step("inbound DID call rings the owner's phone (trunk → +15145551000 → alice)")
        c4 = await sim.place_call(endpoint="trunk", exten="15145551000", context="from-trunk", app_args=["inbound"],
                                  caller_id="15145557777", caller_hangup_after=t("inbound_talk"))
        o4 = await c4.ended(timeout=60)
        demo.decisions.append(f"+15145551000 (inbound): allowed, talked {o4.talk_ms} ms")
        s4.ok = o4.answered
        s4.detail = f"talked {(o4.talk_ms or 0) / 1000:.1f} s (inbound is free in this package)"

        s6 = demo.step("top-up of 25.00 through the client area and PayPal re-activates bob")
        try:
            await topup_through_client_area(web_url, "billing@broke.example", "25.00")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (await core.account("broke")).status != "active":
                await asyncio.sleep(0.2)
            acct = await core.account("broke")
            s6.ok = acct.status == "active" and acct.balance == before["broke"] + parse_amount("25.00")
            s6.detail = f"balance {format_amount(acct.balance)}, status {acct.status}"
        except Exception as exc:
            s6.ok, s6.detail = False, str(exc)
        s6b = demo.step("top-up receipt email (broke)")
        s6b.ok = await wait_mail("payment received")
        s7 = demo.step("the re-activated account calls again (bob → 15145550100)")
        c7 = await sim.place_call(endpoint="bob", exten="15145550100", app_args=["outbound"])
        o7 = await c7.ended(timeout=60)
        demo.decisions.append(f"bob → 15145550100: allowed after top-up, talked {o7.talk_ms} ms")
        s7.ok = o7.answered
        s8 = demo.step("the operator console signs in and shows the account (ops@demo.example → /admin/accounts/broke)")
        try:
            shown = await console_shows_account(web_url, "broke")
            expected = f"{format_amount((await core.account('broke')).balance)} {core.settings.currency}"
            s8.ok, s8.detail = shown == expected, f"balance shown {shown}"
        except Exception as exc:
            s8.ok, s8.detail = False, str(exc)
    finally:
        await core.close()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
