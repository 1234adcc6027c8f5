"""callgate.heap: the startup heap leaves the collector's passes; later garbage is still collected.

Run in a child interpreter: freezing pytest's own heap would keep every test's objects for good."""
from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import gc, json, time
    import billing_core.api, ari_app.gate  # what a gate imports
    from callgate.heap import freeze_startup_heap

    tracked_before = len(gc.get_objects())
    frozen = freeze_startup_heap()
    tracked_after = len(gc.get_objects())

    class Node:
        pass

    gc.disable()  # no automatic pass meanwhile: the explicit one below must find them all
    for _ in range(1000):  # cyclic garbage made after startup
        a, b = Node(), Node()
        a.other, b.other = b, a
    del a, b
    collected = gc.collect()
    print(json.dumps({"frozen": frozen, "count": gc.get_freeze_count(), "before": tracked_before,
                      "after": tracked_after, "collected": collected}))
""")


def test_freeze_moves_the_startup_heap_out_and_later_cycles_are_still_collected():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    r = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert r["frozen"] == r["count"] and r["frozen"] > 10_000
    # gc.get_objects() lists the generations the collector walks: the frozen ones are gone from it
    assert r["after"] < r["before"] - 10_000
    assert r["collected"] >= 2000  # the 1,000 cycles of two objects made after the freeze
