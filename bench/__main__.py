"""`make bench` / `python -m bench [NAME ...]`: run every bench/*_bench.py (or the named ones).

Each benchmark prints its figures; docs/BENCHMARKS.md records them with the machine's details.
"""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def main(argv: list[str]) -> int:
    names = sorted(p.stem for p in HERE.glob("*_bench.py"))
    wanted = [n for n in names if not argv or any(a in n for a in argv)]
    print(f"machine: {machine()}")
    failed = 0
    for name in wanted:
        print(f"\n=== {name} ===", flush=True)
        rc = subprocess.call([sys.executable, "-m", f"bench.{name}"], cwd=HERE.parent)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
