"""ARI gate benchmark (issue 3): calls per second through the gate and decision latency, side by
side with a do-nothing Stasis app on the same simulator.

Layout (2 processes, so the app under test has a core of its own):

* this process: the ARI simulator (``callgate_fakes.ari_simulator``, real HTTP + WebSocket on 127.0.0.1) and
  an open-loop load generator placing calls at ``--rate`` per second for ``--seconds``;
* the app process: the Stasis application under test —
  - ``gate``: the real ``Gate`` + ``BillingCore`` (SQLite file, or PostgreSQL with ``--db pg``);
  - ``noop``: the do-nothing app: the same ARI client and the same call flow with an allow-all
    in-memory "core" (no decision, no store) in bridge mode; in continue mode an app that only sets
    CALLGATE_STATUS/CALLGATE_MAX_MS and continues (the least the dialplan needs).

Decision latency = the simulator sending StasisStart → the simulator receiving the app's first REST
request for that channel (ring / progress / variable): transport + routing + the core's decision.
Each call: alice-N dials 15145550100, the callee answers after 50 ms and hangs up 1 s later.

    python -m bench.gate_bench                      # bridge + continue, gate and noop, SQLite
    python -m bench.gate_bench --db pg --rate 300 --seconds 10 --modes bridge

The simulator keeps only its last 1,000 events/requests (``history``): keeping all of them made
the garbage collector the simulator's largest cost. ``CALLGATE_BENCH_UVLOOP=1`` runs both processes
on uvloop when it is installed (not a dependency: it measured within the noise here).

Each result also says where a tail came from (bench/loopwatch.py): ``sim_*`` / ``app_*`` loop stalls
over 10 ms and collector time. ``CALLGATE_BENCH_DEBUG_TAIL=1`` prints the slowest 1 % of calls as
(latency ms, seconds into the run): a cluster at one moment is one event (it was a WAL checkpoint),
a spread is load.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import platform
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.loopwatch import LoopWatch

PG = os.environ.get("CALLGATE_BENCH_PG_URL", "postgresql://127.0.0.1:5432/test")
ACCOUNTS = 64
"""Funded accounts the calls cycle through (``--accounts``): 300 calls/s of 1 s over 64 accounts
is ~5 concurrent calls per account, a busy business line."""
NUMBER = "15145550100"
HOLD_SECONDS = 1.0
"""How long each benchmark call talks (the callee hangs up)."""
CHANNEL_PATH = re.compile(r"^/ari/channels/([^/]+)/")


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


# ------------------------------------------------------------------------------------ app process
class AllowAllCore:
    """The do-nothing app's "core": every call allowed for an hour, nothing stored."""

    def __init__(self):
        from billing_core.api import CoreSettings

        self.settings = CoreSettings()

    async def authorize_call(self, *, direction, number, endpoint=None, did=None, caller_id=None, pbx_id="local",
                             channel_id=None, full_hold=False):
        from billing_core.domain.records import Authorization

        return Authorization(True, None, uuid.uuid4().hex, direction, number, account_ref=endpoint,
                             granted_seconds=3600, max_talk_seconds=3600, ring_endpoint="alice")

    async def answer(self, session_id, at_ms=None):
        from billing_core.domain.records import CallSession

        return CallSession(session_id, "pbx", None, None, "outbound", None, "answered", "chunked", 3600, 0, 0, 0,
                           0, at_ms, at_ms + 3_600_000, None, None, None, False, False, at_ms)

    async def settle(self, session_id, talk_ms, **kw):
        return None

    async def extend(self, session_id, now_ms=None):
        raise AssertionError("not reached in a 1 s call")

    async def heartbeat(self, ids, now_ms=None):
        return 0

    async def live_sessions(self, pbx_id=None):
        return []

    async def live_cutoffs(self, pbx_id):
        return []


