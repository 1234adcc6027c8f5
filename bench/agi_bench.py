"""FastAGI benchmark (issue 5): complete ``authorize`` sessions per second over loopback, with p50/p99.

One session = what Asterisk does for ``AGI(agi://127.0.0.1:4573/authorize,outbound,<number>)``:
connect, send the 24-line environment block (recorded bytes), answer the server's three SET
VARIABLE commands with ``200 result=1``, read EOF. The server runs in its own process
(`agi.server.FastAgiServer` + a real BillingCore), the load generator here with CONCURRENCY
simultaneous Asterisk channels. Variants: a stub core (framing alone), SQLite, PostgreSQL
(CALLGATE_BENCH_PG_URL, default postgresql://127.0.0.1:5432/test, throw-away schema).

    python -m bench.agi_bench [stub|sqlite|postgresql]   # or: make bench  (CALLGATE_BENCH_SECONDS, default 5)
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

PG = os.environ.get("CALLGATE_BENCH_PG_URL", "postgresql://127.0.0.1:5432/test")
SECONDS = float(os.environ.get("CALLGATE_BENCH_SECONDS", "5"))
CONCURRENCY = int(os.environ.get("CALLGATE_BENCH_AGI_CONCURRENCY", "32"))
ACCOUNTS = 32
TRACE = Path(__file__).resolve().parents[1] / "tests" / "agi" / "traces" / "agi_dial_u_answered_and_hangup_handler_settle.jsonl"


def env_template() -> list[str]:
    import json

    out = []
    for line in TRACE.read_text().splitlines():
        r = json.loads(line)
        if r["kind"] == "agi" and r.get("connection") == "agi1" and r["direction"] == "asterisk->agi":
            out.append(r["raw"])
            if r["raw"] == "\n":
                return out
    raise SystemExit("trace without an environment block")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


# ------------------------------------------------------------------------------ server process
def _serve(url: str | None, port_q, stop_ev) -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)

    async def main() -> None:
        from agi.routes import Router
        from agi.server import FastAgiServer
        from agi.settings import AgiSettings

        if url is None:
            from billing_core.domain.records import Authorization

            class Stub:
                async def authorize_call(self, **kw):
                    return Authorization(True, None, uuid.uuid4().hex, kw["direction"], kw["number"], granted_seconds=60)

            core = Stub()
        else:
            from billing_core.api import BillingCore

            core = await BillingCore.open(url)
        settings = AgiSettings(host="127.0.0.1", port=0, pbx_id="agi@bench")
        async with FastAgiServer(Router(core, pbx_id="agi@bench", decision_timeout=5.0), settings) as srv:
            from callgate.heap import freeze_startup_heap

            freeze_startup_heap()  # as `callgate agi` does once started
            port_q.put(srv.port)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            start_cpu = usage.ru_utime + usage.ru_stime
            while not stop_ev.is_set():
                await asyncio.sleep(0.1)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            port_q.put(usage.ru_utime + usage.ru_stime - start_cpu)  # CPU the server spent serving
        if url is not None:
            await core.close()

    asyncio.run(main())


async def _seed(url: str) -> None:
    from billing_core.api import BillingCore
    from billing_core.domain.rating import Rate
    from tests.factories import seed

    core = await BillingCore.open(url)
    await core.create_schema()
    for i in range(ACCOUNTS):
        await seed(core, account=f"acct{i}", endpoint=f"ep{i}", did=None, balance="1000000.00", max_calls=1_000_000,
                   deck=[Rate("1", 12_500, 0, 60, 6)])
    await core.close()


# ------------------------------------------------------------------------------ load generator
async def load(port: int) -> tuple[int, list[float], int]:
    template = env_template()
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + SECONDS
    seq = 0

    async def channel(worker: int) -> None:
        nonlocal seq, errors
        while time.perf_counter() < stop:
            seq += 1
            env = []
            for line in template:
                if line.startswith("agi_uniqueid: "):
                    line = f"agi_uniqueid: 1795900000.{seq}\n"
                elif line.startswith("agi_channel: "):
                    line = f"agi_channel: PJSIP/ep{worker % ACCOUNTS}-{seq:08x}\n"
                env.append(line)
            t0 = time.perf_counter()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write("".join(env).encode())
            ok = False
            while line := await reader.readline():
                if line.startswith(b"SET VARIABLE CALLGATE_STATUS ALLOW"):
                    ok = True
                writer.write(b"200 result=1\n")
            writer.close()
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    await asyncio.gather(*(channel(i) for i in range(CONCURRENCY)))
    return len(latencies), latencies, errors


def run(label: str, url: str | None) -> None:
    if url is not None:
        asyncio.run(_seed(url))
    ctx = mp.get_context("spawn")
    port_q, stop_ev = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_serve, args=(url, port_q, stop_ev))
    proc.start()
    try:
        port = port_q.get(timeout=30)
        n, lat, errors = asyncio.run(load(port))
    finally:
        stop_ev.set()
    server_cpu = port_q.get(timeout=30)
    proc.join(10)
    print(f"{label:<12} {n / SECONDS:8.0f} sessions/s  p50 {pct(lat, 0.5) * 1000:6.2f} ms  "
          f"p99 {pct(lat, 0.99) * 1000:6.2f} ms  server CPU {server_cpu / max(n, 1) * 1000:5.2f} ms/session  "
          f"({n} sessions, {CONCURRENCY} concurrent, {errors} not ALLOW)", flush=True)


async def _pg_schema(sql: str) -> None:
    conn = await asyncpg.connect(PG)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main(argv: list[str]) -> int:
    """Variants by name (stub, sqlite, postgresql); all when none is given."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    want = set(argv) or {"stub", "sqlite", "postgresql"}
    print(f"FastAGI authorize, {SECONDS:g} s per variant, server in its own process", flush=True)
    if "stub" in want:
        run("stub core", None)
    if "sqlite" in want:
        with tempfile.TemporaryDirectory() as d:
            run("sqlite", f"sqlite:///{d}/bench.db")
    if "postgresql" in want:
        schema = f"agibench_{uuid.uuid4().hex[:8]}"
        asyncio.run(_pg_schema(f'CREATE SCHEMA "{schema}"'))
        try:
            run("postgresql", f"{PG}?schema={schema}")
        finally:
            asyncio.run(_pg_schema(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
