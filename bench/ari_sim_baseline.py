"""Baseline for the gate benchmark (issue 3): a do-nothing Stasis app on the ARI simulator.

The simulator runs in its own process and places calls open-loop at RATE calls/s for SECONDS;
the app (AriClient, this process) answers every StasisStart with ``POST /channels/{id}/continue``
(one REST call, no decision). Latency = the simulator's clock from the call's StasisStart to the
app's first REST request for that channel (both timestamps taken in the simulator process, so
there is no clock skew). The gate benchmark runs the same load through the gate and reports the
two side by side; ``run_baseline()`` is importable for that.

    python -m bench.ari_sim_baseline      # CALLGATE_BENCH_SECONDS (5), CALLGATE_BENCH_ARI_RATE (300)
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import sys
from typing import Awaitable, Callable

SECONDS = float(os.environ.get("CALLGATE_BENCH_SECONDS", "5"))
RATE = float(os.environ.get("CALLGATE_BENCH_ARI_RATE", "300"))
USER, PASSWORD, APP = "callgate", "secret", "callgate"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def _sim_process(port_q, result_q, rate: float, seconds: float, call_kw: dict) -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)

    async def main() -> None:
        from callgate_fakes.ari_simulator import AriSimulator, Party

        sim = AriSimulator(user=USER, password=PASSWORD, apps=(APP,))
        sim.script_destination_default(Party(answer_after=0.5, hangup_after=1.0))
        await sim.start()
        port_q.put(sim.port)
        await sim.wait_app_connected(timeout=30)
        loop = asyncio.get_running_loop()
        calls = []
        t0 = loop.time()
        n = int(rate * seconds)
        for i in range(n):
            due = t0 + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            calls.append(await sim.place_call(exten=f"1514555{i % 10000:04d}", **call_kw))
        elapsed = loop.time() - t0
        await asyncio.sleep(1.0)
        first_request: dict[str, float] = {}
        for r in sim.requests:
            parts = r.path.split("/")
            if len(parts) > 3 and parts[2] == "channels":
                first_request.setdefault(parts[3], r.at)
        lat = [(first_request[c.channel_id] - c.placed_at) * 1000 for c in calls if c.channel_id in first_request]
        result_q.put({"placed": n, "decided": len(lat), "offered_rate": n / elapsed, "latencies_ms": lat,
                      "requests": len(sim.requests)})
        await sim.stop()

    asyncio.run(main())


async def run_load(make_app: Callable[[str], Awaitable[Callable[[], Awaitable[None]]]], rate: float = RATE,
                   seconds: float = SECONDS, call_kw: dict | None = None) -> dict:
    """Start the simulator process, ``stop = await make_app(sim_url)``, drive the load, report."""
    ctx = mp.get_context("spawn")
    port_q, result_q = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_sim_process, args=(port_q, result_q, rate, seconds, call_kw or {}), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()
    port = await loop.run_in_executor(None, port_q.get, True, 30)
    stop = await make_app(f"http://127.0.0.1:{port}")
    try:
        result = await loop.run_in_executor(None, result_q.get, True, seconds + 60)
    finally:
        await stop()
        proc.join(10)
    lat = result.pop("latencies_ms")
    result.update(p50_ms=pct(lat, 0.50), p99_ms=pct(lat, 0.99), max_ms=max(lat) if lat else float("nan"))
    return result


async def _do_nothing_app(url: str):
    from ari_app.client import AriClient

    client = AriClient(url, USER, PASSWORD, APP)

    requests: set[asyncio.Task] = set()

    def on_event(event: dict) -> None:  # routes only: the REST call runs in its own task
        if event["type"] == "StasisStart":
            task = asyncio.ensure_future(client.continue_in_dialplan(event["channel"]["id"]))
            requests.add(task)
            task.add_done_callback(requests.discard)

    client.on_event_now(on_event)
    task = asyncio.create_task(client.run())
    await client.wait_connected(30)

    async def stop() -> None:
        await client.close()
        await task

    return stop


async def run_baseline(rate: float = RATE, seconds: float = SECONDS) -> dict:
    return await run_load(_do_nothing_app, rate, seconds)


def main() -> int:
    r = asyncio.run(run_baseline())
    print(f"do-nothing Stasis app on the simulator: offered {r['offered_rate']:.0f} calls/s for {SECONDS:.0f} s, "
          f"{r['decided']}/{r['placed']} answered, StasisStart -> first REST p50 {r['p50_ms']:.2f} ms, "
          f"p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.2f} ms")
    return 0 if r["decided"] == r["placed"] else 1


if __name__ == "__main__":
    sys.exit(main())