async def _noop_continue(client) -> None:
    """Do-nothing continue-mode app: allow, continue."""

    requests: set[asyncio.Task] = set()

    async def allow(cid):
        # the same one-request ARRAY() the gate uses, so the ratio compares like with like
        await client.set_variables(cid, [("CALLGATE_MAX_MS", "3600000"), ("CALLGATE_STATUS", "ALLOW")])
        await client.continue_in_dialplan(cid)

    def on_event(ev):  # routes only, like the gate: the REST calls run in their own task
        if ev.get("type") == "StasisStart" and "continue" in (ev.get("args") or []):
            task = asyncio.ensure_future(allow(ev["channel"]["id"]))
            requests.add(task)
            task.add_done_callback(requests.discard)

    client.on_event_now(on_event)


def use_uvloop() -> bool:
    """CALLGATE_BENCH_UVLOOP=1: run both processes on uvloop (an experiment: the product runs on
    asyncio's default loop, and uvloop is not a dependency)."""
    if os.environ.get("CALLGATE_BENCH_UVLOOP", "") in ("", "0"):
        return False
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def _serve(kind: str, mode: str, sim_url: str, db_url: str | None, ready_q, result_q, stop_ev) -> None:
    import logging

    use_uvloop()

    logging.basicConfig(level=logging.ERROR)

    async def main() -> None:
        from ari_app.client import AriClient
        from ari_app.gate import Gate
        from ari_app.settings import GateSettings

        client = AriClient(sim_url, "callgate", "secret", "callgate", request_timeout=30)
        core = None
        gate = None
        if kind == "gate":
            from billing_core.api import BillingCore

            core = await BillingCore.open(db_url)
            gate = Gate(client, core, GateSettings(warning_seconds=0, dial_timeout=30))
            task = asyncio.create_task(gate.run())
        elif mode == "bridge":
            gate = Gate(client, AllowAllCore(), GateSettings(warning_seconds=0, dial_timeout=30))
            task = asyncio.create_task(gate.run())
        else:
            await _noop_continue(client)
            task = asyncio.create_task(client.run())
        await client.wait_connected(10)
        from callgate.heap import freeze_startup_heap

        freeze_startup_heap()  # as `callgate gate` / `callgate run` do once started (both apps alike)
        watch = LoopWatch()
        watch.start()
        ready_q.put("ready")
        loop = asyncio.get_running_loop()
        cpu0 = time.process_time()
        await loop.run_in_executor(None, stop_ev.wait)
        stats = {"app_cpu_s": time.process_time() - cpu0} | watch.stop("app")
        if gate is not None:
            stats |= {"decisions": gate.stats.decisions, "allowed": gate.stats.allowed,
                     "settled": gate.stats.settled, "failures": gate.stats.failures,
                     "decision_p50_ms": pct(list(gate.stats.decision_ms), 0.50),
                     "decision_p99_ms": pct(list(gate.stats.decision_ms), 0.99)}
            await gate.stop()
        else:
            await client.stop()
        try:
            await asyncio.wait_for(task, 10)
        except Exception:
            pass
        await client.close()
        if core is not None:
            await core.close()
        result_q.put(stats)

    if os.environ.get("CALLGATE_BENCH_PROFILE"):
        import cProfile

        cProfile.runctx("asyncio.run(main())", globals(), locals(),
                        f"{os.environ['CALLGATE_BENCH_PROFILE']}.{kind}.{mode}.prof")
    else:
        asyncio.run(main())


# ------------------------------------------------------------------------------------- databases
async def prepare_db(backend: str, tmpdir: str) -> tuple[str, str | None]:
    """A fresh migrated database with ACCOUNTS funded accounts (endpoints alice0..)."""
    from billing_core.api import BillingCore
    from billing_core.store import migrate
    from tests.factories import seed

    schema = None
    if backend == "sqlite":
        url = f"sqlite:///{tmpdir}/gate-bench.db"
    else:
        import asyncpg

        schema = f"gatebench_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(PG)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.close()
        url = f"{PG}{'&' if '?' in PG else '?'}schema={schema}"
    await migrate.upgrade(url)
    core = await BillingCore.open(url)
    try:
        for i in range(ACCOUNTS):
            await seed(core, account=f"acct{i}", endpoint=f"alice{i}", balance="1000.00", did=None,
                       package=f"pkg{i}", max_calls=100_000)
    finally:
        await core.close()
    return url, schema


async def drop_schema(schema: str | None) -> None:
    if schema:
        import asyncpg

        conn = await asyncpg.connect(PG)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


# ----------------------------------------------------------------------------------------- a run
async def run_one(kind: str, mode: str, backend: str, rate: float, seconds: float) -> dict:
    from callgate_fakes.ari_simulator import AriSimulator, Party

    with tempfile.TemporaryDirectory() as tmp:
        db_url, schema = (None, None) if kind == "noop" else await prepare_db(backend, tmp)
        sim = AriSimulator(user="callgate", password="secret", apps=("callgate",), time_scale=1.0, history=1000)
        await sim.start(port=0)
        sim.script_destination_default(Party(answer_after=0.05, hangup_after=HOLD_SECONDS))
        loop = asyncio.get_running_loop()
        started: dict[str, float] = {}
        first_req: dict[str, float] = {}
        enter = sim._enter_stasis
        dispatch = sim._dispatch

        def timed_enter(ch, app, args):
            if args and args[0] in ("outbound", "inbound"):
                started[ch.id] = loop.time()
            return enter(ch, app, args)

        def timed_dispatch(method, path, query, body, request):
            m = CHANNEL_PATH.match(path)
            if m and m.group(1) in started and m.group(1) not in first_req:
                first_req[m.group(1)] = loop.time()
            return dispatch(method, path, query, body, request)

        sim._enter_stasis = timed_enter
        sim._dispatch = timed_dispatch

        ctx = mp.get_context("spawn")
        ready_q, result_q, stop_ev = ctx.Queue(), ctx.Queue(), ctx.Event()
        proc = ctx.Process(target=_serve, args=(kind, mode, sim.url, db_url, ready_q, result_q, stop_ev))
        proc.start()
        await loop.run_in_executor(None, ready_q.get, True, 60)
        await sim.wait_app_connected(timeout=10)
        # The simulator stands in for Asterisk, which has no garbage collector: its startup heap
        # (the swagger table, aiohttp) is frozen like the app's, or its own full passes (46–78 ms
        # measured) would be charged to the app's latency. Unfrozen again after the run.
        from callgate.heap import freeze_startup_heap

        freeze_startup_heap()
        # ...and it collects nothing during the run either: its young-generation passes (136 of
        # ~2.4 ms in a 10 s run, plus one 22 ms full pass, measured with gc.callbacks) stalled the
        # simulated Asterisk's loop, and the app's latency with it. Collected after the run.
        gc.disable()
        watch = LoopWatch()
        watch.start()

        n = int(rate * seconds)
        calls = []
        cpu0 = time.process_time()
        # continue mode as asterisk-conf routes it: the settle handler pushed, no channel subscription
        extra = dict(context="callgate-outbound-continue",
                     app_args=["outbound", "continue", "hangup-handler"]) if mode == "continue" else {}
        t0 = loop.time()
        ends = []
        for i in range(n):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            calls.append(await sim.place_call(endpoint=f"alice{i % ACCOUNTS}", exten=NUMBER, **extra))
            # waited on as placed: creating all n waits at the end stalled this loop ~60 ms just
            # as the last calls entered Stasis (their latency was the run's max)
            ends.append(asyncio.ensure_future(calls[-1].ended(timeout=60)))
        placed = loop.time() - t0
        outcomes = await asyncio.gather(*ends, return_exceptions=True)
        span = loop.time() - t0
        sim_cpu = time.process_time() - cpu0
        sim_watch = watch.stop("sim")
        stop_ev.set()
        stats = await loop.run_in_executor(None, result_q.get, True, 60)
        await loop.run_in_executor(None, proc.join, 30)
        await sim.stop()
        gc.enable()
        gc.unfreeze()
        await drop_schema(schema)
    lat = [(first_req[c] - started[c]) * 1000 for c in started if c in first_req]
    if os.environ.get("CALLGATE_BENCH_DEBUG_TAIL"):
        t_start = min(started.values())
        worst = sorted(((first_req[c] - started[c]) * 1000, started[c] - t_start)
                       for c in started if c in first_req)[-max(1, len(lat) // 100):]
        print("TAIL", [(round(ms), round(at, 2)) for ms, at in worst])
    answered = sum(1 for o in outcomes if not isinstance(o, BaseException) and o.answered)
    kinds: dict[str, int] = {}
    for o in outcomes:
        key = type(o).__name__ if isinstance(o, BaseException) else f"{o.sip_final}/{o.ended_by}"
        kinds[key] = kinds.get(key, 0) + 1
    decided_at = sorted(first_req.values())
    decide_rate = (len(decided_at) - 1) / (decided_at[-1] - decided_at[0]) if len(decided_at) > 1 else 0.0
    return {"app": kind, "mode": mode, "db": backend if kind == "gate" else "-", "accounts": ACCOUNTS,
            "offered_per_s": rate,
            "calls": n, "placed_in_s": round(placed, 2), "decided_per_s": round(decide_rate, 1),
            "completed": answered, "outcomes": kinds, "all_done_in_s": round(span, 2),
            "sim_cpu_ms_per_call": round(sim_cpu * 1000 / n, 2),
            "app_cpu_ms_per_call": round(stats.get("app_cpu_s", 0) * 1000 / n, 2),
            "latency_p50_ms": round(pct(lat, 0.50), 2), "latency_p99_ms": round(pct(lat, 0.99), 2),
            "latency_max_ms": round(max(lat) if lat else float("nan"), 2), **sim_watch,
            **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in stats.items()}}


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu}, nproc {os.cpu_count()}, Python {platform.python_version()}"


async def amain(args) -> int:
    print(f"machine: {machine()}")
    results = []
    for mode in args.modes:
        for rate in args.rate:
            pair = {}
            for kind in args.apps:
                r = await run_one(kind, mode, args.db, rate, args.seconds)
                pair[kind] = r
                results.append(r)
                print(json.dumps(r), flush=True)
            if len(pair) < 2:
                continue
            g, n = pair["gate"], pair["noop"]
            ok = g["completed"] == g["calls"] and g["decided_per_s"] >= 0.95 * rate and g["latency_p99_ms"] < 20
            print(f"{mode} @ {rate:g}/s: gate {g['decided_per_s']}/s p99 {g['latency_p99_ms']} ms "
                  f"({g['app_cpu_ms_per_call']} ms CPU/call) vs noop {n['decided_per_s']}/s p99 {n['latency_p99_ms']} ms "
                  f"({n['app_cpu_ms_per_call']} ms CPU/call); ratio gate/noop: throughput "
                  f"{g['decided_per_s'] / n['decided_per_s']:.2f}, CPU per call "
                  f"{g['app_cpu_ms_per_call'] / n['app_cpu_ms_per_call']:.2f}; target (≥{rate:g}/s, p99 < 20 ms): "
                  f"{'met' if ok else 'NOT met'}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def main(argv=None) -> int:
    global ACCOUNTS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, nargs="+", default=[float(os.environ.get("CALLGATE_BENCH_GATE_RATE", "300"))],
                    help="offered calls per second (several values: a sweep)")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("CALLGATE_BENCH_SECONDS", "5")))
    ap.add_argument("--db", choices=("sqlite", "pg"), default="sqlite")
    ap.add_argument("--modes", nargs="+", choices=("bridge", "continue"), default=["bridge", "continue"])
    ap.add_argument("--apps", nargs="+", choices=("noop", "gate"), default=["noop", "gate"],
                    help="which apps to run (the side-by-side line needs both)")
    ap.add_argument("--accounts", type=int, default=ACCOUNTS,
                    help=f"funded accounts the calls cycle through (default {ACCOUNTS})")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    if args.accounts < 1:
        ap.error("--accounts: at least 1")
    ACCOUNTS = args.accounts
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    use_uvloop()
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
